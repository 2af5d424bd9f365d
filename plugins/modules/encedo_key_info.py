#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: encedo_key_info
short_description: List the keys in the key repository of an Encedo HEM device
version_added: 2.0.0
description:
  - Returns every key of the device's key repository, read page after page (15 keys a page) until the offset reaches the
    total the device reports, filtered by O(label), O(type) or O(descr).
  - The device's own TLS key and certificate and the keys of paired phones and apps are listed too, marked by
    RV(key_list[].owner), so a play can tell them from the keys M(encedo.hem.encedo_key) manages.
  - With O(public_keys=true), the public part of every key listed is read too (one request per key).
  - The key repository answers over HTTPS only, so a O(url) with V(http://) is refused before anything is sent.
  - 'Logins: one with the scope C(keymgmt:list); with O(public_keys=true) one more with C(keymgmt:get). A O(token) with
    the scope C(keymgmt:list) serves a run without public keys.'
author:
  - encedo.hem maintainers (@encedo)
extends_documentation_fragment:
  - encedo.hem.connection
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - This module does not change the device; it runs the same in check mode.
  diff_mode:
    support: N/A
    details:
      - This module does not change the device.
  idempotent:
    description: It only reads; it never reports a change.
    support: full
options:
  label:
    description: Only the keys with exactly this label.
    type: str
  type:
    description: Only the keys of this type (the algorithm, for example V(ED25519)).
    type: str
    choices: [SECP256R1, SECP384R1, SECP521R1, SECP256K1, ED25519, ED448, CURVE25519, CURVE448, MLKEM512, MLKEM768,
              MLKEM1024, MLDSA44, MLDSA65, MLDSA87, AES128, AES192, AES256, SHA2-256, SHA2-384, SHA2-512, SHA3-256,
              SHA3-384, SHA3-512]
  descr:
    description: Only the keys whose description (as text) contains this.
    type: str
  public_keys:
    description: Also return each key's public key (RV(key_list[].public_key)); one more login and one request per key.
    type: bool
    default: false
seealso:
  - module: encedo.hem.encedo_key
'''

EXAMPLES = r'''
- name: Every key of the device
  encedo.hem.encedo_key_info:
    url: https://my.ence.do
    passphrase: "{{ hem_passphrase }}"
  register: repo

- name: The Ed25519 keys with their public keys
  encedo.hem.encedo_key_info:
    url: https://my.ence.do
    passphrase: "{{ hem_passphrase }}"
    type: ED25519
    public_keys: true
  register: signing_keys
'''

RETURN = r'''
key_list:
  description: The keys that match the filters, in the device's order.
  returned: success
  type: list
  elements: dict
  contains:
    kid:
      description: The key id (32 lower-case hexadecimal digits).
      type: str
    label:
      description: The label.
      type: str
    type:
      description: The algorithm (the last part of the device's type string), for example V(ED25519) or V(GENERIC_DER).
      type: str
    flags:
      description: What the device lists before the algorithm - C(PKEY) (it holds the private part), C(ECDH), C(ExDSA), C(PQC), C(ATT), C(CERT).
      type: list
      elements: str
    descr:
      description: The description as text (bytes that are not UTF-8 as C(\\x..) escapes).
      type: str
    created:
      description: When the key was made, seconds since 1970 (device clock).
      type: int
    updated:
      description: When the key was last changed, seconds since 1970 (device clock).
      type: int
    owner:
      description:
        - V(device) (the TLS key and certificate), V(phone) or V(app) (keys of paired phones and apps), V(user) (the
          others). Only V(user) keys are managed by M(encedo.hem.encedo_key).
      type: str
      choices: [device, phone, app, user]
    public_key:
      description:
        - With O(public_keys=true), the public key - PEM for the C(SECP*), C(ED*) and C(CURVE*) types, base64 of the raw
          key for ML-KEM and ML-DSA, V(null) for secret keys and the device's TLS records.
      type: str
    public_key_format:
      description: With O(public_keys=true), V(pem), V(base64) or V(null).
      type: str
  sample:
    - {kid: 0f2a6c1e9d8b7a6f5e4d3c2b1a098765, label: release-signing, type: ED25519, flags: [PKEY, ExDSA], descr: "",
       created: 1765100000, updated: 1765100000, owner: user}
total:
  description: How many keys the repository holds (before the filters).
  returned: success
  type: int
  sample: 42
matched:
  description: How many keys match the filters (the length of RV(key_list)).
  returned: success
  type: int
  sample: 1
token:
  description:
    - The new bearer token, when the device refused O(token) (it expired, or the device rebooted) and the task logged in
      again with O(passphrase). Pass it to the next tasks instead of the old one.
    - The output of a task that returns it is hidden, like with C(no_log); the registered variable still holds it.
  returned: when the task logged in again because the device refused O(token)
  type: str
  sample: eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzY29wZSI6ImtleW1nbXQ6bGlzdCJ9.c2lnbmF0dXJl
'''

from ansible_collections.encedo.hem.plugins.module_utils import _keys
from ansible_collections.encedo.hem.plugins.module_utils._module import HemModule


def main():
    module = HemModule(
        argument_spec=dict(
            label=dict(type='str'),
            type=dict(type='str', choices=list(_keys.KEY_TYPES)),
            descr=dict(type='str'),
            public_keys=dict(type='bool', default=False),
        ),
        supports_check_mode=True,
    )
    module.run(_keys.key_info, check=_keys.check_info)


if __name__ == '__main__':
    main()
