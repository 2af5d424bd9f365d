# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A login written from PROTOCOL.md (and the web manager's key derivation), not with the
collection's client: it proves which keys a device stored.

    python -m tests.integration.helpers.independent_login < REQUESTS_JSON
        REQUESTS_JSON: a list of {"url": ..., "ca_file": ..., and "passphrase" or
        "recovery_phrase"} (on stdin, so that no secret is on a command line). Logs in with
        each and prints the list of the claims of the bearer tokens the device issued, as
        JSON; exits non-zero when a login fails.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys

import requests
from cryptography.hazmat.primitives.asymmetric import x25519


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def recovery_phrase_private(phrase):
    """The master private key the vendor's web manager derives from a BIP39 phrase (build.js initFinal:
    hex digits 1..64 of the BIP39 seed), written here from the web manager's source, not the collection's."""
    return bytes.fromhex(hashlib.pbkdf2_hmac("sha512", " ".join(phrase.split()).encode(), b"mnemonic", 2048).hex()[1:65])


def independent_login(url, ca_file, passphrase=None, private_key=None):
    """Log in as PROTOCOL.md describes, with a passphrase or a raw X25519 private key; return the bearer
    token's claims (or raise on failure)."""
    challenge = requests.get(url + "/api/auth/token", verify=ca_file, timeout=10)
    challenge.raise_for_status()
    ch = challenge.json()
    seed = private_key or hashlib.pbkdf2_hmac("sha256", passphrase.encode(), ch["eid"].encode(), 600000, 32)
    private = x25519.X25519PrivateKey.from_private_bytes(seed)
    iss = base64.b64encode(private.public_key().public_bytes_raw()).decode()
    shared = private.exchange(x25519.X25519PublicKey.from_public_bytes(base64.b64decode(ch["spk"])))
    now = ch["exp"] - 60
    head = _b64url(b'{"ecdh":"x25519","alg":"HS256","typ":"JWT"}')
    body = _b64url(json.dumps({"jti": ch["jti"], "aud": ch["spk"], "exp": 0, "iat": now, "iss": iss,
                               "scope": "system:config"}).encode())
    sig = _b64url(hmac.new(shared, (head + "." + body).encode(), hashlib.sha256).digest())
    answer = requests.post(url + "/api/auth/token", json={"auth": head + "." + body + "." + sig}, verify=ca_file, timeout=10)
    answer.raise_for_status()
    payload = answer.json()["token"].split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _login(request):
    if request.get("recovery_phrase"):
        return independent_login(request["url"], request["ca_file"], private_key=recovery_phrase_private(request["recovery_phrase"]))
    return independent_login(request["url"], request["ca_file"], passphrase=request["passphrase"])


def main():
    sys.stdout.write(json.dumps([_login(request) for request in json.load(sys.stdin)]) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
