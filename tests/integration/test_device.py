# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""encedo_device: one module run for a whole device, its main() run in this process (helpers/inprocess.py
ModuleRunner) against the emulator over real HTTPS.

The four-step shape (check mode, apply, apply again, check mode again) with the emulator's request
log as the proof: a device with nothing to change costs one login and five requests; what differs
is sent once, in one POST; a certificate that is due brings a CSR; a device that is not set up is
reported not ready without a login. Bad input of every step is refused before any request in the
unit table (tests/unit/plugins/modules/test_bad_input.py). What only a playbook shows (the role that runs this
module, its handlers and reboot, its output at -vvvv) is proven by tests/integration/test_role.py and
tests/reliability/test_secrets.py.
"""

from __future__ import annotations

import pytest

from tests.emulator.util import write_ca
from tests.integration.helpers.inprocess import ModuleRunner

PW = "device-pass-1"
NOOP = [("GET", "/api/system/status"), ("GET", "/api/auth/token"), ("POST", "/api/auth/token"),
        ("GET", "/api/system/config"), ("GET", "/api/system/config/attestation")]


@pytest.fixture(scope="module")
def fleet(emulator_module):
    return emulator_module(devices=3, passphrase=PW, rtc_set=True, auth_delay=0.0, reboot_seconds=1.0)


def run(emu, i, args, check=False, diff=False):
    """encedo_device on device i (url, ca_path and the emulator's passphrase, then args), in-process;
    -> (its result, the requests it sent, the request log)."""
    emu.clear_log(i)
    found = ModuleRunner(emu, i)("encedo.hem.encedo_device", args, check=check, diff=diff)
    return found, [(e["method"], e["path"]) for e in emu.log(i)], emu.log(i)


def test_four_steps_one_login_five_requests(fleet):
    i = 0
    args = {"config": {"user": "Device module", "allow_keysearch": True, "http_option_dosprot_mode": 2},
            "attestation": {"trust_anchor_path": "{{ hem_custody_ca_path }}"}}
    check, requests, dummy = run(fleet, i, args, check=True, diff=True)
    assert not check.get("failed") and check["changed"] and check["ready"]
    assert [r for r in requests if r[0] == "POST"] == [("POST", "/api/auth/token")], requests
    assert check["configuration"]["sent"] == ["allow_keysearch", "http_option_dosprot_mode", "user"]
    assert check["attestation"]["attestation"]["verified"]
    assert check["diff"][0]["after"]["user"] == "Device module"

    apply, requests, log = run(fleet, i, args)
    assert apply["changed"] and apply["configuration"]["config"]["user"] == "Device module"
    posts = [e for e in log if e["method"] == "POST" and e["path"] == "/api/system/config"]
    assert [sorted(p["keys"]) for p in posts] == [["allow_keysearch", "http_option_dosprot_mode", "user"]]
    assert fleet.state(i)["config"]["user"] == "Device module"
    assert apply["reboot_required"] is False and apply["reboot_reasons"] == []

    again, requests, dummy = run(fleet, i, args)
    assert not again["changed"]
    assert requests == NOOP, requests          # one login, nothing else written, the configuration read once

    check_again, requests, dummy = run(fleet, i, args, check=True)
    assert not check_again["changed"] and requests == NOOP


def test_a_due_certificate_brings_a_csr_and_a_current_one_costs_no_request(fleet, tmp_path):
    i = 1
    cert, cert_path, key_path = write_ca(tmp_path, "Device module CA")
    args = {"tls": {"issuer_ca_path": cert_path, "remaining_days": 30}}
    check, requests, dummy = run(fleet, i, args, check=True)
    assert check["changed"] and check["certificate"]["csr_needed"] and check["certificate"]["csr"] is None
    assert requests == [("GET", "/api/system/status")], requests     # the served certificate: the status read's handshake
    due, requests, log = run(fleet, i, args)
    assert due["certificate"]["csr"].startswith("-----BEGIN CERTIFICATE REQUEST-----")
    assert due["certificate"]["csr_reasons"] == ["the served certificate is not issued by the CA in issuer_ca_path"]
    assert [e["keys"] for e in log if e["method"] == "POST" and e["path"] == "/api/system/config"] == [["gen_csr"]]
    # the emulator's own CA issued today's certificate: with that CA as the issuer, nothing is due and nothing is sent
    current, requests, dummy = run(fleet, i, {"tls": {"issuer_ca_path": "{{ hem_ca_path }}"}})
    assert not current["changed"] and not current["certificate"]["csr_needed"]
    assert requests == [("GET", "/api/system/status")], requests


def test_a_device_not_set_up_is_reported_without_a_login(emulator):
    emu = emulator(devices=1)       # factory-fresh, clock unset
    found, requests, dummy = run(emu, 0, {"config": {"user": "x"}, "passphrase": PW})
    assert not found.get("failed") and not found["ready"] and not found["changed"]
    assert found["personalised"] is False and found["rtc_set"] is False
    assert requests == [("GET", "/api/system/status")] and "configuration" not in found


def test_a_reboot_left_to_the_operator_is_recalled_until_the_device_booted(fleet):
    i = 2
    first = run(fleet, i, {})[0]
    record = {"boot": first["boot_time"], "since": "2026-12-07T00:00:00+00:00", "reasons": ["configuration"]}
    pending = run(fleet, i, {"reboot_record": record})[0]
    assert pending["reboot_pending"] == {"since": record["since"], "reasons": ["configuration"]}
    assert pending["reboot_record_done"] is False and first["reboot_record_done"] is False
    other = run(fleet, i, {"reboot_record": dict(record, boot=record["boot"] - 3600)})[0]
    assert other["reboot_pending"] is None and other["reboot_record_done"] is True


def test_keys_in_the_one_module_run_then_nothing_but_reads(emulator):
    """encedo_hem_keys / the keys option: created once in the device's one module run; the next run writes nothing
    (the key repository is read with one token per scope it needs, list and get)."""
    emu = emulator(devices=1, passphrase=PW, rtc_set=True, auth_delay=0.0)
    keys = [{"label": "release-signing", "type": "ED25519", "descr": "signs releases"}]
    first, requests, log = run(emu, 0, {"keys": keys})
    assert first["changed"] and [k["changed"] for k in first["key_results"]] == [True]
    kid = first["key_results"][0]["kid"]
    assert first["key_results"][0]["public_key"].startswith("-----BEGIN PUBLIC KEY-----")
    assert [e["path"] for e in log if e["method"] == "POST" and e["path"] != "/api/auth/token"] == ["/api/keymgmt/create"]
    again, requests, log = run(emu, 0, {"keys": keys})
    assert not again["changed"] and again["key_results"][0]["kid"] == kid
    assert [e["path"] for e in log if e["method"] == "POST"] == ["/api/auth/token"] * 2, requests
    assert {e["scope"] for e in log if e["path"].startswith("/api/keymgmt/")} == {"keymgmt:list", "keymgmt:get"}
