#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: encedo_attestation
short_description: Verify that an Encedo HEM is genuine, or provision its secure element
version_added: 1.0.0
description:
  - Reads the attestation data of an Encedo HEM PPA (C(GET /api/system/config/attestation)) and verifies it. Fetching
    the data proves nothing by itself; the module runs six checks.
  - C(signature) - the C(genuine) token's ECDSA P-256/SHA-256 signature over its timestamp verifies under the public key
    of the attestation certificate.
  - C(key_id) - the token's key id equals the certificate's Subject Key Identifier.
  - C(chain) - the certificate is issued and signed directly by one of the trusted custody CAs given by O(trust_anchor)
    or O(trust_anchor_path) (issuer name and signature; the validity periods are the C(validity) check's).
  - C(genuine_id) - the certificate's common name is C(#) followed by the device's genuine_id. The expected genuine_id
    comes from O(genuine_id) and, when credentials allowed to read the configuration are given, from the device
    configuration; every source given must match.
  - C(freshness) - the token time is within O(max_age) seconds of the controller's clock. The device stamps the token
    with its own clock, which is unset after every power-up until a check-in; such a token fails this check with a
    message that asks for a check-in (M(encedo.hem.encedo_checkin)). The clock is taken as unset when the device status
    shows no C(time), the token time is before 2000, or it is before the certificate's C(notBefore).
  - C(validity) - the attestation certificate, and the trust anchor that issued it, are within their validity periods
    now. It is always reported, and counts for RV(attestation.verified) only with O(enforce_validity=true) (see there
    why not by default).
  - Each check ends C(passed), C(failed) with the reason, or C(not_run) with the reason it could not run (for example no
    trust anchor, or no known genuine_id). A check that did not run never counts as passed, so RV(attestation.verified)
    is true only when C(signature), C(key_id), C(chain), C(genuine_id) and C(freshness) passed (and C(validity) with
    O(enforce_validity=true)), except the checks explicitly listed in O(skip_checks).
  - With O(state=provisioned) the module performs the factory step that writes the attestation certificate into the
    secure element (C(POST /api/system/config/provisioning)). This works once, on a device that is not personalised.
  - The EPA (rack) model has no attestation; the module reports RV(supported=false) for it.
author:
  - encedo.hem maintainers (@encedo)
extends_documentation_fragment:
  - encedo.hem.connection
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    details: Reads and verifies as usual. With O(state=provisioned), predicts C(changed) and writes nothing.
    support: full
  diff_mode:
    details: With O(state=provisioned), shows the secure element's certificate before and after (fingerprint and subject).
    support: full
  idempotent:
    description: O(state=verified) never changes anything. O(state=provisioned) writes only when the secure element has no certificate yet.
    support: full
options:
  state:
    description:
      - V(verified) reads the attestation data and verifies it. It never changes the device.
      - V(provisioned) writes O(certificate) into the secure element if it has no certificate yet (a factory step). When
        the secure element already holds this certificate, nothing is sent. When it holds another one, the task fails,
        because provisioning cannot be repeated.
    type: str
    choices: [verified, provisioned]
    default: verified
  trust_anchor:
    description:
      - PEM content of the trusted custody CA certificate(s); several concatenated certificates are allowed.
      - Every certificate must be a CA certificate (basicConstraints CA:TRUE, and keyCertSign when it has a keyUsage);
        a device certificate given here is refused.
      - Mutually exclusive with O(trust_anchor_path). Without either, the C(chain) check does not run and the device is
        not RV(attestation.verified) unless C(chain) is in O(skip_checks).
    type: str
  trust_anchor_path:
    description:
      - Path to a PEM bundle file on the controller (where the module runs) with the trusted custody CA certificate(s).
      - Same rules as O(trust_anchor).
    type: path
  genuine_id:
    description:
      - The expected genuine_id (secure-element serial) of the device, for example from the inventory. A leading C(#) is
        ignored.
      - When credentials that may read the configuration are given, the genuine_id the device reports is compared too.
      - Needed on a device that is not personalised (its configuration cannot be read) or with a token whose scope does
        not cover C(system:config); otherwise the C(genuine_id) check does not run.
    type: str
  max_age:
    description:
      - How many seconds the token time may differ from the controller's clock (in either direction).
      - The device signs its current time; a device whose clock is unset or wrong fails the C(freshness) check.
    type: int
    default: 300
  enforce_validity:
    description:
      - Whether the C(validity) check (the attestation certificate and its issuing trust anchor are within their validity
        periods now) must pass for RV(attestation.verified). It is reported either way.
      - Off by default because genuine devices present expired attestation certificates. The certificate is written into
        the secure element once, at the factory (provisioning cannot be repeated), and is never renewed; the vendor's own
        sample attestation certificate was valid from 2020-10-05 to 2023-10-05. The signature chain from the custody CA to
        the certificate and a fresh token signed by its key prove the device genuine whatever the certificate's dates.
      - Turn it on only when your policy requires a certificate within its dates (for example devices provisioned by
        your own custody CA with long-lived certificates). With O(state=provisioned), the certificate to write must then be
        within its dates too.
    type: bool
    default: false
  fail_on_invalid:
    description:
      - With O(state=verified), fail the task when a check failed or did not run (other than those in O(skip_checks)),
        naming each such check, and when the model cannot attest (EPA).
      - When false, the task succeeds and reports RV(attestation.verified) and RV(supported).
      - With O(state=provisioned) the returned RV(attestation) is informational; the certificate is always checked before
        it is written (see O(certificate)).
    type: bool
    default: true
  skip_checks:
    description:
      - Checks that are not required for RV(attestation.verified). They are reported as C(not_run).
      - The C(signature) and C(key_id) checks cannot be skipped. C(validity) is not required unless
        O(enforce_validity=true), so it is not listed here.
      - Skipping C(chain) means that the device is only consistent with itself, not proven genuine.
    type: list
    elements: str
    choices: [chain, genuine_id, freshness]
    default: []
  certificate:
    description:
      - With O(state=provisioned), the attestation certificate to write into the secure element, as PEM or base64 DER.
        It is the certificate issued by the custody CA for the secure element's public key (the RV(attestation.se_key)
        and RV(attestation.csr) of a device whose secure element is not provisioned).
      - Before anything is written the module checks that the certificate holds the secure element's public key, that the
        device's token signature verifies under it, and, when given, that it chains to O(trust_anchor) or
        O(trust_anchor_path) and that its common name matches O(genuine_id). Provisioning is one-shot.
      - Required with O(state=provisioned).
    type: str
notes:
  - Credentials are optional on a device that is not personalised yet (the device answers without them). On a personalised
    device a token of any scope can read the attestation data; the configuration (for the device's genuine_id) needs the
    V(system:config) scope, which O(passphrase) logins use.
  - Requests. With O(token) (a token comes from a login on a personalised device), the attestation data is read at once,
    and with it the configuration for the device's genuine_id. The status is read only when the C(freshness) check fails
    (it tells whether the device clock is unset), the version only when the attestation endpoint answers 404 (an EPA, or
    a build without attestation). Without a token, the status is read first (whether the device is personalised, so
    whether credentials are needed) and the version when the status does not show a PPA (C(storage)).
  - Times are judged with the controller's clock. Run a check-in (M(encedo.hem.encedo_checkin)) when the device clock is
    unset (after every power-up or reboot), before verifying.
seealso:
  - module: encedo.hem.encedo_info
  - module: encedo.hem.encedo_checkin
'''

EXAMPLES = r'''
- name: Prove that the device is genuine (fails the task otherwise)
  encedo.hem.encedo_attestation:
    url: https://my.ence.do
    ca_path: /etc/pki/encedo-ca.pem
    token: "{{ hem_login.token }}"
    trust_anchor_path: /etc/pki/encedo-custody-ca.pem
  register: hem_attestation

- name: A device that is not personalised yet, with the genuine_id from the inventory
  encedo.hem.encedo_attestation:
    url: https://192.168.7.1
    ca_path: /etc/pki/encedo-ca.pem
    trust_anchor: "{{ lookup('ansible.builtin.file', 'files/custody-ca.pem') }}"
    genuine_id: "{{ hem_genuine_id }}"

- name: Report without failing, and show which checks did not pass
  encedo.hem.encedo_attestation:
    url: https://my.ence.do
    token: "{{ hem_login.token }}"
    trust_anchor_path: /etc/pki/encedo-custody-ca.pem
    fail_on_invalid: false
  register: hem_attestation

- name: Also require the attestation certificate to be within its dates (off by default, see enforce_validity)
  encedo.hem.encedo_attestation:
    url: https://my.ence.do
    token: "{{ hem_login.token }}"
    trust_anchor_path: /etc/pki/encedo-custody-ca.pem
    enforce_validity: true

- name: Show the verdict
  ansible.builtin.debug:
    msg: "{{ hem_attestation.attestation.checks | dict2items | rejectattr('value.status', 'eq', 'passed') | list }}"

- name: Factory step - write the custody CA's certificate into a fresh secure element
  encedo.hem.encedo_attestation:
    url: https://192.168.7.1
    ca_path: /etc/pki/encedo-ca.pem
    state: provisioned
    certificate: "{{ lookup('ansible.builtin.file', 'certs/' ~ hem_genuine_id ~ '.pem') }}"
    trust_anchor_path: /etc/pki/encedo-custody-ca.pem
    genuine_id: "{{ hem_genuine_id }}"
'''

RETURN = r'''
supported:
  description: Whether the device model has attestation (PPA). False on an EPA.
  returned: always
  type: bool
  sample: true
attestation:
  description: The verification of the device's attestation data. After O(state=provisioned), the state after the task.
  returned: always
  type: dict
  contains:
    verified:
      description:
        - True when C(signature), C(key_id), C(chain), C(genuine_id) and C(freshness) passed, except those in
          O(skip_checks), and C(validity) passed too with O(enforce_validity=true).
      type: bool
      sample: true
    checks:
      description:
        - Each check by name (C(signature), C(key_id), C(chain), C(genuine_id), C(freshness), C(validity)), with
          C(status) V(passed), V(failed) or V(not_run), and C(reason).
        - C(validity) is always reported; a V(failed) C(validity) names the dates and, unless O(enforce_validity=true),
          says that it is not enforced.
      type: dict
      sample:
        signature: {"status": "passed", "reason": "the token's ECDSA P-256/SHA-256 signature over its timestamp verifies under the certificate's key"}
        chain: {"status": "not_run", "reason": "no trust anchor given (trust_anchor or trust_anchor_path)"}
        validity:
          status: failed
          reason: >-
            the attestation certificate expired at 2023-10-05T19:29:33Z (valid 2020-10-05T19:29:33Z to 2023-10-05T19:29:33Z),
            now is 2026-11-27T21:00:00Z; not enforced (enforce_validity is false): genuine devices keep their factory
            attestation certificate after it expires
    provisioned:
      description: Whether the secure element holds an attestation certificate.
      type: bool
      sample: true
    genuine_id:
      description: The expected genuine_id used by the C(genuine_id) check (from O(genuine_id), else from the device), or null.
      type: str
      sample: "0123eb561f5ea073ee"
    genuine_id_sources:
      description: Where the expected genuine_id came from, V(option) and/or V(device).
      type: list
      elements: str
      sample: [device]
    subject:
      description: The attestation certificate's subject (RFC 4514), or null without a certificate.
      type: str
      sample: "CN=\\#0123eb561f5ea073ee,O=Encedo Ltd,C=UK"
    common_name:
      description: The attestation certificate's common name.
      type: str
      sample: "#0123eb561f5ea073ee"
    issuer:
      description: The attestation certificate's issuer (RFC 4514).
      type: str
      sample: "CN=Encedo Custody CA,O=Encedo Limited,C=UK"
    serial_number:
      description: The attestation certificate's serial number.
      type: int
      sample: 109
    not_before:
      description: Start of the certificate's validity (ISO 8601, UTC).
      type: str
      sample: "2020-10-05T19:29:33Z"
    not_after:
      description: End of the certificate's validity (ISO 8601, UTC).
      type: str
      sample: "2023-10-05T19:29:33Z"
    subject_key_id:
      description: The certificate's Subject Key Identifier (hex).
      type: str
      sample: "aa0249c0cdb08732e8e2fbba49852b251f2b80a5"
    fingerprint_sha256:
      description: SHA-256 of the certificate's DER form (hex).
      type: str
      sample: "05206b8bc68de43307c95a60cc3b6906d590f34f981e8dcb1b84db0b0dc0da4a"
    token_time:
      description: The time the device signed in the token (ISO 8601, UTC).
      type: str
      sample: "2022-03-18T22:08:05Z"
    token_timestamp:
      description: The token time as Unix time.
      type: int
      sample: 1647641285
    token_key_id:
      description: The key id carried by the token (hex).
      type: str
      sample: "aa0249c0cdb08732e8e2fbba49852b251f2b80a5"
    se_key:
      description: The secure element's public key (base64 DER) while it is not provisioned, to be certified by the custody CA.
      type: str
      returned: when the secure element is not provisioned
    csr:
      description: The certificate signing request the device offers while its secure element is not provisioned.
      type: str
      returned: when the secure element is not provisioned
sent:
  description: The names of the fields sent to the device (never values).
  returned: always
  type: list
  elements: str
  sample: [crt, genuine]
token:
  description:
    - The new bearer token, when the device refused O(token) (it expired, or the device rebooted) and the task logged in
      again with O(passphrase). Pass it to the next tasks instead of the old one.
    - The output of a task that returns it is hidden, like with C(no_log); the registered variable still holds it.
  returned: when the task logged in again because the device refused O(token)
  type: str
  sample: eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzY29wZSI6InN5c3RlbTpjb25maWcifQ.c2lnbmF0dXJl
'''

import datetime

from ansible_collections.encedo.hem.plugins.module_utils import _attestation as att
from ansible_collections.encedo.hem.plugins.module_utils._attestation import AttestationFailure
from ansible_collections.encedo.hem.plugins.module_utils._errors import HemError, HemOutcomeUnknown
from ansible_collections.encedo.hem.plugins.module_utils._module import HemModule

PROVISIONING = '/api/system/config/provisioning'


def run(module, client):
    return att.attest(module, client, provision=run_provisioned if module.params['state'] == 'provisioned' else None)


def run_provisioned(module, client, anchors, status, data):
    """``state: provisioned``: write the certificate given to a secure element that holds none (once)."""
    url = module.params['url']
    try:
        wanted = att.load_certificate(module.params['certificate'], 'option certificate')
    except att.AttestationError as exc:
        raise AttestationFailure(str(exc)) from exc
    personalised = status.get('inited') is not False
    genuine_ids, hint = att.expected_genuine_ids(module, client, personalised)
    before, current = att.verify_data(module, data, anchors, genuine_ids, hint, status)
    wanted_desc = att.describe_certificate(wanted)
    if current is not None:
        if att.cert_der(current) == att.cert_der(wanted):
            return dict(changed=False, supported=True, sent=[], attestation=before)
        raise AttestationFailure(
            'the secure element of %s is already provisioned with another certificate (subject %s, serial %s, sha256 %s) '
            'than the one given (subject %s, serial %s, sha256 %s); provisioning is one-shot and cannot be repeated'
            % (url, before['subject'], before['serial_number'], before['fingerprint_sha256'],
               wanted_desc['subject'], wanted_desc['serial_number'], wanted_desc['fingerprint_sha256']), attestation=before)
    if personalised:
        raise AttestationFailure('the device %s is personalised: its secure element can only be provisioned on a device that is '
                                 'not personalised (factory state)' % url, attestation=before)
    problems = pre_write_problems(module, data, wanted, anchors, genuine_ids)
    if problems:
        raise AttestationFailure('not provisioning %s with the given certificate: %s' % (url, '; '.join(problems)), attestation=before)

    out = dict(changed=True, supported=True, sent=['crt', 'genuine'])
    if module._diff:
        out['diff'] = dict(before=dict(provisioned=False),
                           after=dict(provisioned=True, subject=wanted_desc['subject'], fingerprint_sha256=wanted_desc['fingerprint_sha256']))
    if module.check_mode:
        out['attestation'] = before
        return out
    out['attestation'] = provision(module, client, wanted, data, (anchors, genuine_ids, hint, status))
    return out


def provision(module, client, wanted, data, verify_args):
    """Send the certificate once and re-read the attestation data -> its verification (the certificate is stored)."""
    url = module.params['url']
    lost = None
    try:
        client.post(PROVISIONING, {'crt': att.cert_b64(wanted), 'genuine': data['genuine']}, auth=False)
    except HemOutcomeUnknown as exc:
        lost = exc  # never sent again blindly: the re-read below tells whether the certificate was written
    except HemError as exc:
        if exc.status == 403:
            raise AttestationFailure('the device %s refused provisioning (HTTP 403): it is personalised' % url) from exc
        if exc.status == 406:
            raise AttestationFailure('the device %s refused provisioning (HTTP 406): the secure element already holds a certificate, '
                                     'the certificate does not hold its key, or writing it failed' % url) from exc
        raise
    after, stored = reread(module, client, lost, verify_args)
    if stored is None or att.cert_der(stored) != att.cert_der(wanted):
        if lost is not None:
            raise AttestationFailure('outcome unknown: the provisioning was sent but its answer was lost (%s); a re-read shows the secure '
                                     'element is %s, so the certificate was not written. Run the task again.'
                                     % (lost, 'not provisioned' if stored is None else 'provisioned with another certificate'),
                                     attestation=after)
        raise AttestationFailure('the device %s accepted the provisioning but does not report the certificate given' % url,
                                 attestation=after)
    if lost is not None:
        module.warn('the answer to the provisioning was lost, but a re-read shows the secure element holds the certificate given')
    return after


def reread(module, client, lost, verify_args):
    """The attestation data after the provisioning, verified -> (result, certificate stored)."""
    anchors, genuine_ids, hint, status = verify_args
    try:
        after_data = att.read_attestation(module, client, False)
    except AttestationFailure:
        raise
    except HemError as exc:
        if lost is None:
            raise
        raise AttestationFailure('outcome unknown: the provisioning was sent but its answer was lost (%s), and the attestation data '
                                 'could not be re-read (%s); check the device before running the task again' % (lost, exc)) from exc
    if after_data is None:
        raise AttestationFailure('the device %s accepted the provisioning but its attestation endpoint is gone (404)' % module.params['url'])
    return att.verify_data(module, after_data, anchors, genuine_ids, hint, status)


def pre_write_problems(module, data, wanted, anchors, genuine_ids):
    """Everything that makes the one-shot write wrong, checked before writing."""
    problems = []
    se_key = None
    try:
        if data.get('key'):
            se_key = att.load_public_key(data['key'], 'the secure element public key (key)')
    except att.AttestationError as exc:
        raise AttestationFailure('the device %s returned malformed attestation data: %s' % (module.params['url'], exc)) from exc
    if se_key is None:
        problems.append('the device did not report its secure element public key (key)')
    elif att.spki_der(se_key) != att.spki_der(wanted.public_key()):
        problems.append("the certificate does not hold the secure element's public key")
    token = att.parse_token(data['genuine'])
    check = att.check_signature(token, wanted.public_key(), "the certificate's key")
    if check['status'] != att.PASSED:
        problems.append(check['reason'])
    if anchors:
        check = att.check_chain(wanted, anchors)
        if check['status'] != att.PASSED:
            problems.append('chain: %s' % check['reason'])
    if module.params['enforce_validity']:
        check = att.check_validity(wanted, datetime.datetime.now(datetime.timezone.utc), enforced=True)
        if check['status'] != att.PASSED:
            problems.append('validity (enforce_validity is true): %s' % check['reason'])
    if genuine_ids:
        check = att.check_genuine_id(wanted, genuine_ids)
        if check['status'] != att.PASSED:
            problems.append('genuine_id: %s' % check['reason'])
    return problems


def main():
    module = HemModule(
        argument_spec=dict(
            state=dict(type='str', choices=['verified', 'provisioned'], default='verified'),
            trust_anchor=dict(type='str'),
            trust_anchor_path=dict(type='path'),
            genuine_id=dict(type='str'),
            max_age=dict(type='int', default=300),
            enforce_validity=dict(type='bool', default=False),
            fail_on_invalid=dict(type='bool', default=True),
            skip_checks=dict(type='list', elements='str', choices=list(att.SKIPPABLE_CHECKS), default=[]),
            certificate=dict(type='str'),
        ),
        mutually_exclusive=[('trust_anchor', 'trust_anchor_path')],
        required_if=[('state', 'provisioned', ['certificate'])],
        supports_check_mode=True,
    )
    module.run(run, check=att.check_options)


if __name__ == '__main__':
    main()
