# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils file is PRIVATE to the encedo.hem collection: its API may change
# at any time without notice. Do not use it from other collections.

"""A firmware or dashboard image installed on a PPA (encedo_firmware), as an engine resource.

The version the device reports (``fwv`` of GET /api/system/version for the firmware, ``uis`` for the
dashboard) is the state; the task declares the version its image carries. When they differ, and only
then, the one write is the vendor's sequence (encedo-manager ``assets/encedo.js``, docs/fidelity.md
"Firmware upgrade"):

1. upload: the image as a raw body (``firmware.bin`` / ``webroot.tar``, POST upload_fw / upload_ui);
2. check: GET check_fw / check_ui, polled while it answers 201 (started) or 202 (running), until 200
   (verified) or 406 (the image failed the device's signature check: nothing installed);
3. install: GET install_fw / install_ui. The dashboard is active at once; the firmware device answers,
   then reboots into its bootloader, flashes and starts the new firmware with its clock unset;

and what the device does after it (``settle``): the firmware reboot is waited for (the uptime proof of
encedo_reboot), the device is checked in (as encedo_checkin) so that logins work again; then, for both,
the version is read again and must be the one declared, and the device must still attest (the
signature of its genuine token) and serve the same TLS certificate as before.

A device that does not come back, or comes back on another version, fails the task with what to do
next, and with ``changed`` true: the device was told to install.
"""

from __future__ import annotations

import os
import re
import time

from ansible_collections.encedo.hem.plugins.module_utils._config import format_running
from ansible_collections.encedo.hem.plugins.module_utils._engine import Plan, Resource
from ansible_collections.encedo.hem.plugins.module_utils._errors import HemError
from ansible_collections.encedo.hem.plugins.module_utils._fields import device_model
from ansible_collections.encedo.hem.plugins.module_utils._lifecycle import (
    NotRebooted,
    backend_client,
    check_backend_options,
    checkin,
    checkin_failure,
    checkin_warnings,
    clock_is_set,
    uptime_baseline,
    wait_for_reboot,
)
from ansible_collections.encedo.hem.plugins.module_utils._module import POLL

UPGRADE = '/api/system/upgrade/'
VERSION = '/api/system/version'
ATTESTATION = '/api/system/config/attestation'
SCOPE = 'system:upgrade'
#: OpenAPI upload_fw: a firmware image is at most 3 MiB; raw uploads at most 16 MiB (global conventions).
MAX_SIZE = {'firmware': 3 * 1024 * 1024, 'dashboard': 16 * 1024 * 1024}


class Component(object):
    """What one component is called on the wire."""

    def __init__(self, name, suffix, filename, version_field, reboots):
        self.name = name
        self.upload = UPGRADE + 'upload_' + suffix
        self.check = UPGRADE + 'check_' + suffix
        self.install = UPGRADE + 'install_' + suffix
        self.filename = filename
        self.field = version_field
        self.reboots = reboots

    @property
    def phases(self):
        return ['upload', 'check', 'install'] + (['reboot', 'checkin'] if self.reboots else []) + ['verify']


COMPONENTS = {
    'firmware': Component('firmware', 'fw', 'firmware.bin', 'fwv', True),
    'dashboard': Component('dashboard', 'ui', 'webroot.tar', 'uis', False),
}


class UpgradeError(HemError):
    """A failure of this resource, with its own message (the engine raises it as it is)."""


def version_numbers(text):
    """The first dotted number of a version text (``nGINE 1.2.3 (...)`` -> (1, 2, 3)), or None."""
    found = re.search(r'(\d+(?:\.\d+)+)', text or '')
    return tuple(int(part) for part in found.group(1).split('.')) if found else None


def check_options(params):
    """encedo_firmware's option checks before any request (raises HemError naming the option)."""
    component = COMPONENTS[params['component']]
    src = params['src']
    if not (os.path.isfile(src) and os.access(src, os.R_OK)):
        raise HemError('option src: %s is not a readable file; give the %s image (%s) as a file on the host that runs the '
                       'module. Nothing was sent to the device' % (src, component.name, component.filename))
    size = os.path.getsize(src)
    if not 0 < size <= MAX_SIZE[component.name]:
        raise HemError('option src: %s has %d bytes; a %s image has 1 to %d bytes (OpenAPI upload limits). Nothing was sent '
                       'to the device' % (src, size, component.name, MAX_SIZE[component.name]))
    if not (params['version'] or '').strip():
        raise HemError('option version: must be the version the image carries (the %s the device reports after the install), '
                       'got an empty text' % component.field)
    for name in ('upload_timeout', 'check_timeout', 'reboot_timeout'):
        if params[name] < 1:
            raise HemError('option %s: must be at least 1 second, got %s' % (name, params[name]))
    if params['poll_interval'] <= 0:
        raise HemError('option poll_interval: must be a positive number of seconds, got %s' % params['poll_interval'])
    check_backend_options(params)
    from ansible_collections.encedo.hem.plugins.module_utils import _attestation
    if not _attestation.HAS_CRYPTOGRAPHY:
        from ansible.module_utils.basic import missing_required_lib
        raise HemError(missing_required_lib('cryptography') + ' (to verify that the device still attests after the upgrade)')


class FirmwareResource(Resource):
    """The version of the firmware (``fwv``) or dashboard (``uis``) a PPA runs."""

    def __init__(self, module):
        self.module = module
        self.component = COMPONENTS[module.params['component']]
        self.durations = {}
        self.facts = {}
        self.served = None

    # -- read and plan ------------------------------------------------------------------

    def desired(self, params):
        check_options(params)
        return dict(version=params['version'].strip(), src=params['src'], allow_downgrade=params['allow_downgrade'])

    def connect(self, client):
        # upload_fw/upload_ui need a token of scope system:upgrade (the check and install also take system:config)
        return self.module.client(scope=SCOPE)

    def read(self, client):
        status = client.status()
        version = client.get(VERSION, auth=False)
        if client.url.lower().startswith('https:'):
            self.served = client.served_certificate()
        return dict(status=status, version=version, running=version.get(self.component.field))

    def plan(self, current, want):
        self.facts['previous_version'] = current['running']
        if current['running'] == want['version']:
            return Plan()
        self._refuse_unready(current)
        if self.component.name == 'firmware' and not want['allow_downgrade']:
            self._refuse_downgrade(current['running'], want['version'])
        return Plan(before={'version': current['running']}, after={'version': want['version']}, body={}, sent=[self.component.name])

    def _refuse_unready(self, current):
        """The checks before any upload (HemError, nothing sent)."""
        status, version = current['status'], current['version']
        problems = []
        if device_model(status, version) != 'ppa':
            problems.append('it is not a PPA (hwv %r): only the PPA takes an image over its API; an EPA gets its firmware '
                            'from the vendor backend at a check-in' % version.get('hwv'))
        if status.get('inited') is False:
            problems.append('it is not personalised: run encedo.hem.encedo_init first')
        elif not clock_is_set(status):
            problems.append('its clock is unset, so it refuses logins: check it in first (encedo.hem.encedo_checkin)')
        if format_running(status):
            problems.append('it is formatting its storage (status format %s): wait until it is done' % status.get('format'))
        if problems:
            raise HemError('the device cannot take the %s now: %s. Nothing was sent to the device'
                           % (self.component.name, '; '.join(problems)), result=dict(changed=False, **self.facts))

    def _refuse_downgrade(self, running, wanted):
        have, want = version_numbers(running), version_numbers(wanted)
        if have is None or want is None:
            raise HemError('option version: cannot tell whether %r is newer than the firmware the device runs (%r): neither or '
                           'only one carries a dotted version number. Set allow_downgrade to true to install it anyway. Nothing '
                           'was sent to the device' % (wanted, running), result=dict(changed=False, **self.facts))
        if want < have:
            raise HemError('option version: %r is older than the firmware the device runs (%r); set allow_downgrade to true to '
                           'install an older firmware. Nothing was sent to the device' % (wanted, running),
                           result=dict(changed=False, **self.facts))

    def predict(self, current, plan):
        return current

    # -- the write: upload, check, install ----------------------------------------------------

    def write(self, client, plan, current):
        component, params = self.component, self.module.params
        with open(params['src'], 'rb') as handle:
            image = handle.read()
        with self._phase('upload'):
            client.post_raw(component.upload, image, timeout=params['upload_timeout'],
                            headers={'Content-Disposition': 'attachment; filename="%s"' % component.filename})
        with self._phase('check'):
            self._check(client)
        self.baseline = None
        if component.reboots:
            status, seen = uptime_baseline(client.status, client.status(), time.monotonic())
            self.baseline = (status.get('uptime'), seen)
        with self._phase('install'):
            self.requested_at = time.monotonic()
            self.lost = self._install(client)
        return {}

    def _check(self, client):
        component, params = self.component, self.module.params
        deadline = time.monotonic() + params['check_timeout']
        while True:
            code = client.get(component.check, with_status=True)[0]
            if code not in (201, 202):
                return
            if time.monotonic() >= deadline:
                raise UpgradeError('the device was still checking the %s image %d s after the upload (timeout check_timeout): '
                                   'nothing was installed, it still runs %r. Run the task again with a longer check_timeout'
                                   % (component.name, params['check_timeout'], self.facts['previous_version']),
                                   'GET ' + component.check, code, result=self._result(False))
            time.sleep(params['poll_interval'])

    def _install(self, client):
        """Request the install once (never retried: the device goes down after it). -> the error text of a lost answer."""
        saved, client.retries = client.retries, 0
        try:
            client.get(self.component.install)
        except HemError as exc:
            if exc.status is not None or not self.component.reboots:
                raise
            return str(exc)         # the device may already be going down: the status polls decide
        finally:
            client.retries = saved
        return None

    def _phase(self, name):
        return _Timed(self.durations, name)

    def _result(self, changed, **extra):
        return dict(changed=changed, sent=[self.component.name], component=self.component.name, durations=dict(self.durations),
                    **dict(self.facts, **extra))

    def refused(self, client, exc, plan):
        if isinstance(exc, UpgradeError):
            return exc
        phase = [name for name in self.component.phases if name not in self.durations]
        phase = phase[0] if phase else 'install'
        running = self.facts['previous_version']
        meaning = {
            (406, 'check'): 'the image failed the device\'s check (its signature or format is not one this device accepts)',
            (404, 'check'): 'the device found no staged image after the upload',
            (409, 'install'): 'another install is in progress on the device',
            (406, 'install'): 'the device has no verified image to install (another upload replaced it?)',
        }.get((exc.status, phase), exc.msg)
        return UpgradeError('the %s %s failed: %s. Nothing was installed: the device still runs %r. Check the image (src) and '
                            'run the task again' % (self.component.name, phase, meaning, running), exc.endpoint, exc.status,
                            result=self._result(False))

    def outcome_unknown(self, exc, plan, now, want):
        return UpgradeError('the answer to the %s upload was lost (%s). Nothing was installed (installing is a request of its own, '
                            'not sent): the device runs %r. Run the task again, it uploads the image again'
                            % (self.component.name, exc.msg, (now or {}).get('running', self.facts['previous_version'])),
                            exc.endpoint, result=self._result(False))

    # -- what the device does after the install --------------------------------------------------------------

    def settle(self, client, plan, answer):
        if self.component.reboots:
            with self._phase('reboot'):
                status = self._wait_back()
            client.token = None                 # every token died with the boot
            with self._phase('checkin'):
                self._checkin(client, status)
        with self._phase('verify'):
            self._verify(client, plan.after['version'])
        return {}

    def _wait_back(self):
        params = self.module.params
        poller = self.module.client(**POLL)
        uptime, seen = self.baseline
        try:
            return wait_for_reboot(poller.status, uptime, seen, params['poll_interval'], params['reboot_timeout'],
                                   params['poll_interval'], requested_at=self.requested_at)[0]
        except NotRebooted as exc:
            raise UpgradeError('the device accepted the firmware install but did not reboot into its bootloader: %s. Nothing was '
                               'installed; read it with encedo.hem.encedo_info before running the task again'
                               % exc.msg.replace('reboot request', 'install request'),
                               result=self._result(True))
        except HemError as exc:
            lost = ' (the install request itself got no answer: %s)' % self.lost if self.lost else ''
            raise UpgradeError('the device accepted the firmware install and did not come back within reboot_timeout (%d s)%s: %s. '
                               'It may still be flashing: do not power it off. Wait a few minutes, then read it with '
                               'encedo.hem.encedo_info (version fwv). If it never answers, unplug and re-plug it: it starts the '
                               'firmware it has (old or new); then run this task again, which installs only when fwv is not %r'
                               % (params['reboot_timeout'], lost, exc.msg.replace('reboot request', 'install request'), params['version']),
                               result=self._result(True))

    def _checkin(self, client, status):
        self.facts['checkin'] = None
        if clock_is_set(status):
            return
        try:
            done = checkin(client, backend_client(self.module), status=status)
        except HemError as exc:
            raise UpgradeError('the device is back after the firmware install, but the check-in that sets its clock failed: %s. '
                               'Check it in with encedo.hem.encedo_checkin, then run this task again to verify it' % exc,
                               result=self._result(True))
        self.facts['checkin'] = done
        for warning in checkin_warnings(done):
            self.module.warn(warning)
        failure = checkin_failure(done)
        if failure:
            raise UpgradeError('the device is back after the firmware install and checked in, and %s' % failure, result=self._result(True))

    def _verify(self, client, wanted):
        component = self.component
        running = client.get(VERSION, auth=False).get(component.field)
        self.facts['current_version'] = running
        if running != wanted:
            old = running == self.facts['previous_version']
            raise UpgradeError('the device came back with %s %r, not %r: %s' % (
                component.field, running, wanted,
                'it still runs its old %s. The install did not complete (the power was lost during the flash?) or the image '
                'carries another version than the option version says. Run the task again to try once more, and check that '
                'version matches the image' % component.name if old else
                'the image carries another version than the option version says; correct version (or the image)'),
                'GET ' + VERSION, result=self._result(True))
        self.facts['attested'] = self._attests(client)
        if self.served is not None and client.served_certificate() != self.served:
            raise UpgradeError('the device runs %r now but serves another TLS certificate than before the upgrade: check its '
                               'certificate (encedo.hem.encedo_info gather_subset certificate, encedo.hem.encedo_tls)' % running,
                               result=self._result(True))

    def _attests(self, client):
        """Whether the genuine token's signature verifies (None: the device has no attestation endpoint)."""
        from ansible_collections.encedo.hem.plugins.module_utils import _attestation as att
        try:
            data = client.get(ATTESTATION)
        except HemError as exc:
            if exc.status == 404:
                return None
            raise UpgradeError('the device runs the new %s but its attestation cannot be read: %s' % (self.component.name, exc),
                               exc.endpoint, exc.status, result=self._result(True))
        try:
            se_key = att.load_public_key(data['key']) if not data.get('crt') and data.get('key') else None
            checks = att.verify(data.get('genuine'), data.get('crt') or None, skip=('chain', 'genuine_id', 'freshness'),
                                se_key=se_key)['checks']
        except (HemError, KeyError, TypeError) as exc:
            checks = {'signature': {'status': att.FAILED, 'reason': str(exc)}}
        if checks['signature']['status'] != att.PASSED:
            raise UpgradeError('the device runs the new %s but no longer attests: %s' % (self.component.name, checks['signature']['reason']),
                               'GET ' + ATTESTATION, result=self._result(True))
        return True

    # -- the result ---------------------------------------------------------------------------

    def result(self, plan, answer):
        out = dict(component=self.component.name, previous_version=self.facts.get('previous_version'),
                   current_version=self.facts.get('current_version', self.facts.get('previous_version')),
                   durations=dict(self.durations), phases=self.component.phases if plan else [])
        if plan and answer is None:
            out['current_version'] = plan.after['version']      # check mode: what the device would run
        for key in ('checkin', 'attested'):
            if key in self.facts:
                out[key] = self.facts[key]
        return out


class _Timed(object):
    """``with _Timed(durations, name):`` puts the seconds the block took into ``durations[name]`` when it succeeds."""

    def __init__(self, durations, name):
        self.durations = durations
        self.name = name
        self.start = None

    def __enter__(self):
        self.start = time.monotonic()
        return self

    def __exit__(self, kind, exc, tb):
        if kind is None:
            self.durations[self.name] = round(time.monotonic() - self.start, 1)
        return False
