# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Personalisation: GET/POST /api/auth/init and the factory-fresh mode of POST /api/system/config."""

from __future__ import annotations

import base64
import time

import pytest
from cryptography import x509

from .conftest import client
from .hemclient import derive, jwt_claims, session_jws, shared


def init_payload(hem, passphrase="pp", **cfg_over):
    ch = hem.get("/api/auth/init").json
    upriv, upub = derive(passphrase, ch["eid"])
    _m, mpub = derive(passphrase + "-m", ch["eid"])
    cfg = {"user": "u", "masterkey": mpub, "userkey": upub, "hostname": "h.example", "origin": "*",
           "trusted_ts": True, "trusted_backend": True, "allow_keysearch": False, "email": "",
           "ip": "192.168.7.1/24", "storage_mode": 0, "storage_disk0size": 0, "dnsd": True}
    cfg.update(cfg_over)
    cfg = {k: v for k, v in cfg.items() if v is not None}
    return ch, upriv, {"jti": ch["jti"], "aud": ch["spk"], "iat": int(time.time()), "cfg": cfg}


def test_init_challenge(emulator):
    emu = emulator(rtc_set=True)
    hem = client(emu)
    ans = hem.get("/api/auth/init")
    assert ans.status == 200
    assert set(ans.json) == {"eid", "spk", "jti", "exp", "genuine"}
    assert ans.json["genuine"].count(".") == 2


def test_personalise_then_406(emulator):
    emu = emulator(rtc_set=True)
    hem = client(emu)
    ans = hem.personalise("pp", user="Ops", hostname="hem1.example.test", email="ops@example.test",
                          ctx=12, http_option_hsts=True, http_option_dosprot_mode=2)
    assert set(ans.json) == {"instanceid", "token", "genuine"}
    claims = jwt_claims(ans.json["token"])
    assert (claims["sub"], claims["scope"], claims["exp"] - claims["iat"]) == ("U", "system:config", 8 * 3600)
    cfg = hem.get("/api/system/config").json
    assert (cfg["user"], cfg["hostname"], cfg["ctx"], cfg["http_option_hsts"], cfg["http_option_dosprot_mode"]) == \
        ("Ops", "hem1.example.test", 12, True, 2)
    assert cfg["instanceid"] == ans.json["instanceid"]
    assert hem.get("/api/auth/init").status == 406
    assert hem.post("/api/auth/init", {"init": "a.b.c"}).status == 406
    hem.login("pp")
    hem.login("pp-master")
    assert jwt_claims(hem.token)["sub"] == "M"
    # hostname and ip are fixed now
    assert hem.post("/api/system/config", {"hostname": "x.example"}).status == 400
    assert hem.post("/api/system/config", {"ip": "192.168.7.1/24"}).status == 400


def test_reboot_required_and_gen_csr(emulator):
    emu = emulator(rtc_set=True)
    hem = client(emu)
    ans = hem.personalise("pp", ip="10.1.2.3/16", gen_csr=True)
    assert ans.json["reboot_required"] is True
    csr = x509.load_pem_x509_csr(ans.json["csr"].encode())
    assert csr.subject.rfc4514_string() == "CN=hem.example.test"
    assert hem.get("/api/system/config").json["ip"] == "10.1.2.3/16"


def test_init_needs_clock(emulator):
    emu = emulator()
    hem = client(emu)
    assert hem.get("/api/auth/init").status == 403
    assert hem.post("/api/auth/init", {"init": "a.b.c"}).status == 403
    hem.checkin(emu.backend_url)
    assert hem.get("/api/auth/init").status == 200


CFG_ERRORS = [
    {"user": None}, {"hostname": None}, {"ip": None}, {"dnsd": None}, {"email": None},
    {"user": "x" * 33}, {"hostname": "bad host"}, {"hostname": ""}, {"ip": "10.0.0.1"}, {"ip": "300.0.0.1/24"},
    {"ip": "10.0.0.1/33"}, {"trusted_ts": "yes"}, {"storage_mode": -1}, {"masterkey": "short"},
    {"userkey": base64.b64encode(b"x" * 31).decode()}, {"unknown": 1}, {"gen_csr": "yes"}, {"ctx": -2},
]


@pytest.fixture(scope="module")
def fresh_shared(emulator_module):
    return emulator_module(rtc_set=True)


@pytest.mark.parametrize("over", CFG_ERRORS, ids=[str(i) for i in range(len(CFG_ERRORS))])
def test_init_cfg_validation(fresh_shared, over):
    emu = fresh_shared
    hem = client(emu)
    ch, upriv, payload = init_payload(hem, **over)
    ans = hem.post("/api/auth/init", {"init": session_jws(payload, shared(upriv, ch["spk"]))})
    assert ans.status == 400
    assert emu.state(0)["personalised"] is False


def test_init_bad_signature_and_replay(emulator):
    emu = emulator(rtc_set=True)
    hem = client(emu)
    ch, upriv, payload = init_payload(hem)
    wrong = session_jws(payload, b"\x00" * 32)
    assert hem.post("/api/auth/init", {"init": wrong}).status == 401
    good = session_jws(payload, shared(upriv, ch["spk"]))
    assert hem.post("/api/auth/init", {"init": good}).status == 401          # nonce consumed by the failed try
    for body in ({}, {"init": 1}, {"init": "x", "more": 1}):
        assert hem.post("/api/auth/init", body).status == 400
    assert hem.post("/api/auth/init", {"init": "garbage"}).status == 401
    assert emu.state(0)["personalised"] is False


def test_epa_init_rejects_msc_fields(emulator):
    emu = emulator(model="epa", rtc_set=True)
    hem = client(emu)
    ch, upriv, payload = init_payload(hem)
    assert hem.post("/api/auth/init", {"init": session_jws(payload, shared(upriv, ch["spk"]))}).status == 400
    ans = hem.personalise("pp", model="epa")
    assert "genuine" in ans.json and "reboot_required" not in ans.json
    cfg = hem.get("/api/system/config").json
    assert "genuine_id" not in cfg and cfg["ip"] == "192.168.7.1/24"


def test_fresh_mode_config_post(emulator):
    emu = emulator(rtc_set=True)
    hem = client(emu)
    assert hem.post("/api/system/config", {"user": "x"}).status == 406          # fresh: tls is required
    assert hem.post("/api/system/config", {"tls": {"crt": "!!"}}).status == 400
    assert emu.state(0)["personalised"] is False
