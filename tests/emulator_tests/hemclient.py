# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small test-side HEM client (independent of plugins/module_utils/_client.py).

Every answer goes through `contract.record()`, which validates each 200 JSON answer
against the OpenAPI response schema when the spec file is available.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import requests
from cryptography.hazmat.primitives.asymmetric import x25519

from . import contract

_DERIVED = {}
LOGIN_HEADER = b'{"ecdh":"x25519","alg":"HS256","typ":"JWT"}'


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def derive(passphrase: str, eid: str):
    """-> (X25519 private bytes, public key b64); cached per (passphrase, eid): PBKDF2 is slow on purpose."""
    key = (passphrase, eid)
    if key not in _DERIVED:
        seed = hashlib.pbkdf2_hmac("sha256", passphrase.encode(), eid.encode(), 600000, 32)
        pub = x25519.X25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
        _DERIVED[key] = (seed, b64(pub))
    return _DERIVED[key]


def shared(private: bytes, public_b64: str) -> bytes:
    return x25519.X25519PrivateKey.from_private_bytes(private).exchange(
        x25519.X25519PublicKey.from_public_bytes(base64.b64decode(public_b64)))


def session_jws(payload: dict, key: bytes, header: bytes = LOGIN_HEADER) -> str:
    signing = b64url(header) + "." + b64url(json.dumps(payload, separators=(",", ":")).encode())
    return signing + "." + b64url(hmac.new(key, signing.encode(), hashlib.sha256).digest())


def jwt_claims(token: str) -> dict:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


class Answer:
    def __init__(self, resp):
        self.resp = resp
        self.status = resp.status_code
        self.headers = resp.headers
        self.raw = resp.content
        try:
            self.json = resp.json() if resp.content else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return "<Answer %s %r>" % (self.status, self.raw[:200])


class Hem:
    """One device, one connection per request, CA verification on."""

    def __init__(self, url, ca_file, timeout=15):
        self.url = url.rstrip("/")
        self.ca_file = ca_file
        self.timeout = timeout
        self.token = None

    def request(self, method, path, body=None, token=None, headers=None, data=None, auth=True):
        hdrs = {"Connection": "close"}
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        tok = token if token is not None else (self.token if auth else None)
        if tok:
            hdrs["Authorization"] = "Bearer " + tok
        hdrs.update(headers or {})
        verify = self.ca_file if self.url.startswith("https") else False
        resp = requests.request(method, self.url + path, data=data, headers=hdrs, verify=verify, timeout=self.timeout)
        ans = Answer(resp)
        contract.record(method, path, ans)
        return ans

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body, **kw):
        return self.request("POST", path, body=body, **kw)

    # ------------------------------------------------------------------ flows

    def login(self, passphrase, scope="system:config", exp=0, expect=200):
        ch = self.get("/api/auth/token", auth=False)
        if ch.status != 200:
            assert ch.status == expect, ch
            return ch
        priv, pub = derive(passphrase, ch.json["eid"])
        now = int(time.time())
        payload = {"jti": ch.json["jti"], "aud": ch.json["spk"], "exp": exp, "iat": now, "iss": pub, "scope": scope}
        auth = session_jws(payload, shared(priv, ch.json["spk"]))
        ans = self.post("/api/auth/token", {"auth": auth}, auth=False)
        assert ans.status == expect, ans
        if ans.status == 200:
            self.token = ans.json["token"]
        return ans

    def checkin(self, backend_url):
        check = self.get("/api/system/checkin", auth=False)
        assert check.status == 200, check
        resp = requests.post(backend_url + "/checkin", json={"check": check.json["check"]}, timeout=self.timeout,
                             headers={"Connection": "close"})
        assert resp.status_code == 200, resp.content
        ans = self.post("/api/system/checkin", {"checked": resp.json()["checked"]}, auth=False)
        assert ans.status == 200, ans
        return ans

    def personalise(self, passphrase, master=None, model="ppa", expect=200, **cfg_overrides):
        master = master if master is not None else passphrase + "-master"
        ch = self.get("/api/auth/init", auth=False)
        if ch.status != 200:
            assert ch.status == expect, ch
            return ch
        _upriv, upub = derive(passphrase, ch.json["eid"])
        mpriv, mpub = derive(master, ch.json["eid"])
        cfg = {"user": "tester", "masterkey": mpub, "userkey": upub, "hostname": "hem.example.test",
               "origin": "*", "trusted_ts": True, "trusted_backend": True, "allow_keysearch": False,
               "email": "ops@example.test"}
        if model == "ppa":
            # the web manager's values (build.js initFinal and its init form)
            cfg.update(ip="192.168.7.1/24", storage_mode=0x51, storage_disk0size=8388608, dnsd=False)
        cfg.update(cfg_overrides)
        cfg = {k: v for k, v in cfg.items() if v is not None}
        # Signed with the master key, as the vendor's clients do (manager initFinal, SDK initialize).
        payload = {"jti": ch.json["jti"], "aud": ch.json["spk"], "exp": ch.json["exp"], "iat": int(time.time()), "iss": mpub,
                   "cfg": cfg}
        ans = self.post("/api/auth/init", {"init": session_jws(payload, shared(mpriv, ch.json["spk"]))}, auth=False)
        assert ans.status == expect, ans
        if ans.status == 200:
            self.token = ans.json["token"]
        return ans

    def rotation_fields(self, new_passphrase):
        """GET config (needs a token) and build the userkey triple for `new_passphrase`."""
        cfg = self.get("/api/system/config")
        assert cfg.status == 200, cfg
        priv, pub = derive(new_passphrase, cfg.json["eid"])
        key = shared(priv, cfg.json["spk"])
        mac = hmac.new(key, base64.b64decode(cfg.json["nonce"]), hashlib.sha256).digest()
        return {"userkey": pub, "userkey_nonce": cfg.json["nonce"], "userkey_hmac": b64(mac)}
