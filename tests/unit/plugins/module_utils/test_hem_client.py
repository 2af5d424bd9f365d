# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of HemClient's pure logic: login derivation, retries, re-login, errors.

The derivation vectors are computed here independently (hashlib, cryptography, hmac),
never with the client's helpers. The transport is replaced by a scripted fake at
``HemClient._send`` (the only place that touches the network); the real-socket
behaviour is covered by test_client_live.py against the emulator.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519

try:
    from ansible_collections.encedo.hem.plugins.module_utils import _client as C
except ImportError:  # run without the collection link on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "build" / "collections"))
    from ansible_collections.encedo.hem.plugins.module_utils import _client as C
from ansible_collections.encedo.hem.plugins.module_utils import _errors as E
from ansible_collections.encedo.hem.plugins.module_utils import _transport as T
from ansible_collections.encedo.hem.plugins.module_utils import _login as L


# ------------------------------------------------------------------ independent helpers

def raw_public(private: x25519.X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def expected_keypair(passphrase: str, eid: str):
    seed = hashlib.pbkdf2_hmac("sha256", passphrase.encode("utf-8"), eid.encode("utf-8"), 600000, 32)
    public = raw_public(x25519.X25519PrivateKey.from_private_bytes(seed))
    return seed, base64.b64encode(public).decode()


def unb64url(segment: str) -> bytes:
    assert "=" not in segment and "+" not in segment and "/" not in segment, segment
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


class FakeDevice:
    """Device side of the login, written independently of the client."""

    def __init__(self, passphrase: str):
        self.identity = x25519.X25519PrivateKey.generate()
        self.eid = base64.b64encode(raw_public(self.identity)).decode()
        self.session = x25519.X25519PrivateKey.generate()
        self.spk = base64.b64encode(raw_public(self.session)).decode()
        self.userkey = expected_keypair(passphrase, self.eid)[1]
        self.now = 1_700_000_000
        self.jtis = []
        self.proofs = []

    def challenge(self):
        jti = base64.b64encode(bytes([len(self.jtis)]) * 36).decode()
        self.jtis.append(jti)
        return {"eid": self.eid, "spk": self.spk, "jti": jti, "exp": self.now + 60, "lbl": "user"}

    def check_proof(self, proof: str):
        """Return the bearer token for a valid proof, else None."""
        self.proofs.append(proof)
        head, body, sig = proof.split(".")
        payload = json.loads(unb64url(body))
        if unb64url(head) != b'{"ecdh":"x25519","alg":"HS256","typ":"JWT"}':
            return None
        if payload["iss"] != self.userkey or payload["jti"] not in self.jtis or payload["aud"] != self.spk:
            return None
        client_pub = x25519.X25519PublicKey.from_public_bytes(base64.b64decode(payload["iss"]))
        shared = self.session.exchange(client_pub)
        good = hmac.new(shared, (head + "." + body).encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(good, unb64url(sig)):
            return None
        self.jtis.remove(payload["jti"])
        exp = payload["exp"] or self.now + 8 * 3600
        claims = {"scope": payload["scope"], "sub": "U", "iat": self.now, "exp": exp, "jti": "x"}
        seg = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        return "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + seg + ".c2ln"


class ScriptedClient(C.HemClient):
    """HemClient whose transport answers from a script (a list of callables/answers)."""

    def __init__(self, script=None, device=None, url="https://hem.test", **kwargs):
        kwargs.setdefault("passphrase", None)
        super().__init__(url, **kwargs)
        self.script = list(script or [])
        self.device = device
        self.sent = []
        self.slept = []
        self._sleep = self.slept.append

    def _send(self, method, path, data, headers, timeout, limit=None):
        self.sent.append((method, path, data, dict(headers)))
        if self.device is not None and path == "/api/auth/token":
            if method == "GET":
                return T.Answer(200, json.dumps(self.device.challenge()).encode(), {})
            token = self.device.check_proof(json.loads(data)["auth"])
            if token is None:
                return T.Answer(401, b"", {})
            return T.Answer(200, json.dumps({"token": token}).encode(), {})
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        if callable(step):
            return step(method, path, data, headers)
        status, body = step[0], step[1]
        hdrs = step[2] if len(step) > 2 else {}
        return T.Answer(status, json.dumps(body).encode() if body is not None else b"", hdrs)


def refused():
    return T.TransportError("[Errno 111] Connection refused", sent=False)


def dropped():
    return T.TransportError("[Errno 104] Connection reset by peer", sent=True)


def read_timeout():
    return T.TransportError("timed out waiting for the answer", sent=True, timeout=True)


def connect_timeout():
    return T.TransportError("timed out connecting", sent=False, timeout=True)


# ------------------------------------------------------------------ derivation

@pytest.mark.parametrize("passphrase,eid", [
    ("correct horse battery staple", "ff6/rpgprw6OjcPbedIB5LbsxjZqmnf43J1zeK1x82I="),
    ("pässwörd-ünïcode", "fi2bgSQwaGhLkRi016q9saqeTWvrLyU08nM8hJUpTBg="),
    ("x", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
])
def test_derive_keypair_matches_independent_pbkdf2_x25519(passphrase, eid):
    seed, public_b64 = expected_keypair(passphrase, eid)
    assert L.derive_keypair(passphrase, eid) == (seed, public_b64)
    # iss is standard base64 with padding: 32 bytes -> 44 characters ending in "="
    assert len(public_b64) == 44 and public_b64.endswith("=")


def test_salt_is_the_eid_text_not_its_decoded_bytes():
    eid = "ff6/rpgprw6OjcPbedIB5LbsxjZqmnf43J1zeK1x82I="
    wrong = hashlib.pbkdf2_hmac("sha256", b"pw", base64.b64decode(eid), 600000, 32)
    assert L.derive_keypair("pw", eid)[0] != wrong


def test_auth_jwt_shape_and_signature():
    device = FakeDevice("s3cret passphrase")
    challenge = device.challenge()
    private, public_b64 = expected_keypair("s3cret passphrase", device.eid)
    proof = L.build_auth_jwt(challenge, private, public_b64, "system:config", 1_700_000_000, 1_700_000_600)
    head, body, sig = proof.split(".")
    # base64url without padding everywhere in the JWT
    for segment in (head, body, sig):
        assert set(segment) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert unb64url(head) == b'{"ecdh":"x25519","alg":"HS256","typ":"JWT"}'
    payload = json.loads(unb64url(body))
    assert payload == {"jti": challenge["jti"], "aud": device.spk, "exp": 1_700_000_600, "iat": 1_700_000_000,
                       "iss": public_b64, "scope": "system:config"}
    # signature: HMAC-SHA256 keyed with X25519(session private, client public), computed device-side
    shared = device.session.exchange(x25519.X25519PublicKey.from_public_bytes(base64.b64decode(public_b64)))
    assert unb64url(sig) == hmac.new(shared, (head + "." + body).encode(), hashlib.sha256).digest()
    assert device.check_proof(proof) is not None


# ------------------------------------------------------------------ login, token reuse, 401

def test_login_derives_once_and_reuses_the_token(monkeypatch):
    calls = []
    real = L.derive_seed
    monkeypatch.setattr(L, "derive_seed", lambda p, e: calls.append(e) or real(p, e))
    device = FakeDevice("pw-123456")
    client = ScriptedClient([(200, {"a": 1}), (200, {"b": 2}), (200, None)], device=device, passphrase="pw-123456")
    assert client.get("/api/system/config") == {"a": 1}
    assert client.get("/api/system/config") == {"b": 2}
    assert client.post("/api/system/config", {"user": "x"}) == {}
    assert calls == [device.eid]
    assert [sent[:2] for sent in client.sent].count(("POST", "/api/auth/token")) == 1
    bearer = {h.get("Authorization") for m, p, d, h in client.sent if p == "/api/system/config"}
    assert len(bearer) == 1 and bearer.pop().startswith("Bearer ey")
    assert client.token_expires == device.now + 8 * 3600
    assert client.relogged is False


def test_401_logs_in_again_once_and_repeats_once():
    device = FakeDevice("pw-abcdef")
    client = ScriptedClient([(401, None), (200, {"ok": True})], device=device, passphrase="pw-abcdef")
    assert client.get("/api/system/config") == {"ok": True}
    assert [sent[:2] for sent in client.sent] == [
        ("GET", "/api/auth/token"), ("POST", "/api/auth/token"), ("GET", "/api/system/config"),
        ("GET", "/api/auth/token"), ("POST", "/api/auth/token"), ("GET", "/api/system/config")]
    assert len(device.jtis) == 0
    assert client.relogged is True


def test_401_twice_is_not_a_loop():
    device = FakeDevice("pw-abcdef")
    client = ScriptedClient([(401, None), (401, None)], device=device, passphrase="pw-abcdef")
    with pytest.raises(E.HemError) as err:
        client.post("/api/system/config", {"user": "x"})
    assert err.value.status == 401
    assert [sent[1] for sent in client.sent].count("/api/system/config") == 2
    assert [sent[1] for sent in client.sent].count("/api/auth/token") == 4


def test_401_with_a_token_only_tells_to_log_in_again():
    client = ScriptedClient([(401, None)], token="abc.def.ghi")
    with pytest.raises(E.HemError) as err:
        client.get("/api/system/config")
    assert "encedo_login" in str(err.value) and "401" in str(err.value)
    assert len(client.sent) == 1


def test_wrong_passphrase_is_a_clear_login_error():
    device = FakeDevice("right")
    client = ScriptedClient([], device=device, passphrase="wrong")
    with pytest.raises(E.HemError) as err:
        client.login()
    text = str(err.value)
    assert text.startswith("POST /api/auth/token answered HTTP 401") and "passphrase is wrong" in text


def test_login_uses_device_clock_and_lifetime():
    device = FakeDevice("pw")
    device.now = 1_000_000  # far from the local clock
    client = ScriptedClient([], device=device, passphrase="pw")
    client.login(scope="system:config", lifetime=600)
    payload = json.loads(unb64url(device.proofs[0].split(".")[1]))
    assert payload["iat"] == 1_000_000 and payload["exp"] == 1_000_600
    assert client.last_login == {"scope": "system:config", "expires": 1_000_600}


def test_login_with_another_scope_keeps_the_client_token():
    device = FakeDevice("pw")
    client = ScriptedClient([(200, {})], device=device, passphrase="pw", token=None)
    client.get("/api/system/config")
    mine = client.token
    other = client.login(scope="logger:get")
    assert other != mine and client.token == mine


@pytest.mark.parametrize("status,words", [
    (403, ["clock is not set", "check-in", "encedo_checkin"]),
    (409, ["not personalised", "encedo_init", "busy"]),
])
def test_token_endpoint_status_meanings(status, words):
    script = [(status, None), (200, {"inited": True})] + [(status, None)] * 4 if status == 409 else [(status, None)]
    client = ScriptedClient(script, passphrase="pw")
    with pytest.raises(E.HemError) as err:
        client.login()
    text = str(err.value)
    assert "GET /api/auth/token" in text and "HTTP %d" % status in text
    for word in words:
        assert word in text


def test_409_on_fresh_device_is_not_retried():
    client = ScriptedClient([(409, None), (200, {"inited": False, "uptime": 1})], passphrase="pw")
    with pytest.raises(E.HemError) as err:
        client.login()
    assert "not personalised" in str(err.value) and "busy" not in str(err.value)
    assert client.slept == []


# ------------------------------------------------------------------ retries

@pytest.mark.parametrize("status", [409, 429, 500, 503])
def test_get_retries_busy_statuses_with_backoff(status):
    client = ScriptedClient([(status, None), (status, None), (200, {"ok": 1})])
    assert client.get("/api/system/status", auth=False) == {"ok": 1}
    assert len(client.slept) == 2 and client.slept[1] > client.slept[0]


def test_get_gives_up_after_bounded_retries():
    client = ScriptedClient([(503, None)] * 10, retries=3)
    with pytest.raises(E.HemError) as err:
        client.get("/api/system/status", auth=False)
    assert err.value.status == 503 and "4 attempts" in str(err.value)
    assert len(client.sent) == 4


def test_retry_after_is_honoured_and_clamped():
    client = ScriptedClient([(429, None, {"Retry-After": "2"}), (429, None, {"Retry-After": "3600"}), (200, {})], timeout=60)
    client.get("/api/system/status", auth=False)
    assert client.slept == [2.0, C.MAX_RETRY_AFTER]


def test_retries_stop_at_the_timeout():
    client = ScriptedClient([(429, None, {"Retry-After": "8"})] * 5, timeout=5, retries=10)
    with pytest.raises(E.HemError):
        client.get("/api/system/status", auth=False)
    assert client.slept == []  # waiting 8 s would overrun the 5 s budget


def test_get_retries_connection_errors_and_timeouts():
    client = ScriptedClient([dropped(), read_timeout(), (200, {"ok": 1})])
    assert client.get("/api/system/status", auth=False) == {"ok": 1}
    assert len(client.sent) == 3


@pytest.mark.parametrize("status", [409, 500, 503])
def test_post_is_never_retried_on_status(status):
    client = ScriptedClient([(status, None), (200, {})], token="t.t.t")
    with pytest.raises(E.HemError) as err:
        client.post("/api/system/config", {"user": "x"})
    assert err.value.status == status and len(client.sent) == 1


@pytest.mark.parametrize("exc", [dropped(), read_timeout()])
def test_post_with_lost_answer_is_outcome_unknown(exc):
    client = ScriptedClient([exc, (200, {})], token="t.t.t")
    with pytest.raises(E.HemOutcomeUnknown) as err:
        client.post("/api/system/config", {"user": "x"})
    assert "may or may not have been applied" in str(err.value)
    assert len(client.sent) == 1


@pytest.mark.parametrize("exc", [refused(), connect_timeout()])
def test_post_is_retried_when_nothing_was_sent(exc):
    client = ScriptedClient([exc, (200, {"updated": True})], token="t.t.t")
    assert client.post("/api/system/config", {"user": "x"}) == {"updated": True}
    assert len(client.sent) == 2


def test_lost_login_answer_restarts_the_handshake():
    device = FakeDevice("pw")
    calls = {"n": 0}

    class Flaky(ScriptedClient):
        def _send(self, method, path, data, headers, timeout, limit=None):
            if method == "POST" and path == "/api/auth/token" and calls["n"] == 0:
                calls["n"] += 1
                self.sent.append((method, path, data, headers))
                raise dropped()
            return super()._send(method, path, data, headers, timeout)

    client = Flaky([], device=device, passphrase="pw")
    assert client.login()
    assert [sent[:2] for sent in client.sent].count(("GET", "/api/auth/token")) == 2


def test_tls_error_is_not_retried_and_says_tls():
    client = ScriptedClient([T.TransportError("CERTIFICATE_VERIFY_FAILED: certificate verify failed", sent=False, tls=True), (200, {})])
    with pytest.raises(E.HemError) as err:
        client.get("/api/system/status", auth=False)
    assert "TLS" in str(err.value) and "ca_path" in str(err.value)
    assert len(client.sent) == 1


# ------------------------------------------------------------------ body size, encoding, errors

def test_body_over_7300_bytes_is_refused_before_sending():
    client = ScriptedClient([], token="t.t.t")
    body = {"tls": "A" * 7300}
    with pytest.raises(E.HemError) as err:
        client.post("/api/system/config", body)
    assert "7300" in str(err.value) and "POST /api/system/config" in str(err.value)
    assert client.sent == []


def test_body_of_exactly_7300_bytes_is_sent():
    client = ScriptedClient([(200, {})], token="t.t.t")
    filler = 7300 - len(json.dumps({"tls": ""}, separators=(",", ":")))
    client.post("/api/system/config", {"tls": "A" * filler})
    method, path, data, headers = client.sent[0]
    assert len(data) == 7300 and headers["Content-Type"] == "application/json"
    assert headers["Connection"] == "close"


def test_get_has_no_body_and_no_content_type():
    client = ScriptedClient([(200, {})])
    client.get("/api/system/status", auth=False)
    method, path, data, headers = client.sent[0]
    assert data is None and "Content-Type" not in headers and "Authorization" not in headers


@pytest.mark.parametrize("status,word", [
    (400, "malformed"), (406, "could not perform"), (411, "Content-Length"), (412, "CORS"),
    (413, "7300"), (418, "https://"), (404, "does not exist"),
])
def test_error_messages_name_endpoint_status_and_meaning(status, word):
    client = ScriptedClient([(status, None)], token="t.t.t")
    with pytest.raises(E.HemError) as err:
        client.post("/api/system/config", {"a": 1})
    text = str(err.value)
    assert text.startswith("POST /api/system/config answered HTTP %d: " % status)
    assert word in text
    assert err.value.endpoint == "POST /api/system/config" and err.value.status == status


def test_non_json_answer_is_an_error():
    client = ScriptedClient([lambda *a: T.Answer(200, b"<html>", {})])
    with pytest.raises(E.HemError, match="not JSON"):
        client.get("/api/system/status", auth=False)


def test_jwt_claims_and_base64_helpers():
    assert L.b64url(b"\xfb\xff") == "-_8"
    assert L.b64(b"\xfb\xff") == "+/8="
    assert L.b64decode_any("-_8") == L.b64decode_any("+/8=") == b"\xfb\xff"
    assert L.jwt_claims("a." + L.b64url(b'{"exp": 5}') + ".c") == {"exp": 5}
    assert L.jwt_claims("garbage") == {}


def test_authenticated_call_without_credentials_says_what_is_missing():
    client = ScriptedClient([])
    with pytest.raises(E.HemError) as err:
        client.get("/api/system/config")
    assert "needs credentials" in str(err.value) and client.sent == []


# ------------------------------------------------------------------ issue 17 defect 7: messages that say what is wrong

def test_404_under_a_url_path_says_the_path_is_the_problem():
    client = ScriptedClient([(404, None)], url="https://hem.test/hem/7", token="a.b.c")
    with pytest.raises(E.HemError) as err:
        client.get("/api/system/config")
    msg = str(err.value)
    assert "GET /api/system/config answered HTTP 404" in msg
    assert "the url has the path /hem/7" in msg and "/hem/7/api/system/config" in msg and "without a path" in msg


def test_404_without_a_url_path_keeps_the_endpoint_meaning():
    client = ScriptedClient([(404, None)], token="a.b.c")
    with pytest.raises(E.HemError) as err:
        client.get("/api/system/config")
    assert "this endpoint does not exist on this device" in str(err.value) and "path" not in str(err.value)


def _token(scope):
    claims = base64.urlsafe_b64encode(json.dumps({"scope": scope, "sub": "U", "exp": 2_000_000_000}).encode()).rstrip(b"=").decode()
    return "eyJhbGciOiJIUzI1NiJ9." + claims + ".c2ln"


def test_403_with_a_too_narrow_token_names_both_scopes():
    client = ScriptedClient([(403, None)], token=_token("logger:get"))
    with pytest.raises(E.HemError) as err:
        client.get("/api/system/config")
    msg = str(err.value)
    assert "needs a token with scope system:config" in msg and "the token given has scope logger:get" in msg


@pytest.mark.parametrize("scope", ["system:config", "system:config:extra"])
def test_403_with_a_covering_scope_keeps_the_general_meaning(scope):
    client = ScriptedClient([(403, None)], token=_token(scope))
    with pytest.raises(E.HemError) as err:
        client.get("/api/system/config")
    assert "token's scope or role does not allow this" in str(err.value) and "needs a token with scope" not in str(err.value)
