# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of encedo_init's pure logic: option validation, the cfg claim, the signed init request."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519

try:
    from ansible_collections.encedo.hem.plugins.module_utils import _init as M
except ImportError:  # run without the collection link on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "build" / "collections"))
    from ansible_collections.encedo.hem.plugins.module_utils import _init as M
from ansible_collections.encedo.hem.plugins.module_utils import _login as L
from ansible_collections.encedo.hem.plugins.module_utils import _fields
from ansible_collections.encedo.hem.plugins.module_utils._errors import HemError


# The BIP39 test phrase "abandon" x 23 + "art" (24 words, valid checksum; trezor/python-mnemonic vectors.json).
ABANDON_ART = " ".join(["abandon"] * 23 + ["art"])
# Its master public key as the Encedo web manager derives it, computed once outside the collection's code with
# hashlib.pbkdf2_hmac("sha512", phrase, b"mnemonic", 2048).hex()[1:65] and an RFC 7748 X25519 ladder written in
# plain Python (the same ladder is in this file: rfc7748_public), so neither `cryptography` nor the module made it.
ABANDON_ART_MASTER_PUB = "npHoBqiizdNniy/kAK2QJnlTAdGVxgA7dza2FKIaqhY="


def params(**over):
    base = dict(passphrase="user pass", master_passphrase="master pass", master_recovery_phrase=None, user="Jane Doe", email="",
                hostname="hem1.example.com", origin="*", trusted_ts=True, trusted_backend=False, allow_keysearch=False, ip=None, storage_mode=None,
                storage_disk0size=None, dnsd=None, ctx=None, gen_csr=False)
    base.update(over)
    return base


def test_defaults_are_valid():
    M.validate(params())


@pytest.mark.parametrize("over,fragment", [
    (dict(user=""), "option user: must be 1 to 32"),
    (dict(user="x" * 33), "option user: must be 1 to 32 characters .at most 32 per the OpenAPI"),
    (dict(user="tab\there"), r"option user: character 4 is a tab \(U\+0009\); allowed: 1 to 32 printable characters"),
    (dict(user="bell\x07"), "option user: character 5 is the control character U\\+0007"),
    (dict(email="not-an-address"), "option email: 'not-an-address' is not an e-mail address of the form name@domain"),
    (dict(email="a@" + "b" * 62), "option email: must be at most 63 characters .the limit of the web manager"),
    (dict(email="a b@example.com"), "option email: character 2 is a space"),
    (dict(hostname="bad_name.example"), "option hostname: character 4 is '_'; allowed: letters"),
    (dict(hostname="-lead.example"), "option hostname: label 1 starts or ends with a hyphen"),
    (dict(hostname="a" * 64 + ".example"), "option hostname: label 1 has 64 characters; a DNS label has at most 63"),
    (dict(hostname=".".join(["a" * 63] * 4)), "option hostname: a DNS name has at most 253 characters, got 255"),
    (dict(hostname="a..b"), "option hostname: label 2 is empty"),
    (dict(hostname="host.example."), "option hostname: label 3 is empty"),
    (dict(hostname=""), "option hostname: must not be empty"),
    (dict(hostname="h\u00e9.example"), "option hostname: character 2 is 'é'"),
    (dict(origin="https://" + "x" * 60), "option origin: must be at most 63 characters .the limit of the web manager's origin"),
    (dict(origin="https://a.example,\nhttps://b.example"), "option origin: character 19 is a line break"),
    (dict(ip="192.168.7.1"), "needs a prefix"),
    (dict(ip="192.168.7.300/24"), "not an IPv4"),
    (dict(ip="10.0.0.1/31"), "prefix length must be 8 to 30, got 31 .a /31 or /32 network leaves no address"),
    (dict(ip="10.0.0.1/7"), "prefix length"),
    (dict(ip="fe80::1/64"), "not an IPv4"),
    (dict(ip="192.168.7.0/24"), "option ip: 192.168.7.0 is the network address of 192.168.7.0/24, not a host address; give one such "
                                "as 192.168.7.1/24"),
    (dict(ip="192.168.7.255/24"), "broadcast address"),
    (dict(storage_mode=256), "option storage_mode: 256 is not one of the storage modes the Encedo web manager sets: "
                             "shown_readonly_ctr .81, 0x51."),
    (dict(storage_mode=0), "meaning is not documented"),
    (dict(storage_mode=82), "hidden_xts .160, 0xA0."),
    (dict(storage_mode="shown"), "option storage_mode: 'shown' is not one"),
    (dict(storage_mode=True), "option storage_mode: True is not one"),
    (dict(storage_disk0size=-5), "option storage_disk0size: a number of 512-byte sectors cannot be negative"),
    (dict(ctx=2 ** 32), "option ctx: must be 0 to 4294967295"),
    (dict(passphrase=""), "option passphrase: must not be empty"),
    (dict(master_passphrase="user pass"), "must differ"),
    (dict(master_passphrase=None, master_recovery_phrase=""), "option master_recovery_phrase: must not be empty"),
    (dict(master_recovery_phrase=ABANDON_ART), "give only one of them"),
])
def test_every_bad_option_is_refused_with_its_name(over, fragment):
    with pytest.raises(HemError, match=fragment):
        M.validate(params(**over))


@pytest.mark.parametrize("given,number", [
    ("shown_readonly_ctr", 0x51), ("shown_readonly_xts", 0xA1), ("shown_writable_ctr", 0x53), ("shown_writable_xts", 0xA3),
    ("hidden_ctr", 0x50), ("hidden_xts", 0xA0), ("Hidden_XTS", 0xA0), (81, 81), (160, 160), ("163", 163), ("0x53", 0x53),
])
def test_storage_mode_by_name_or_number(given, number):
    values = params(storage_mode=given)
    M.validate(values)
    assert values["storage_mode"] == number
    assert M.build_cfg(values, "ppa", "u", "m")["storage_mode"] == number


def test_the_six_storage_modes_are_the_web_managers():
    """encedo-manager build.js layeredStorageEncrSet = [[[0x51,0xA1],[0x53,0xA3]],[[0x50,0xA0],[0x50,0xA0]]]
    indexed [shown?][disk 0 read-only/writable][CTR/XTS] (index.html labels)."""
    manager = [[[0x51, 0xA1], [0x53, 0xA3]], [[0x50, 0xA0], [0x50, 0xA0]]]
    for show, show_name in enumerate(("shown", "hidden")):
        for mode, mode_name in enumerate(("readonly", "writable")):
            for enc, enc_name in enumerate(("ctr", "xts")):
                name = "%s_%s" % (show_name, enc_name) if show_name == "hidden" else "%s_%s_%s" % (show_name, mode_name, enc_name)
                assert _fields.STORAGE_MODES[name] == manager[show][mode][enc]
    assert sorted(_fields.STORAGE_MODES.values()) == [80, 81, 83, 160, 161, 163]


@pytest.mark.parametrize("value", ["192.168.7.1/24", "127.0.0.1/8", "10.1.2.2/30"])
def test_canonical_cidr_accepts(value):
    assert _fields.canonical_cidr(value) == value
    M.validate(params(ip=value))


def test_cfg_on_a_ppa_has_the_web_managers_values_of_unset_ppa_fields():
    cfg = M.build_cfg(params(), "ppa", "U" * 44, "M" * 44)
    # encedo-manager build.js initFinal / init form: 192.168.7.1/24, 0x51, 4 GiB = 4 x 2097152 sectors, dnsd false, origin *
    assert cfg["ip"] == "192.168.7.1/24" and cfg["storage_mode"] == 0x51 and cfg["storage_disk0size"] == 8388608
    assert cfg["dnsd"] is False and cfg["origin"] == "*"
    assert cfg["userkey"] == "U" * 44 and cfg["masterkey"] == "M" * 44
    assert "ctx" not in cfg and "gen_csr" not in cfg
    # Required fields of the device contract are all there.
    for name in ("user", "masterkey", "userkey", "hostname", "origin", "trusted_ts", "trusted_backend", "allow_keysearch", "email",
                 "ip", "storage_mode", "storage_disk0size", "dnsd"):
        assert name in cfg


def test_cfg_on_an_epa_has_no_ppa_fields_and_passes_optional_ones():
    cfg = M.build_cfg(params(origin="https://a.example", ctx=7, gen_csr=True), "epa", "u", "m")
    assert not set(M.PPA_ONLY) & set(cfg)
    assert cfg["origin"] == "https://a.example" and cfg["ctx"] == 7 and cfg["gen_csr"] is True


def test_cfg_never_carries_a_passphrase():
    cfg = M.build_cfg(params(), "ppa", "u", "m")
    assert "user pass" not in json.dumps(cfg) and "master pass" not in json.dumps(cfg)


@pytest.mark.parametrize("over,model,expected", [
    ({}, "ppa", False),                                  # the manager's values are the (assumed) factory layout
    (dict(ip="127.0.0.1/8"), "ppa", True),
    (dict(storage_mode=0x51, storage_disk0size=0), "ppa", True),
    (dict(storage_mode="hidden_xts"), "ppa", True),
    (dict(dnsd=True), "ppa", True),                      # the table's reboot set: dnsd applies at the next boot
    (dict(dnsd=False), "ppa", False),
    ({}, "epa", False),
    (dict(ip="192.168.7.1/24"), "epa", False),
])
def test_predict_reboot(over, model, expected):
    values = params(**over)
    M.validate(values)
    assert M.predict_reboot(values, model) is expected


def test_factory_values_are_the_emulators():
    # The check-mode prediction and the emulator assume the same (undocumented) factory layout of the network and
    # storage settings; dnsd (no source for a fresh device's value, the emulator's is true) is predicted from its default.
    from tests.emulator.device import factory_config  # pylint: disable=import-outside-toplevel
    factory = factory_config("ppa")
    layout = dict((k, v) for k, v in M.FACTORY_VALUES.items() if k != "dnsd")
    assert {k: factory[k] for k in layout} == layout
    assert M.FACTORY_VALUES["dnsd"] is False and set(M.FACTORY_VALUES) == {"ip", "dnsd", "storage_mode", "storage_disk0size"}


def test_defaults_and_reboot_set_come_from_the_field_table():
    ppa = [f for f in _fields.FIELDS.values() if f.models == _fields.PPA]
    assert _fields.PPA_DEFAULTS == dict((f.name, f.ppa_default) for f in ppa)
    assert all(f.ppa_default is not None and f.ppa_default_source for f in ppa)
    assert _fields.PPA_DEFAULTS == {"ip": "192.168.7.1/24", "storage_mode": 0x51, "storage_disk0size": 4 * 2097152, "dnsd": False}
    assert set(_fields.INIT_REBOOT_FIELDS) == {f.name for f in ppa if f.reboot or f.reformat}
    assert not hasattr(M, "PPA_DEFAULTS") or M.PPA_DEFAULTS is _fields.PPA_DEFAULTS
    assert not hasattr(M, "REBOOT_FIELDS")


@pytest.mark.parametrize("status,total", [
    ({"storage": ["8388608:rw", "112590843:-"]}, 120979451),
    ({"storage": ["0:rw"]}, 0),
    ({"storage": ["x:rw", "5:-"]}, None),
    ({}, None),
])
def test_storage_total_adds_slots_0_and_1_like_the_web_manager(status, total):
    assert M.storage_total(status) == total


# ---------------------------------------------------------------------------- master key from a recovery phrase

P = 2 ** 255 - 19


def rfc7748_public(private):
    """X25519(private, 9) per RFC 7748 section 5 in plain integers: independent of `cryptography`."""
    k = bytearray(private)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    scalar = int.from_bytes(bytes(k), "little")
    x1, x2, z2, x3, z3, swap = 9, 1, 0, 9, 1, 0
    for t in reversed(range(255)):
        bit = (scalar >> t) & 1
        swap ^= bit
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = bit
        a, b = (x2 + z2) % P, (x2 - z2) % P
        aa, bb = a * a % P, b * b % P
        e = (aa - bb) % P
        c, d = (x3 + z3) % P, (x3 - z3) % P
        da, cb = d * a % P, c * b % P
        x3, z3 = (da + cb) ** 2 % P, x1 * (da - cb) ** 2 % P
        x2, z2 = aa * bb % P, e * (aa + 121665 * e) % P
    if swap:
        x2, z2 = x3, z3
    return base64.b64encode((x2 * pow(z2, P - 2, P) % P).to_bytes(32, "little")).decode()


def test_recovery_phrase_master_key_is_the_web_managers():
    from mnemonic import Mnemonic
    seed = hashlib.pbkdf2_hmac("sha512", ABANDON_ART.encode(), b"mnemonic", 2048)
    assert seed == Mnemonic.to_seed(ABANDON_ART)                      # BIP39 seed, no BIP39 passphrase
    seed_hex = seed.hex()
    assert len(seed_hex) == 128
    expected_private = bytes.fromhex(seed_hex[1:65])                   # build.js: fromHexString(seedM.substr(1, 64))
    private, public = L.recovery_phrase_keypair(ABANDON_ART)
    assert private == expected_private
    assert public == rfc7748_public(expected_private) == ABANDON_ART_MASTER_PUB
    # The off-by-one is pinned: the "natural" first 64 hex digits give another key.
    assert rfc7748_public(bytes.fromhex(seed_hex[0:64])) != ABANDON_ART_MASTER_PUB
    assert L.master_keypair("ignored-eid", recovery_phrase=ABANDON_ART) == (private, public)


def test_recovery_phrase_white_space_is_normalised_like_the_web_manager():
    """jsbip39 toSeed: split on white space, join with single spaces, NFKD (the manager also trims)."""
    messy = "  " + ABANDON_ART.replace(" ", "\t", 3).replace(" ", "  \n", 2) + "\n"
    assert L.recovery_phrase_keypair(messy)[1] == ABANDON_ART_MASTER_PUB
    assert L.normalise_recovery_phrase(messy) == ABANDON_ART


def test_master_passphrase_is_derived_like_the_user_key():
    eid = base64.b64encode(b"\x02" * 32).decode()
    seed = hashlib.pbkdf2_hmac("sha256", b"master pass", eid.encode(), 600000, 32)
    assert L.master_keypair(eid, passphrase="master pass") == (seed, rfc7748_public(seed))


@pytest.mark.parametrize("phrase,fragment", [
    (" ".join(["abandon"] * 11 + ["about"]), "has 24 words, this one has 12"),
    (" ".join(["abandon"] * 23), "has 24 words, this one has 23"),
    (" ".join(["abandon"] * 22 + ["notaword", "art"]), "word 23 is not in the BIP39 English word list$"),
    (" ".join(["Abandon"] + ["abandon"] * 22 + ["art"]), "word 1 is not in the BIP39 English word list .the words are lower case."),
    (" ".join(["abandon"] * 24), "the BIP39 checksum does not match"),
    (" ".join(["art"] + ["abandon"] * 23), "the BIP39 checksum does not match"),
])
def test_bad_recovery_phrases_are_refused_without_echoing_a_word(phrase, fragment):
    with pytest.raises(HemError, match="option master_recovery_phrase: ") as info:
        M.validate(params(master_passphrase=None, master_recovery_phrase=phrase))
    assert re.search(fragment, str(info.value))
    for word in ("abandon", "about", "notaword", "art", "Abandon"):
        assert word not in str(info.value)


def test_recovery_phrase_without_the_mnemonic_library(monkeypatch):
    monkeypatch.setitem(sys.modules, "mnemonic", None)                 # import mnemonic -> ImportError
    with pytest.raises(HemError, match='option master_recovery_phrase: the Python library "mnemonic" is needed.*pip install '
                                       'mnemonic'):
        M.validate(params(master_passphrase=None, master_recovery_phrase=ABANDON_ART))


def test_recovery_phrase_must_not_be_the_passphrase():
    with pytest.raises(HemError, match="options passphrase and master_recovery_phrase: must differ"):
        M.validate(params(master_passphrase=None, master_recovery_phrase=ABANDON_ART, passphrase=ABANDON_ART))
    M.validate(params(master_passphrase=None, master_recovery_phrase=ABANDON_ART))


def _b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_init_request_is_signed_with_the_master_key_as_the_vendor_clients_do():
    """manager initFinal / SDK initialize: iss = master public key = cfg.masterkey; HMAC-SHA256 keyed with
    X25519(master private, spk), which the device recomputes as X25519(session private, master public)."""
    session = x25519.X25519PrivateKey.generate()
    spk = base64.b64encode(session.public_key().public_bytes_raw()).decode()
    challenge = {"eid": base64.b64encode(b"\x01" * 32).decode(), "spk": spk, "jti": "bm9uY2U=", "exp": 1700000060}
    master_private = bytes.fromhex(hashlib.pbkdf2_hmac("sha512", ABANDON_ART.encode(), b"mnemonic", 2048).hex()[1:65])
    cfg = {"user": "Jane", "userkey": "VVVV", "masterkey": ABANDON_ART_MASTER_PUB}
    token = M.sign_init(challenge, master_private, ABANDON_ART_MASTER_PUB, cfg)
    head, payload, sig = token.split(".")
    assert _b64url_decode(head) == b'{"ecdh":"x25519","alg":"HS256","typ":"JWT"}'
    claims = json.loads(_b64url_decode(payload))
    assert list(claims) == ["jti", "aud", "exp", "iat", "iss", "cfg"]
    assert claims["jti"] == "bm9uY2U=" and claims["aud"] == spk and claims["cfg"] == cfg
    assert claims["exp"] == 1700000060 and claims["iat"] == 1700000000
    assert claims["iss"] == cfg["masterkey"] == ABANDON_ART_MASTER_PUB
    shared = session.exchange(x25519.X25519PublicKey.from_public_bytes(base64.b64decode(ABANDON_ART_MASTER_PUB)))
    assert _b64url_decode(sig) == hmac.new(shared, (head + "." + payload).encode(), hashlib.sha256).digest()
    # ... and not with the user key's
    user_seed = hashlib.pbkdf2_hmac("sha256", b"user pass", challenge["eid"].encode(), 1000, 32)
    user_pub = x25519.X25519PrivateKey.from_private_bytes(user_seed).public_key()
    assert _b64url_decode(sig) != hmac.new(session.exchange(user_pub), (head + "." + payload).encode(), hashlib.sha256).digest()
    for part in (head, payload, sig):
        assert "=" not in part and "+" not in part and "/" not in part
