# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""GET/POST /api/system/config: fields, validation, `updated`, rotation, gen_csr, wipeout."""

from __future__ import annotations

import base64
import re
import time

import pytest
from cryptography import x509

from .conftest import PASS, client
from .hemclient import Hem

PPA_FIELDS = {"iat", "uts", "devid", "instanceid", "eid", "eid_sign", "user", "email", "hostname", "dnsd",
              "trusted_ts", "trusted_backend", "allow_keysearch", "origin", "ctx", "ip", "http_option_hsts",
              "http_option_dosprot_mode", "genuine_id", "storage_mode", "storage_disk0size", "storage_capacity",
              "spk", "nonce"}
MSC_ONLY = {"genuine_id", "storage_mode", "storage_disk0size", "storage_capacity"}


def test_get_config_fields_ppa(hem):
    cfg = hem.get("/api/system/config")
    assert cfg.status == 200
    assert set(cfg.json) == PPA_FIELDS
    assert cfg.json["hostname"] == "hem0.emulator.test"
    assert len(cfg.json["devid"]) == 16 and int(cfg.json["devid"], 16) >= 0
    assert cfg.json["genuine_id"].startswith("0123") and len(cfg.json["genuine_id"]) == 18
    again = hem.get("/api/system/config").json
    assert again["nonce"] != cfg.json["nonce"]                 # a fresh nonce each time
    assert again["spk"] == cfg.json["spk"]                     # the session key lives for the boot


def test_epa_has_no_msc_fields(emulator):
    emu = emulator(model="epa", passphrase=PASS, rtc_set=True)
    hem = client(emu)
    hem.login(PASS)
    cfg = hem.get("/api/system/config").json
    assert set(cfg) == PPA_FIELDS - MSC_ONLY
    assert cfg["dnsd"] is False
    for field in ("dnsd", "storage_mode", "storage_disk0size"):
        value = True if field == "dnsd" else 1
        # Ignored, not refused (hem-sdk-js setConfig: unknown fields are ignored, updated false).
        ans = hem.post("/api/system/config", {field: value})
        assert ans.status == 200 and ans.json == {"updated": False}
        assert hem.get("/api/system/config").json.get(field, False) is False
    assert "storage" not in hem.get("/api/system/status").json
    assert "uis" not in hem.get("/api/system/version").json
    assert hem.get("/api/system/config/attestation").status == 404
    assert hem.post("/api/system/config/provisioning", {"genuine": "a", "crt": "b"}).status == 404


# The firmware's types decide, not invented limits (package docstring, Configuration): any string for
# email/origin (the OpenAPI gives no length; the manager's maxlength 63 is its form's), user up to 32.
VALID_CHANGES = [
    ("user", "Operator"), ("user", "x" * 32), ("user", ""), ("user", "tab\there"), ("user", "\u017c" * 32),
    ("email", "a@b.example"), ("email", "e" * 500), ("email", "not an address"),
    ("origin", "https://ops.example"), ("origin", "o" * 500),
    ("trusted_ts", False), ("trusted_backend", False), ("allow_keysearch", True), ("ctx", 7), ("ctx", 0xFFFFFFFF),
    ("ctx", 2 ** 53 - 1), ("http_option_hsts", True), ("http_option_dosprot_mode", 4), ("http_option_dosprot_mode", 0),
    ("dnsd", False), ("storage_mode", 81), ("storage_mode", 0xA3), ("storage_mode", 256), ("storage_disk0size", 8388607),
    ("storage_disk0size", 120979451), ("storage_disk0size", 1),
]


@pytest.mark.parametrize("field,value", VALID_CHANGES)
def test_each_field_can_change(hem, shared_emu, field, value):
    before = hem.get("/api/system/config").json
    ans = hem.post("/api/system/config", {field: value})
    assert ans.status == 200
    assert ans.json == {"updated": before[field] != value}
    after = hem.get("/api/system/config").json
    assert after[field] == value
    assert shared_emu.state(0)["config"][field] == value
    assert hem.post("/api/system/config", {field: value}).json == {"updated": False}     # same value: no update
    assert (after["uts"] >= before["uts"]) if before[field] != value else after["uts"] == before["uts"]
    hem.post("/api/system/config", {field: before[field]})           # restore


INVALID = [
    {"user": "x" * 33}, {"user": 5}, {"user": None}, {"email": ["a"]}, {"email": None}, {"origin": {}},
    {"origin": 1},
    {"trusted_ts": 1}, {"trusted_ts": "true"}, {"trusted_backend": None}, {"allow_keysearch": 0},
    {"ctx": -1}, {"ctx": 2 ** 53}, {"ctx": 1.5}, {"ctx": True}, {"ctx": "1"},
    {"http_option_hsts": "yes"}, {"http_option_dosprot_mode": 5}, {"http_option_dosprot_mode": -1},
    {"http_option_dosprot_mode": False}, {"dnsd": "on"}, {"storage_mode": -1}, {"storage_mode": "81"}, {"storage_disk0size": -5},
    {"storage_disk0size": 120979452}, {"wipeout": "yes"}, {"gen_csr": 1}, {"tls": "abc"}, {"tls": {}}, {"tls": {"crt": "!!"}},
    {"tls": {"crt": base64.b64encode(b"not a certificate").decode()}}, {"tls": {"emp": "AAAA"}},
    {"userkey": base64.b64encode(b"k" * 32).decode()},
    {"userkey": base64.b64encode(b"k" * 32).decode(), "userkey_nonce": "AAAA", "userkey_hmac": "AAAA"},
    {"user": "valid", "ctx": -1},                        # all or nothing: the valid field is not applied
]


@pytest.mark.parametrize("body", INVALID, ids=[str(i) for i in range(len(INVALID))])
def test_invalid_bodies_change_nothing(hem, shared_emu, body):
    before = shared_emu.state(0)["config"]
    ans = hem.post("/api/system/config", body)
    assert ans.status == 400
    assert ans.json == {"updated": False}
    assert ans.headers["Content-Type"] == "application/json"
    assert shared_emu.state(0)["config"] == before


IGNORED = [{"hostname": "other.example"}, {"ip": "10.0.0.1/24"}, {"no_such_field": 1}]


@pytest.mark.parametrize("body", IGNORED, ids=[str(i) for i in range(len(IGNORED))])
def test_unknown_and_unsettable_fields_are_ignored(hem, shared_emu, body):
    # hem-sdk-js setConfig: "unknown fields are ignored and reported back via updated: false"; the OpenAPI:
    # hostname/ip "are currently NOT settable post-init". Not applied, no error.
    before = shared_emu.state(0)["config"]
    ans = hem.post("/api/system/config", body)
    assert (ans.status, ans.json) == (200, {"updated": False})
    assert shared_emu.state(0)["config"] == before
    label = "ignored-%d" % len(shared_emu.log(0))       # a value the device does not hold yet
    assert hem.post("/api/system/config", dict(body, user=label)).json == {"updated": True}
    after = shared_emu.state(0)["config"]
    assert after["user"] == label
    assert {k: v for k, v in after.items() if k not in ("user", "uts")} == {
        k: v for k, v in before.items() if k not in ("user", "uts")}
    hem.post("/api/system/config", {"user": before["user"]})


@pytest.mark.parametrize("raw", [b"{", b"[1,2]", b"\"str\"", b"null", b"\xff\xfe", b"{\"user\": \"a\",}"])
def test_unparseable_bodies(hem, raw):
    ans = hem.request("POST", "/api/system/config", data=raw, headers={"Content-Type": "application/json"})
    assert ans.status == 400


def test_partial_update_keeps_other_fields(hem):
    before = hem.get("/api/system/config").json
    assert hem.post("/api/system/config", {"email": "partial@example.test"}).json == {"updated": True}
    after = hem.get("/api/system/config").json
    for key in PPA_FIELDS - {"email", "uts", "nonce"}:
        assert after[key] == before[key], key
    hem.post("/api/system/config", {"email": before["email"]})


def test_rotation(emulator):
    emu = emulator(passphrase=PASS, rtc_set=True)
    hem = client(emu)
    hem.login(PASS)
    # wrong proof, then a reused nonce: both refused, the passphrase unchanged
    fields = hem.rotation_fields("new pass one")
    bad = dict(fields, userkey_hmac=base64.b64encode(b"\x00" * 32).decode())
    assert hem.post("/api/system/config", bad).status == 400
    assert hem.post("/api/system/config", fields).status == 400          # its nonce was consumed by the bad try
    fields = hem.rotation_fields("new pass one")
    partial = {k: v for k, v in fields.items() if k != "userkey_hmac"}
    assert hem.post("/api/system/config", partial).status == 400          # the triple comes together
    fields = hem.rotation_fields("new pass one")
    assert hem.post("/api/system/config", fields).json == {"updated": True}
    assert hem.post("/api/system/config", fields).status == 400          # single-use nonce
    hem.login("new pass one")
    hem.login(PASS, expect=401)
    # the master key logs in still and may rotate the user key back
    hem.login(PASS + "-master")
    assert hem.post("/api/system/config", hem.rotation_fields(PASS)).json == {"updated": True}
    hem.login(PASS)


def test_gen_csr(hem, shared_emu):
    ans = hem.post("/api/system/config", {"gen_csr": True})
    assert ans.status == 200
    assert ans.json["updated"] is False and set(ans.json) == {"csr", "genuine", "updated"}
    csr = x509.load_pem_x509_csr(ans.json["csr"].encode())
    assert csr.is_signature_valid
    served = x509.load_pem_x509_certificate(shared_emu.state(0)["tls_cert_pem"].encode())
    assert csr.public_key().public_numbers() == served.public_key().public_numbers()
    assert csr.subject.rfc4514_string() == "CN=hem0.emulator.test"
    assert hem.post("/api/system/config", {"gen_csr": False}).json == {"updated": False}


def test_master_role_and_post_roles(emulator):
    emu = emulator(passphrase=PASS, rtc_set=True)
    hem = client(emu)
    hem.login(PASS + "-master")
    assert hem.post("/api/system/config", {"ctx": 3}).json == {"updated": True}


def test_wipeout(emulator):
    emu = emulator(passphrase=PASS, rtc_set=True, reboot_seconds=0.3)
    hem = client(emu)
    hem.login(PASS)
    before = hem.get("/api/system/config").json
    boot = emu.state(0)["boot_id"]
    ans = hem.post("/api/system/config", {"wipeout": True, "user": "ignored"})
    assert ans.status == 200 and ans.raw == b""
    # The new boot, not the old one still answering for a moment before it goes down (a race wait_up had).
    assert emu.wait_new_boot(0, boot, timeout=10)
    st = emu.state(0)
    assert st["personalised"] is False and st["config"]["user"] == ""
    assert st["config"]["devid"] == before["devid"] and st["config"]["genuine_id"] == before["genuine_id"]
    assert st["config"]["eid"] != before["eid"]
    assert "instanceid" not in st["config"]
    fresh = Hem(emu.url(0), emu.factory_ca_file)      # a wiped device serves a factory certificate
    assert fresh.get("/api/system/status").json["inited"] is False
    assert fresh.get("/api/auth/token").status == 409
    assert fresh.get("/api/system/config", token=hem.token).status == 401


def test_wipeout_false_is_a_noop(hem):
    assert hem.post("/api/system/config", {"wipeout": False}).json == {"updated": False}


# ------------------------------------------------------------------ storage: a new disk 0 size formats the disk

CAPACITY = 120979451


def _status(hem):
    ans = hem.get("/api/system/status", auth=False)
    assert ans.status == 200
    return ans.json


def _wait_format_done(hem, timeout=15.0):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        status = _status(hem)
        seen.append(status.get("format"))
        if status.get("format") == "done":
            return status, seen
        time.sleep(0.2)
    raise AssertionError("the format did not finish: %r" % seen[-5:])


def test_disk0_resize_formats_and_refuses_writes_meanwhile(emulator):
    emu = emulator(passphrase=PASS, rtc_set=True, extra_args=["--format-seconds", "2"])
    hem = client(emu)
    hem.login(PASS)
    before = _status(hem)
    # the factory layout (the web manager's default: 4 GiB, disk 0 read-only); no format this boot
    assert before["storage"] == ["8388608:ro", "%d:-" % (CAPACITY - 8388608)] and "format" not in before
    ans = hem.post("/api/system/config", {"storage_disk0size": 16777216, "user": "resized"})
    assert ans.status == 200 and ans.json == {"updated": True}           # the OpenAPI 200 shape, no reboot_required
    running = _status(hem)
    assert re.fullmatch(r"status\d+", running["format"]), running
    assert running["storage"] == before["storage"]                       # the new split shows once formatted
    # Writes are busy (409, nothing applied); reads are not.
    emu.clear_log(0)
    for body in ({"user": "during format"}, {"wipeout": True}, {"storage_disk0size": 4194304}):
        assert hem.post("/api/system/config", body).status == 409
    cfg = hem.get("/api/system/config")
    assert cfg.status == 200 and cfg.json["storage_disk0size"] == 16777216 and cfg.json["user"] == "resized"
    assert [e["status"] for e in emu.log(0) if e["method"] == "POST"] == [409, 409, 409]
    assert emu.state(0)["format"].startswith("status") and emu.state(0)["personalised"] is True
    done, seen = _wait_format_done(hem)
    assert all(s == "done" or re.fullmatch(r"status\d+", s) for s in seen)
    assert done["storage"] == ["16777216:ro", "%d:-" % (CAPACITY - 16777216)]
    # Writes work again; the same size again is no change and starts no format.
    assert hem.post("/api/system/config", {"user": "after format"}).json == {"updated": True}
    assert hem.post("/api/system/config", {"storage_disk0size": 16777216}).json == {"updated": False}
    assert _status(hem)["format"] == "done"
    # A size that is not whole GiB is an integer number of sectors (the vendor's own sample has 8388607).
    assert hem.post("/api/system/config", {"storage_disk0size": CAPACITY}).json == {"updated": True}
    assert _status(hem)["format"].startswith("status")
    done, _seen = _wait_format_done(hem)
    assert done["storage"] == ["%d:ro" % CAPACITY, "0:-"]


def test_reboot_during_format_and_disk0_flags_follow_storage_mode_at_boot(emulator):
    emu = emulator(passphrase=PASS, rtc_set=True, reboot_seconds=0.3, extra_args=["--format-seconds", "60"])
    hem = client(emu)
    hem.login(PASS)
    assert hem.post("/api/system/config", {"storage_disk0size": 2097152, "storage_mode": 0x50}).json == {"updated": True}
    assert _status(hem)["format"].startswith("status")
    assert _status(hem)["storage"][0] == "8388608:ro"                   # mode and size apply later
    boot = emu.state(0)["boot_id"]
    assert hem.get("/api/system/reboot").status == 200                   # the OpenAPI refuses a reboot only during an install
    assert emu.wait_new_boot(0, boot, timeout=10)
    after = _status(hem)
    assert "format" not in after                                         # the task belonged to the previous boot
    assert after["storage"] == ["2097152:-", "%d:-" % (CAPACITY - 2097152)]   # 0x50: disk 0 hidden on start
    hem.checkin(emu.backend_url)
    hem.login(PASS)
    # 0x50 -> 0x51 keeps CTR: no format; 0x51 -> 0xA3 and 0xA3 -> 0x53 change the disk 1 encryption: a format
    # (the manager's storage_change: "This will format storage"); the reboot ends it
    for mode, flag, formats in ((0x51, "ro", False), (0xA3, "rw", True), (0x53, "rw", True)):
        assert hem.post("/api/system/config", {"storage_mode": mode}).json == {"updated": True}
        assert ("format" in _status(hem)) is formats, mode
        boot = emu.state(0)["boot_id"]
        assert hem.get("/api/system/reboot").status == 200
        assert emu.wait_new_boot(0, boot, timeout=10)
        assert _status(hem)["storage"][0] == "2097152:" + flag
        hem.checkin(emu.backend_url)
        hem.login(PASS)


def test_a_disk1_encryption_change_formats_after_the_start_delay(emulator):
    """Issue 25: CTR <-> XTS formats the storage, as the manager warns (build.js storage_change) - like a new disk 0
    size, `--format-start-seconds` after the answer; values outside the manager's six have no known encryption."""
    emu = emulator(passphrase=PASS, rtc_set=True, reboot_seconds=0.3,
                   extra_args=["--format-seconds", "1", "--format-start-seconds", "0.5"])
    hem = client(emu)
    hem.login(PASS)
    # the manager's body: the mode with the size the device holds
    assert hem.post("/api/system/config", {"storage_mode": 0xA1, "storage_disk0size": 8388608}).json == {"updated": True}
    assert "format" not in _status(hem)                                  # not started yet
    done, seen = _wait_format_done(hem)
    assert any(s and s.startswith("status") for s in seen) and done["storage"][0] == "8388608:ro"
    # the mode alone formats too (a client that does not resend the size)
    boot = emu.state(0)["boot_id"]
    assert hem.get("/api/system/reboot").status == 200
    assert emu.wait_new_boot(0, boot, timeout=10)
    hem.checkin(emu.backend_url)
    hem.login(PASS)
    assert hem.post("/api/system/config", {"storage_mode": 0x51}).json == {"updated": True}
    _wait_format_done(hem)
    # within one encryption, and to or from a value no source names: no format this boot besides the one above
    for mode in (0x53, 7, 0xA1):
        assert hem.post("/api/system/config", {"storage_mode": mode}).json == {"updated": True}
        time.sleep(0.8)                                                  # a format would run from 0.5 s to 1.5 s
        assert emu.state(0)["format"] == "done", mode
