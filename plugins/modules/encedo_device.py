#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: encedo_device
short_description: Bring an Encedo HEM device to its declared state in one run
version_added: 2.0.0
description:
  - One module run, with one login, for what a fleet run checks on every device - the status, the attestation, the
    configuration, and whether the TLS certificate is due. A device with nothing to change costs five requests (status,
    the two of the login, attestation, configuration).
  - It is composed of the same steps as the single modules, with the same checks and messages - M(encedo.hem.encedo_info)
    (the status, and the TLS bundle of a device that has none), M(encedo.hem.encedo_attestation) (O(attestation)),
    M(encedo.hem.encedo_config) (O(config)) and M(encedo.hem.encedo_tls) with O(encedo.hem.encedo_tls#module:state=csr) (O(tls)).
  - A device that is not set up - factory-fresh, or its clock unset after a power-up - is reported with RV(ready=false) and
    nothing else is done; check it in (M(encedo.hem.encedo_checkin)) and personalise it (M(encedo.hem.encedo_init)), then
    run this module again. The role C(encedo.hem.device) does so.
  - When the certificate is due, the device generates a CSR of its TLS key, returned in RV(certificate) (its C(csr)) for signing by
    your CA (the CA key stays on the controller); upload the signed certificate with M(encedo.hem.encedo_tls).
  - The passphrase rotation (O(encedo.hem.encedo_config#module:new_passphrase)) is encedo_config's alone.
author:
  - encedo.hem maintainers (@encedo)
extends_documentation_fragment:
  - encedo.hem.connection
  - encedo.hem.fresh_tls
  - encedo.hem.fresh_tls.http_url
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Reads and verifies as usual, and reports what the configuration and certificate steps would change; nothing is sent.
  diff_mode:
    support: full
    details:
      - A list with the configuration's and the certificate's diffs (secrets masked).
  idempotent:
    description: When run twice in a row with the same arguments, the second run reports no change.
    support: full
    details:
      - A certificate that is due is reported changed (a CSR was generated) until the certificate signed from it is uploaded.
options:
  config:
    description:
      - The configuration to enforce - the options of M(encedo.hem.encedo_config) that are configuration fields (for example
        C(user), C(email), C(origin), C(trusted_ts), C(allow_keysearch), C(http_option_hsts), PPA - C(dnsd), C(storage_mode)),
        and C(allow_reformat) and C(format_timeout). Only the fields given are managed; they are checked with the same
        rules and messages before any request.
      - Empty or not given - the configuration is not managed.
    type: dict
    default: {}
  attestation:
    description:
      - Verify that the device is genuine, as M(encedo.hem.encedo_attestation) does with O(encedo.hem.encedo_attestation#module:state=verified)
        and O(encedo.hem.encedo_attestation#module:fail_on_invalid=true); a device not verified fails the task.
      - Not given - no attestation.
    type: dict
    suboptions:
      trust_anchor_path:
        description: The PEM file with the vendor's custody CA certificate(s) ("Encedo Custody CA"; ask Encedo for it).
        type: path
        required: true
      genuine_id:
        description: The expected genuine_id (secure-element serial) of the device; the device's own is compared too.
        type: str
      max_age:
        description: How many seconds the attestation token's time may differ from the controller's clock.
        type: int
        default: 300
      enforce_validity:
        description: Whether the attestation certificate must be within its dates (see encedo_attestation).
        type: bool
        default: false
  tls:
    description:
      - Whether the device's TLS certificate is due, as M(encedo.hem.encedo_tls) with O(encedo.hem.encedo_tls#module:state=csr)
        decides - none served, not issued by the CA in O(tls.issuer_ca_path), or fewer than O(tls.remaining_days) days left.
        When it is due, the device generates a CSR (C(csr) in RV(certificate)).
      - Not given - the certificate is not looked at.
    type: dict
    suboptions:
      issuer_ca_path:
        description: The PEM file of the CA that issues the device certificates.
        type: path
        required: true
      remaining_days:
        description: A certificate with fewer days left than this is due.
        type: int
        default: 30
  keys:
    description:
      - The keys the device holds, each a dict of the options of M(encedo.hem.encedo_key) (C(label), C(type), C(mode),
        C(descr), C(public_key), C(kid), C(state)), checked with the same rules before any request and brought to that
        state in order. The key repository is listed once; the device gives one scope per token, so the key step logs
        in once per key-management scope it needs (two on a run with nothing to change - list and get).
      - Empty - the keys are not managed.
    type: list
    elements: dict
    default: []
  reboot_record:
    description:
      - A reboot left to the operator, as the role keeps it - C(boot) (the device's boot time in seconds since the epoch,
        from RV(boot_time)), C(since) and C(reasons). RV(reboot_pending) repeats it while the device has not booted since.
    type: dict
notes:
  - "One writer per device - two runs that change the same device at once can each read before the other writes. Run
    fleets with C(throttle: 1) per device or C(serial); a confirming read that disagrees with what was written is a warning."
seealso:
  - module: encedo.hem.encedo_config
  - module: encedo.hem.encedo_tls
'''

EXAMPLES = r'''
- name: Bring the device to its declared state
  encedo.hem.encedo_device:
    url: https://my.ence.do
    ca_path: /etc/pki/encedo-ca.pem
    passphrase: "{{ vault_hem_passphrase }}"
    attestation:
      trust_anchor_path: /etc/pki/encedo-custody-ca.pem
    config:
      user: Payments HSM 1
      http_option_hsts: true
      allow_keysearch: false
    tls:
      issuer_ca_path: /etc/pki/encedo-ca.pem
      remaining_days: 30
  register: hem_device

- name: Reboot when a change needs it
  encedo.hem.encedo_reboot:
    url: https://my.ence.do
    ca_path: /etc/pki/encedo-ca.pem
    passphrase: "{{ vault_hem_passphrase }}"
  when: hem_device.reboot_required
'''

RETURN = r'''
ready:
  description: Whether the device is set up (personalised, clock set); when false, no step after the status ran.
  returned: always
  type: bool
  sample: true
personalised:
  description: Whether the device is personalised.
  returned: always
  type: bool
  sample: true
rtc_set:
  description: Whether the device clock is set (it is unset after every power-up until a check-in).
  returned: always
  type: bool
  sample: true
status:
  description: The device status (C(GET /api/system/status)).
  returned: always
  type: dict
  sample: {"fls_state": 0, "hostname": "my.ence.do", "time": 1795829415, "uptime": 1234}
model:
  description: V(ppa) or V(epa) when the status decides it, else null.
  returned: always
  type: str
  sample: ppa
uptime:
  description: Seconds since the device booted.
  returned: always
  type: int
  sample: 1234
boot_time:
  description: When the device booted, in seconds since the epoch (now minus RV(uptime)), or null.
  returned: always
  type: int
  sample: 1795828181
reboot_pending:
  description: The reboot left to the operator in O(reboot_record), while the device has not booted since; else null.
  returned: always
  type: dict
  sample: {"since": "2026-12-07T15:00:00+00:00", "reasons": ["configuration"]}
reboot_record_done:
  description: Whether O(reboot_record) was given and the device has booted since (the record can be removed).
  returned: always
  type: bool
  sample: false
reboot_required:
  description: Whether a change of this run applies only after a reboot.
  returned: always
  type: bool
  sample: false
reboot_reasons:
  description: The steps of this run whose change needs a reboot (V(configuration)).
  returned: always
  type: list
  elements: str
  sample: []
key_results:
  description: Each declared key's result, as M(encedo.hem.encedo_key) returns it (C(changed), C(kid), C(type), C(public_key)...).
  returned: when O(keys) is given and the device is ready
  type: list
  elements: dict
attestation:
  description: The attestation step's result (as M(encedo.hem.encedo_attestation) returns it).
  returned: when O(attestation) is given and the device is ready
  type: dict
configuration:
  description: The configuration step's result (as M(encedo.hem.encedo_config) returns it - C(changed), C(sent), C(config)...).
  returned: when O(config) is given and the device is ready
  type: dict
certificate:
  description:
    - The certificate step's result (as M(encedo.hem.encedo_tls) with O(encedo.hem.encedo_tls#module:state=csr) returns it -
      C(csr_needed), C(csr_reasons), C(csr), C(certificate)).
  returned: when O(tls) is given and the device is ready
  type: dict
https:
  description: Whether the device serves HTTPS, when it was found out.
  returned: when known
  type: bool
tls_bundle_stored:
  description: Whether a TLS bundle from O(tls_bundle) was stored (check mode - would be stored).
  returned: always
  type: bool
'''

from ansible_collections.encedo.hem.plugins.module_utils import _device, _tls_bundle
from ansible_collections.encedo.hem.plugins.module_utils._module import HemModule


def main():
    spec = _tls_bundle.fresh_argument_spec()
    spec.update(
        config=dict(type='dict', default={}),
        attestation=dict(type='dict', options=dict(
            trust_anchor_path=dict(type='path', required=True),
            genuine_id=dict(type='str'),
            max_age=dict(type='int', default=300),
            enforce_validity=dict(type='bool', default=False),
        )),
        tls=dict(type='dict', options=dict(
            issuer_ca_path=dict(type='path', required=True),
            remaining_days=dict(type='int', default=30),
        )),
        reboot_record=dict(type='dict'),
        keys=dict(type='list', elements='dict', default=[], no_log=False),
    )
    HemModule(argument_spec=spec, supports_check_mode=True).run(_device.bring)


if __name__ == '__main__':
    main()
