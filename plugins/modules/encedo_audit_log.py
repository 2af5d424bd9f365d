#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: encedo_audit_log
short_description: Fetch and verify the audit log files of an Encedo HEM
version_added: 2.0.0
description:
  - Fetches the device's audit log files (C(GET /api/logger/{file})) that are not yet in O(dest), a directory on the host
    that runs the module, and verifies each as the vendor's web manager does before keeping it as C(dest/<id>.log).
  - "Verification: the file's seed line carries a line key signed (Ed25519) by the device's logger key; every line ends
    with a MAC (HMAC-SHA256, first 16 bytes) keyed with that line key; the line counters go up by one without a gap or a
    repeat (the manager also accepts a repeated counter; this module does not)."
  - The device proves that it holds the logger key it serves (C(GET /api/logger/key) signs a fresh nonce of the device).
  - The logger key is recorded in C(dest/encedo-hem-audit.json) at the first fetch; a later run fails, fetching nothing,
    when the device serves another key (a factory reset makes a new one; a replaced device has its own).
  - A file that does not verify is kept apart in C(dest/quarantine/<id>.log) and fails the task, in this run and in every
    later run while C(dest/encedo-hem-audit.json) records it (the evidence is kept; it is not fetched again).
  - A file is never fetched twice (C(dest/encedo-hem-audit.json) lists the files fetched). The file of the current boot is
    locked by the device (HTTP 406) and is skipped; it is fetched by the first run after the next power-up or reboot.
  - "What the verification cannot prove: the line key travels inside the file, so anyone who can write the file can
    rewrite lines after the seed and compute new MACs; only the seed is bound to the device. Lines cut off at the end of a
    file cannot be seen (nothing records how many lines a file has). The time fields are the device clock, which counts
    from 0 after a power-up until a check-in sets it."
  - Files are streamed to disk, up to 64 MiB each (a larger answer is refused and not kept); each file must arrive within
    O(timeout) seconds (raise it for large files over a slow link).
  - The module logs in with the scope C(logger:get) (a O(token) must have that scope). Reading the log is itself logged by
    the device (files listed, file read). An EPA has no log files (only the key), so RV(supported) is false and nothing is
    fetched.
author:
  - encedo.hem maintainers (@encedo)
extends_documentation_fragment:
  - encedo.hem.connection
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the key and the list and returns in RV(files) the files that would be fetched; nothing is fetched or written.
  diff_mode:
    support: full
    details: The diff holds the file ids kept in O(dest) before and after the run.
  idempotent:
    description: A second run fetches nothing until the device closes another file (at its next power-up or reboot).
    support: full
options:
  dest:
    description:
      - The directory, on the host that runs the module, where the log files and the record C(encedo-hem-audit.json) are
        kept (created when missing). One directory per device.
      - To bring files from a server a PPA is plugged into to the controller, run the module there and copy O(dest) with
        M(ansible.builtin.fetch) or M(ansible.posix.synchronize).
    type: path
    required: true
notes:
  - The current boot's file is the last one the device lists (the emulator's order; the device's API does not document
    the order). Should the device lock another file, it is skipped (RV(locked)) and fetched by a later run.
seealso:
  - name: Audit log (README)
    description: How the log is verified and what it cannot prove.
    link: https://github.com/encedo/ansible-collection-hem#audit-log
'''

EXAMPLES = r'''
- name: Fetch and verify the audit log files of a device
  encedo.hem.encedo_audit_log:
    url: https://hem1.example.com
    passphrase: "{{ hem_passphrase }}"
    dest: "/var/lib/encedo-audit/{{ inventory_hostname }}"
  register: audit

- name: What would be fetched
  encedo.hem.encedo_audit_log:
    url: https://hem1.example.com
    passphrase: "{{ hem_passphrase }}"
    dest: "/var/lib/encedo-audit/{{ inventory_hostname }}"
  check_mode: true
'''

RETURN = r'''
changed:
  description: Whether a file was fetched (in check mode, would be).
  returned: always
  type: bool
sent:
  description: Always empty (reading the log sends nothing to the device).
  returned: always
  type: list
  elements: str
  sample: []
supported:
  description: Whether the device has log files to read (PPA). False on an EPA.
  returned: success
  type: bool
  sample: true
dest:
  description: The absolute path of O(dest).
  returned: success
  type: str
  sample: /var/lib/encedo-audit/hem1
logger_key:
  description: The device's logger key (Ed25519 public key, base64), as recorded.
  returned: success
  type: str
  sample: 3j8b0cEo2C1M1m7bA7g8l6Zf8tYfC1N5jVYH2rW9m3s=
files:
  description: The ids of the files fetched in this run (in check mode, that would be fetched), in the device's order.
  returned: success
  type: list
  elements: str
  sample: ["6942a1c0", "6942b3f1"]
verified:
  description: The ids of the files fetched in this run that verified (kept as C(dest/<id>.log)).
  returned: success
  type: list
  elements: str
  sample: ["6942a1c0", "6942b3f1"]
quarantined:
  description: The ids of the files in O(dest) that did not verify (kept in C(dest/quarantine)); the task fails when there is one.
  returned: success, and in the result of the failed task
  type: list
  elements: str
  sample: []
problems:
  description: Why each file of RV(quarantined) did not verify, by id.
  returned: success, and in the result of the failed task
  type: dict
  sample: {"6942a1c0": "line 3: the mac does not match (the line was changed)"}
locked:
  description: The id of the current boot's file (locked by the device, not fetched).
  returned: success
  type: list
  elements: str
  sample: ["6942c402"]
events:
  description:
    - The number of lines of each event type in the files verified in this run, by the names of the vendor manager's list
      (V(seed), V(power_up), V(reboot), V(logs_listed), V(log_read), V(token_password), V(config_updated), V(clock_set),
      V(personalised), V(key_generated)...; an unknown type as V(type_<n>)).
  returned: success
  type: dict
  sample: {"seed": 1, "power_up": 1, "token_password": 3, "config_updated": 1, "reboot": 1}
verified_total:
  description: The number of verified files kept in O(dest), this run's included.
  returned: success
  type: int
  sample: 12
diff:
  description: With C(--diff), the file ids kept in O(dest) before and after.
  returned: when files were (or would be) fetched and C(--diff) is on
  type: dict
'''

from ansible_collections.encedo.hem.plugins.module_utils._audit_log import AuditLogResource, quarantine_failure
from ansible_collections.encedo.hem.plugins.module_utils._engine import converge
from ansible_collections.encedo.hem.plugins.module_utils._module import HemModule


def run(module, client):
    result = converge(module, client, AuditLogResource(module))
    failure = quarantine_failure(result)
    if failure:
        raise failure
    return result


def main():
    module = HemModule(argument_spec=dict(dest=dict(type='path', required=True)), supports_check_mode=True)
    module.run(run)


if __name__ == '__main__':
    main()
