#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: encedo_reboot
short_description: Reboot an Encedo HEM and wait until it is back
version_added: 1.0.0
description:
  - Reboots the device (C(GET /api/system/reboot)), waits O(delay) seconds, then polls the device status until it answers
    again and its uptime proves that it restarted, for at most O(reboot_timeout) seconds.
  - A reboot unsets the device clock and invalidates every token. Unless O(checkin=false), the module then checks the
    device in (as M(encedo.hem.encedo_checkin)) so that logins work again. Tokens obtained before the reboot stay invalid;
    log in again (M(encedo.hem.encedo_login)).
  - Fails, saying how long it waited and the last error seen, when the device does not come back in time; fails, saying so,
    when the device kept answering without restarting. Once the device has accepted the reboot request, a failed task
    still reports C(changed=true).
  - A personalised device whose clock is unset (after a power-up) refuses logins, and the reboot request needs one. With
    O(checkin=true) the module then checks the device in first (returned as RV(checkin_before)); with O(checkin=false) it
    fails, saying so, before it sends the reboot request.
  - The check-in after the reboot returns the action the backend made the device execute in RV(checkin) (its C(status)
    and C(action)), as M(encedo.hem.encedo_checkin) does. Any action other than V(OK) (none) or V(R) (report) is a change
    and fails the task with a message that says what the device did and what to do next (RV(checkin) is in the result of
    the failed task too); a pushed certificate is reported there as C(newcrt).
  - A personalised device needs O(passphrase) or O(token) (scope V(system:config)) to be rebooted; a factory-fresh one
    does not.
author:
  - encedo.hem maintainers (@encedo)
extends_documentation_fragment:
  - encedo.hem.connection
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    details: Reads the device status only and reports that the device would reboot.
    support: full
  diff_mode:
    details: Not supported.
    support: none
  idempotent:
    description: Every run reboots the device and reports a change. Notify it from a handler, or guard it with C(when).
    support: none
options:
  delay:
    description:
      - Seconds to wait after the reboot request before the first status poll.
    type: int
    default: 3
  reboot_timeout:
    description:
      - Seconds to wait, counted from the reboot request, for the device to answer again with proof that it restarted.
      - O(timeout) stays the limit of each single request.
    type: int
    default: 300
  poll_interval:
    description:
      - Seconds between two status polls.
    type: float
    default: 1.0
  new_url:
    description:
      - The URL the device answers at after this reboot, when it is not O(url), that is the RV(encedo.hem.encedo_init#module:url)
        of a personalisation that gave the device another address (option C(ip)), which takes effect at this reboot.
      - The reboot request goes to O(url); the status polls and the check-in after it go to O(new_url), which the task
        returns as RV(url). Use it as O(url) from then on.
    type: str
  checkin:
    description:
      - Whether to check the device in after it is back, which sets its clock so that logins work again.
      - Skipped anyway when the device comes back with its clock set.
    type: bool
    default: true
  backend_url:
    description:
      - Base URL of the vendor check-in backend; the module posts to C(<backend_url>/checkin). Used when O(checkin=true).
      - If not set, the environment variable E(ENCEDO_HEM_BACKEND_URL) is used.
    type: str
    default: https://api.encedo.com
  backend_validate_certs:
    description:
      - Whether to verify the TLS certificate of the check-in backend (a different server from the device, so
        O(validate_certs) does not apply to it).
      - If not set, the environment variable E(ENCEDO_HEM_BACKEND_VALIDATE_CERTS) is used.
    type: bool
    default: true
  backend_ca_path:
    description:
      - PEM file with the CA certificate(s) to verify the check-in backend with. If not set, the CA bundle of the Python
        C(certifi) package is used when it is installed, else the system trust store.
      - If not set, the environment variable E(ENCEDO_HEM_BACKEND_CA_PATH) is used.
    type: path
notes:
  - Ansible prints nothing while a module runs, and this one may wait minutes. Say what it waits for before it starts, in
    the task name or in an M(ansible.builtin.debug) task just before it (the role C(encedo.hem.device) does so before its
    reboot).
  - The proof of a restart is that the device uptime is lower than it would be had the device kept running, and low enough
    that the device booted after the reboot request. A device that has been up for 2 seconds or less could not prove it,
    so the module waits until the device has been up for 3 seconds before it requests the reboot.
  - A device that installs a new TLS certificate at boot presents it when it is back. If O(ca_path) does not cover the new
    certificate, the polls fail with a certificate error until O(reboot_timeout), and the failure names it.
seealso:
  - module: encedo.hem.encedo_checkin
    description: Sets the device clock without rebooting.
  - module: encedo.hem.encedo_login
    description: Logs in again after the reboot.
'''

EXAMPLES = r'''
- name: Reboot, wait, and check in
  encedo.hem.encedo_reboot:
    url: https://my.ence.do
    ca_path: /etc/ssl/encedo-ca.pem
    token: "{{ hem_login.token }}"
  register: hem_reboot

- name: Show how long it took
  ansible.builtin.debug:
    msg: "The device was back after {{ hem_reboot.elapsed }} s"

- name: Reboot without the check-in, waiting at most 2 minutes
  encedo.hem.encedo_reboot:
    url: https://my.ence.do
    passphrase: "{{ vault_hem_passphrase }}"
    checkin: false
    reboot_timeout: 120
'''

RETURN = r'''
rebooted:
  description: Whether the device rebooted (false in check mode).
  returned: always
  type: bool
  sample: true
elapsed:
  description: Seconds from the reboot request until the device answered again after restarting.
  returned: when the device rebooted
  type: int
  sample: 6
uptime:
  description: The device uptime, in seconds, when it was seen back.
  returned: when the device rebooted
  type: int
  sample: 1
url:
  description: Where the device answers after the reboot (O(new_url) when given, else O(url)).
  returned: when the device rebooted
  type: str
  sample: https://my.ence.do
checkin:
  description:
    - What the check-in after the reboot did (the same keys as M(encedo.hem.encedo_checkin) returns), or V(null) when no
      check-in ran.
    - Also in the result of a task that failed because of the action the check-in made the device execute.
  returned: when the device rebooted
  type: dict
  sample: {changed: true, clock_was_set: false, status: OK, action: none, time: 1767225600, ts: "2026-01-01T00:00:00Z"}
checkin_before:
  description:
    - What the check-in before the reboot did, when the device clock was unset and O(checkin=true) (the same keys as
      RV(checkin)). In check mode, the prediction (C(changed) and C(clock_was_set) only).
  returned: when the device was personalised, its clock unset and O(checkin=true)
  type: dict
  sample: {changed: true, clock_was_set: false, status: OK, action: none, time: 1767225600, ts: "2026-01-01T00:00:00Z"}
'''

import time

from ansible_collections.encedo.hem.plugins.module_utils._errors import TOKEN_PATH, HemError
from ansible_collections.encedo.hem.plugins.module_utils._lifecycle import (
    backend_client,
    check_backend_options,
    checkin,
    checkin_argument_spec,
    checkin_failure,
    checkin_warnings,
    clock_is_set,
    NotRebooted,
    uptime_baseline,
    wait_for_reboot,
)
from ansible_collections.encedo.hem.plugins.module_utils._module import POLL, HemModule, validate_url

REBOOT_PATH = '/api/system/reboot'


def request_reboot(client, personalised):
    """Send the reboot request once (never retried: a retry could reboot twice). Returns the error text of a lost answer."""
    saved = client.retries
    client.retries = 0
    try:
        client.get(REBOOT_PATH, auth=personalised)
    except HemError as exc:
        if exc.status is not None:
            raise HemError('the device refused to reboot: %s' % exc.msg, exc.endpoint, exc.status)
        # No answer: the device may already be going down. The status polls decide.
        return str(exc)
    finally:
        client.retries = saved
    return None


def checkin_before_reboot(module, client, backend, status):
    """Check in a personalised device whose clock is unset, so that it accepts the login the reboot request needs.

    Returns the check-in result. Fails the task, saying why, when the check-in fails or the backend made the
    device do something.
    """
    try:
        result = checkin(client, backend, status=status)
    except HemError as exc:
        raise HemError('the device clock is unset (it resets at every power-up), so the device refuses logins until it is '
                       'checked in; this task checked it in before rebooting it, and that check-in failed, so nothing else '
                       'was sent: %s' % exc)
    for warning in checkin_warnings(result):
        module.warn(warning)
    failure = checkin_failure(result)
    if failure:
        raise HemError('the device clock was unset, so this task checked it in before rebooting it, and %s; the reboot '
                       'was not requested' % failure, result=dict(changed=True, rebooted=False, checkin_before=result))
    return result


def clock_refusal(exc):
    """The login before the reboot request was refused because the device clock is unset (and checkin=false)."""
    return exc.status == 403 and (exc.endpoint or '').endswith(TOKEN_PATH)


def check_options(params):
    """The module's own option checks (before any request)."""
    if params['checkin']:
        check_backend_options(params)
    for name, low in (('delay', 0), ('reboot_timeout', 1)):
        if params[name] < low:
            raise HemError('option %s: must be at least %d, got %s' % (name, low, params[name]))
    if params['poll_interval'] <= 0:
        raise HemError('option poll_interval: must be positive, got %s' % params['poll_interval'])
    problem = params['new_url'] and validate_url(params['new_url'])
    if problem:
        raise HemError('option new_url: %r is not a device address (%s); expected e.g. https://192.168.7.5. Nothing was sent.'
                       % (params['new_url'], problem))


def run(module, client):
    params = module.params
    before = client.status()
    seen_before = time.monotonic()
    personalised = before.get('inited') is not False
    if personalised and not module.has_credentials():
        raise HemError('the device is personalised: rebooting it needs passphrase or token')
    # A personalised device with its clock unset refuses logins (trusted_ts on), and the reboot needs one.
    checkin_first = personalised and params['checkin'] and not clock_is_set(before)
    if module.check_mode:
        result = dict(changed=True, rebooted=False)
        if checkin_first:
            result['checkin_before'] = checkin(client, None, check_mode=True, status=before)
        return result
    backend = backend_client(module) if params['checkin'] else None

    result = dict(changed=True, rebooted=False)
    if checkin_first:
        result['checkin_before'] = checkin_before_reboot(module, client, backend, before)
        before, seen_before = client.status(), time.monotonic()
    before, seen_before = uptime_baseline(client.status, before, seen_before)
    requested_at = time.monotonic()
    lost = send_reboot(client, personalised, before)
    # From here on the reboot was requested (and accepted, unless its answer was lost): every failure is a change.
    status, waited = wait_back(module, before.get('uptime'), seen_before, requested_at, lost, result)
    elapsed = int(round(waited))
    # Every token issued before the reboot is invalid now.
    client.token = None
    url = (params['new_url'] or params['url']).rstrip('/')
    if params['new_url']:
        client = module.client(url=url)         # the device answers there from this boot on
    result.update(rebooted=True, elapsed=elapsed, uptime=status.get('uptime'), checkin=None, url=url)
    if backend is not None and not clock_is_set(status):
        result['checkin'] = checkin_after_reboot(module, client, backend, status, elapsed, result)
    return result


def send_reboot(client, personalised, before):
    """Request the reboot; -> the error text of a lost answer (None when it was accepted)."""
    try:
        return request_reboot(client, personalised)
    except HemError as exc:
        if clock_refusal(exc) and not clock_is_set(before):
            raise HemError('the device clock is unset (it resets at every power-up), so the device refuses the login that the '
                           'reboot request needs, and this task has checkin=false: set checkin to true (the task then checks '
                           'the device in before and after the reboot), or check it in first with encedo.hem.encedo_checkin. '
                           'Nothing else was sent', exc.endpoint, exc.status)
        raise


def wait_back(module, uptime_before, seen_before, requested_at, lost, result):
    """Poll until the device proves it restarted; -> (status, seconds waited). A failure carries ``result``."""
    params = module.params
    poller = module.client(**dict(POLL, url=params['new_url'] or params['url']))
    try:
        return wait_for_reboot(poller.status, uptime_before, seen_before, params['delay'],
                               params['reboot_timeout'], params['poll_interval'], requested_at=requested_at)
    except NotRebooted as exc:
        if lost:
            exc.msg += '; the reboot request itself got no answer (%s)' % lost
        # A request whose answer was lost and after which the device kept running changed nothing.
        result['changed'] = not lost
        exc.result.update(result)
        raise
    except HemError as exc:
        if lost:
            exc.msg += '; the reboot request itself got no answer (%s)' % lost
        raise HemError('%s. The device went away after the reboot request: it may still be rebooting (check it with '
                       'encedo.hem.encedo_info before trying again)' % exc, result=result)


def checkin_after_reboot(module, client, backend, status, elapsed, result):
    """Check the rebooted device in; -> the check-in result. A failure carries ``result``."""
    try:
        done = checkin(client, backend, status=status)
    except HemError as exc:
        raise HemError('the device rebooted (back after %d s) but the check-in failed: %s' % (elapsed, exc), result=result)
    result['checkin'] = done
    for warning in checkin_warnings(done):
        module.warn(warning)
    failure = checkin_failure(done)
    if failure:
        raise HemError('the device rebooted (back after %d s) and checked in, and %s' % (elapsed, failure), result=result)
    return done


def main():
    argument_spec = dict(
        delay=dict(type='int', default=3),
        reboot_timeout=dict(type='int', default=300),
        poll_interval=dict(type='float', default=1.0),
        checkin=dict(type='bool', default=True),
        new_url=dict(type='str'),
    )
    argument_spec.update(checkin_argument_spec())
    module = HemModule(argument_spec=argument_spec, supports_check_mode=True)
    module.run(run, check=check_options)


if __name__ == '__main__':
    main()
