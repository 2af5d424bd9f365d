#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: encedo_config
short_description: Manage the configuration of an Encedo HEM device
version_added: 1.0.0
description:
  - Declaratively manages the settable fields of the device configuration (C(POST /api/system/config)), and rotates the
    user passphrase.
  - Reads the configuration, compares only the options the task sets (both sides normalised, so V("2") equals V(2) and
    V(yes) equals V(true)), and sends the fields that differ in one request. When nothing differs, nothing is sent.
  - Options that are not set are left alone on the device.
  - Every option is checked before the first request; the device checks them again and accepts all or nothing.
author:
  - encedo.hem maintainers (@encedo)
extends_documentation_fragment:
  - encedo.hem.connection
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the configuration and predicts RV(changed), RV(sent), RV(reboot_required) and the diff exactly, without sending any change.
  diff_mode:
    support: full
    details: The diff holds the before and after of the changed fields only. The passphrase is never shown.
  idempotent:
    description: When run twice with the same options, the second run reports no change and sends nothing.
    support: full
options:
  user:
    description:
      - The user name (display name) of the device, 1 to 32 characters (32 is the limit of the device's API; the vendor's
        web manager allows letters, digits and blanks only, which the device does not require; empty is refused as a likely
        unset variable).
      - Tabs, line breaks and other control or invisible characters are refused before anything is sent (nearly always a
        copy-and-paste or templating accident); the message names the character. The same rules as
        M(encedo.hem.encedo_init) (one table of fields serves both modules).
    type: str
  email:
    description:
      - Contact e-mail address. An empty string clears it.
      - It must look like an address (one C(@), no blanks), a weaker form of the check the vendor's web manager makes, to
        catch typos, and have at most 63 characters, the limit of the web manager's e-mail field. The device's API sets
        no length; a longer value might be refused or stored shortened (then every run would report a change), so the
        module keeps the manager's limit, as M(encedo.hem.encedo_init) does. No control characters.
    type: str
  origin:
    description:
      - CORS allow-list for browsers calling the device API, for example V(*), V(https://app.example.com) or V(*.example.com).
      - Requests whose C(Origin) header does not match are refused by the device (HTTP 412). An empty string lets no
        browser page call the API.
      - At most 63 characters, the limit of the web manager's origin field (the device's API sets none; kept for the
        reason given for O(email)). No control characters.
    type: str
  allow_keysearch:
    description:
      - Whether keys may be searched for without authentication.
    type: bool
  trusted_ts:
    description:
      - Whether the vendor backend is a trusted time source.
      - When true, the device refuses logins after every power-up or reboot until a check-in sets its clock.
    type: bool
  trusted_backend:
    description:
      - Whether the vendor backend is trusted and may control the device (lock, wipe, upgrade) through check-ins.
    type: bool
  ctx:
    description:
      - Instance context id, an integer from V(0) to V(4294967295).
      - The device's API documents only "an integer" (the vendor's clients send V(0)); the module refuses negative values and
        values beyond 32 bits because a device may store them as another number, and the task would then report a change at
        every run.
    type: int
  http_option_hsts:
    description:
      - Whether the device sends HSTS security headers.
    type: bool
  http_option_dosprot_mode:
    description:
      - Time allowed to finish an HTTP request, in 0.5 second steps, from V(0) (off) to V(4) (the range of the device's API).
    type: int
  dnsd:
    description:
      - Whether the built-in DNS server is enabled.
      - PPA (MSC build) only; the task fails on an EPA before sending anything.
      - Takes effect after a reboot (RV(reboot_required)).
    type: bool
  storage_mode:
    description:
      - How disk 0 (the regular disk) appears when the device starts, and how disk 1 (the secure disk) is encrypted.
      - One of the six values the vendor's web manager uses, by name or by number - V(shown_readonly_ctr) (V(81), 0x51),
        V(shown_readonly_xts) (V(161), 0xA1), V(shown_writable_ctr) (V(83), 0x53), V(shown_writable_xts) (V(163), 0xA3),
        V(hidden_ctr) (V(80), 0x50), V(hidden_xts) (V(160), 0xA0). C(shown)/C(hidden) - whether disk 0 is shown on start;
        C(readonly)/C(writable) - its access on start; C(ctr)/C(xts) - the disk 1 encryption mode. The device reports the
        number.
      - The device firmware documents the field only as an integer; no source says what other values do to the disks, so
        the module refuses them.
      - A change of the disk 1 encryption (C(ctr) to C(xts) or back) formats the storage and erases its data (the vendor's
        manager warns so), so it is refused unless O(allow_reformat=true). As the manager does, the task then sends the
        disk 0 size with the new mode (O(storage_disk0size), or the size the device holds; RV(sent) lists it) and waits
        as for O(storage_disk0size).
      - PPA (MSC build) only; the task fails on an EPA before sending anything.
      - Disk 0 visibility and access apply when the device starts (RV(reboot_required)).
    type: raw
  storage_disk0size:
    description:
      - Size of disk 0 in sectors of 512 bytes, from V(0) to the device's C(storage_capacity); disk 1 gets the rest. The
        vendor's manager uses whole GiB (V(2097152) sectors each, for example V(8388608) for 4 GiB); any whole number of
        sectors is accepted (a device personalised by the vendor may hold V(8388607)).
      - Changing it makes the device B(format its storage and erase the data on both disks), so a change is refused unless
        O(allow_reformat=true). Setting it to the current size is always fine.
      - The device starts the format when it accepts the change. The task then waits until the format is over (at most
        O(format_timeout) seconds, polling the device status every second) and returns RV(reformatted) and the new split
        in RV(storage). While the format runs the device refuses configuration changes (HTTP 409); do not unplug it.
      - PPA (MSC build) only; the task fails on an EPA before sending anything.
    type: int
  allow_reformat:
    description:
      - Allow a change that formats the storage and erases its data - a new O(storage_disk0size), or a new disk 1
        encryption in O(storage_mode).
    type: bool
    default: false
  format_timeout:
    description:
      - Seconds to wait, counted from the device's answer, for a storage format to finish.
      - A task that formats runs this long at most; the vendor's manager expects about 30 seconds.
      - O(timeout) stays the limit of each single request.
    type: int
    default: 300
  full_config:
    description:
      - Return the whole device configuration in RV(config), not only the fields the task declares.
      - Off by default so that results stay small when a play runs over a fleet.
    type: bool
    default: false
  hostname:
    description:
      - The host name the device was personalised with. The device does not allow changing it afterwards.
      - A DNS name, as in M(encedo.hem.encedo_init) - labels of 1 to 63 letters, digits and hyphens (not at the start or end
        of a label) separated by dots, at most 253 characters; a name that module refuses is refused before any request.
      - Use it to assert the value. When it differs (case and a trailing dot ignored), the task fails before sending
        anything; only a factory reset and a new personalisation change it.
    type: str
  ip:
    description:
      - The IP address (CIDR form, V(192.168.7.1/24)) the device was personalised with. The device does not allow changing
        it afterwards.
      - An IPv4 host address, with a prefix of 8 to 30 when one is given (the limits of M(encedo.hem.encedo_init)).
      - Use it to assert the value. Without a prefix length only the address is compared. When it differs, the task fails
        before sending anything.
    type: str
  new_passphrase:
    description:
      - Rotate the user passphrase to this value.
      - The task first tries to log in with O(new_passphrase). When that works, the passphrase is already rotated; nothing
        is sent for it, and the rest of the task uses that login (so a task that keeps O(passphrase) set to the old value
        keeps working after the rotation).
      - Otherwise the task logs in with O(passphrase) (or uses O(token)) and sends the new key with the proof the device
        requires (C(userkey), C(userkey_nonce), C(userkey_hmac)), in the same request as the other changed fields.
      - The first try costs one login attempt (at least 0.5 seconds on a real device), also in check mode. It is a failed
        login attempt when the passphrase is not rotated yet; see the notes.
      - The new passphrase is never returned or shown in a diff.
    type: str
notes:
  - The device delays every login answer to at least 0.5 seconds, and to 1.5 seconds after 3 consecutive failed logins,
    until a login succeeds. With O(new_passphrase), the run that rotates makes one failed attempt (the new passphrase)
    followed by a successful one (the old passphrase), so it never reaches the slow-down; every later run logs in with the
    new passphrase at the first try. Only when neither passphrase works does a run make two failed attempts; the task then
    fails, and repeating it quickly pushes the device into its slow mode.
  - A no-op run costs one request with O(token) (the configuration read) and three with O(passphrase) (two for the login).
  - The device applies a change of O(dnsd) or O(storage_mode) at the next boot; reboot it
    (for example with M(encedo.hem.encedo_reboot)) when RV(reboot_required) is true.
  - A change of O(storage_disk0size) (or of the disk 1 encryption) makes the task wait for the device to format its
    storage, up to O(format_timeout) seconds (after a new O(storage_disk0size) first for the format to start, up to 30 seconds,
    then for it to end). Ansible shows nothing while it waits; the result says how long it took (RV(format_seconds)).
seealso:
  - module: encedo.hem.encedo_info
  - module: encedo.hem.encedo_login
  - module: encedo.hem.encedo_factory_reset
'''

EXAMPLES = r'''
- name: Log in once per host, reuse the token
  encedo.hem.encedo_login:
    url: https://my.ence.do
    passphrase: "{{ hem_passphrase }}"
  register: hem_login
  no_log: true

- name: Configure the device
  encedo.hem.encedo_config:
    url: https://my.ence.do
    token: "{{ hem_login.token }}"
    user: Operations
    email: ops@example.com
    origin: "https://app.example.com"
    trusted_ts: true
    http_option_hsts: true
    http_option_dosprot_mode: 2
  register: hem_config

- name: Reboot when a change needs it
  encedo.hem.encedo_reboot:
    url: https://my.ence.do
    passphrase: "{{ hem_passphrase }}"
  when: hem_config.reboot_required

- name: Rotate the user passphrase (idempotent; keep passphrase set to the old value)
  encedo.hem.encedo_config:
    url: https://my.ence.do
    passphrase: "{{ hem_old_passphrase }}"
    new_passphrase: "{{ hem_new_passphrase }}"

- name: Resize disk 0 to 8 GiB (formats the storage and erases both disks; waits for the format)
  encedo.hem.encedo_config:
    url: https://my.ence.do
    passphrase: "{{ hem_passphrase }}"
    storage_disk0size: 16777216
    allow_reformat: true
    format_timeout: 120
  register: hem_storage

- name: Show the new split
  ansible.builtin.debug:
    msg: "disk 0 {{ hem_storage.storage[0].sectors }} sectors, disk 1 {{ hem_storage.storage[1].sectors }} sectors"
  when: hem_storage.reformatted

- name: Hide disk 0 on start, keep CTR encryption (applies at the next boot)
  encedo.hem.encedo_config:
    url: https://my.ence.do
    passphrase: "{{ hem_passphrase }}"
    storage_mode: hidden_ctr
'''

RETURN = r'''
changed:
  description: Whether a change was sent (in check mode, whether one would be).
  returned: always
  type: bool
reboot_required:
  description:
    - True when the device said so, or when a changed field takes effect at the next boot (O(dnsd), O(storage_mode)).
  returned: always
  type: bool
  sample: false
updated:
  description:
    - The device's own answer (C(updated)), whether a stored setting really changed. V(false) when nothing was sent.
  returned: always
  type: bool
  sample: true
reformatted:
  description:
    - Whether the device formatted its storage in this run (a new O(storage_disk0size) or disk 1 encryption) - V(true)
      only when a status read showed the format running, and the task waited for it to end. In check mode, whether it
      would.
    - After a storage change that no status read showed formatting (within 30 s, or O(format_timeout) if shorter), V(false)
      with a warning - the format may have run between two reads, or the device did not format.
  returned: always
  type: bool
  sample: false
format_seconds:
  description: Seconds the task waited for the storage format.
  returned: when RV(reformatted) is true and not in check mode
  type: int
  sample: 12
storage:
  description:
    - The storage split the device status reports after the format - one entry per disk (disk 0, then disk 1), with its
      size in C(sectors) of 512 bytes and its C(access) (V(rw), V(ro), or V(-) for locked or hidden).
  returned: when RV(reformatted) is true, not in check mode, and the device reports its storage
  type: list
  elements: dict
  sample: [{sectors: 8388608, access: rw}, {sectors: 112590843, access: "-"}]
sent:
  description:
    - Names of the fields sent (or, in check mode, that would be sent), sorted. Never values.
    - A rotation adds C(userkey), C(userkey_hmac) and C(userkey_nonce).
  returned: always
  type: list
  elements: str
  sample: [email, user]
config:
  description:
    - The declared fields of the device configuration after the task (re-read after a change; predicted in check mode),
      in the types of the options. With O(full_config=true), the whole configuration, without the per-request
      C(nonce), C(spk) and timestamps. Never a secret.
  returned: success
  type: dict
  sample:
    user: Operations
    email: ops@example.com
    http_option_dosprot_mode: 2
token:
  description:
    - The new bearer token, when the device refused O(token) (it expired, or the device rebooted) and the task logged in
      again with O(passphrase). Pass it to the next tasks instead of the old one.
    - The output of a task that returns it is hidden, like with C(no_log); the registered variable still holds it.
  returned: when the task logged in again because the device refused O(token)
  type: str
  sample: eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzY29wZSI6InN5c3RlbTpjb25maWcifQ.c2lnbmF0dXJl
'''

from ansible_collections.encedo.hem.plugins.module_utils import _fields
from ansible_collections.encedo.hem.plugins.module_utils._config import ConfigResource
from ansible_collections.encedo.hem.plugins.module_utils._engine import converge
from ansible_collections.encedo.hem.plugins.module_utils._module import HemModule


def run(module, client):
    return converge(module, client, ConfigResource(module))


def main():
    spec = _fields.argument_spec('config')     # the table's fields; their rules are _fields.check's
    spec.update(
        allow_reformat=dict(type='bool', default=False),
        format_timeout=dict(type='int', default=300),
        full_config=dict(type='bool', default=False),
        new_passphrase=dict(type='str', no_log=True),
    )
    module = HemModule(argument_spec=spec, supports_check_mode=True)
    module.run(run)


if __name__ == '__main__':
    main()
