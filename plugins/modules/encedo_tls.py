#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: encedo_tls
short_description: Manage the TLS certificate an Encedo HEM device serves, with its key kept in the HSM
version_added: 1.0.0
description:
  - Manages the certificate the device presents on HTTPS. The private key stays inside the device; the device signs a
    certificate signing request (CSR) for it, your CA signs that, and the module uploads the certificate.
  - O(state=csr) has the device generate a CSR for its TLS key, only when one is needed (see O(state)).
  - O(state=present) uploads a certificate (C(tls.crt)) only when it differs from the one the device serves now.
  - The certificate the device serves is read from a TLS handshake with the device (no login needed for that), verified
    like every other request of the module with O(validate_certs) and O(ca_path). A task that changes nothing does not log
    in and sends no request to the API. With O(state=csr) and O(served_certificate), it is not read at all, so a task
    that finds no CSR needed makes no connection to the device.
  - B(The device serves an uploaded certificate only after a reboot.) Until then it keeps serving the old one, so a re-run
    before the reboot still sees the old certificate; O(state=present) uploads the same certificate again and reports
    RV(changed) and RV(reboot_required) again (harmless, the device stores the same certificate), and O(state=csr) still
    finds a CSR needed. The device API does not tell whether an upload is pending. Reboot (for example with a handler
    running M(encedo.hem.encedo_reboot)) when RV(reboot_required) is true, before checking again.
  - Every input is checked before anything is sent; a bad certificate, a chain, an expired certificate, a certificate for
    another key or a malformed O(key_import) fails the task with nothing uploaded.
author:
  - encedo.hem maintainers (@encedo)
extends_documentation_fragment:
  - encedo.hem.connection
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Reads the served certificate and predicts RV(changed), RV(reboot_required), RV(uploaded) and the diff without sending
        any POST. A CSR is not generated, so RV(csr) is V(null) when one would be.
      - When the certificate's key is not the key of the served certificate and O(key_import) is not given, check mode fails
        like a real run would in most cases (a real run also asks the device for a fresh CSR to compare keys; see O(certificate)).
  diff_mode:
    support: full
    details:
      - O(state=present) shows the facts of the served certificate before and of the uploaded one after.
      - O(state=csr) shows the content of O(csr_path) before and after when it changes.
  idempotent:
    description: When run twice with the same options, the second run reports no change and sends nothing (after the reboot
      that activates an uploaded certificate; see the description).
    support: full
options:
  state:
    description:
      - V(present) makes the device use O(certificate) (or O(certificate_path)).
      - V(csr) has the device generate a CSR for its TLS key when one is needed, returns it (RV(csr), RV(genuine)) and
        writes it to O(csr_path). A CSR is needed when the device serves no certificate, when the served certificate is
        not issued by the CA in O(issuer_ca)/O(issuer_ca_path), when it has fewer than O(remaining_days) days left, or when
        O(force=true). Otherwise nothing is sent and RV(changed) is false.
      - With V(csr), when a CSR is needed but O(csr_path) already holds a valid CSR for the key of the served certificate
        (the device's TLS key), that CSR is returned and no new one is generated, so the task is idempotent until the new
        certificate is served. Without O(csr_path), every run while a CSR is needed generates a new one (RV(changed)).
    type: str
    choices: [present, csr]
    default: present
  certificate:
    description:
      - With O(state=present), the device certificate as PEM text or base64 DER. Exactly one certificate; a chain or
        bundle is refused, so is a private key, a CSR, or a certificate that has expired.
      - Its public key must be the device's TLS key. The module compares it with the key of the served certificate; when
        they differ (for example after an earlier O(key_import) not yet activated by a reboot) it asks the device for a
        fresh CSR (C(gen_csr), which changes nothing on the device) and compares with that key. A certificate for another
        key is refused, because the device would then serve HTTPS with a certificate that does not match its key; give
        O(key_import) to replace the key in the same call.
      - It is uploaded only when it differs (by DER encoding) from the certificate the device serves.
      - Mutually exclusive with O(certificate_path).
    type: str
  certificate_path:
    description:
      - With O(state=present), a file holding the certificate (PEM or base64 DER); see O(certificate).
    type: path
  key_import:
    description:
      - With O(state=present), replace the device's TLS key in the same call as the certificate upload, with a key
        encrypted for the device in the vendor's format. The values are sent untouched after their shape is checked.
      - Used only when the certificate is uploaded (it differs from the served one); then the key check of O(certificate)
        is skipped, since only the device can decrypt the key.
    type: dict
    suboptions:
      emp:
        description:
          - The ephemeral P-256 public key of the key transport, base64 of the 65-byte uncompressed point (C(04 || X || Y)).
            A SubjectPublicKeyInfo DER encoding is refused.
        type: str
        required: true
      key:
        description:
          - The encrypted private key, C(<base64 IV>.<base64 AES-256-CBC ciphertext>), exactly 113 characters (a 16-byte
            IV and a 64-byte ciphertext).
        type: str
        required: true
  issuer_ca:
    description:
      - PEM content of the CA certificate(s) the device certificate should be issued by (a bundle is allowed; any of its
        certificates may be the issuer). The issuer is checked by name and signature.
      - With O(state=csr), a served certificate not issued by it makes a CSR needed.
      - With O(state=present), O(certificate) must be issued by it, else the task fails before sending anything.
      - This is the CA you want the device to move to. It is separate from O(ca_path), which must trust the certificate the
        device serves today (before the reboot that activates a new certificate, that is usually the old CA; a bundle of the
        old and the new CA in O(ca_path) works before and after the reboot).
      - Mutually exclusive with O(issuer_ca_path).
    type: str
  issuer_ca_path:
    description:
      - A file with the CA certificate(s) of O(issuer_ca).
    type: path
  remaining_days:
    description:
      - With O(state=csr), a served certificate with fewer whole days left than this makes a CSR needed.
    type: int
    default: 30
  force:
    description:
      - With O(state=csr), generate a new CSR even when none is needed (and replace O(csr_path)).
    type: bool
    default: false
  served_certificate:
    description:
      - With O(state=csr), the certificate the device serves, as PEM (or base64 DER), as returned by
        M(encedo.hem.encedo_info) in RV(encedo.hem.encedo_info#module:certificate.pem) in the same play. When given, no
        connection is made to read it; the decision whether a CSR is needed is made from it, and a task that finds none
        needed makes no connection to the device at all.
      - It must be what the device serves now. Omit it after a task that may have changed the served certificate (a TLS bundle
        stored, a personalisation, an upload activated by a reboot), so that the module reads it itself.
      - It is trusted as given; M(encedo.hem.encedo_info) verified it with its O(ca_path) when it read it.
    type: str
  allow_name_mismatch:
    description:
      - With O(state=present), upload a certificate that does not name the host of O(url) (as a DNS name, or as an IP
        address for an IP address url; checked as TLS clients check it, with Python's C(ssl)).
      - By default such a certificate is refused before anything is sent, because after the reboot that activates it every
        task reaching the device by O(url) fails TLS verification (and so does any client using that address); the message
        names the certificate's names and what the url needs.
      - Set it to V(true) only when you will reach the device by one of the certificate's names afterwards; the task then
        warns instead.
    type: bool
    default: false
  csr_path:
    description:
      - With O(state=csr), write the CSR (PEM) to this file when one is generated. The file is rewritten only when its
        content changes; in check mode it is not written.
      - An existing file that does not hold a CSR is never overwritten; the task fails instead.
    type: path
notes:
  - The module needs O(url) with V(https://), because the certificate is read from the TLS handshake.
  - Only a task that sends something (a CSR request or an upload) logs in; give O(passphrase) or O(token) for that.
  - After the reboot that activates a certificate from a new CA, O(ca_path) must trust that CA, for this module and
    every other module of the collection.
  - The device's attestation token RV(genuine) is returned with every new CSR; verify it with M(encedo.hem.encedo_attestation)
    if the CSR travels through untrusted hands.
seealso:
  - module: community.crypto.x509_certificate
  - module: encedo.hem.encedo_reboot
  - module: encedo.hem.encedo_info
'''

EXAMPLES = r'''
- name: Have the device generate a CSR when its certificate is not from our CA or expires within 30 days
  encedo.hem.encedo_tls:
    url: https://my.ence.do
    passphrase: "{{ hem_passphrase }}"
    ca_path: /etc/encedo/trust.pem          # trusts the certificate served today (old and new CA)
    state: csr
    issuer_ca_path: /etc/pki/our-ca.pem
    remaining_days: 30
    csr_path: /var/lib/encedo/my.ence.do.csr
  register: hem_csr

- name: Sign it with our own CA
  community.crypto.x509_certificate:
    path: /var/lib/encedo/my.ence.do.crt
    csr_path: /var/lib/encedo/my.ence.do.csr
    provider: ownca
    ownca_path: /etc/pki/our-ca.pem
    ownca_privatekey_path: /etc/pki/our-ca.key
    ownca_not_after: +365d
  when: hem_csr.csr_needed

- name: Upload it (the device serves it after a reboot)
  encedo.hem.encedo_tls:
    url: https://my.ence.do
    passphrase: "{{ hem_passphrase }}"
    ca_path: /etc/encedo/trust.pem
    certificate_path: /var/lib/encedo/my.ence.do.crt
    issuer_ca_path: /etc/pki/our-ca.pem
  register: hem_tls
  notify: Reboot the device

- name: Replace key and certificate together (key encrypted for the device)
  encedo.hem.encedo_tls:
    url: https://my.ence.do
    passphrase: "{{ hem_passphrase }}"
    certificate: "{{ lookup('ansible.builtin.file', 'new.crt') }}"
    key_import:
      emp: "{{ transport_public_point_b64 }}"
      key: "{{ encrypted_key }}"
  no_log: true
'''

RETURN = r'''
changed:
  description: Whether a CSR was generated or a certificate uploaded (in check mode, whether it would be).
  returned: always
  type: bool
reboot_required:
  description: True after an upload (or, in check mode, when one would happen); the device serves the new certificate after a reboot.
  returned: always
  type: bool
  sample: true
sent:
  description: Names of the fields sent with C(POST /api/system/config) (never values). Empty when nothing was sent.
  returned: always
  type: list
  elements: str
  sample: [tls.crt]
certificate:
  description:
    - Facts of the certificate the device serves now (before any reboot, so the old one right after an upload).
  returned: success
  type: dict
  contains:
    subject:
      description: Subject distinguished name (RFC 4514).
      type: str
      sample: CN=hem0.example.com
    issuer:
      description: Issuer distinguished name (RFC 4514).
      type: str
      sample: CN=Our CA
    subject_alt_names:
      description: Subject alternative names, as C(DNS:name), C(IP:address), C(email:), C(URI:), C(dirName:), C(RID:) or C(otherName:oid).
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
      description: Whole days until O(certificate) expires (negative once expired).
      type: int
      sample: 364
    fingerprint_sha256:
      description: SHA-256 of the DER certificate, colon-separated lower-case hex.
      type: str
    spki_sha256:
      description: SHA-256 of the DER SubjectPublicKeyInfo (identifies the key), colon-separated lower-case hex.
      type: str
    public_key_type:
      description: Key algorithm and size or curve.
      type: str
      sample: EC secp256r1
    self_signed:
      description: Whether the certificate is issued by itself.
      type: bool
uploaded:
  description: Facts of the certificate uploaded (or, in check mode, that would be), same keys as RV(certificate).
  returned: when O(state=present) and the certificate differs from the served one
  type: dict
key_match:
  description:
    - How the key of the uploaded certificate was checked. V(served) (same key as the served certificate), V(csr) (same key
      as a fresh CSR of the device), V(key_import) (the key is replaced in the same call, not checked).
  returned: when RV(uploaded) is returned
  type: str
  sample: served
csr_needed:
  description: With O(state=csr), whether the served certificate needs replacing (see O(state)).
  returned: when O(state=csr)
  type: bool
csr_reasons:
  description: With O(state=csr), why a CSR is needed.
  returned: when O(state=csr)
  type: list
  elements: str
  sample: ["the served certificate is not issued by the CA in issuer_ca_path"]
csr:
  description:
    - With O(state=csr), the CSR (PEM), normalised whether the device sent PEM or base64 DER. The new CSR, or the valid CSR
      already in O(csr_path). V(null) when none is needed, and in check mode when one would be generated.
  returned: when O(state=csr)
  type: str
genuine:
  description:
    - The device's attestation token returned with a newly generated CSR (C(keyid.timestamp.signature)); V(null) otherwise.
  returned: when O(state=csr)
  type: str
csr_path_changed:
  description: Whether O(csr_path) was (or, in check mode, would be) written.
  returned: when O(state=csr)
  type: bool
token:
  description:
    - The new bearer token, when the device refused O(token) (it expired, or the device rebooted) and the task logged in
      again with O(passphrase). Pass it to the next tasks instead of the old one.
    - The output of a task that returns it is hidden, like with C(no_log); the registered variable still holds it.
  returned: when the task logged in again because the device refused O(token)
  type: str
  sample: eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzY29wZSI6InN5c3RlbTpjb25maWcifQ.c2lnbmF0dXJl
'''

from ansible_collections.encedo.hem.plugins.module_utils._engine import converge
from ansible_collections.encedo.hem.plugins.module_utils._module import HemModule
from ansible_collections.encedo.hem.plugins.module_utils._tls import CertificateResource, CsrResource


def run(module, client):
    resource = CsrResource if module.params['state'] == 'csr' else CertificateResource
    return converge(module, client, resource(module))


def main():
    module = HemModule(
        argument_spec=dict(
            state=dict(type='str', default='present', choices=['present', 'csr']),
            certificate=dict(type='str'),
            certificate_path=dict(type='path'),
            key_import=dict(type='dict', no_log=False, options=dict(
                emp=dict(type='str', required=True),
                key=dict(type='str', required=True, no_log=True),
            )),
            issuer_ca=dict(type='str'),
            issuer_ca_path=dict(type='path'),
            remaining_days=dict(type='int', default=30),
            force=dict(type='bool', default=False),
            allow_name_mismatch=dict(type='bool', default=False),
            csr_path=dict(type='path'),
            served_certificate=dict(type='str'),
        ),
        mutually_exclusive=[('certificate', 'certificate_path'), ('issuer_ca', 'issuer_ca_path')],
        required_if=[('state', 'present', ('certificate', 'certificate_path'), True)],
        supports_check_mode=True,
    )
    module.run(run)


if __name__ == '__main__':
    main()
