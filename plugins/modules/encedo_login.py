#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: encedo_login
short_description: Log in to an Encedo HEM device once and get a bearer token for later tasks
version_added: 1.0.0
description:
  - Logs in to the device with the passphrase and returns a bearer token for O(scope).
  - Later tasks pass the token as O(encedo.hem.encedo_info#module:token) (every encedo.hem module has that option), so a
    play logs in once per host instead of once per task. A login costs at least half a second on the device, plus the
    key derivation.
  - A later task given both O(encedo.hem.encedo_info#module:token) and O(encedo.hem.encedo_info#module:passphrase) logs in
    again, once, when the device refuses the token (it expired, or the device rebooted), and returns the new token as
    C(token) in its result (hidden like this one), for the tasks after it.
  - The output of a successful task is hidden, like with C(no_log), also with C(-vvv), so the token never appears in
    the output; the registered variable still holds it. A failed login stays visible.
  - Nothing changes on the device; the task also runs in check mode, so later tasks can use the token in check mode.
author:
  - encedo.hem maintainers (@encedo)
options:
  scope:
    description:
      - The scope of the token. Scopes are checked as prefixes; V(system:config) covers every configuration endpoint.
      - 1 to 127 characters without spaces; checked before the login.
    type: str
    default: system:config
  lifetime:
    description:
      - Seconds the token stays valid, counted from the device clock.
      - If not set, 8 hours (the default of firmware 1.2.2, asked for explicitly so older firmware gives the same).
      - A token also stops working when the device reboots.
    type: int
extends_documentation_fragment:
  - encedo.hem.connection
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
    details:
      - The action plugin hides the result of a successful login from the output.
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details:
      - A login does not change the device, so it runs in check mode too.
  diff_mode:
    support: N/A
    details:
      - This module does not change the device.
  idempotent:
    description: When run twice in a row with the same arguments, the second run reports no change.
    support: full
    details:
      - This module does not change the device (each run returns a new token).
notes:
  - O(passphrase) is required (directly or through E(ENCEDO_HEM_PASSPHRASE)); O(token) is ignored here.
  - Do not print the registered variable (for example with M(ansible.builtin.debug)), because it holds the token.
  - The token is not returned as a fact on purpose - facts go to the fact cache, which ansible-runner (so AWX) keeps on disk.
seealso:
  - module: encedo.hem.encedo_info
'''

EXAMPLES = r'''
# Log in once per host, then hand the token to every later task.
- name: Configure HEM devices
  hosts: hem
  gather_facts: false
  module_defaults:
    group/encedo.hem.hem:
      url: "{{ hem_url }}"
      ca_path: "{{ hem_ca_path }}"
  tasks:
    - name: Log in once
      encedo.hem.encedo_login:
        passphrase: "{{ hem_passphrase }}"
      register: hem_login

    - name: Read the configuration with the token (no second login)
      encedo.hem.encedo_info:
        token: "{{ hem_login.token }}"
      register: hem

# A long play: the token first, the passphrase only to log in again once if the token dies
# (expiry, reboot). A task that logged in again returns the new token: the next tasks take it.
- name: Configure HEM devices, surviving a token that dies mid-play
  hosts: hem
  gather_facts: false
  module_defaults:
    group/encedo.hem.hem:
      url: "{{ hem_url }}"
      ca_path: "{{ hem_ca_path }}"
      passphrase: "{{ hem_passphrase }}"
  tasks:
    - name: Log in once
      encedo.hem.encedo_login:
      register: hem_login

    - name: Verify the attestation
      encedo.hem.encedo_attestation:
        token: "{{ hem_login.token }}"
        trust_anchor_path: custody-ca.pem
      register: hem_attestation

    - name: Apply the configuration with the newest token
      encedo.hem.encedo_config:
        token: "{{ hem_attestation.token | default(hem_login.token) }}"
        user: HEM 1

# A short-lived token with a narrower scope.
- name: Read the configuration with a ten-minute token
  hosts: hem
  gather_facts: false
  tasks:
    - name: A short-lived token with a narrower scope
      encedo.hem.encedo_login:
        url: https://my.ence.do
        passphrase: "{{ hem_passphrase }}"
        scope: system:config
        lifetime: 600
      register: hem_login
'''

RETURN = r'''
token:
  description:
    - The bearer token. Pass it to later tasks as O(encedo.hem.encedo_info#module:token). Hidden from the task output.
  returned: success
  type: str
  sample: eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzY29wZSI6InN5c3RlbTpjb25maWcifQ.c2lnbmF0dXJl
expires:
  description: When the token expires, in seconds since the epoch (device clock).
  returned: success
  type: int
  sample: 1714586400
scope:
  description: The scope of the token.
  returned: success
  type: str
  sample: system:config
'''

from ansible_collections.encedo.hem.plugins.module_utils._errors import HemError
from ansible_collections.encedo.hem.plugins.module_utils._module import HemModule


def login(module, client):
    if not module.params['passphrase']:
        raise HemError('encedo_login needs passphrase (or the environment variable ENCEDO_HEM_PASSPHRASE); a token cannot log in')
    lifetime = module.params['lifetime']
    if lifetime is not None and lifetime <= 0:
        raise HemError('option lifetime: must be a positive number of seconds, got %d' % lifetime)
    scope = module.params['scope']
    if not scope or len(scope) > 127 or any(c.isspace() for c in scope):
        raise HemError('option scope: must be 1 to 127 characters without spaces (the device refuses other scopes), got %d characters'
                       % len(scope or ''))
    token = module.login_token(client, scope=scope, lifetime=lifetime)
    return dict(changed=False, token=token, expires=client.last_login['expires'], scope=scope)


def main():
    module = HemModule(
        argument_spec=dict(
            scope=dict(type='str', default='system:config'),
            lifetime=dict(type='int'),
        ),
        supports_check_mode=True,
    )
    module.run(login)


if __name__ == '__main__':
    main()
