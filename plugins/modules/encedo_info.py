#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: encedo_info
short_description: Read facts about an Encedo HEM device
version_added: 1.0.0
description:
  - Reads the status, version and model of an Encedo HEM device (PPA or EPA) without authentication, and the TLS
    certificate the device serves.
  - With credentials (O(passphrase) or O(token)) it also reads the device configuration. Secrets and one-time values
    (C(nonce), C(spk)) are never returned.
  - O(gather_subset) limits what is read, and so the requests sent (the status alone is one request).
  - Never changes anything on the device, except for one case. A device without a TLS bundle gets the bundle in
    O(tls_bundle) (see there), as the first step of personalising it.
  - A device without a TLS bundle has its HTTPS server off. When HTTPS at O(url) cannot be reached, the task reads the
    status over plain HTTP (O(http_url)). When that status says C(https) is V(false), the task reports RV(https) V(false)
    and RV(tls_bundle_needed), and says what the device needs, unless O(tls_bundle) is given. The status and version are then read
    over plain HTTP. Credentials are not used there, so RV(config) is not returned.
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
      - This module does not change the device. A bundle in O(tls_bundle) that the device needs is reported as would-be
        stored (RV(tls_bundle_stored)), and nothing is sent.
  diff_mode:
    support: N/A
    details:
      - This module does not change the device.
  idempotent:
    description: When run twice in a row with the same arguments, the second run reports no change.
    support: full
    details:
      - Only the first run stores a bundle from O(tls_bundle). After that the device serves HTTPS and the bundle is ignored.
options:
  gather_subset:
    description:
      - What to read. V(all) (the default) is everything below.
      - V(status) - C(GET /api/system/status), always read (it tells whether the device is personalised and serves HTTPS),
        for RV(personalised), RV(rtc_set), RV(uptime), RV(status), and RV(model) when the status alone decides it (see the notes).
      - V(version) - C(GET /api/system/version), for RV(version), RV(firmware) and RV(model).
      - V(config) - C(GET /api/system/config) when credentials are given and the device is personalised, for RV(config).
        Without V(config), credentials are not used (no login).
      - V(certificate) - the TLS certificate the device serves, for RV(certificate). It is read from the TLS handshake of the
        status request, so it costs no request of its own.
      - A name preceded by C(!) is left out, for example V([all, "!config"]); a list of only such exclusions starts from
        V(all). V(!all) leaves out everything not named besides, for example V(["!all", certificate]) reads the status and
        the certificate; V(!status) is refused (the status is always read).
    type: list
    elements: str
    default: [all]
  return_token:
    description:
      - Also log in with O(passphrase) and return the bearer token as RV(token), so that one task reads the status and logs
        in for the tasks after it (which pass it as their O(token)), saving the separate M(encedo.hem.encedo_login) task.
      - The login happens only when the status says the device can log in (it is personalised and its clock is set);
        otherwise no RV(token) is returned and the task does not fail.
      - The output of a task that returns a token is hidden, like with C(no_log) (the registered variable still holds it).
      - Needs O(passphrase) (or E(ENCEDO_HEM_PASSPHRASE)); checked before the first request.
    type: bool
    default: false
  issuer_ca:
    description:
      - PEM content of the CA certificate(s) the served TLS certificate should be issued by (a bundle is allowed). With
        V(certificate) in O(gather_subset), RV(certificate.issued_by_ca) tells whether it is (by name and signature),
        the test M(encedo.hem.encedo_tls) makes with the same option before it asks for a CSR.
      - Read and checked before the first request. Mutually exclusive with O(issuer_ca_path).
    type: str
  issuer_ca_path:
    description:
      - A file with the CA certificate(s) of O(issuer_ca).
    type: path
notes:
  - The model is taken from the hardware version (C(hwv) of C(GET /api/system/version), for example C(PPA rev 2.2)).
    When C(hwv) names neither model, a device that reports mass-storage (MSC) fields (C(storage) in the status, or
    C(uis) in the version) is a PPA, otherwise an EPA. Without V(version) in O(gather_subset), RV(model) is returned only
    when the status alone decides it (a status with C(storage) is a PPA's); otherwise it is left out rather than guessed.
  - Without credentials on a personalised device, RV(config) is not returned. Credentials given for a device that is
    not personalised yet are ignored, with a warning.
seealso:
  - module: encedo.hem.encedo_login
'''

EXAMPLES = r'''
- name: Read the device status without logging in
  encedo.hem.encedo_info:
    url: https://my.ence.do
    ca_path: /etc/pki/encedo-ca.pem
  register: hem

- name: Stop when the device is not personalised yet
  ansible.builtin.assert:
    that: hem.personalised
    fail_msg: "{{ inventory_hostname }} must be personalised first (encedo.hem.encedo_init)"

- name: Read the configuration too, with a token from encedo.hem.encedo_login
  encedo.hem.encedo_info:
    url: https://my.ence.do
    ca_path: /etc/pki/encedo-ca.pem
    token: "{{ hem_login.token }}"
  register: hem

- name: Read the status and log in when the device can, for the next tasks (their token option)
  encedo.hem.encedo_info:
    url: https://my.ence.do
    ca_path: /etc/pki/encedo-ca.pem
    passphrase: "{{ hem_passphrase }}"
    gather_subset: ["!all", certificate]
    issuer_ca_path: /etc/pki/our-ca.pem
    return_token: true
  register: hem

- name: Renew the TLS certificate only when it is not from our CA or expires within 30 days
  ansible.builtin.debug:
    msg: "{{ inventory_hostname }} needs a new certificate"
  when: not hem.certificate.issued_by_ca or hem.certificate.days_remaining < 30

- name: Read only the status and the served TLS certificate (one request, no login)
  encedo.hem.encedo_info:
    url: https://my.ence.do
    ca_path: /etc/pki/encedo-ca.pem
    gather_subset: [status, certificate]
  register: hem

- name: Show when the served certificate expires
  ansible.builtin.debug:
    msg: "{{ hem.certificate.not_after }}"

- name: Show the device hostname
  ansible.builtin.debug:
    msg: "{{ hem.config.hostname }}"

- name: Give a device without a TLS bundle the bundle from the vendor, then read it over HTTPS
  encedo.hem.encedo_info:
    url: https://my.ence.do
    ca_path: /etc/pki/encedo-ca.pem
    tls_bundle:
      emp: "{{ vendor_bundle.emp }}"
      key: "{{ vendor_bundle.key }}"
      crt: "{{ vendor_bundle.crt }}"
  register: hem
'''

RETURN = r'''
model:
  description: The device model, V(ppa) (USB) or V(epa) (rack). See the notes for how it is determined.
  returned: when V(version) is in O(gather_subset), or the status alone decides it (see the notes)
  type: str
  sample: ppa
personalised:
  description: Whether the device has been personalised (initialised with passphrases).
  returned: always
  type: bool
  sample: true
rtc_set:
  description: Whether the device clock is set. It is unset after every power-up or reboot until a check-in.
  returned: always
  type: bool
  sample: true
uptime:
  description: Seconds since the device booted.
  returned: always
  type: int
  sample: 3600
firmware:
  description: The firmware version (C(fwv) of the version answer).
  returned: when V(version) is in O(gather_subset)
  type: str
  sample: "nGINE 1.2.2"
status:
  description: The answer of C(GET /api/system/status), as the device gave it.
  returned: always
  type: dict
  sample: {"ctx": 0, "uptime": 3600, "temp": 31.5, "fls_state": 0, "ts": "2024-05-01T10:00:00Z", "time": 1714557600}
version:
  description: The answer of C(GET /api/system/version), as the device gave it.
  returned: when V(version) is in O(gather_subset)
  type: dict
  sample: {"hwv": "PPA rev 2.2", "fwv": "nGINE 1.2.2", "fwk": "...", "fws": "..."}
config:
  description:
    - The device configuration (C(GET /api/system/config)) without the one-time C(nonce) and C(spk) values.
  returned: when V(config) is in O(gather_subset), credentials are given and the device is personalised
  type: dict
  sample: {"hostname": "my.ence.do", "user": "John Doe", "email": "john@example.com", "trusted_ts": true}
certificate:
  description:
    - The TLS certificate the device serves, from the TLS handshake of the status request (verified with O(ca_path) unless
      O(validate_certs=false)). Give RV(certificate.pem) to M(encedo.hem.encedo_tls) (option
      O(encedo.hem.encedo_tls#module:served_certificate)) in the same play, so that it does not read it again.
    - V(null) when the device presents no certificate.
  returned: when V(certificate) is in O(gather_subset) and the device answered over HTTPS
  type: dict
  contains:
    pem:
      description: The certificate, PEM.
      type: str
    subject:
      description: Subject distinguished name (RFC 4514).
      type: str
      sample: CN=my.ence.do
    issuer:
      description: Issuer distinguished name (RFC 4514).
      type: str
      sample: CN=Encedo CA
    subject_alt_names:
      description: Subject alternative names, as C(DNS:name), C(IP:address) and so on.
      type: list
      elements: str
      sample: ["DNS:my.ence.do", "IP:192.168.7.1"]
    serial_number:
      description: Serial number, lower-case hex.
      type: str
    not_before:
      description: Start of validity, UTC, ISO 8601.
      type: str
      sample: "2025-01-01T00:00:00Z"
    not_after:
      description: End of validity, UTC, ISO 8601.
      type: str
      sample: "2026-01-01T00:00:00Z"
    days_remaining:
      description: Whole days until the certificate expires (negative once expired).
      type: int
      sample: 364
    fingerprint_sha256:
      description: SHA-256 of the DER certificate, colon-separated lower-case hex.
      type: str
    spki_sha256:
      description: SHA-256 of the DER SubjectPublicKeyInfo (identifies the device's TLS key), colon-separated lower-case hex.
      type: str
    public_key_type:
      description: Key algorithm and size or curve.
      type: str
      sample: EC secp256r1
    self_signed:
      description: Whether the certificate is issued by itself.
      type: bool
    issued_by_ca:
      description: Whether the certificate is issued by a CA of O(issuer_ca) or O(issuer_ca_path) (by name and signature).
      type: bool
      returned: when O(issuer_ca) or O(issuer_ca_path) is given
https:
  description:
    - Whether the device's HTTPS server runs. V(false) means the device has no TLS bundle.
    - Read from the plain-HTTP status when HTTPS could not be reached, else V(true).
  returned: when HTTPS answered, or the plain-HTTP status said whether it runs
  type: bool
  sample: false
tls_bundle_needed:
  description:
    - V(true) when the device has no TLS bundle and this task did not store one. The task's C(msg) says what is needed.
  returned: when the device has no TLS bundle
  type: bool
  sample: true
tls_bundle_stored:
  description:
    - Whether this task stored O(tls_bundle) on the device (in check mode, whether it would).
  returned: always
  type: bool
  sample: false
msg:
  description: What the task found or did about a device without a TLS bundle.
  returned: when the device has no TLS bundle, or one was stored
  type: str
  sample: "the device at https://my.ence.do has no TLS bundle, so its HTTPS server is off ..."
token:
  description:
    - With O(return_token), the token of this task's login. Otherwise the new bearer token when the device refused O(token)
      (it expired, or the device rebooted) and the task logged in again with O(passphrase). Pass it to the next tasks.
    - The output of a task that returns it is hidden, like with C(no_log); the registered variable still holds it.
  returned: with O(return_token) when the device can log in, or when the task logged in again because the device refused O(token)
  type: str
  sample: eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzY29wZSI6InN5c3RlbTpjb25maWcifQ.c2lnbmF0dXJl
'''

from ansible_collections.encedo.hem.plugins.module_utils import _tls_bundle, _status
from ansible_collections.encedo.hem.plugins.module_utils._module import HemModule


def main():
    spec = _tls_bundle.fresh_argument_spec()
    spec.update(
        gather_subset=dict(type='list', elements='str', default=['all']),
        return_token=dict(type='bool', default=False),
        issuer_ca=dict(type='str'),
        issuer_ca_path=dict(type='path'),
    )
    module = HemModule(argument_spec=spec, supports_check_mode=True, mutually_exclusive=[('issuer_ca', 'issuer_ca_path')])
    module.run(_status.gather, check=_status.check_options)


if __name__ == '__main__':
    main()
