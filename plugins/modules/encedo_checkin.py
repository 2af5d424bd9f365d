#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: encedo_checkin
short_description: Set the clock of an Encedo HEM through the vendor check-in backend
version_added: 1.0.0
description:
  - Runs the device check-in. The device clock (RTC) is unset after every power-up or reboot, and while it is unset a device
    with the trusted-time option refuses every login (HTTP 403). A check-in sets it.
  - The module reads the device's signed check-in token (C(GET /api/system/checkin)), posts it to the vendor backend
    (C(POST <backend_url>/checkin)), and hands the backend's signed reply back to the device (C(POST /api/system/checkin)).
    Both tokens are forwarded untouched; only the device and the backend can read them.
  - The check-in needs no credentials. O(passphrase) and O(token) are accepted (they are shared connection options) but
    not used.
  - The backend's reply can carry a management action that the device executes when its trusted-backend option is on
    (C(trusted_backend) of M(encedo.hem.encedo_config); with it off the device executes none and answers V(OK)). The
    module returns the executed action in RV(status) and RV(action). V(OK) (none) and V(R) (report) change nothing.
    Any other action (V(L) user key erased, V(W) wiped, V(B) web servers stopped, V(U) firmware upgrade forced, or one
    the device did not recognise) is a change B(and fails the task), with a message that says what the device did and
    what to do next.
  - The reply can also push a TLS certificate for the device's current key. When the device installs it (RV(newcrt) is
    V(OK)) the module reports a change and warns that the device serves the new certificate from its next reboot on, so
    O(ca_path) must then hold the CA that issued it (the backend's CA). When the device cannot install it (V(ERROR)) the
    module warns and the device keeps its certificate.
author:
  - encedo.hem maintainers (@encedo)
extends_documentation_fragment:
  - encedo.hem.connection
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    details: Reads the device status and predicts C(changed); posts nothing, neither to the device nor to the backend.
    support: full
  diff_mode:
    details: Not supported; the clock is not a setting.
    support: none
  idempotent:
    description:
      - Reports a change only when the device clock was unset before, or when the backend made the device execute an action
        (which also fails the task) or install a pushed certificate.
      - Each run performs a new check-in, which re-synchronises the clock; to check in only when needed, read the device
        status with M(encedo.hem.encedo_info) first, as the role C(encedo.hem.device) does.
    support: full
options:
  backend_url:
    description:
      - Base URL of the vendor check-in backend; the module posts to C(<backend_url>/checkin).
      - The controller must reach this URL (the device itself does not contact it).
      - If not set, the environment variable E(ENCEDO_HEM_BACKEND_URL) is used.
    type: str
    default: https://api.encedo.com
  backend_validate_certs:
    description:
      - Whether to verify the TLS certificate of the backend.
      - The backend is a different server from the device, so O(validate_certs) and O(ca_path) do not apply to it.
      - If not set, the environment variable E(ENCEDO_HEM_BACKEND_VALIDATE_CERTS) is used.
    type: bool
    default: true
  backend_ca_path:
    description:
      - PEM file with the CA certificate(s) to verify the backend with.
      - If not set, the CA bundle of the Python C(certifi) package is used when it is installed, else the system trust
        store; both verify the vendor's public backend.
      - If not set, the environment variable E(ENCEDO_HEM_BACKEND_CA_PATH) is used.
    type: path
notes:
  - O(timeout) applies to the backend request too.
seealso:
  - module: encedo.hem.encedo_reboot
    description: Reboots a device, waits for it and checks it in.
  - module: encedo.hem.encedo_info
    description: Reports whether the device clock is set.
'''

EXAMPLES = r'''
- name: Set the device clock after a power cut
  encedo.hem.encedo_checkin:
    url: https://my.ence.do
    ca_path: /etc/ssl/encedo-ca.pem

- name: Check in only when the clock is unset
  block:
    - name: Read the device status
      encedo.hem.encedo_info:
        url: https://my.ence.do
      register: hem_info

    - name: Check in
      encedo.hem.encedo_checkin:
        url: https://my.ence.do
      when: not hem_info.rtc_set

- name: Check in, and see what the backend made the device do even when the task fails
  block:
    - name: Check in
      encedo.hem.encedo_checkin:
        url: https://my.ence.do
      register: hem_checkin
  rescue:
    - name: Report the executed action
      ansible.builtin.debug:
        msg: "The device executed action {{ hem_checkin.status }} ({{ hem_checkin.action }}): {{ hem_checkin.msg }}"

- name: Use an on-premises backend with its own CA
  encedo.hem.encedo_checkin:
    url: https://hem1.example.com
    backend_url: https://checkin.example.com
    backend_ca_path: /etc/ssl/checkin-ca.pem
'''

RETURN = r'''
clock_was_set:
  description: Whether the device clock was already set before the check-in.
  returned: always
  type: bool
  sample: false
status:
  description:
    - The management action the device executed from the backend's reply, as the device answered it.
    - V(OK) (none) or V(R) (report) change nothing; V(L) (user key erased), V(W) (wiped and rebooting), V(B) (web servers
      stopped), V(U) (firmware upgrade forced) do, and fail the task; V(???) is the device's answer to an action it did
      not recognise (fails too).
    - V(unknown) when the device's answer was lost but its clock is now set (a warning, not a failure).
  returned: when the check-in was posted (not in check mode), also in the result of a failed task
  type: str
  sample: OK
action:
  description: What RV(status) means, in words (for example V(none) or V(user key erased)).
  returned: when the check-in was posted (not in check mode), also in the result of a failed task
  type: str
  sample: none
newfws:
  description: Signature of a newer firmware the backend announced.
  returned: when the backend announced one
  type: str
newuis:
  description: Signature of a newer web UI the backend announced (PPA).
  returned: when the backend announced one
  type: str
newcrt:
  description: Result of installing a TLS certificate pushed by the backend, V(OK) or V(ERROR).
  returned: when the backend pushed a certificate
  type: str
time:
  description: The device clock after the check-in, as Unix time.
  returned: when the device still answered after the check-in (not in check mode, not after V(W), V(B) or V(U))
  type: int
  sample: 1767225600
ts:
  description: The device clock after the check-in, as an RFC 3339 UTC time.
  returned: when the device still answered after the check-in (not in check mode, not after V(W), V(B) or V(U))
  type: str
  sample: "2026-01-01T00:00:00Z"
'''

from ansible_collections.encedo.hem.plugins.module_utils._errors import HemError
from ansible_collections.encedo.hem.plugins.module_utils._lifecycle import (
    backend_client,
    check_backend_options,
    checkin,
    checkin_argument_spec,
    checkin_failure,
    checkin_warnings,
)
from ansible_collections.encedo.hem.plugins.module_utils._module import HemModule


def run(module, client):
    backend = backend_client(module)
    result = checkin(client, backend, check_mode=module.check_mode)
    for warning in checkin_warnings(result):
        module.warn(warning)
    failure = checkin_failure(result)
    if failure:
        raise HemError(failure, result=result)
    return result


def main():
    module = HemModule(argument_spec=checkin_argument_spec(), supports_check_mode=True)
    module.run(run, check=check_backend_options)


if __name__ == '__main__':
    main()
