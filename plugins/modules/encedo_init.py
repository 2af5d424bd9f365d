#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: encedo_init
short_description: Personalise a factory-fresh Encedo HEM
version_added: 1.0.0
description:
  - Personalises a factory-fresh device (C(GET) and C(POST /api/auth/init)), once in its life or after a wipe; sets the
    user and master keys, the user label, e-mail, hostname, IP address (PPA) and the initial options.
  - The secrets never leave the controller, only public keys are sent. The user key comes from O(passphrase) (PBKDF2
    salted with the device identity, as for a login). The master key comes from O(master_passphrase) the same way (as
    the vendor's JavaScript SDK derives it) or from a 24-word O(master_recovery_phrase) (as the vendor's web manager
    derives it).
  - The request is signed with the master key, as the vendor's clients sign it (web manager C(initFinal), SDK
    C(initialize)) - C(iss) and C(cfg.masterkey) are the master public key, the HMAC key is X25519(master private key,
    challenge C(spk)), and the claims are C(jti), C(aud), C(iat), C(exp) and C(cfg).
  - Unset PPA options get the values the vendor's web manager sends (C(ip) V(192.168.7.1/24), C(storage_mode)
    V(shown_readonly_ctr), C(storage_disk0size) 4 GiB, C(dnsd) V(false)), and O(origin) its V(*).
  - On a device that is already personalised the module changes nothing. When O(passphrase) is given it proves that the
    passphrase logs in, returns the device's RV(instanceid), and warns when the device's O(hostname) or O(ip) differ from
    the ones asked for (they cannot be changed without a wipe).
  - The device must have its clock set (M(encedo.hem.encedo_checkin)) before it can be personalised.
  - Every option is validated before the first request is sent; O(storage_disk0size) is also compared with the storage
    size the device reports in its status, before anything is sent to personalise it.
author:
  - encedo.hem maintainers (@encedo)
requirements:
  - mnemonic >= 0.21 (Python library by Trezor, on the host that runs the module), only for O(master_recovery_phrase)
extends_documentation_fragment:
  - encedo.hem.connection
  - encedo.hem.fresh_tls
  - encedo.hem.fresh_tls.http_url
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    details: Reads the device status only; sends nothing to personalise and does not log in.
    support: full
  diff_mode:
    details: Not supported; personalisation is one-shot.
    support: none
  idempotent:
    description: Personalises only a factory-fresh device; a second run reports no change.
    support: full
options:
  passphrase:
    description:
      - The user passphrase to set, and later to log in with.
      - Required to personalise a device. On a personalised device, when given, the module checks that it logs in.
      - A token (O(token)) cannot personalise a device; it is not used by this module.
      - If not set, the environment variable E(ENCEDO_HEM_PASSPHRASE) is used.
    type: str
  master_passphrase:
    description:
      - The master passphrase (role C(M) on the device), turned into the master key as the vendor's JavaScript SDK does
        (PBKDF2-HMAC-SHA256, 600,000 iterations, salted with the device identity, like the user key). It must differ
        from O(passphrase).
      - Mutually exclusive with O(master_recovery_phrase); one of the two is required to personalise a device. Not used on
        a personalised device.
    type: str
  master_recovery_phrase:
    description:
      - A 24-word BIP39 recovery phrase (English word list), the kind of master secret the vendor's web manager creates.
        The master key is derived exactly as the web manager derives it - the BIP39 seed (PBKDF2-HMAC-SHA512 of the words
        joined by single spaces, salt V(mnemonic), 2048 rounds) written as 128 hex digits, of which the digits 2 to 65
        (the web manager skips the first one) are the X25519 private key. A device personalised with this phrase can
        therefore also be managed with the web manager's recovery phrase.
      - Words may be separated by any white space. The phrase is checked before any request - 24 words, every word in the
        word list (lower case), valid checksum; error messages name the word position, never a word.
      - Only 24-word phrases are accepted - BIP39 also has shorter ones, but the web manager makes only 24-word phrases,
        so a shorter one is almost certainly incomplete and would set a master key you cannot reproduce with the manager.
      - Make one, for example, with the command python3 -c 'from mnemonic import Mnemonic; print(Mnemonic("english").generate(256))'
        and keep it offline or in a vault - it is the master key.
      - Mutually exclusive with O(master_passphrase). Needs the Python library C(mnemonic). Not used on a personalised device.
    type: str
  user:
    description:
      - The user label (display name) shown by the device, 1 to 32 characters (32 is the OpenAPI limit of C(user)).
      - Control characters such as tabs and line breaks are refused; the device shows the label in its web pages and in
        every login challenge.
    type: str
    required: true
  email:
    description:
      - Contact e-mail address stored on the device, in the form V(name@domain), at most 63 characters (the limit of the
        web manager's e-mail field). Empty by default.
    type: str
    default: ''
  hostname:
    description:
      - Host name of the device, for example V(my.ence.do) (the vendor's default) or V(hem1.example.com). It must be a DNS
        name - labels of letters, digits and hyphens (not at the start or end of a label), 1 to 63 characters each,
        separated by dots, at most 253 characters in all.
      - The web manager offers names under C(ence.do) (C(<prefix>.ence.do), registered with the vendor's backend); any DNS
        name works for the device itself.
      - The device puts it in the certificate requests it generates. It cannot be changed after personalisation.
    type: str
    required: true
  origin:
    description:
      - The CORS allow-list of the device API for browsers, for example V(*), V(https://app.example.com) or
        V(*.example.com); several entries are separated by commas. At most 63 characters (the limit of the web manager's
        origin field).
      - Default V(*), what the vendor's web manager sets. V(*) lets a web page from any site, open in a browser that can
        reach the device, call the device API from JavaScript; such calls still need a passphrase or token for anything
        beyond the public status, but a hostile page could, for example, try passphrases. To restrict it, give the sites
        that need the API (for the device's own web pages, V(https://<hostname>)), here or later with
        M(encedo.hem.encedo_config) (its O(encedo.hem.encedo_config#module:origin) option).
    type: str
    default: '*'
  trusted_ts:
    description:
      - Whether the device takes its time from the vendor backend (check-in). When on, logins are refused until a check-in
        sets the clock after every power-up or reboot. The web manager's default is also V(true).
    type: bool
    default: true
  trusted_backend:
    description:
      - Whether the vendor backend may control the device through check-in replies (lock, wipe, soft-brick, forced upgrade).
      - Default V(false), safer than the web manager's default (V(true)).
    type: bool
    default: false
  allow_keysearch:
    description:
      - Whether keys can be searched for without logging in.
      - Default V(false), safer than the web manager's default (V(true)).
    type: bool
    default: false
  ip:
    description:
      - PPA only. IPv4 address and prefix of the device on its USB network, in CIDR form, for example V(192.168.7.1/24).
        It cannot be changed after personalisation.
      - Default on a PPA V(192.168.7.1/24), the factory address and the web manager's default (the manager always sends
        a V(/24) prefix).
      - The prefix must be 8 to 30 and the address a host address of its network (not the network or broadcast address).
        These limits are not the device's (no source states one); they protect you - a V(/31) or V(/32) network leaves
        no address for the computer on the USB link, and a prefix under 8 would cover the addresses of other networks
        the computer reaches.
      - A value other than the factory one needs a reboot. Setting it for an EPA fails.
      - From the reboot that applies it the device answers at this address only. When that is neither the address O(url)
        reaches it at now nor V(192.168.7.1), the task refuses, before any request, an address that the controller has no
        route to, or reaches over another link than the device now (for example through its default route), as the next
        run could not reach the device. Otherwise it returns the new URL as RV(url) and warns that it is the one to use
        from the reboot on (M(encedo.hem.encedo_reboot) O(encedo.hem.encedo_reboot#module:new_url) follows the device there).
    type: str
  storage_mode:
    description:
      - PPA only. How the storage appears at power-up - whether disk 0 (the regular, unencrypted disk) is shown to the
        computer when the device is plugged in, and then read-only or writable - and the encryption mode of disk 1 (the
        secure, encrypted disk), CTR or XTS.
      - Give a name or its number (decimal or hex) - V(shown_readonly_ctr) (81, 0x51; disk 0 shown read-only, disk 1 in
        CTR mode), V(shown_readonly_xts) (161, 0xA1; shown read-only, XTS), V(shown_writable_ctr) (83, 0x53; shown
        writable, CTR), V(shown_writable_xts) (163, 0xA3; shown writable, XTS), V(hidden_ctr) (80, 0x50; disk 0 not
        shown, CTR), V(hidden_xts) (160, 0xA0; not shown, XTS).
      - These six are the values the vendor's web manager sets (its choices "Show regular disk on start", "Regular disk
        on start - Read-only/Writable" and "Storage encryption mode - CTR/XTS"). Other numbers are refused - the meaning
        of other values is not documented, so the module does not send them.
      - Default on a PPA V(shown_readonly_ctr) (81), the web manager's default. Setting it for an EPA fails.
    type: raw
  storage_disk0size:
    description:
      - PPA only. Size of disk 0 in sectors of 512 bytes (one GiB is 2097152 sectors); disk 1 gets the rest of the
        storage.
      - Default on a PPA V(8388608) (4 GiB), the web manager's default. The web manager offers whole GiB from 1 to the
        storage size; any number of sectors from 0 to the storage size the device reports in its status is sent as given.
      - Setting it for an EPA fails.
    type: int
  dnsd:
    description:
      - PPA only. Whether the built-in DNS server is on.
      - Default on a PPA V(false), what the web manager sends. Setting it for an EPA fails.
    type: bool
  ctx:
    description:
      - Instance context number, 0 to 4294967295. Not sent when not set (the device keeps V(0); the web manager sends V(0)).
      - The range is not the device's (the OpenAPI file gives none); it keeps the value within an unsigned 32-bit number,
        so that a device that stores less cannot silently truncate it.
    type: int
  gen_csr:
    description:
      - Whether the device also generates a TLS certificate signing request, returned in RV(csr). The request names
        O(hostname) and, on a PPA, the address of O(ip).
      - The device makes a new TLS key for it (the OpenAPI file - "generate a TLS key + CSR") and keeps serving its
        current certificate until a certificate for the new key is uploaded (M(encedo.hem.encedo_tls)) and the device
        reboots.
    type: bool
    default: false
  format_timeout:
    description:
      - PPA only. Seconds to wait after the personalisation for the device to format its storage (the vendor's web manager
        waits for it too); the tasks after this one then meet a device that accepts configuration changes.
      - When O(storage_disk0size) differs from the size the device shows, the task also waits up to 30 seconds for the
        format to start.
      - The task returns RV(reformatted) and RV(format_seconds). O(timeout) stays the limit of each single request.
    type: int
    default: 300
notes:
  - O(token) cannot personalise a device (there is no token before personalisation).
  - Two PBKDF2 key derivations (600,000 iterations each) run on the controller when a device is personalised with two
    passphrases; a recovery phrase costs 2048 rounds only.
  - With the web manager's storage defaults a PPA needs a reboot after its personalisation (RV(reboot_required)).
  - The module does not reboot the device, and a O(hostname) other than C(my.ence.do) alone does not make
    RV(reboot_required) true. The vendor's web manager reboots in that case because it has just stored a TLS bundle for
    the new name from the vendor's domain registration, which the device serves after a reboot; this module stores no
    such bundle. Upload the certificate for the new name with M(encedo.hem.encedo_tls), which returns
    RV(reboot_required), and reboot then (M(encedo.hem.encedo_reboot); the role C(encedo.hem.device) does both).
seealso:
  - module: encedo.hem.encedo_checkin
    description: Sets the device clock, needed before personalisation.
  - module: encedo.hem.encedo_config
    description: Changes the configuration after personalisation.
  - module: encedo.hem.encedo_reboot
    description: Reboots the device when RV(reboot_required) is true.
'''

EXAMPLES = r'''
- name: Personalise a new PPA as the web manager would (4 GiB disk 0 shown read-only, disk 1 CTR, origin *)
  encedo.hem.encedo_init:
    url: https://192.168.7.1
    ca_path: /etc/ssl/encedo-ca.pem
    passphrase: "{{ vault_hem_passphrase }}"
    master_recovery_phrase: "{{ vault_hem_recovery_phrase }}"
    user: Jane Doe
    email: jane@example.com
    hostname: my.ence.do
  register: hem_init

- name: Personalise a PPA with a master passphrase, its own name and address, and a narrower CORS origin
  encedo.hem.encedo_init:
    url: https://192.168.7.1
    ca_path: /etc/ssl/encedo-ca.pem
    passphrase: "{{ vault_hem_passphrase }}"
    master_passphrase: "{{ vault_hem_master_passphrase }}"
    user: Ops team
    hostname: hem1.example.com
    origin: https://hem1.example.com
    ip: 192.168.7.1/24
    storage_mode: hidden_xts
    storage_disk0size: 2097152      # 1 GiB
    gen_csr: true
  register: hem_init

- name: Reboot when the new settings need it
  encedo.hem.encedo_reboot:
    url: https://192.168.7.1
    ca_path: /etc/ssl/encedo-ca.pem
    passphrase: "{{ vault_hem_passphrase }}"
  when: hem_init.reboot_required
'''

RETURN = r'''
personalised:
  description: Whether the device is personalised after the task (always true unless in check mode).
  returned: always
  type: bool
  sample: true
model:
  description: The device model, V(ppa) or V(epa).
  returned: always
  type: str
  sample: ppa
instanceid:
  description: The device instance UUID for remote management.
  returned: when the device was personalised by the task, or was already and O(passphrase) was given
  type: str
  sample: 8c1f0a52-3a4e-4b8e-9a0d-2f6c1b7e5d10
url:
  description:
    - The URL the device answers at from its next reboot on, when O(ip) moves it (the address of O(url) replaced by that of
      O(ip)). Use it as O(url) (the inventory's C(encedo_hem_url)) from then on; the task also warns.
  returned: when the device was personalised with an O(ip) that moves it
  type: str
  sample: https://192.168.7.5
reboot_required:
  description:
    - Whether the device must reboot before the new network or storage settings apply (the device's answer).
    - In check mode, the prediction - a PPA needs a reboot when the O(ip), O(dnsd), O(storage_mode) or O(storage_disk0size)
      to be sent differ from the values of a factory-fresh device (address V(192.168.7.1/24); the DNS server setting and the
      storage layout of a fresh device are not documented and taken as the web manager's defaults, V(false) and
      V(shown_readonly_ctr) with 4 GiB).
  returned: always
  type: bool
  sample: false
sent:
  description: Names of the configuration fields sent to personalise the device (never their values).
  returned: when the device was personalised
  type: list
  elements: str
  sample: [allow_keysearch, dnsd, email, hostname, ip, masterkey, origin, storage_disk0size, storage_mode, trusted_backend,
           trusted_ts, user, userkey]
reformatted:
  description: Whether the device formatted its storage after the personalisation (the task waited for it).
  returned: when a PPA was personalised
  type: bool
  sample: true
format_seconds:
  description: How long the task waited for the storage format, in seconds.
  returned: when RV(reformatted) is true
  type: int
  sample: 3
csr:
  description: The PEM certificate signing request the device generated.
  returned: when O(gen_csr=true) and the device was personalised
  type: str
genuine:
  description: The device's attestation token returned with the personalisation (verify it with M(encedo.hem.encedo_attestation)).
  returned: when the device was personalised and returned one
  type: str
https:
  description: Whether the device's HTTPS server runs; V(false) means it has no TLS bundle (see O(tls_bundle)).
  returned: when HTTPS answered, or the plain-HTTP status said whether it runs
  type: bool
tls_bundle_stored:
  description: Whether the task stored O(tls_bundle) on a device without a TLS bundle (in check mode, whether it would).
  returned: always
  type: bool
'''

from ansible_collections.encedo.hem.plugins.module_utils import _fields, _tls_bundle
from ansible_collections.encedo.hem.plugins.module_utils._engine import converge
from ansible_collections.encedo.hem.plugins.module_utils._init import PersonalisationResource, validate
from ansible_collections.encedo.hem.plugins.module_utils._module import HemModule


def run(module, client, status=None):
    return converge(module, client, PersonalisationResource(module), want=module.params, current=status)


def main():
    argument_spec = dict(
        master_passphrase=dict(type='str', no_log=True),
        master_recovery_phrase=dict(type='str', no_log=True),
        format_timeout=dict(type='int', default=300),
    )
    argument_spec.update(_fields.argument_spec('init'))   # the table's fields; their rules are _fields.check's
    argument_spec.update(_tls_bundle.fresh_argument_spec())
    module = HemModule(argument_spec=argument_spec, supports_check_mode=True,
                       mutually_exclusive=[('master_passphrase', 'master_recovery_phrase')])
    module.run(_tls_bundle.run_with_tls_bundle(run), check=validate)


if __name__ == '__main__':
    main()
