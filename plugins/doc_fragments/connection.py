# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    # The connection options of every encedo.hem module. They are built in code by
    # plugins/module_utils/_module.py:hem_argument_spec(); a unit test keeps the two equal.
    # Module documentation cannot carry C(env:) entries, so each description names the
    # environment variable used when the task does not set the option.

    DOCUMENTATION = r'''
options:
  url:
    description:
      - Base URL of the device API, for example V(https://my.ence.do) or V(https://192.168.7.1).
      - The scheme must be V(https) or V(http). With V(http) the bearer token travels unencrypted, and some endpoints refuse it.
      - If not set, the environment variable E(ENCEDO_HEM_URL) is used.
    type: str
    required: true
  passphrase:
    description:
      - The user passphrase of the device, used to log in.
      - The key derived from it is computed once per task; the token obtained is reused for every request of the task.
      - Mutually exclusive with O(token) on a task.
      - If neither O(passphrase) nor O(token) is set on the task, the environment variables E(ENCEDO_HEM_PASSPHRASE)
        and E(ENCEDO_HEM_TOKEN) are used. A task that sets O(token) ignores E(ENCEDO_HEM_PASSPHRASE).
    type: str
  token:
    description:
      - A bearer token from M(encedo.hem.encedo_login), to log in once per host and reuse the token in later tasks.
      - The token must have a scope that covers the task (V(system:config) covers every configuration endpoint).
      - A token stops working when it expires or when the device reboots; with O(token) alone the task then fails and
        the play must log in again.
      - Mutually exclusive with O(passphrase) on a task.
      - If neither O(passphrase) nor O(token) is set on the task, the environment variable E(ENCEDO_HEM_TOKEN) is used.
        A task that sets O(passphrase) ignores E(ENCEDO_HEM_TOKEN).
    type: str
  validate_certs:
    description:
      - Whether to verify the TLS certificate of the device.
      - Turning verification off lets anybody on the path intercept the connection; the task warns when it is off.
        Prefer O(ca_path).
      - If not set, the environment variable E(ENCEDO_HEM_VALIDATE_CERTS) is used.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file with the CA certificate(s) that signed the device TLS certificate (for example the vendor CA).
      - If not set, the CA bundle of the Python C(requests) library (C(certifi)) is used.
      - The environment variables E(REQUESTS_CA_BUNDLE) and E(CURL_CA_BUNDLE) are ignored on purpose, so that they never
        silently replace this choice. Proxy environment variables (E(HTTPS_PROXY), E(NO_PROXY)) are honoured.
      - If not set, the environment variable E(ENCEDO_HEM_CA_PATH) is used.
    type: path
  timeout:
    description:
      - Seconds to wait for the device, per request including its retries.
      - Reads are retried with exponential backoff on connection errors, timeouts and busy answers (HTTP 409, 429, 500, 503,
        honouring C(Retry-After)) until this time is used up. Writes are never sent twice.
      - If not set, the environment variable E(ENCEDO_HEM_TIMEOUT) is used.
    type: int
    default: 30
'''

    # Every module is in the action group `hem` (meta/runtime.yml), for module_defaults.
    ACTION_GROUP = r'''
options: {}
attributes:
  action_group:
    description: Use C(group/encedo.hem.hem) in C(module_defaults) to set the connection options once for every module.
    support: full
    membership:
      - encedo.hem.hem
'''
