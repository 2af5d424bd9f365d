# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""GET/POST /api/system/config: fields, validation, `updated`, rotation, gen_csr, wipeout."""

from __future__ import annotations

import base64

import pytest
from cryptography import x509

from .conftest import PASS, client

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
        ans = hem.post("/api/system/config", {field: value})
        assert ans.status == 400 and ans.json == {"updated": False}
    assert "storage" not in hem.get("/api/system/status").json
    assert "uis" not in hem.get("/api/system/version").json
    assert hem.get("/api/system/config/attestation").status == 404
    assert hem.post("/api/system/config/provisioning", {"genuine": "a", "crt": "b"}).status == 404


VALID_CHANGES = [
    ("user", "Operator"), ("user", "x" * 32), ("user", ""), ("email", "a@b.example"), ("origin", "https://ops.example"),
    ("trusted_ts", False), ("trusted_backend", False), ("allow_keysearch", True), ("ctx", 7), ("ctx", 0xFFFFFFFF),
    ("http_option_hsts", True), ("http_option_dosprot_mode", 4), ("http_option_dosprot_mode", 0), ("dnsd", False),
    ("storage_mode", 81), ("storage_disk0size", 8388607),
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
    {"user": "x" * 33}, {"user": 5}, {"user": None}, {"email": ["a"]}, {"email": "e" * 65}, {"origin": {}},
    {"origin": "o" * 129}, {"user": "tab\there"},
    {"trusted_ts": 1}, {"trusted_ts": "true"}, {"trusted_backend": None}, {"allow_keysearch": 0},
    {"ctx": -1}, {"ctx": 2 ** 32}, {"ctx": 1.5}, {"ctx": True}, {"ctx": "1"},
    {"http_option_hsts": "yes"}, {"http_option_dosprot_mode": 5}, {"http_option_dosprot_mode": -1},
    {"http_option_dosprot_mode": False}, {"dnsd": "on"}, {"storage_mode": 256}, {"storage_disk0size": -5},
    {"storage_disk0size": 120979452}, {"hostname": "other.example"}, {"ip": "10.0.0.1/24"},
    {"no_such_field": 1}, {"wipeout": "yes"}, {"gen_csr": 1}, {"tls": "abc"}, {"tls": {}}, {"tls": {"crt": "!!"}},
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
    ans = hem.post("/api/system/config", {"wipeout": True, "user": "ignored"})
    assert ans.status == 200 and ans.raw == b""
    assert emu.wait_up(0, timeout=10)
    st = emu.state(0)
    assert st["personalised"] is False and st["config"]["user"] == ""
    assert st["config"]["devid"] == before["devid"] and st["config"]["genuine_id"] == before["genuine_id"]
    assert st["config"]["eid"] != before["eid"]
    assert "instanceid" not in st["config"]
    fresh = client(emu)
    assert fresh.get("/api/system/status").json["inited"] is False
    assert fresh.get("/api/auth/token").status == 409
    assert fresh.get("/api/system/config", token=hem.token).status == 401


def test_wipeout_false_is_a_noop(hem):
    assert hem.post("/api/system/config", {"wipeout": False}).json == {"updated": False}
