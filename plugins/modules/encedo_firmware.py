#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: encedo_firmware
short_description: Install a firmware or dashboard image on an Encedo HEM PPA
version_added: 2.0.0
description:
  - Brings the firmware (or, with O(component=dashboard), the web dashboard) of a PPA to the version O(version), from the
    image O(src).
  - Reads the version the device runs (C(fwv), or C(uis) for the dashboard, of C(GET /api/system/version)). When it is
    O(version) already, nothing is sent.
  - Otherwise it checks, before any upload, that the device is a PPA, is personalised, has its clock set and is not
    formatting its storage, and that O(version) is not older than the firmware the device runs (see O(allow_downgrade)).
  - Then, as the vendor's web manager does, it uploads the image (a raw C(application/octet-stream) body named
    C(firmware.bin) or C(webroot.tar)), has the device check it (polling while the check runs) and installs it. A new
    firmware makes the device reboot into its bootloader, flash and start again with its clock unset; the module waits
    until the device is back (the uptime proof of M(encedo.hem.encedo_reboot)) and checks it in (as
    M(encedo.hem.encedo_checkin)). A new dashboard is active at once.
  - Finally it verifies that the device reports O(version), still attests (the signature of its genuine token verifies)
    and serves the same TLS certificate as before. Every phase's duration is returned.
  - An image that fails the device's check is not installed, and the task fails with the device untouched. A device that
    does not come back, or comes back on another version, fails the task with what to do next; once the install was
    requested, a failed task reports C(changed=true).
  - Needs O(passphrase), or O(token) with the scope V(system:upgrade) (the upload refuses other scopes).
author:
  - encedo.hem maintainers (@encedo)
extends_documentation_fragment:
  - encedo.hem.connection
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the status and version and runs every check made before an upload; reports what would be installed
      (RV(previous_version), RV(current_version), RV(phases)) without sending anything.
  diff_mode:
    support: full
    details: The diff shows the version before and after.
  idempotent:
    description: When the device runs O(version), nothing is sent and the task reports no change.
    support: full
options:
  component:
    description:
      - What the image is. V(firmware) (C(upload_fw), version C(fwv), the device reboots) or V(dashboard) (the web
        dashboard archive, C(upload_ui), version C(uis), no reboot).
    type: str
    choices: [firmware, dashboard]
    default: firmware
  src:
    description:
      - The image file, on the host that runs the module (the controller, or the server the PPA is plugged into; copy it
        there first, as the playbook C(encedo.hem.upgrade) does).
      - At most 3 MiB for a firmware image, 16 MiB for a dashboard archive (the device's limits).
    type: path
    required: true
  version:
    description:
      - The version the device reports once the image is installed. For the firmware, the C(fwv) text, for example
        V(nGINE 1.2.3); for the dashboard, the C(uis) hash.
      - Nothing is sent when the device reports it already. A device that reports another version after the install fails
        the task.
    type: str
    required: true
  allow_downgrade:
    description:
      - Whether a firmware older than the one the device runs may be installed. The versions are compared by the first
        dotted number in each (V(nGINE 1.2.3) is 1.2.3); when either has none, the module cannot tell and installs only with
        V(true).
      - Not used for the dashboard (its version is a hash).
    type: bool
    default: false
  upload_timeout:
    description:
      - Seconds the upload may take (the vendor's web manager allows 20 minutes). O(timeout) stays the limit of every other
        request.
    type: int
    default: 600
  check_timeout:
    description:
      - Seconds to wait for the device's check of the uploaded image.
    type: int
    default: 300
  reboot_timeout:
    description:
      - Seconds to wait, from the install request, for the device to be back from the flash with proof that it restarted.
    type: int
    default: 600
  poll_interval:
    description:
      - Seconds between two polls of the check and of the device status while it reboots.
    type: float
    default: 2.0
  backend_url:
    description:
      - Base URL of the vendor check-in backend, for the check-in after a firmware upgrade.
      - If not set, the environment variable E(ENCEDO_HEM_BACKEND_URL) is used.
    type: str
    default: https://api.encedo.com
  backend_validate_certs:
    description:
      - Whether to verify the TLS certificate of the check-in backend.
      - If not set, the environment variable E(ENCEDO_HEM_BACKEND_VALIDATE_CERTS) is used.
    type: bool
    default: true
  backend_ca_path:
    description:
      - PEM file with the CA certificate(s) to verify the check-in backend with.
      - If not set, the environment variable E(ENCEDO_HEM_BACKEND_CA_PATH) is used.
    type: path
notes:
  - Ansible prints nothing while a module runs, and a firmware upgrade takes minutes. Say so in the task name.
  - Whether a firmware install is already running cannot be read beforehand; an install while another one runs
    is refused by the device (HTTP 409), and the task fails with nothing installed.
  - Upgrade a fleet with the playbook C(encedo.hem.upgrade) (one device first, then batches, stopping at the first failure).
seealso:
  - module: encedo.hem.encedo_info
    description: Reads the firmware version (C(firmware)) of a device.
  - module: encedo.hem.encedo_reboot
    description: How the return of a device is proven.
'''

EXAMPLES = r'''
- name: Install firmware nGINE 1.2.3 (uploads, checks, flashes; takes minutes)
  encedo.hem.encedo_firmware:
    url: https://my.ence.do
    ca_path: /etc/ssl/encedo-ca.pem
    passphrase: "{{ vault_hem_passphrase }}"
    src: files/encedo-fw-1.2.3.bin
    version: nGINE 1.2.3
  register: hem_fw

- name: Show how long each phase took
  ansible.builtin.debug:
    msg: "{{ hem_fw.previous_version }} -> {{ hem_fw.current_version }}: {{ hem_fw.durations }}"

- name: Install a dashboard archive
  encedo.hem.encedo_firmware:
    url: https://my.ence.do
    passphrase: "{{ vault_hem_passphrase }}"
    component: dashboard
    src: files/webroot.tar
    version: "{{ dashboard_uis }}"
'''

RETURN = r'''
component:
  description: What the task manages, V(firmware) or V(dashboard).
  returned: always
  type: str
  sample: firmware
previous_version:
  description: The version the device ran before the task (C(fwv) or C(uis)).
  returned: always
  type: str
  sample: nGINE 1.2.2
current_version:
  description: The version the device runs after the task (read again after an install; in check mode, what it would run).
  returned: always
  type: str
  sample: nGINE 1.2.3
phases:
  description: The phases the install runs (or would run, in check mode); empty when nothing is to install.
  returned: always
  type: list
  elements: str
  sample: [upload, check, install, reboot, checkin, verify]
durations:
  description: Seconds each phase took (only those that ran; empty when nothing was sent). Also in the result of a failed task.
  returned: always
  type: dict
  sample: {upload: 2.1, check: 4.0, install: 0.1, reboot: 31.5, checkin: 0.8, verify: 0.6}
sent:
  description: What was sent (V(firmware) or V(dashboard)), or would be in check mode; empty when nothing is to install.
  returned: always
  type: list
  elements: str
  sample: [firmware]
checkin:
  description:
    - What the check-in after the firmware reboot did (the keys of M(encedo.hem.encedo_checkin)), or V(null) when the device
      came back with its clock set.
  returned: after a firmware install
  type: dict
  sample: {changed: true, clock_was_set: false, status: OK, action: none, time: 1767225600, ts: "2026-01-01T00:00:00Z"}
attested:
  description: Whether the genuine token's signature verified after the install; V(null) when the device has no attestation.
  returned: after an install
  type: bool
  sample: true
'''

from ansible_collections.encedo.hem.plugins.module_utils._engine import converge
from ansible_collections.encedo.hem.plugins.module_utils._firmware import FirmwareResource
from ansible_collections.encedo.hem.plugins.module_utils._lifecycle import checkin_argument_spec
from ansible_collections.encedo.hem.plugins.module_utils._module import HemModule


def run(module, client):
    return converge(module, client, FirmwareResource(module))


def main():
    spec = dict(
        component=dict(type='str', choices=['firmware', 'dashboard'], default='firmware'),
        src=dict(type='path', required=True),
        version=dict(type='str', required=True),
        allow_downgrade=dict(type='bool', default=False),
        upload_timeout=dict(type='int', default=600),
        check_timeout=dict(type='int', default=300),
        reboot_timeout=dict(type='int', default=600),
        poll_interval=dict(type='float', default=2.0),
    )
    spec.update(checkin_argument_spec())
    module = HemModule(argument_spec=spec, supports_check_mode=True)
    module.run(run)


if __name__ == '__main__':
    main()
