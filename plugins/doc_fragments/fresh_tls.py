# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    # The options of plugins/module_utils/_tls_bundle.py:fresh_argument_spec() (a device without a TLS
    # bundle): HTTP_URL for every module that detects one (encedo_info, encedo_init,
    # encedo_factory_reset), DOCUMENTATION (tls_bundle) for those that can store one (encedo_info,
    # encedo_init). Plain string literals: ansible-test's yamllint reads them without running Python.

    HTTP_URL = r'''
options:
  http_url:
    description:
      - The plain-HTTP address of the device, used only when HTTPS at O(url) cannot be reached (connection refused or reset,
        TLS failure), to read its status and tell whether the device has no TLS bundle (its HTTPS server is off until one
        is stored).
      - Default - V(http://<host of url>), port 80, where a real device serves plain HTTP. Set it when plain HTTP is
        elsewhere, for example on the HEM emulator, whose plain-HTTP port is not 80.
      - Nothing secret is sent there. The plain-HTTP requests carry no token and no passphrase.
      - If not set, the environment variable E(ENCEDO_HEM_HTTP_URL) is used.
      - Not one of the connection options of every module. Set it per task or through the environment variable, not with
        C(module_defaults) for C(group/encedo.hem.hem).
    type: str
'''

    DOCUMENTATION = r'''
options:
  tls_bundle:
    description:
      - A TLS bundle for a device that has none, stored only when the device needs it. That is when HTTPS at O(url) fails,
        the plain-HTTP status at O(http_url) says C(https) is V(false), and the device is not personalised yet. Ignored
        on a device whose HTTPS server answers, so a second run changes nothing.
      - The bundle is what the vendor's web manager gets from the vendor backend's domain registration - a
        certificate and its private key encrypted to the device. The collection does not contact the vendor backend.
      - It is sent without a login, over plain HTTP, in C(POST /api/system/config) (the only way the firmware takes a
        first bundle). The private key travels encrypted to the device, and the certificate is public. The task then
        waits, up to O(timeout), until HTTPS answers and verifies with O(ca_path), and goes on over HTTPS.
      - The firmware documentation says HTTPS starts when the bundle is stored; the vendor's rescue page reboots the
        device after storing one. Both are handled - when HTTPS does not answer within 5 seconds and the plain-HTTP status
        still says C(https) is V(false), the task reboots the device over plain HTTP (without a login, which a device
        that is not personalised accepts) and waits up to 90 seconds (or O(timeout), when longer) for HTTPS. The device's
        clock is then unset until a check-in (M(encedo.hem.encedo_checkin)); the message in the result says so.
      - Only with an V(https://) O(url). With a plain V(http://) O(url) nothing is detected or stored, and the status in
        the result shows C(https) as the device reports it.
      - Checked before any request. The certificate must not be expired. With O(validate_certs), it must name the host
        of O(url), and when O(ca_path) is a file, it must be issued by a CA in it.
    type: dict
    suboptions:
      emp:
        description:
          - The ephemeral P-256 public key of the key transport, base64 of the 65-byte uncompressed point
            (C(04 || X || Y)). This is the form M(encedo.hem.encedo_tls) takes as O(encedo.hem.encedo_tls#module:key_import.emp).
          - Requires O(tls_bundle.key). Without both, O(tls_bundle.crt) must match the key the device already holds.
        type: str
      key:
        description:
          - The certificate's private key encrypted to the device, C(<base64 IV>.<base64 AES-256-CBC ciphertext>), exactly
            113 characters. This is the form M(encedo.hem.encedo_tls) takes as O(encedo.hem.encedo_tls#module:key_import.key).
        type: str
      crt:
        description:
          - The device certificate, PEM or base64 DER, a single certificate. It is sent as base64 DER.
        type: str
        required: true
'''
