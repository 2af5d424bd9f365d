#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: encedo_init
short_description: Personalise a factory-fresh Encedo HEM
version_added: 0.1.0
description:
  - Personalises a factory-fresh device (C(GET) and C(POST /api/auth/init)), once in its life or after a wipe; sets the
    user and master passphrases, the user label, e-mail, hostname, IP address (PPA) and the initial options.
  - The passphrases never leave the controller. Each is turned into an X25519 public key (PBKDF2 salted with the device
    identity, as for a login) and only the public keys are sent. The request is signed with the key of O(passphrase).
  - On a device that is already personalised the module changes nothing. When O(passphrase) is given it proves that the
    passphrase logs in, returns the device's RV(instanceid), and warns when the device's O(hostname) or O(ip) differ from
    the ones asked for (they cannot be changed without a wipe).
  - The device must have its clock set (M(encedo.hem.encedo_checkin)) before it can be personalised.
  - Every option is validated before the first request is sent.
author:
  - encedo.hem maintainers (@encedo)
extends_documentation_fragment:
  - encedo.hem.connection
  - encedo.hem.fresh_tls
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    details: Reads the device status only; sends nothing to personalise and does not log in.
    support: full
  diff_mode:
    details: Not supported; personalisation is one-shot.
    support: none
  idempotent:
    description: Personalises only a factory-fresh device; a second run reports no change.
    support: full
options:
  passphrase:
    description:
      - The user passphrase to set, and later to log in with.
      - Required to personalise a device. On a personalised device, when given, the module checks that it logs in.
      - A token (O(token)) cannot personalise a device; it is not used by this module.
      - If not set, the environment variable E(ENCEDO_HEM_PASSPHRASE) is used.
    type: str
  master_passphrase:
    description:
      - The master passphrase to set (role C(M) on the device). It must differ from O(passphrase).
      - Required to personalise a device; not used on a personalised device.
    type: str
  user:
    description:
      - The user label (display name) shown by the device, 1 to 32 printable characters.
    type: str
    required: true
  email:
    description:
      - Contact e-mail address stored on the device, at most 64 characters. Empty by default.
    type: str
    default: ''
  hostname:
    description:
      - Host name of the device, for example V(my.ence.do) or V(hem1.example.com), at most 63 characters.
      - The device puts it in the certificate requests it generates. It cannot be changed after personalisation.
    type: str
    required: true
  origin:
    description:
      - The CORS allow-list of the device API for browsers, for example V(*), V(https://app.example.com) or
        V(*.example.com); several entries are separated by commas. At most 128 characters.
      - Default V(https://<hostname>) (only the device's own web pages), which is safer than the factory V(*).
    type: str
  trusted_ts:
    description:
      - Whether the device takes its time from the vendor backend (check-in). When on, logins are refused until a check-in
        sets the clock after every power-up or reboot.
    type: bool
    default: true
  trusted_backend:
    description:
      - Whether the vendor backend may control the device through check-in replies (lock, wipe, soft-brick, forced upgrade).
    type: bool
    default: false
  allow_keysearch:
    description:
      - Whether keys can be searched for without logging in.
    type: bool
    default: false
  ip:
    description:
      - PPA only. IPv4 address and prefix of the device on its USB network, in CIDR form, for example V(192.168.7.1/24)
        (prefix 8 to 30). It cannot be changed after personalisation.
      - Default on a PPA V(192.168.7.1/24), the factory address. A value other than the factory one needs a reboot.
      - Setting it for an EPA fails.
    type: str
  storage_mode:
    description:
      - PPA only. Default mode of disk 0 and encryption mode of disk 1 (0 to 255).
      - Default on a PPA V(0), the factory value. Another value needs a reboot. Setting it for an EPA fails.
    type: int
  storage_disk0size:
    description:
      - PPA only. Size of disk 0 in sectors; changing it reformats the storage.
      - Default on a PPA V(0), the factory value (no reformat). Another value needs a reboot. Setting it for an EPA fails.
    type: int
  dnsd:
    description:
      - PPA only. Whether the built-in DNS server is on.
      - Default on a PPA V(true), the factory value. Setting it for an EPA fails.
    type: bool
  ctx:
    description:
      - Instance context number (0 to 4294967295). Not sent when not set (the device keeps V(0)).
    type: int
  gen_csr:
    description:
      - Whether the device also generates a TLS certificate signing request, returned in RV(csr).
    type: bool
    default: false
notes:
  - O(token) cannot personalise a device (there is no token before personalisation).
  - Two PBKDF2 key derivations (600,000 iterations each) run on the controller when a device is personalised.
seealso:
  - module: encedo.hem.encedo_checkin
    description: Sets the device clock, needed before personalisation.
  - module: encedo.hem.encedo_config
    description: Changes the configuration after personalisation.
  - module: encedo.hem.encedo_reboot
    description: Reboots the device when RV(reboot_required) is true.
'''

EXAMPLES = r'''
- name: Personalise a new PPA
  encedo.hem.encedo_init:
    url: https://192.168.7.1
    ca_path: /etc/ssl/encedo-ca.pem
    passphrase: "{{ vault_hem_passphrase }}"
    master_passphrase: "{{ vault_hem_master_passphrase }}"
    user: Jane Doe
    email: jane@example.com
    hostname: hem1.example.com
    ip: 192.168.7.1/24
  register: hem_init

- name: Reboot when the new settings need it
  encedo.hem.encedo_reboot:
    url: https://192.168.7.1
    ca_path: /etc/ssl/encedo-ca.pem
    passphrase: "{{ vault_hem_passphrase }}"
  when: hem_init.reboot_required
'''

RETURN = r'''
personalised:
  description: Whether the device is personalised after the task (always true unless in check mode).
  returned: always
  type: bool
  sample: true
model:
  description: The device model, V(ppa) or V(epa).
  returned: always
  type: str
  sample: ppa
instanceid:
  description: The device instance UUID for remote management.
  returned: when the device was personalised by the task, or was already and O(passphrase) was given
  type: str
  sample: 8c1f0a52-3a4e-4b8e-9a0d-2f6c1b7e5d10
reboot_required:
  description:
    - Whether the device must reboot before the new network or storage settings apply.
    - In check mode, the prediction that a PPA needs a reboot when O(ip), O(storage_mode) or O(storage_disk0size) differ
      from the factory values.
  returned: always
  type: bool
  sample: false
sent:
  description: Names of the configuration fields sent to personalise the device (never their values).
  returned: when the device was personalised
  type: list
  elements: str
  sample: [allow_keysearch, dnsd, email, hostname, ip, masterkey, origin, storage_disk0size, storage_mode, trusted_backend,
           trusted_ts, user, userkey]
csr:
  description: The PEM certificate signing request the device generated.
  returned: when O(gen_csr=true) and the device was personalised
  type: str
genuine:
  description: The device's attestation token returned with the personalisation (verify it with M(encedo.hem.encedo_attestation)).
  returned: when the device was personalised and returned one
  type: str
https:
  description: Whether the device's HTTPS server runs; V(false) means it has no TLS bundle (see O(tls_bundle)).
  returned: when HTTPS answered, or the plain-HTTP status said whether it runs
  type: bool
tls_bundle_stored:
  description: Whether the task stored O(tls_bundle) on a device without a TLS bundle (in check mode, whether it would).
  returned: always
  type: bool
'''

import hashlib
import hmac
import ipaddress
import json
import re

from ansible_collections.encedo.hem.plugins.module_utils._client import (
    JWT_HEADER,
    HemError,
    HemOutcomeUnknown,
    b64url,
    derive_keypair,
    x25519_shared,
)
from ansible_collections.encedo.hem.plugins.module_utils import _fresh
from ansible_collections.encedo.hem.plugins.module_utils._module import HemModule, device_model

INIT_PATH = '/api/auth/init'
CHALLENGE_LIFETIME = 60
PPA_ONLY = ('ip', 'storage_mode', 'storage_disk0size', 'dnsd')
# Factory values of the PPA-only fields (what the device has before personalisation).
PPA_DEFAULTS = {'ip': '192.168.7.1/24', 'storage_mode': 0, 'storage_disk0size': 0, 'dnsd': True}
# Fields whose change needs a reboot.
REBOOT_FIELDS = ('ip', 'storage_mode', 'storage_disk0size')
HOSTNAME_LABEL = re.compile(r'^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$')
EMAIL = re.compile(r'^[^@\s]+@[^@\s]+$')


def _printable(name, value, low, high):
    if not low <= len(value) <= high or not value.isprintable():
        raise ValueError('option %s: must be %d to %d printable characters, got %d' % (name, low, high, len(value)))


def validate(params):
    """Check every option before any request. Raises ValueError with a user-facing message."""
    _printable('user', params['user'], 1, 32)
    _printable('email', params['email'], 0, 64)
    if params['email'] and not EMAIL.match(params['email']):
        raise ValueError('option email: %r is not an e-mail address' % params['email'])
    hostname = params['hostname']
    if not 1 <= len(hostname) <= 63 or not all(HOSTNAME_LABEL.match(label) for label in hostname.split('.')):
        raise ValueError('option hostname: %r is not a valid host name (letters, digits, hyphens and dots, at most 63 characters)'
                         % hostname)
    if params['origin'] is not None:
        _printable('origin', params['origin'], 1, 128)
    if params['ip'] is not None:
        canonical = canonical_cidr(params['ip'])
        if canonical != params['ip']:
            raise ValueError('option ip: write %r as %r' % (params['ip'], canonical))
    if params['storage_mode'] is not None and not 0 <= params['storage_mode'] <= 255:
        raise ValueError('option storage_mode: must be 0 to 255, got %d' % params['storage_mode'])
    if params['storage_disk0size'] is not None and params['storage_disk0size'] < 0:
        raise ValueError('option storage_disk0size: must not be negative')
    if params['ctx'] is not None and not 0 <= params['ctx'] <= 0xFFFFFFFF:
        raise ValueError('option ctx: must be 0 to 4294967295, got %d' % params['ctx'])
    for name in ('passphrase', 'master_passphrase'):
        if params[name] is not None and not params[name]:
            raise ValueError('option %s: must not be empty' % name)
    if params['passphrase'] and params['passphrase'] == params['master_passphrase']:
        raise ValueError('options passphrase and master_passphrase: must differ (the device tells the user and master roles '
                         'apart by their keys)')


def canonical_cidr(value):
    """The canonical form of an IPv4 CIDR address with a prefix of 8 to 30. Raises ValueError."""
    if '/' not in value:
        raise ValueError('option ip: %r needs a prefix length, for example 192.168.7.1/24' % value)
    try:
        iface = ipaddress.IPv4Interface(value)
    except ValueError as exc:
        raise ValueError('option ip: %r is not an IPv4 address with a prefix (%s)' % (value, exc))
    if not 8 <= iface.network.prefixlen <= 30:
        raise ValueError('option ip: the prefix length must be 8 to 30, got %d' % iface.network.prefixlen)
    return str(iface)


def build_cfg(params, model, userkey, masterkey):
    """The ``cfg`` claim of the personalisation request."""
    cfg = {
        'user': params['user'],
        'email': params['email'],
        'hostname': params['hostname'],
        'origin': params['origin'] if params['origin'] is not None else 'https://' + params['hostname'],
        'trusted_ts': params['trusted_ts'],
        'trusted_backend': params['trusted_backend'],
        'allow_keysearch': params['allow_keysearch'],
        'userkey': userkey,
        'masterkey': masterkey,
    }
    if model == 'ppa':
        for name in PPA_ONLY:
            cfg[name] = params[name] if params[name] is not None else PPA_DEFAULTS[name]
    if params['ctx'] is not None:
        cfg['ctx'] = params['ctx']
    if params['gen_csr']:
        cfg['gen_csr'] = True
    return cfg


def sign_init(challenge, private_bytes, public_b64, cfg):
    """The ``init`` JWS: keyed with X25519(user key, device session key), like a login proof."""
    now = int(challenge['exp']) - CHALLENGE_LIFETIME if isinstance(challenge.get('exp'), int) else None
    payload = {'jti': challenge['jti'], 'aud': challenge['spk']}
    if now is not None:
        payload.update(iat=now, exp=now + CHALLENGE_LIFETIME)
    payload.update(iss=public_b64, cfg=cfg)
    shared = x25519_shared(private_bytes, challenge['spk'])
    signing_input = b64url(JWT_HEADER) + '.' + b64url(json.dumps(payload, separators=(',', ':')).encode('utf-8'))
    return signing_input + '.' + b64url(hmac.new(shared, signing_input.encode('ascii'), hashlib.sha256).digest())


def predict_reboot(params, model):
    if model != 'ppa':
        return False
    return any(params[name] is not None and params[name] != PPA_DEFAULTS[name] for name in REBOOT_FIELDS)


def personalise(module, client, model):
    params = module.params
    challenge = client.get(INIT_PATH, auth=False)
    for field in ('eid', 'spk', 'jti'):
        if not isinstance(challenge.get(field), str):
            raise HemError('the personalisation challenge has no %s field' % field, 'GET ' + INIT_PATH)
    user_private, user_public = derive_keypair(params['passphrase'], challenge['eid'])
    master_public = derive_keypair(params['master_passphrase'], challenge['eid'])[1]
    cfg = build_cfg(params, model, user_public, master_public)
    proof = sign_init(challenge, user_private, user_public, cfg)
    result = dict(changed=True, personalised=True, model=model, sent=sorted(cfg))
    try:
        answer = client.post(INIT_PATH, {'init': proof}, auth=False)
    except HemOutcomeUnknown:
        if client.status().get('inited') is False:
            raise
        module.warn('the answer to the personalisation was lost, but the device is now personalised; '
                    'its instance id and whether it needs a reboot are unknown')
        result.update(reboot_required=predict_reboot(params, model))
        return result
    except HemError as exc:
        if exc.status == 400:
            exc.msg = ('the device rejected the personalisation (HTTP 400): a field it requires is missing or a value is out of '
                       'range (sent for %s: %s). The device is still factory-fresh, nothing was changed. Check these options, and '
                       'that the device really is that model (encedo.hem.encedo_info reports it).'
                       % ('an EPA' if model == 'epa' else 'a PPA', ', '.join(sorted(k for k in cfg if not k.endswith('key')))))
        raise
    result['reboot_required'] = bool(answer.get('reboot_required'))
    for key in ('instanceid', 'csr', 'genuine'):
        if answer.get(key):
            result[key] = answer[key]
    return result


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
    for name, value in sorted(wanted.items()):
        if name in config and str(config[name]).lower() != str(value).lower():
            module.warn('the device was personalised with %s %r, not %r; it cannot be changed without a wipe'
                        % (name, config[name], value))
    return result


def run(module, client):
    params = module.params
    status = client.status()
    model = device_model(status, {})     # from the status alone (the MSC build reports its storage)
    if model == 'epa':
        given = [name for name in PPA_ONLY if params[name] is not None]
        if given:
            raise HemError('the device is an EPA: option(s) %s exist only on a PPA' % ', '.join(given))
    if status.get('inited') is not False:
        return check_personalised(module, client, model)

    missing = [name for name in ('passphrase', 'master_passphrase') if not params[name]]
    if missing:
        raise HemError('the device is factory-fresh: personalising it needs %s%s' % (
            ' and '.join(missing), ' (a token cannot personalise a device)' if params['token'] else ''))
    if module.check_mode:
        return dict(changed=True, personalised=False, model=model, reboot_required=predict_reboot(params, model))
    if 'time' not in status and 'ts' not in status:
        raise HemError('the device clock is not set and the device refuses to be personalised until it is: '
                       'run encedo.hem.encedo_checkin first')
    return personalise(module, client, model)


def main():
    argument_spec = dict(
        master_passphrase=dict(type='str', no_log=True),
        user=dict(type='str', required=True),
        email=dict(type='str', default=''),
        hostname=dict(type='str', required=True),
        origin=dict(type='str'),
        trusted_ts=dict(type='bool', default=True),
        trusted_backend=dict(type='bool', default=False),
        allow_keysearch=dict(type='bool', default=False),
        ip=dict(type='str'),
        storage_mode=dict(type='int'),
        storage_disk0size=dict(type='int'),
        dnsd=dict(type='bool'),
        ctx=dict(type='int'),
        gen_csr=dict(type='bool', default=False),
    )
    argument_spec.update(_fresh.fresh_argument_spec())
    module = HemModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        validate(module.params)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    module.run(_fresh.run_with_tls_bundle(run))


if __name__ == '__main__':
    main()
