# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of encedo_init's pure logic: option validation, the cfg claim, the signed init request."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519

try:
    from ansible_collections.encedo.hem.plugins.modules import encedo_init as M
except ImportError:  # run without the collection link on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "build" / "collections"))
    from ansible_collections.encedo.hem.plugins.modules import encedo_init as M


def params(**over):
    base = dict(passphrase="user pass", master_passphrase="master pass", user="Jane Doe", email="", hostname="hem1.example.com",
                origin=None, trusted_ts=True, trusted_backend=False, allow_keysearch=False, ip=None, storage_mode=None,
                storage_disk0size=None, dnsd=None, ctx=None, gen_csr=False)
    base.update(over)
    return base


def test_defaults_are_valid():
    M.validate(params())


@pytest.mark.parametrize("over,fragment", [
    (dict(user=""), "option user"),
    (dict(user="x" * 33), "option user"),
    (dict(user="tab\there"), "option user"),
    (dict(email="not-an-address"), "option email"),
    (dict(email="a@" + "b" * 63), "option email"),
    (dict(hostname="bad_name.example"), "option hostname"),
    (dict(hostname="-lead.example"), "option hostname"),
    (dict(hostname="a" * 64), "option hostname"),
    (dict(hostname="a..b"), "option hostname"),
    (dict(origin=""), "option origin"),
    (dict(origin="x" * 129), "option origin"),
    (dict(ip="192.168.7.1"), "needs a prefix"),
    (dict(ip="192.168.7.300/24"), "not an IPv4"),
    (dict(ip="10.0.0.1/31"), "prefix length"),
    (dict(ip="10.0.0.1/7"), "prefix length"),
    (dict(ip="fe80::1/64"), "not an IPv4"),
    (dict(storage_mode=256), "storage_mode"),
    (dict(storage_mode=-1), "storage_mode"),
    (dict(storage_disk0size=-5), "storage_disk0size"),
    (dict(ctx=2 ** 32), "ctx"),
    (dict(passphrase=""), "passphrase"),
    (dict(master_passphrase="user pass"), "must differ"),
])
def test_every_bad_option_is_refused_with_its_name(over, fragment):
    with pytest.raises(ValueError, match=fragment):
        M.validate(params(**over))


@pytest.mark.parametrize("value", ["192.168.7.1/24", "127.0.0.1/8", "10.1.2.3/30"])
def test_canonical_cidr_accepts(value):
    assert M.canonical_cidr(value) == value
    M.validate(params(ip=value))


def test_cfg_on_a_ppa_has_the_factory_values_of_unset_ppa_fields():
    cfg = M.build_cfg(params(), "ppa", "U" * 44, "M" * 44)
    assert cfg["ip"] == "192.168.7.1/24" and cfg["storage_mode"] == 0 and cfg["storage_disk0size"] == 0 and cfg["dnsd"] is True
    assert cfg["origin"] == "https://hem1.example.com"
    assert cfg["userkey"] == "U" * 44 and cfg["masterkey"] == "M" * 44
    assert "ctx" not in cfg and "gen_csr" not in cfg
    # Required fields of the device contract are all there.
    for name in ("user", "masterkey", "userkey", "hostname", "origin", "trusted_ts", "trusted_backend", "allow_keysearch", "email",
                 "ip", "storage_mode", "storage_disk0size", "dnsd"):
        assert name in cfg


def test_cfg_on_an_epa_has_no_ppa_fields_and_passes_optional_ones():
    cfg = M.build_cfg(params(origin="*", ctx=7, gen_csr=True), "epa", "u", "m")
    assert not set(M.PPA_ONLY) & set(cfg)
    assert cfg["origin"] == "*" and cfg["ctx"] == 7 and cfg["gen_csr"] is True


def test_cfg_never_carries_a_passphrase():
    cfg = M.build_cfg(params(), "ppa", "u", "m")
    assert "user pass" not in json.dumps(cfg) and "master pass" not in json.dumps(cfg)


@pytest.mark.parametrize("over,model,expected", [
    ({}, "ppa", False),
    (dict(ip="192.168.7.1/24"), "ppa", False),
    (dict(ip="127.0.0.1/8"), "ppa", True),
    (dict(storage_disk0size=1024), "ppa", True),
    (dict(dnsd=False), "ppa", False),
    ({}, "epa", False),
])
def test_predict_reboot(over, model, expected):
    assert M.predict_reboot(params(**over), model) is expected


def _b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_init_request_verifies_on_the_device_side():
    """The device checks HMAC-SHA256 keyed with X25519(session private, user public): recompute it independently."""
    session = x25519.X25519PrivateKey.generate()
    spk = base64.b64encode(session.public_key().public_bytes_raw()).decode()
    eid = base64.b64encode(b"\x01" * 32).decode()
    challenge = {"eid": eid, "spk": spk, "jti": "bm9uY2U=", "exp": 1700000060}
    # The user key as the device will store it: PBKDF2(passphrase, salt = eid text) as an X25519 private key.
    seed = hashlib.pbkdf2_hmac("sha256", b"user pass", eid.encode(), 600000, 32)
    user_pub = base64.b64encode(x25519.X25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()).decode()

    cfg = {"user": "Jane", "userkey": user_pub}
    token = M.sign_init(challenge, seed, user_pub, cfg)
    head, payload, sig = token.split(".")
    assert _b64url_decode(head) == b'{"ecdh":"x25519","alg":"HS256","typ":"JWT"}'
    claims = json.loads(_b64url_decode(payload))
    assert claims["jti"] == "bm9uY2U=" and claims["aud"] == spk and claims["cfg"] == cfg
    assert claims["iat"] == 1700000000 and claims["exp"] == 1700000060 and claims["iss"] == user_pub
    shared = session.exchange(x25519.X25519PublicKey.from_public_bytes(base64.b64decode(user_pub)))
    expected = hmac.new(shared, (head + "." + payload).encode(), hashlib.sha256).digest()
    assert _b64url_decode(sig) == expected
    for part in (head, payload, sig):
        assert "=" not in part and "+" not in part and "/" not in part
