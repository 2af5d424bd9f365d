# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Login (`/api/auth/token`) as PROTOCOL.md describes it, and bearer-token checks."""

from __future__ import annotations

import base64
import time

import pytest

from .conftest import PASS, client
from .hemclient import derive, jwt_claims, session_jws, shared


def proof(hem, passphrase, **over):
    ch = hem.get("/api/auth/token").json
    priv, pub = derive(passphrase, ch["eid"])
    payload = {"jti": ch["jti"], "aud": ch["spk"], "exp": 0, "iat": int(time.time()), "iss": pub,
               "scope": "system:config"}
    payload.update(over.pop("payload", {}))
    header = over.pop("header", None)
    key = shared(priv, ch["spk"])
    if header is not None:
        return session_jws(payload, key, header), ch
    return session_jws(payload, key), ch


def test_challenge_shape(shared_emu):
    hem = client(shared_emu)
    ch = hem.get("/api/auth/token")
    assert ch.status == 200
    assert set(ch.json) == {"eid", "spk", "jti", "exp", "lbl"}
    assert len(base64.b64decode(ch.json["eid"])) == 32
    assert len(base64.b64decode(ch.json["jti"])) == 36
    assert ch.json["exp"] - time.time() == pytest.approx(60, abs=5)
    assert ch.json["lbl"] == "user"


def test_user_and_master_roles(shared_emu):
    hem = client(shared_emu)
    hem.login(PASS)
    assert jwt_claims(hem.token)["sub"] == "U"
    hem.login(PASS + "-master")
    assert jwt_claims(hem.token)["sub"] == "M"
    assert hem.get("/api/system/config").status == 200


def test_wrong_passphrase_and_nonce_reuse(shared_emu):
    hem = client(shared_emu)
    hem.login("not the passphrase", expect=401)
    auth, _ch = proof(hem, PASS)
    assert hem.post("/api/auth/token", {"auth": auth}).status == 200
    assert hem.post("/api/auth/token", {"auth": auth}).status == 401          # single use


def test_nonce_expires_after_60s(emulator):
    emu = emulator(passphrase=PASS, rtc_set=True)
    hem = client(emu)
    auth, _ch = proof(hem, PASS)
    emu.clock(0, 61)
    assert hem.post("/api/auth/token", {"auth": auth}).status == 401
    auth, _ch = proof(hem, PASS)
    assert hem.post("/api/auth/token", {"auth": auth}).status == 200


@pytest.mark.parametrize("case", ["header_spaces", "aud", "scope_long", "exp_past", "exp_type", "iss_garbage"])
def test_bad_proofs_are_401(shared_emu, case):
    hem = client(shared_emu)
    over = {
        "header_spaces": {"header": b'{"ecdh": "x25519", "alg": "HS256", "typ": "JWT"}'},
        "aud": {"payload": {"aud": base64.b64encode(b"x" * 32).decode()}},
        "scope_long": {"payload": {"scope": "s" * 128}},
        "exp_past": {"payload": {"exp": int(time.time()) - 10}},
        "exp_type": {"payload": {"exp": "0"}},
        "iss_garbage": {"payload": {"iss": "%%%"}},
    }[case]
    auth, _ch = proof(hem, PASS, **over)
    assert hem.post("/api/auth/token", {"auth": auth}).status == 401


@pytest.mark.parametrize("body", [{}, {"auth": 5}, {"auth": None}])
def test_bad_login_bodies_are_400(shared_emu, body):
    assert client(shared_emu).post("/api/auth/token", body).status == 400


def test_extra_keys_beside_auth_are_ignored(shared_emu):
    # Not a 400: the proof itself is judged (garbage here: 401); a good one logs in with an extra key beside it.
    hem = client(shared_emu)
    assert hem.post("/api/auth/token", {"auth": "a.b.c", "x": 1}).status == 401
    auth, _ch = proof(hem, PASS)
    ans = hem.post("/api/auth/token", {"auth": auth, "x": 1})
    assert ans.status == 200 and "token" in ans.json


def test_garbage_jws_is_401(shared_emu):
    hem = client(shared_emu)
    for auth in ("", "a.b", "a.b.c", "!!.??.**", "e30.e30.e30"):
        assert hem.post("/api/auth/token", {"auth": auth}).status == 401


def test_exp_is_honoured_and_zero_means_8h(emulator):
    emu = emulator(passphrase=PASS, rtc_set=True)
    hem = client(emu)
    hem.login(PASS, exp=0)
    claims = jwt_claims(hem.token)
    assert claims["exp"] - claims["iat"] == 8 * 3600
    exp = int(time.time()) + 30
    hem.login(PASS, exp=exp)
    assert jwt_claims(hem.token)["exp"] == exp
    assert hem.get("/api/system/config").status == 200
    emu.clock(0, 31)
    assert hem.get("/api/system/config").status == 401
    assert hem.get("/api/system/status").status == 401          # an invalid token is refused before routing
    assert hem.get("/api/system/status", auth=False).status == 200


def test_scope_prefix(shared_emu):
    hem = client(shared_emu)
    hem.login(PASS, scope="system:config:extra")
    assert hem.get("/api/system/config").status == 200
    hem.login(PASS, scope="logger:get")
    assert hem.get("/api/system/config").status == 200                      # read accepts logger:get
    assert hem.post("/api/system/config", {"ctx": 0}).status == 403          # write needs system:config
    hem.login(PASS, scope="system")
    assert hem.get("/api/system/config").status == 403
    hem.login(PASS, scope="")
    assert hem.get("/api/system/config").status == 403
    assert hem.get("/api/system/selftest").status == 200                     # any valid token


def test_tampered_or_foreign_tokens_are_401(hem):
    h, p, s = hem.token.split(".")
    claims = jwt_claims(hem.token)
    claims["scope"] = "system:config:everything"
    import json
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    for token in (h + "." + forged_payload + "." + s, "abc", "a.b.c", hem.token + "x"):
        assert hem.get("/api/system/config", token=token).status == 401
    assert hem.get("/api/system/config", auth=False).status == 401
    assert hem.get("/api/system/config", headers={"Authorization": "Basic Zm9vOmJhcg=="}, auth=False).status == 401


def test_expire_tokens_fault(emulator):
    emu = emulator(passphrase=PASS, rtc_set=True)
    hem = client(emu)
    hem.login(PASS)
    boot = emu.state(0)["boot_id"]
    emu.fault(0, "expire_tokens")
    assert hem.get("/api/system/config").status == 401
    assert emu.state(0)["boot_id"] == boot
    hem.login(PASS)
    assert hem.get("/api/system/config").status == 200


def test_login_403_until_checkin_and_409_when_fresh(emulator):
    emu = emulator(devices=2, passphrase=PASS)        # clock unset
    hem = client(emu)
    assert hem.get("/api/auth/token").status == 403
    assert hem.post("/api/auth/token", {"auth": "a.b.c"}).status == 403
    hem.checkin(emu.backend_url)
    hem.login(PASS)
    assert client(emu, 1).get("/api/auth/token").status == 403            # other device: still unset
    fresh = emulator(rtc_set=True)
    assert client(fresh).get("/api/auth/token").status == 409
    assert client(fresh).post("/api/auth/token", {"auth": "a.b.c"}).status == 409


def test_auth_delay(emulator):
    delay = 0.8      # wide enough that a loaded machine cannot blur 1x and 3x
    emu = emulator(passphrase=PASS, rtc_set=True, auth_delay=delay)
    hem = client(emu)
    derive(PASS, hem.get("/api/auth/token").json["eid"])       # PBKDF2 out of the timing
    hem.login(PASS)                                             # the device derives its key lazily here
    t0 = time.monotonic()
    hem.login(PASS)
    assert delay <= time.monotonic() - t0
    timings = []
    for _attempt in range(4):
        t0 = time.monotonic()
        assert hem.post("/api/auth/token", {"auth": "a.b.c"}).status == 401
        timings.append(time.monotonic() - t0)
    assert all(t >= delay for t in timings[:3])
    assert timings[3] >= 3 * delay                              # 3x after 3 consecutive failures
    t0 = time.monotonic()
    hem.login(PASS)                                             # a success still waits 3x, then resets the count
    assert time.monotonic() - t0 >= 3 * delay
    t0 = time.monotonic()
    hem.post("/api/auth/token", {"auth": "a.b.c"})
    assert delay <= time.monotonic() - t0 < 3 * delay - 0.1
