#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: encedo_factory_reset
short_description: Wipe an Encedo HEM device back to factory state
version_added: 1.0.0
description:
  - Sends C(wipeout) to the device (C(POST /api/system/config)). The device erases its configuration, passphrases and
    keys, and reboots into factory state. It must then be personalised again.
  - B(This destroys every key on the device.) As a safeguard, O(confirm_devid) must equal the device's C(devid) (read from
    its configuration); otherwise the task fails without sending anything.
  - A device that is already in factory state (not personalised) is left alone and the task reports no change.
author:
  - encedo.hem maintainers (@encedo)
extends_documentation_fragment:
  - encedo.hem.connection
  - encedo.hem.fresh_tls.http_url
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the device status and configuration, checks O(confirm_devid), and predicts the change; sends nothing.
  diff_mode:
    support: full
    details: Shows whether the device is personalised before and after.
  idempotent:
    description: A device already in factory state is reported unchanged and nothing is sent.
    support: full
options:
  confirm_devid:
    description:
      - The C(devid) of the device to wipe (16 hex digits, case ignored), as reported by M(encedo.hem.encedo_info).
      - When it differs from the device's, the task fails and nothing is sent.
    type: str
    required: true
  wait:
    description:
      - Wait until the device answers again after its reboot, in factory state (an unauthenticated status read every second).
      - When the answer to the wipe is lost (the device closes the connection around it), the task waits in any case, up to
        O(wait_timeout), to tell from the device's state whether the wipe happened.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait for the device with O(wait=true).
    type: int
    default: 120
  factory_url:
    description:
      - The factory address, where a wiped device answers. The vendor's web manager goes to V(https://my.ence.do) after a
        wipe; a device personalised with another address (option C(ip) of M(encedo.hem.encedo_init)) leaves it at the wipe.
      - The task waits for the device there, not at O(url), and returns it as RV(url) for the next tasks.
      - If not set, the environment variable E(ENCEDO_HEM_FACTORY_URL) is used.
    type: str
    default: https://my.ence.do
  factory_ca_path:
    description:
      - PEM file with the CA certificate(s) that the factory certificate of a wiped device chains to. A wiped device no
        longer serves the certificate it had (its TLS key is new), so O(ca_path) does not verify it.
      - If not set, the system trust store is used; with O(validate_certs=false) nothing is verified.
      - If not set, the environment variable E(ENCEDO_HEM_FACTORY_CA_PATH) is used.
    type: path
notes:
  - Ansible prints nothing while a module runs, and this one may wait minutes. Say what it waits for before it starts, in
    the task name or in an M(ansible.builtin.debug) task just before it (the wait lasts up to O(wait_timeout)).
  - The task logs in to read the C(devid); it needs O(passphrase) or O(token) with the V(system:config) scope.
  - A device may come back from the wipe without a TLS bundle, with its HTTPS server off. Whether a real device does is
    not documented. The task then reads the status over plain HTTP (O(http_url)) and reports RV(https) V(false) and
    RV(tls_bundle_needed), with what the device needs. It cannot store a bundle itself, because a bundle is made for
    the device's TLS key and that key is new after the wipe. Give the bundle to M(encedo.hem.encedo_info) or
    M(encedo.hem.encedo_init) (option C(tls_bundle)).
  - The wait is an unauthenticated status read at O(factory_url), verified with O(factory_ca_path). RV(verified_with) says what
    verified it; RV(url) is where the device answers from now on (personalise it there).
  - A device that has no TLS bundle before the task is in factory state when it is not personalised, and it is reported
    like that. When it is personalised, the task fails, because the wipe would need the bearer token over plain HTTP.
seealso:
  - module: encedo.hem.encedo_info
  - module: encedo.hem.encedo_config
'''

EXAMPLES = r'''
- name: Read the device identity
  encedo.hem.encedo_info:
    url: https://my.ence.do
    passphrase: "{{ hem_passphrase }}"
  register: hem_info

- name: Wipe the device (the devid must be confirmed)
  encedo.hem.encedo_factory_reset:
    url: https://my.ence.do
    passphrase: "{{ hem_passphrase }}"
    confirm_devid: 2023b758c209269a
'''

RETURN = r'''
changed:
  description: Whether the wipe was sent (in check mode, whether it would be).
  returned: always
  type: bool
sent:
  description: Names of the fields sent (V([wipeout]) when the wipe was sent), never values.
  returned: always
  type: list
  elements: str
  sample: [wipeout]
devid:
  description: The device's C(devid), when it matched O(confirm_devid) (never in the failure of a mismatch).
  returned: when the device was personalised and its devid matched O(confirm_devid)
  type: str
  sample: 2023b758c209269a
rebooted:
  description: Whether the task saw the device come back after its reboot in factory state (only with O(wait=true)).
  returned: always
  type: bool
url:
  description:
    - Where the wiped device answers (O(factory_url)), when the task saw it come back there. Use it as O(url) from now on.
  returned: when the device was seen back in factory state
  type: str
  sample: https://my.ence.do
verified_with:
  description:
    - What verified the TLS certificate of the wiped device at RV(url). One of V(factory_ca_path <file>), V(the system
      trust store), V(nothing, validate_certs is false), or V(plain HTTP) when it answered over plain HTTP only (it has no
      TLS bundle).
  returned: when the device was seen back in factory state
  type: str
  sample: factory_ca_path /etc/ssl/encedo-factory-ca.pem
reboot_required:
  description: Always V(false); the device reboots by itself after the wipe.
  returned: always
  type: bool
msg:
  description: What happened, in words.
  returned: always
  type: str
  sample: the device wiped its configuration, passphrases and keys and rebooted into factory state
https:
  description:
    - Whether the device's HTTPS server runs after the task. V(false) means that it has no TLS bundle.
  returned: when the device was seen without a TLS bundle, before the task or after the wipe
  type: bool
  sample: false
tls_bundle_needed:
  description:
    - V(true) when the device has no TLS bundle. RV(msg) says what it needs.
  returned: when the device was seen without a TLS bundle
  type: bool
  sample: true
token:
  description:
    - The new bearer token, when the device refused O(token) (it expired, or the device rebooted) and the task logged in
      again with O(passphrase). Pass it to the next tasks instead of the old one.
    - The output of a task that returns it is hidden, like with C(no_log); the registered variable still holds it.
  returned: when the task logged in again because the device refused O(token)
  type: str
  sample: eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzY29wZSI6InN5c3RlbTpjb25maWcifQ.c2lnbmF0dXJl
'''

import re
import time

from ansible.module_utils.basic import env_fallback

from ansible_collections.encedo.hem.plugins.module_utils import _tls_bundle
from ansible_collections.encedo.hem.plugins.module_utils._errors import HemError, HemOutcomeUnknown
from ansible_collections.encedo.hem.plugins.module_utils._module import POLL, HemModule, check_ca_path, validate_url

CONFIG = '/api/system/config'
POLL_INTERVAL = 1.0
#: Result fields of a failure before any request.
NOTHING_SENT = dict(changed=False, sent=[])


def factory_url(params):
    return (params['factory_url'] or '').rstrip('/')


def verified_with(params):
    """What verifies the certificate of a wiped device at factory_url (RV verified_with)."""
    if not factory_url(params).lower().startswith('https:'):
        return 'plain HTTP'
    if not params['validate_certs']:
        return 'nothing, validate_certs is false'
    if params['factory_ca_path']:
        return 'factory_ca_path %s' % params['factory_ca_path']
    return 'the system trust store'


def _factory_state_seen(module, since, errors=None):
    """Poll the status at factory_url (verified with factory_ca_path) until the device answers unpersonalised from a
    boot after ``since``.

    Returns None when not seen in time, else whether its HTTPS server runs: True, or False when
    only plain HTTP answered and said ``https: false`` (the device came back without a TLS bundle).
    ``errors``: a list that gets the last poll error.
    """
    p = module.params
    url = factory_url(p)
    poller = module.client(**dict(POLL, url=url, ca_path=p['factory_ca_path']))
    try_plain = url.lower().startswith('https:')
    deadline = time.monotonic() + p['wait_timeout']
    while time.monotonic() < deadline:
        https = True
        try:
            status = poller.status()
        except HemError as exc:
            status = None
            if errors is not None:
                errors[:] = [str(exc)]
            if try_plain and exc.status is None:
                plain = _plain_status(module, url)
                if plain is not None and plain.get('https') is False:
                    status, https = plain, False
        if status is not None and status.get('inited') is False:
            uptime = status.get('uptime')
            # A fresh boot: the device was up for less time than has passed since the wipe was sent.
            if not isinstance(uptime, (int, float)) or uptime <= time.monotonic() - since + 1:
                return https
        time.sleep(POLL_INTERVAL)
    return None


def _plain_status(module, url):
    """The status over plain HTTP at the factory address (http_url, else http://<host of factory_url>)."""
    try:
        plain_url = _tls_bundle.plain_http_url(dict(http_url=module.params['http_url'], url=url))
        return module.client(**dict(POLL, url=plain_url, timeout=_tls_bundle.PROBE_TIMEOUT)).status()
    except HemError:
        return None


def _no_bundle(result, what):
    """The device came back (or is) without a TLS bundle: report it, with what it needs."""
    result.update(https=False, tls_bundle_needed=True)
    result['msg'] += '; %s has no TLS bundle, so its HTTPS server is off. %s' % (what, _tls_bundle.NEEDED)


def check_options(params):
    """The module's own option checks (before any request)."""
    want = (params['confirm_devid'] or '').strip().lower()
    if not want:
        raise HemError("option 'confirm_devid' is empty; allowed: the devid of the device to wipe. Nothing was sent.", result=NOTHING_SENT)
    if not re.match(r'^[0-9a-f]{16}$', want):
        raise HemError("option 'confirm_devid' is %r; allowed: the devid of the device to wipe, 16 hex digits. Nothing was sent."
                       % params['confirm_devid'], result=NOTHING_SENT)
    if params['wait_timeout'] < 1:
        raise HemError("option 'wait_timeout' is %d; allowed: 1 second or more. Nothing was sent." % params['wait_timeout'],
                       result=NOTHING_SENT)
    try:
        _tls_bundle.check_inputs(params)
    except ValueError as exc:
        raise HemError(str(exc) + '. Nothing was sent.', result=NOTHING_SENT)
    problem = validate_url(factory_url(params))
    if problem:
        raise HemError('option factory_url: %r is not a device address (%s); expected e.g. https://my.ence.do. Nothing was sent.'
                       % (params['factory_url'], problem), result=NOTHING_SENT)
    check_ca_path('factory_ca_path', params['factory_ca_path'], 'a PEM file with the CA that the factory certificates of '
                  'wiped devices chain to. Nothing was sent.', result=NOTHING_SENT)


def run(module, client):
    result = dict(changed=False, sent=[], rebooted=False, reboot_required=False)
    fresh = _tls_bundle.prepare(module)
    if fresh.https is False and fresh.status.get('inited') is not False:
        raise HemError(fresh.message, result=dict(result, https=False, tls_bundle_needed=True))
    status = fresh.status if fresh.status is not None else client.status()
    if status.get('inited') is False:
        result['msg'] = 'the device is already in factory state (not personalised); nothing was sent'
        if fresh.https is False:
            _no_bundle(result, 'it')
        return result
    devid = confirmed_devid(module, client, result)
    result['devid'] = devid
    result.update(changed=True, sent=['wipeout'])
    if module._diff:
        result['diff'] = dict(before=dict(devid=devid, personalised=True), after=dict(devid=devid, personalised=False))
    if module.check_mode:
        result['msg'] = 'the device would be wiped and reboot into factory state'
        return result
    return wipe(module, client, result)


def confirmed_devid(module, client, result):
    """The devid of the device, read with the credentials, when it is the one confirm_devid names."""
    p = module.params
    if not module.has_credentials():
        raise HemError('credentials needed to read the devid: set passphrase or token. Nothing was sent.', result=result)
    devid = str(client.get(CONFIG).get('devid', ''))
    if devid.lower() != p['confirm_devid'].strip().lower():
        # The real devid is not in the failure: copying it from here would defeat the safeguard.
        raise HemError('confirm_devid %r does not match the devid of the device at %s: nothing was sent. Make sure url '
                       'points at the device you mean to wipe, then read its devid deliberately with '
                       'encedo.hem.encedo_info (returned as devid) and give that as confirm_devid'
                       % (p['confirm_devid'], p['url']), result=result)
    return devid


def wipe(module, client, result):
    """Send the wipe and (with wait, or when its answer was lost) wait for the device in factory state."""
    p = module.params
    url = factory_url(p)
    errors = []
    sent_at = time.monotonic()
    try:
        client.post(CONFIG, {'wipeout': True})
    except HemOutcomeUnknown as exc:
        # The device closes the connection around the wipe; tell from its state whether it happened.
        https = _factory_state_seen(module, sent_at, errors)
        if https is None:
            raise HemError('outcome unknown: the wipe was sent but its answer was lost (%s), and the device did not come back in '
                           'factory state at %s within %d seconds%s' % (exc, url, p['wait_timeout'], _last(errors)), result=result)
    else:
        if not p['wait']:
            result['msg'] = ('the device accepted the wipe: it erases its configuration, passphrases and keys and reboots into '
                             'factory state (unreachable for a few seconds); personalise it again afterwards')
            return result
        https = _factory_state_seen(module, sent_at, errors)
        if https is None:
            raise HemError('the device accepted the wipe but did not come back in factory state at factory_url %s within %d '
                           'seconds%s. A wiped device answers at its factory address (https://my.ence.do or https://192.168.7.1 '
                           'on its USB link, not at the address it was personalised with) with a factory certificate, which '
                           'factory_ca_path must verify (now: %s): check it there with encedo.hem.encedo_info, and if it does '
                           'not answer at all, unplug and replug it'
                           % (url, p['wait_timeout'], _last(errors), verified_with(p)), result=result)
    how = 'plain HTTP' if https is False else verified_with(p)
    result.update(rebooted=True, url=url, verified_with=how,
                  msg='the device wiped its configuration, passphrases and keys and rebooted into factory state; it answers at '
                      '%s (verified with %s): use that url from now on' % (url, how))
    if https is False:
        _no_bundle(result, 'it came back and')
    return result


def _last(errors):
    return ' (last error: %s)' % errors[-1] if errors else ''


def main():
    spec = dict(
        confirm_devid=dict(type='str', required=True),
        wait=dict(type='bool', default=True),
        wait_timeout=dict(type='int', default=120),
        factory_url=dict(type='str', default='https://my.ence.do', fallback=(env_fallback, ['ENCEDO_HEM_FACTORY_URL'])),
        factory_ca_path=dict(type='path', fallback=(env_fallback, ['ENCEDO_HEM_FACTORY_CA_PATH'])),
    )
    spec.update(_tls_bundle.fresh_argument_spec(bundle=False))
    module = HemModule(argument_spec=spec, supports_check_mode=True)
    module.run(run, check=check_options)


if __name__ == '__main__':
    main()
