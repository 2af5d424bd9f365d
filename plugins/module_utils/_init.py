# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils file is PRIVATE to the encedo.hem collection: its API may change
# at any time without notice. Do not use it from other collections.

"""The personalisation of a factory-fresh device (``GET``/``POST /api/auth/init``) as a resource of the engine
(encedo_init): the options' checks, the ``cfg`` claim (the field table's defaults), the proof signed with the master
key as the vendor's clients sign it, the reboot prediction, the storage format a PPA starts afterwards, and what a
personalised device is checked for (the passphrase logs in; hostname and ip are what the task asks).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
from urllib.parse import urlsplit, urlunsplit

from ansible_collections.encedo.hem.plugins.module_utils._errors import HemError
from ansible_collections.encedo.hem.plugins.module_utils._login import (
    JWT_HEADER,
    b64url,
    derive_keypair,
    master_keypair,
    normalise_recovery_phrase,
    x25519_shared,
)
from ansible_collections.encedo.hem.plugins.module_utils._config import (
    FORMAT_START_GRACE,
    FormatNotFinished,
    format_running,
    same,
    storage_split,
    wait_for_format,
)
from ansible_collections.encedo.hem.plugins.module_utils import _fields
from ansible_collections.encedo.hem.plugins.module_utils._engine import Plan, Resource, changed_fields
from ansible_collections.encedo.hem.plugins.module_utils._fields import INIT_REBOOT_FIELDS, PPA_DEFAULTS, PPA_ONLY

INIT_PATH = '/api/auth/init'
CHALLENGE_LIFETIME = 60
#: The values of a factory-fresh PPA, for the check-mode reboot prediction: no source gives them, taken as the
#: values the module sends for unset options (the table's ``ppa_default``, the web manager's), as the emulator does.
FACTORY_VALUES = dict((name, PPA_DEFAULTS[name]) for name in INIT_REBOOT_FIELDS)


#: The address a PPA answers at until it is personalised with another ``ip`` (the web manager shows it "(fixed)").
FACTORY_ADDRESS = '192.168.7.1'


def moved_url(url, ip):
    """The URL a device reached at ``url`` answers at once personalised with ``ip``, from the reboot that applies it;
    None when it stays where ``url`` reaches it (the vendor's address, or the address ``url`` names already)."""
    address = ip.split('/', 1)[0]
    parts = urlsplit(url)
    if address == FACTORY_ADDRESS or (parts.hostname or '').lower() == address:
        return None
    netloc = address + (':%d' % parts.port if parts.port else '')
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip('/'), '', ''))


def source_address(address, port=443):
    """The local address the controller would send from to reach ``address`` (a UDP socket's route lookup: no
    packet is sent), or None when it has no route there."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.connect((address, port))
        return sock.getsockname()[0]
    except OSError:
        return None
    finally:
        sock.close()


def unreachable(url, new_url):
    """Why the controller could not reach the device at ``new_url`` (the address it moves to), else None: no route
    there, or a route from another local address than the one it reaches the device from now (another link)."""
    parts, new = urlsplit(url), urlsplit(new_url)
    address = new.hostname
    to_new = source_address(address, new.port or 443)
    if to_new is None:
        return 'the controller has no route to %s' % address
    try:
        now = socket.getaddrinfo(parts.hostname, parts.port or 443, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
    except (OSError, IndexError):
        return None     # the current address is not known here: nothing to compare with
    to_now = source_address(now, parts.port or 443)
    if to_now is not None and to_now != to_new:
        return ('the controller reaches the device (%s) from its address %s, but would reach %s from %s, another link '
                '(e.g. its default route)' % (now, to_now, address, to_new))
    return None


def check_address(params):
    """A personalisation that moves the device (option ip): refuse, before any request, an address the controller
    could not reach it at after the reboot that applies it (the next run could not reach the device)."""
    if not params.get('ip') or not params.get('url') or params.get('proxy_url'):
        return
    new_url = moved_url(params['url'], params['ip'])
    problem = new_url and unreachable(params['url'], new_url)
    if problem:
        raise HemError('option ip: %s moves the device to %s from its next reboot on, and %s: the next run could not reach '
                       'the device. Give an address on the link the controller reaches the device on now (the vendor\'s is '
                       '192.168.7.1/24), or leave ip unset. Nothing was sent.' % (params['ip'], new_url, problem))


def validate(params):
    """Check every option before any request (``HemModule.run``'s check). Raises HemError with a user-facing message.

    The fields' rules are the table's (_fields.check, the same as encedo_config's). Normalises
    ``storage_mode`` to its number in ``params``.
    """
    try:
        checked = _fields.check_all(params, 'init')
    except ValueError as exc:
        raise HemError(str(exc))
    if 'storage_mode' in checked:
        params['storage_mode'] = checked['storage_mode']
    check_address(params)       # after the ip's own checks: a well-formed address
    if params.get('format_timeout') is not None and params['format_timeout'] <= 0:
        raise HemError('option format_timeout: must be a positive number of seconds, got %d' % params['format_timeout'])
    for name in ('passphrase', 'master_passphrase', 'master_recovery_phrase'):
        if params[name] is not None and not params[name]:
            raise HemError('option %s: must not be empty' % name)
    if params['master_passphrase'] and params['master_recovery_phrase']:
        raise HemError('options master_passphrase and master_recovery_phrase: give only one of them (both make the master key)')
    if params['passphrase'] and params['passphrase'] == params['master_passphrase']:
        raise HemError('options passphrase and master_passphrase: must differ (the device tells the user and master roles '
                       'apart by their keys)')
    if not params['master_recovery_phrase']:
        return
    try:
        phrase = normalise_recovery_phrase(params['master_recovery_phrase'])
    except ValueError as exc:
        raise HemError(str(exc))
    if params['passphrase'] and ' '.join(params['passphrase'].split()) == phrase:
        # Protects the user: the passphrase is typed at every login; the recovery phrase is the master key.
        raise HemError('options passphrase and master_recovery_phrase: must differ (the passphrase is typed for every '
                       'login, the recovery phrase is the master key and should stay offline)')


def ppa_values(params):
    """The PPA-only fields as sent: the option, else the web manager's value."""
    return dict((name, params[name] if params[name] is not None else PPA_DEFAULTS[name]) for name in PPA_ONLY)


def build_cfg(params, model, userkey, masterkey):
    """The ``cfg`` claim of the personalisation request."""
    cfg = {
        'user': params['user'],
        'email': params['email'],
        'hostname': params['hostname'],
        'origin': params['origin'],
        'trusted_ts': params['trusted_ts'],
        'trusted_backend': params['trusted_backend'],
        'allow_keysearch': params['allow_keysearch'],
        'userkey': userkey,
        'masterkey': masterkey,
    }
    if model == 'ppa':
        cfg.update(ppa_values(params))
    if params['ctx'] is not None:
        cfg['ctx'] = params['ctx']
    if params['gen_csr']:
        cfg['gen_csr'] = True
    return cfg


def sign_init(challenge, master_private, master_public_b64, cfg):
    """The ``init`` JWS as the vendor's clients build it (encedo-manager build.js ``initFinal``, hem-sdk-js
    ``initialize``): signed with the MASTER key, ``iss`` = the master public key (= ``cfg.masterkey``), HMAC-SHA256
    keyed with X25519(master private key, challenge ``spk``); claims jti, aud (= spk), exp (= the challenge's exp),
    iat (now), iss, cfg. "Now" is the device's clock as the challenge states it (exp - 60 s), as for a login."""
    payload = {'jti': challenge['jti'], 'aud': challenge['spk']}
    if isinstance(challenge.get('exp'), int) and not isinstance(challenge['exp'], bool):
        payload.update(exp=challenge['exp'], iat=challenge['exp'] - CHALLENGE_LIFETIME)
    else:
        payload['iat'] = int(time.time())
    payload.update(iss=master_public_b64, cfg=cfg)
    shared = x25519_shared(master_private, challenge['spk'])
    signing_input = b64url(JWT_HEADER) + '.' + b64url(json.dumps(payload, separators=(',', ':')).encode('utf-8'))
    return signing_input + '.' + b64url(hmac.new(shared, signing_input.encode('ascii'), hashlib.sha256).digest())


def predict_reboot(params, model):
    if model != 'ppa':
        return False
    values = ppa_values(params)
    return any(values[name] != FACTORY_VALUES[name] for name in INIT_REBOOT_FIELDS)


def storage_total(status):
    """Total sectors of a PPA's storage from its status (``storage``: per-slot "<sectors>:rw|ro|-"; the web
    manager adds slots 0 and 1, build.js init form), or None when the status does not say."""
    slots = storage_split(status)
    if not slots:
        return None
    return sum(slot['sectors'] for slot in slots[:2])


def explain_refusal(exc, model, cfg):
    """Say in ``exc`` what a refused personalisation (HTTP 400 or 401) means and what to check."""
    if exc.status == 400:
        exc.msg = ('the device rejected the personalisation (HTTP 400): a field it requires is missing or a value is out of '
                   'range (sent for %s: %s). The device is still factory-fresh, nothing was changed. Check these options, and '
                   'that the device really is that model (encedo.hem.encedo_info reports it).'
                   % ('an EPA' if model == 'epa' else 'a PPA', ', '.join(sorted(k for k in cfg if not k.endswith('key')))))
    elif exc.status == 401:
        exc.msg = ('the device refused the signed personalisation request (HTTP 401: its one-time challenge expired or was '
                   'used already, or it did not accept the signature). Nothing was changed, the device is still '
                   'factory-fresh. Make sure no other task or person personalises it at the same time and that the '
                   'controller answers within the 60 s the challenge lasts; if it keeps refusing, report it with the '
                   'firmware version that encedo.hem.encedo_info shows.')


def format_expected(status, cfg):
    """Whether personalising with ``cfg`` gives disk 0 another size than the status before it shows (slot 0):
    the device then formats its storage."""
    slots = storage_split(status)
    return bool(slots) and not same('storage_disk0size', cfg.get('storage_disk0size'), slots[0]['sectors'])


def wait_for_storage(module, client, expected=False):
    """A PPA formats its storage after personalisation (the web manager's checkDeviceReadyAfterInit polls the
    status until ``format`` is gone or "done" before it goes on): wait for it, so that the tasks after this one
    do not meet a device that answers 409. ``expected``: disk 0 changes size, so a format comes even if it has
    not started yet. -> result fields."""
    timeout = module.params['format_timeout']
    if not expected and not format_running(client.status()):
        return dict(reformatted=False)
    try:
        _status, waited, _polls, seen = wait_for_format(client.status, timeout,
                                                        start_within=FORMAT_START_GRACE if expected else 0.0)
    except FormatNotFinished as exc:
        if exc.gone:
            raise HemError('the device is personalised and started formatting its storage, but %s.' % exc.msg)
        raise HemError('the device is personalised and is formatting its storage, but the format did not finish within '
                       'format_timeout=%d s (%s). Leave it powered and connected: it refuses configuration changes (HTTP 409) '
                       'until the format is over. Watch encedo.hem.encedo_info (status.format becomes "done") before the next '
                       'step; running this task again changes nothing.' % (timeout, exc.msg))
    if not seen:
        return dict(reformatted=False)      # no status read showed a format: report what happened
    return dict(reformatted=True, format_seconds=int(round(waited)))


def check_personalised(module, client, model):
    """Already personalised: prove the passphrase logs in and compare what cannot change any more."""
    params = module.params
    result = dict(changed=False, personalised=True, model=model, reboot_required=False)
    if not params['passphrase'] or module.check_mode:
        return result
    try:
        client.login()
    except HemError as exc:
        if exc.status == 401:
            raise HemError('the device is already personalised and the passphrase given does not log in: it was personalised '
                           'with another passphrase (nothing was changed)', exc.endpoint, exc.status)
        raise
    config = client.get('/api/system/config')
    if config.get('instanceid'):
        result['instanceid'] = config['instanceid']
    wanted = {'hostname': params['hostname']}
    if model == 'ppa' and params['ip'] is not None:
        wanted['ip'] = params['ip']
    for name in changed_fields(config, wanted, same=lambda name, want, have: str(want).lower() == str(have).lower()):
        if name in config:
            module.warn('the device was personalised with %s %r, not %r; it cannot be changed without a wipe'
                        % (name, config[name], wanted[name]))
    return result


class PersonalisationResource(Resource):
    """A factory-fresh device personalised once; a personalised one checked. ``current``: the device status."""

    path = INIT_PATH

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.model = None
        self.checked = None
        self.format_expected = False

    def connect(self, client):
        self.client = client
        return client

    def read(self, client):
        return client.status()

    def reread(self, client):
        return client.status()

    def plan(self, current, want):
        params = self.params
        # From the status alone: the MSC build (PPA) reports its storage, a status without it is taken for an EPA.
        self.model = model = _fields.device_model(current) or 'epa'
        if model == 'epa':
            given = [name for name in PPA_ONLY if params[name] is not None]
            if given:
                raise HemError('the device is an EPA: option(s) %s exist only on a PPA' % ', '.join(given))
        if current.get('inited') is not False:
            self.checked = check_personalised(self.module, self.client, model)
            return Plan()
        self._refuse_what_cannot_work(current)
        names = sorted(build_cfg(params, model, None, None))
        shown = dict((name, value) for name, value in build_cfg(params, model, None, None).items() if not name.endswith('key'))
        return Plan({}, shown, sent=names, reboot_required=predict_reboot(params, model))

    def _refuse_what_cannot_work(self, status):
        params, model = self.params, self.model
        missing = []
        if not params['passphrase']:
            missing.append('passphrase')
        if not (params['master_passphrase'] or params['master_recovery_phrase']):
            missing.append('master_passphrase or master_recovery_phrase')
        if missing:
            raise HemError('the device is factory-fresh: personalising it needs %s%s' % (
                ' and '.join(missing), ' (a token cannot personalise a device)' if params['token'] else ''))
        total = storage_total(status) if model == 'ppa' else None
        disk0 = ppa_values(params)['storage_disk0size']
        if total is not None and disk0 > total:
            raise HemError('option storage_disk0size: %d sectors is more than the storage of this device, %d sectors (its '
                           'status); give at most %d (1 GiB = 2097152 sectors). Nothing was sent.' % (disk0, total, total))
        if not self.module.check_mode and 'time' not in status and 'ts' not in status:
            raise HemError('the device clock is not set and the device refuses to be personalised until it is: '
                           'run encedo.hem.encedo_checkin first')

    def write(self, client, plan, current):
        params = self.params
        challenge = client.get(INIT_PATH, auth=False)
        for field in ('eid', 'spk', 'jti'):
            if not isinstance(challenge.get(field), str):
                raise HemError('the personalisation challenge has no %s field' % field, 'GET ' + INIT_PATH)
        user_public = derive_keypair(params['passphrase'], challenge['eid'])[1]
        master_private, master_public = master_keypair(challenge['eid'], params['master_passphrase'],
                                                       params['master_recovery_phrase'])
        self.cfg = build_cfg(params, self.model, user_public, master_public)
        self.format_expected = self.model == 'ppa' and format_expected(current, self.cfg)
        return client.post(INIT_PATH, {'init': sign_init(challenge, master_private, master_public, self.cfg)}, auth=False)

    def refused(self, client, exc, plan):
        explain_refusal(exc, self.model, build_cfg(self.params, self.model, None, None))
        return exc

    def outcome_unknown(self, exc, plan, now, want):
        if now.get('inited') is False:
            return exc
        self.module.warn('the answer to the personalisation was lost, but the device is now personalised; '
                         'its instance id and whether it needs a reboot are unknown')
        return {'lost': True}

    def settle(self, client, plan, answer):
        if self.model == 'ppa' and not answer.get('lost'):
            return wait_for_storage(self.module, client, self.format_expected)
        return {}

    def diff(self, plan, after):
        return None     # one-shot: no diff (the attributes say so)

    def result(self, plan, answer):
        if not plan:
            return dict(self.checked or {})
        out = dict(personalised=not self.module.check_mode, model=self.model)
        if answer is None:
            return out
        if answer.get('lost'):
            out['reboot_required'] = predict_reboot(self.params, self.model)
            self._moved(out)
            return out
        out['reboot_required'] = bool(answer.get('reboot_required'))
        for key in ('instanceid', 'csr', 'genuine'):
            if answer.get(key):
                out[key] = answer[key]
        self._moved(out)
        return out

    def _moved(self, out):
        """Personalised with another ``ip``: from the reboot that applies it the device answers there only (RV url)."""
        new_url = self.model == 'ppa' and self.params['ip'] and moved_url(self.params['url'], self.params['ip'])
        if not new_url:
            return
        out['url'] = new_url
        self.module.warn('the device answers at %s from its next reboot on (ip %s), no longer at %s: reboot it with '
                         'encedo.hem.encedo_reboot new_url=%s, and use url %s (the inventory\'s encedo_hem_url) from then on'
                         % (new_url, self.params['ip'], self.params['url'], new_url, new_url))
