#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: encedo_key
short_description: Create, import, rename or delete a key in the key repository of an Encedo HEM device
version_added: 2.0.0
description:
  - Manages one key of the device's key repository, declared by name like a cloud KMS key. The private part of a created
    key never leaves the device; the module returns its public part (RV(public_key)) so a play can hand it out.
  - 'The key is found by O(kid), else (when O(public_key) is given) by the kid the device gives that public key, else by
    O(label) and O(type). It is created (or, with O(public_key), imported) only when absent, so every later run finds it
    again and changes nothing.'
  - O(label) and O(descr) of a key found are updated in place. Its type and mode are never changed in place. A key of
    another type under the label, or several keys with the label, fails the task and names their kids; nothing is sent.
  - The module never changes or deletes the keys the device and its pairings own, whatever the options say - the
    device's TLS key and certificate, the keys of paired phones (descriptions starting with C(EXTAID)) and of paired
    apps (descriptions holding C(ETSFTX)). A task naming one fails before anything is sent.
  - O(state=absent) deletes the one key exactly matched (by O(kid), O(public_key), or O(label) and, when given, O(type))
    and names it in RV(deleted). Deletion is final on the device.
  - Every option is checked before the first request. The key repository answers over HTTPS only, so a O(url) with
    V(http://) is refused before anything is sent.
  - 'Logins: the device grants one scope per token, so the module logs in once for each scope the run needs and reuses
    the tokens: C(keymgmt:list) (always; the list is read in pages of 15 keys), C(keymgmt:get) to read the public key of a
    key found, C(keymgmt:gen) to create a key (it also reads the new public key), C(keymgmt:upd) to rename, C(keymgmt:imp)
    to import, C(keymgmt:del) to delete. A run that changes nothing costs two logins, so do a creation, an import (its
    public key is the one given) and a deletion; a change of label or description three.'
author:
  - encedo.hem maintainers (@encedo)
extends_documentation_fragment:
  - encedo.hem.connection
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Reads the key list (and the public key of a key found) and predicts RV(changed), RV(sent) and the diff without
        creating, importing, updating or deleting anything. A key that would be created has no kid or public key yet
        (V(null)); an imported key's kid and public key are known in advance.
  diff_mode:
    support: full
    details:
      - Shows the key's C(state), C(label), C(type) and C(descr) before and after.
  idempotent:
    support: full
    description: A second run with the same options finds the key and sends nothing but reads (no POST, no DELETE).
options:
  label:
    description:
      - The key's label, 1 to 32 printable ASCII characters. With O(type), it names the key when O(kid) and O(public_key)
        are not given. Required to create or import a key; a key found by O(kid) or O(public_key) is renamed to it.
    type: str
  type:
    description:
      - The key type. Required to create or import a key, and to find one by O(label). A key found by O(kid) must be of
        this type when it is given.
      - Imports take the asymmetric types only (not C(AES*), C(SHA*)).
    type: str
    choices: [SECP256R1, SECP384R1, SECP521R1, SECP256K1, ED25519, ED448, CURVE25519, CURVE448, MLKEM512, MLKEM768,
              MLKEM1024, MLDSA44, MLDSA65, MLDSA87, AES128, AES192, AES256, SHA2-256, SHA2-384, SHA2-512, SHA3-256,
              SHA3-384, SHA3-512]
  mode:
    description:
      - What a C(SECP*) key may do - V(ECDH) (key agreement), V(ExDSA) (signing) or V(ECDH,ExDSA) (both). Only for the
        C(SECP*) types. Without it the device makes a C(SECP*) key for ECDH only, which cannot sign.
      - The mode of a key found must be this one; it is never changed in place.
    type: str
    choices: [ECDH, ExDSA, 'ECDH,ExDSA']
  descr:
    description:
      - The key's description, at most 64 bytes in UTF-8 (sent base64 encoded). Updated in place when it differs; V("")
        clears it. Not given - a key found keeps its description.
      - Descriptions starting with C(EXTAID) or holding C(ETSFTX) are refused; they mark the keys of paired phones and apps.
    type: str
  public_key:
    description:
      - A public key to import (the device keeps public keys of other parties, for example for ECDH or signature checks).
        PEM (C(-----BEGIN PUBLIC KEY-----)) or base64 of the raw key the device takes (a compressed or uncompressed X9.63
        point for C(SECP*), the raw key for the others). Needs O(label) and O(type).
      - The device names an imported key by the SHA-1 of its raw public key (the first 16 bytes, in hex), so the key is
        found by it on every run and imported only once.
    type: str
  kid:
    description:
      - The key id (32 hexadecimal digits) of an existing key, as RV(kid) returned it. A key cannot be created with a chosen
        kid; with O(state=present) a kid that the device does not hold fails the task.
    type: str
  state:
    description:
      - V(present) - the key exists (created or imported when absent) with O(label) and O(descr).
      - V(absent) - the one key matched is deleted.
    type: str
    choices: [present, absent]
    default: present
notes:
  - Give O(passphrase) - the module logs in once per scope it needs. A O(token) carries one scope; one with the scope
    C(keymgmt:list) serves the list, and the module says which scope is missing for the rest when no passphrase is given.
  - The private part of a created key never leaves the device. Signing and decryption with it are not part of this module.
seealso:
  - module: encedo.hem.encedo_key_info
  - module: amazon.aws.kms_key
    description: the AWS KMS module whose name-based, create-once behaviour this module follows.
'''

EXAMPLES = r'''
- name: A signing key, created once
  encedo.hem.encedo_key:
    url: https://my.ence.do
    passphrase: "{{ hem_passphrase }}"
    label: release-signing
    type: ED25519
    descr: signs release artefacts
  register: signing

- name: Hand out its public key
  ansible.builtin.copy:
    content: "{{ signing.public_key }}"
    dest: "keys/{{ inventory_hostname }}-release-signing.pem"
    mode: "0644"
  delegate_to: localhost

- name: An ECDSA P-256 key that can sign and agree keys
  encedo.hem.encedo_key:
    url: https://my.ence.do
    passphrase: "{{ hem_passphrase }}"
    label: tls-client
    type: SECP256R1
    mode: ECDH,ExDSA

- name: Import a partner's public key
  encedo.hem.encedo_key:
    url: https://my.ence.do
    passphrase: "{{ hem_passphrase }}"
    label: partner-a
    type: SECP256R1
    public_key: "{{ lookup('ansible.builtin.file', 'partner-a.pem') }}"

- name: Delete a key (by its kid, as returned before)
  encedo.hem.encedo_key:
    url: https://my.ence.do
    passphrase: "{{ hem_passphrase }}"
    kid: 0f2a6c1e9d8b7a6f5e4d3c2b1a098765
    state: absent
'''

RETURN = r'''
changed:
  description: Whether the key was (or, in check mode, would be) created, imported, updated or deleted.
  returned: always
  type: bool
sent:
  description:
    - Names of the fields sent (or, in check mode, that would be sent), sorted. Never values. Empty for a deletion (its
      request has no body) and when nothing changes.
  returned: always
  type: list
  elements: str
  sample: [label, type]
reboot_required:
  description: Always false; key changes apply at once.
  returned: always
  type: bool
state:
  description: The state asked for.
  returned: success
  type: str
  sample: present
kid:
  description:
    - The key id (32 lower-case hexadecimal digits). V(null) in check mode for a key that would be created, and with
      O(state=absent) when nothing was deleted.
  returned: success
  type: str
  sample: 0f2a6c1e9d8b7a6f5e4d3c2b1a098765
type:
  description: The key type (the algorithm).
  returned: success
  type: str
  sample: ED25519
public_key:
  description:
    - The public key - PEM for the C(SECP*), C(ED*) and C(CURVE*) types, base64 of the raw key for the ML-KEM and ML-DSA
      types, V(null) for C(AES*) and C(SHA*) keys (they have none), with O(state=absent), and in check mode for a key that
      would be created.
  returned: success
  type: str
  sample: "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA...\n-----END PUBLIC KEY-----\n"
key:
  description: The key as the device lists it after the task (predicted in check mode); V(null) when absent.
  returned: success
  type: dict
  contains:
    kid:
      description: The key id.
      type: str
    label:
      description: The label.
      type: str
    type:
      description: The algorithm.
      type: str
    flags:
      description:
        - What the device lists before the algorithm - C(PKEY) (it holds the private part), C(ECDH), C(ExDSA), C(PQC).
        - V(null) in check mode for a key that would be imported.
      type: list
      elements: str
      sample: [PKEY, ExDSA]
    descr:
      description: The description as text.
      type: str
    created:
      description: When the key was made, seconds since 1970 (device clock).
      type: int
    updated:
      description: When the key was last changed, seconds since 1970 (device clock).
      type: int
    owner:
      description: V(user) for the keys this module manages (it never returns the others).
      type: str
    public_key:
      description: As RV(public_key).
      type: str
    public_key_format:
      description: V(pem), V(base64), or V(null) without a public key.
      type: str
deleted:
  description: With O(state=absent), the key deleted (C(kid), C(label), C(type)), or V(null) when none matched.
  returned: when O(state=absent)
  type: dict
  sample: {kid: 0f2a6c1e9d8b7a6f5e4d3c2b1a098765, label: old-signing, type: ED25519}
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


def check(params):
    _keys.require_https(params['url'])
    _keys.desired(params)


def main():
    module = HemModule(
        argument_spec=dict(
            label=dict(type='str'),
            type=dict(type='str', choices=list(_keys.KEY_TYPES)),
            mode=dict(type='str', choices=list(_keys.MODES)),
            descr=dict(type='str'),
            public_key=dict(type='str', no_log=False),
            kid=dict(type='str'),
            state=dict(type='str', default='present', choices=['present', 'absent']),
        ),
        supports_check_mode=True,
    )
    module.run(_keys.ensure_key, check=check)


if __name__ == '__main__':
    main()
