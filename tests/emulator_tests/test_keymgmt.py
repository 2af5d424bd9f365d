# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The key repository, /api/keymgmt/*, over real HTTPS (rules and sources: docs/fidelity.md)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519

from tests.emulator.harness import Emulator

from .conftest import PASS, client
from .hemclient import Hem, b64

SCOPES = ("keymgmt:list", "keymgmt:get", "keymgmt:gen", "keymgmt:upd", "keymgmt:imp", "keymgmt:del",
          "keymgmt:search", "keymgmt:derive")
TLS_LABELS = {"TLS key", "TLS certificate"}


@pytest.fixture(scope="module")
def emu(emulator_module):
    return emulator_module(devices=1, passphrase=PASS, rtc_set=True)


@pytest.fixture(scope="module")
def tokens(emu):
    out = {}
    for scope in SCOPES + ("system:config",):
        hem = client(emu)
        hem.login(PASS, scope=scope)
        out[scope] = hem.token
    return out


@pytest.fixture
def hem(emu):
    return client(emu)


def create(hem, tokens, label="k", ktype="ED25519", **extra):
    ans = hem.post("/api/keymgmt/create", dict(label=label, type=ktype, **extra), token=tokens["keymgmt:gen"])
    assert ans.status == 200, ans
    return ans.json["kid"]


def listing(hem, tokens):
    """Every record, page by page (15 at most each)."""
    out, offset = [], 0
    while True:
        page = hem.get("/api/keymgmt/list/%d" % offset, token=tokens["keymgmt:list"]).json
        out += page["list"]
        offset += page["listed"]
        if page["listed"] == 0 or offset >= page["total"]:
            return out


def get(hem, tokens, kid, scope="keymgmt:get"):
    return hem.get("/api/keymgmt/get/" + kid, token=tokens[scope])


def test_create_every_type_with_real_public_parts(hem, tokens):
    expect_len = {"SECP256R1": 33, "SECP384R1": 49, "SECP521R1": 67, "SECP256K1": 33, "CURVE25519": 32, "CURVE448": 56,
                  "ED25519": 32, "ED448": 57, "MLKEM512": 800, "MLKEM768": 1184, "MLKEM1024": 1568, "MLDSA44": 1312,
                  "MLDSA65": 1952, "MLDSA87": 2592}
    symmetric = ("AES128", "AES192", "AES256", "SHA2-256", "SHA2-384", "SHA2-512", "SHA3-256", "SHA3-384", "SHA3-512")
    for ktype in list(expect_len) + list(symmetric):
        kid = create(hem, tokens, "type " + ktype, ktype)
        assert len(kid) == 32 and kid == kid.lower()
        ans = get(hem, tokens, kid)
        assert ans.status == 200 and ans.json["type"] == ktype
        if ktype in symmetric:
            assert "pubkey" not in ans.json
        else:
            assert len(base64.b64decode(ans.json["pubkey"])) == expect_len[ktype]
    curves = {"SECP256R1": ec.SECP256R1(), "SECP384R1": ec.SECP384R1(), "SECP521R1": ec.SECP521R1(),
              "SECP256K1": ec.SECP256K1()}
    for name, curve in curves.items():
        point = base64.b64decode(get(hem, tokens, create(hem, tokens, "c", name, mode="ExDSA")).json["pubkey"])
        assert point[0] in (2, 3)
        ec.EllipticCurvePublicKey.from_encoded_point(curve, point)          # a point on the curve
    raw = base64.b64decode(get(hem, tokens, create(hem, tokens)).json["pubkey"])
    ed25519.Ed25519PublicKey.from_public_bytes(raw)


def test_list_types_modes_and_description(hem, tokens):
    descr = b"\x00binary description\xff"
    kids = {create(hem, tokens, "p256 default", "SECP256R1"): "PKEY,ECDH,SECP256R1",
            create(hem, tokens, "p256 both", "SECP256R1", mode="ECDH,ExDSA"): "PKEY,ECDH,ExDSA,SECP256R1",
            create(hem, tokens, "ed", "ED25519", mode="ExDSA", descr=b64(descr)): "PKEY,ExDSA,ED25519",
            create(hem, tokens, "x", "CURVE25519", mode="ExDSA"): "PKEY,ECDH,CURVE25519",     # mode: SECP* only
            create(hem, tokens, "aes", "AES256"): "AES256"}
    entries = {e["kid"]: e for e in listing(hem, tokens)}
    for kid, ktype in kids.items():
        assert entries[kid]["type"] == ktype
        assert {"kid", "created", "type", "label", "updated"} <= set(entries[kid])
    ed = next(k for k, t in kids.items() if t.endswith("ED25519"))
    assert base64.b64decode(entries[ed]["descr"]) == descr
    assert "descr" not in entries[next(iter(kids))]
    assert get(hem, tokens, ed).json["descr"] == entries[ed]["descr"]


def test_tls_key_and_certificate_are_listed_and_fixed(hem, tokens, emu):
    tls = [e for e in listing(hem, tokens) if e["label"] in TLS_LABELS]
    assert sorted(e["type"] for e in tls) == ["CERT,GENERIC_DER", "PKEY,GENERIC_DER"]
    cert = next(e for e in tls if e["type"].startswith("CERT"))
    key = next(e for e in tls if e["type"].startswith("PKEY"))
    served = x509.load_pem_x509_certificate(emu.state(0)["tls_cert_pem"].encode())
    assert base64.b64decode(get(hem, tokens, cert["kid"]).json["der"]) == served.public_bytes(serialization.Encoding.DER)
    ans = get(hem, tokens, key["kid"])
    assert ans.json["type"] == "DER_PKEY" and "der" not in ans.json and "pubkey" not in ans.json   # no private part
    for rec in tls:
        assert hem.request("DELETE", "/api/keymgmt/delete/" + rec["kid"], token=tokens["keymgmt:del"]).status == 406
        assert hem.post("/api/keymgmt/update", {"kid": rec["kid"], "label": "x"},
                        token=tokens["keymgmt:upd"]).status == 406


def test_paging_with_40_keys(emulator):
    emu = emulator(passphrase=PASS, rtc_set=True)
    hem = client(emu)
    toks = {}
    for scope in ("keymgmt:gen", "keymgmt:list"):
        hem.login(PASS, scope=scope)
        toks[scope] = hem.token
    made = [create(hem, toks, "key %02d" % i, "AES128") for i in range(40)]
    first = hem.get("/api/keymgmt/list", token=toks["keymgmt:list"]).json
    assert first["offset"] == 0 and first["total"] == 42 and first["listed"] == 15 and first["deleted"] == 0
    assert len(first["list"]) == 15
    page = hem.get("/api/keymgmt/list/30", token=toks["keymgmt:list"]).json
    assert page["offset"] == 30 and page["listed"] == 12
    assert hem.get("/api/keymgmt/list/5/64", token=toks["keymgmt:list"]).json["listed"] == 15       # clamped
    assert hem.get("/api/keymgmt/list/40/3", token=toks["keymgmt:list"]).json["listed"] == 2
    assert hem.get("/api/keymgmt/list/0/0", token=toks["keymgmt:list"]).json["listed"] == 0
    assert hem.get("/api/keymgmt/list/99", token=toks["keymgmt:list"]).json["list"] == []
    everything = listing(hem, toks)
    assert [e["kid"] for e in everything if e["label"] not in TLS_LABELS] == made
    for bad in ("/api/keymgmt/list/-1", "/api/keymgmt/list/x", "/api/keymgmt/list/1/y", "/api/keymgmt/list/0x1"):
        assert hem.get(bad, token=toks["keymgmt:list"]).status == 406, bad
    assert hem.get("/api/keymgmt/list/1/2/3", token=toks["keymgmt:list"]).status == 404


def test_get_bad_and_absent_kid(hem, tokens):
    for bad in ("abc", "g" * 32, "0" * 31, "0" * 33):
        assert get(hem, tokens, bad).status == 400, bad
    assert get(hem, tokens, "0" * 32).status == 406
    kid = create(hem, tokens)
    assert get(hem, tokens, kid.upper()).status == 200              # OA kid pattern: either case


def test_get_scopes(hem, tokens, emu):
    kid = create(hem, tokens)
    use = client(emu)
    use.login(PASS, scope="keymgmt:use:" + kid)
    assert hem.get("/api/keymgmt/get/" + kid, token=use.token).status == 200
    other = create(hem, tokens)
    assert hem.get("/api/keymgmt/get/" + other, token=use.token).status == 403     # exact match only
    assert get(hem, tokens, kid, "keymgmt:gen").status == 200
    for scope in ("keymgmt:list", "keymgmt:upd", "system:config"):
        assert get(hem, tokens, kid, scope).status == 403, scope


def test_search(hem, tokens, emu):
    marker = b"SRCH01" + hashlib.sha256(b"unique").digest()[:4]
    kid = create(hem, tokens, "searched", descr=b64(marker + b"-tail"))
    search = tokens["keymgmt:search"]
    found = hem.post("/api/keymgmt/search", {"descr": "^" + b64(marker)}, token=search)
    assert found.status == 200 and [e["kid"] for e in found.json["list"]] == [kid]
    assert found.json["total"] == 1 and found.json["listed"] == 1

    def kids(needle):
        return [e["kid"] for e in hem.post("/api/keymgmt/search", {"descr": needle}, token=search).json["list"]]

    assert kids(b64(b"-tail") + "$") == [kid]
    assert kid in kids(b64(b"tail"))                                            # bare: anywhere
    assert kids("^" + b64(b"-tail")) == []
    exact = hem.post("/api/keymgmt/search", {"descr": "^" + b64(marker + b"-tail") + "$"}, token=tokens["keymgmt:list"])
    assert [e["kid"] for e in exact.json["list"]] == [kid]                     # keymgmt:list may search too
    none = hem.post("/api/keymgmt/search", {"descr": "^" + b64(b"\xff\xfe\xfd\xfc\xfb\xfa")}, token=search)
    assert none.status == 200 and none.json["total"] == 0 and none.json["list"] == []
    assert hem.post("/api/keymgmt/search", {"descr": "^" + b64(b"x" * 65)}, token=search).status == 406
    for body in ({}, {"descr": 5}, {"descr": "^!!!"}, {"descr": "^" + b64(marker), "offset": -1},
                 {"descr": "^" + b64(marker), "limit": "2"}):
        assert hem.post("/api/keymgmt/search", body, token=search).status == 400, body
    assert hem.post("/api/keymgmt/search", {"descr": "^" + b64(marker)}, token=tokens["keymgmt:gen"]).status == 403


def test_anonymous_prefix_search_needs_allow_keysearch(hem, tokens):
    marker = b"ANON-search-marker"
    kid = create(hem, tokens, "anonymous", descr=b64(marker))
    body = {"descr": "^" + b64(marker[:6])}
    assert hem.post("/api/keymgmt/search", body, auth=False).status == 401
    cfg = tokens["system:config"]
    assert hem.post("/api/system/config", {"allow_keysearch": True}, token=cfg).json["updated"] is True
    try:
        ans = hem.post("/api/keymgmt/search", body, auth=False)
        assert ans.status == 200 and [e["kid"] for e in ans.json["list"]] == [kid]
        assert hem.post("/api/keymgmt/search", {"descr": "^" + b64(marker[:5])}, auth=False).status == 401
        assert hem.post("/api/keymgmt/search", {"descr": b64(marker[:6])}, auth=False).status == 401   # not anchored
    finally:
        hem.post("/api/system/config", {"allow_keysearch": False}, token=cfg)


def test_update(hem, tokens):
    kid = create(hem, tokens, "before", descr=b64(b"old"))
    upd = tokens["keymgmt:upd"]
    ans = hem.post("/api/keymgmt/update", {"kid": kid, "label": "after"}, token=upd)
    assert ans.status == 200 and ans.raw == b""
    entry = next(e for e in listing(hem, tokens) if e["kid"] == kid)
    assert entry["label"] == "after" and base64.b64decode(entry["descr"]) == b"old"
    ans = hem.post("/api/keymgmt/update", {"kid": kid, "label": "after", "descr": b64(b"new")}, token=upd)
    assert ans.status == 200
    assert base64.b64decode(get(hem, tokens, kid).json["descr"]) == b"new"
    assert hem.post("/api/keymgmt/update", {"kid": kid, "descr": b64(b"x")}, token=upd).status == 400   # no label
    for body in ({"kid": "xyz", "label": "a"}, {"kid": kid, "label": ""}, {"kid": kid, "label": "a" * 33},
                 {"kid": kid, "label": "tab\there"}, {"kid": kid, "label": "a", "descr": b64(b"d" * 65)},
                 {"kid": kid, "label": "a", "descr": "!!"}):
        assert hem.post("/api/keymgmt/update", body, token=upd).status == 400, body
    assert hem.post("/api/keymgmt/update", {"kid": "0" * 32, "label": "a"}, token=upd).status == 406


def test_create_bad_input(hem, tokens):
    gen = tokens["keymgmt:gen"]
    for body in ({"type": "ED25519"}, {"label": "", "type": "ED25519"}, {"label": "a" * 33, "type": "ED25519"},
                 {"label": "é", "type": "ED25519"}, {"label": "a", "type": "RSA2048"}, {"label": "a"},
                 {"label": "a", "type": "SECP256R1", "mode": "SIGN"}, {"label": "a", "type": "AES128", "descr": "%%"},
                 {"label": "a", "type": "AES128", "descr": b64(b"d" * 65)}):
        assert hem.post("/api/keymgmt/create", body, token=gen).status == 400, body
    assert hem.post("/api/keymgmt/create", {"label": "a" * 32, "type": "AES128", "descr": b64(b"d" * 64)},
                    token=gen).status == 200


def test_import_twice_and_bad_keys(hem, tokens):
    imp = tokens["keymgmt:imp"]
    raw = x25519.X25519PrivateKey.generate().public_key().public_bytes_raw()
    ans = hem.post("/api/keymgmt/import", {"label": "peer", "type": "CURVE25519", "pubkey": b64(raw)}, token=imp)
    assert ans.status == 200 and ans.json["kid"] == hashlib.sha1(raw).hexdigest()[:32]
    assert hem.post("/api/keymgmt/import", {"label": "again", "type": "CURVE25519", "pubkey": b64(raw)},
                    token=imp).status == 406
    entry = next(e for e in listing(hem, tokens) if e["kid"] == ans.json["kid"])
    assert entry["type"] == "ECDH,CURVE25519"                               # no PKEY: public part only
    assert base64.b64decode(get(hem, tokens, entry["kid"]).json["pubkey"]) == raw
    point = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    assert hem.post("/api/keymgmt/import", {"label": "p", "type": "SECP256R1", "pubkey": b64(point)},
                    token=imp).status == 406                                 # compressed X9.63 only
    for body in ({"label": "a", "type": "AES128", "pubkey": b64(b"k" * 16)},
                 {"label": "a", "type": "ED25519", "pubkey": b64(b"short")}):
        assert hem.post("/api/keymgmt/import", body, token=imp).status == 406, body
    for body in ({"label": "a", "type": "ED25519"}, {"label": "a", "type": "ED25519", "pubkey": "**"},
                 {"type": "ED25519", "pubkey": b64(raw)}):
        assert hem.post("/api/keymgmt/import", body, token=imp).status == 400, body


def test_delete(hem, tokens, emu):
    kid = create(hem, tokens, "doomed")
    delete = tokens["keymgmt:del"]
    http = client(emu, http=True)
    assert http.request("DELETE", "/api/keymgmt/delete/" + kid, token=delete).status == 409     # OA quirk
    assert http.get("/api/keymgmt/list", token=tokens["keymgmt:list"]).status == 418
    before = hem.get("/api/keymgmt/list", token=tokens["keymgmt:list"]).json
    ans = hem.request("DELETE", "/api/keymgmt/delete/" + kid, token=delete)
    assert ans.status == 200 and ans.raw == b""
    after = hem.get("/api/keymgmt/list", token=tokens["keymgmt:list"]).json
    assert after["total"] == before["total"] - 1 and after["deleted"] == before["deleted"] + 1
    assert get(hem, tokens, kid).status == 406
    assert hem.request("DELETE", "/api/keymgmt/delete/" + kid, token=delete).status == 406
    assert hem.request("DELETE", "/api/keymgmt/delete/nothex", token=delete).status == 400


def test_derive(hem, tokens):
    mine = create(hem, tokens, "mine", "CURVE25519")
    peer_priv = x25519.X25519PrivateKey.generate()
    gen = tokens["keymgmt:gen"]
    body = {"kid": mine, "label": "derived", "type": "AES256", "pubkey": b64(peer_priv.public_key().public_bytes_raw())}
    ans = hem.post("/api/keymgmt/derive", body, token=tokens["keymgmt:derive"])
    assert ans.status == 200 and ans.json["kid"] != mine
    assert get(hem, tokens, ans.json["kid"]).json["type"] == "AES256"
    imported = hem.post("/api/keymgmt/import", {"label": "peer", "type": "CURVE25519",
                                                "pubkey": body["pubkey"]}, token=tokens["keymgmt:imp"]).json["kid"]
    by_kid = hem.post("/api/keymgmt/derive", {"kid": mine, "label": "d2", "type": "ED25519", "ext_kid": imported},
                      token=gen)
    assert by_kid.status == 200 and len(base64.b64decode(get(hem, tokens, by_kid.json["kid"]).json["pubkey"])) == 32
    assert hem.post("/api/keymgmt/derive", dict(body, type="NOPE"), token=gen).json == {"kid": mine}   # OA quirk
    signer = create(hem, tokens, "signer", "ED25519")
    p256 = create(hem, tokens, "p256", "SECP256R1", mode="ECDH")
    for bad in (dict(body, kid=signer), dict(body, kid="0" * 32), dict(body, kid=p256),
                dict(body, pubkey=b64(b"short"))):
        assert hem.post("/api/keymgmt/derive", bad, token=gen).status == 406, bad
    for bad in ({"kid": mine, "label": "d", "type": "AES256"}, dict(body, kid="zz"), dict(body, label="")):
        assert hem.post("/api/keymgmt/derive", bad, token=gen).status == 400, bad
    assert hem.post("/api/keymgmt/derive", body, token=tokens["keymgmt:list"]).status == 403


@pytest.mark.parametrize("method,path,body,allowed", [
    ("GET", "/api/keymgmt/list", None, "keymgmt:list"),
    ("POST", "/api/keymgmt/create", {"label": "s", "type": "AES128"}, "keymgmt:gen"),
    ("POST", "/api/keymgmt/update", {"kid": "0" * 32, "label": "s"}, "keymgmt:upd"),
    ("POST", "/api/keymgmt/import", {"label": "s", "type": "ED25519", "pubkey": b64(b"\x01" * 32)}, "keymgmt:imp"),
    ("DELETE", "/api/keymgmt/delete/" + "0" * 32, None, "keymgmt:del"),
    ("POST", "/api/keymgmt/search", {"descr": "^" + b64(b"nothing")}, "keymgmt:search"),
    ("GET", "/api/keymgmt/get/" + "0" * 32, None, "keymgmt:get"),
    ("POST", "/api/keymgmt/derive", {"kid": "0" * 32, "label": "s", "type": "AES256", "pubkey": b64(b"\x01" * 32)},
     "keymgmt:derive"),
])
def test_each_scope_refused_with_the_wrong_scope(hem, tokens, method, path, body, allowed):
    also = {"keymgmt:get": "keymgmt:gen", "keymgmt:search": "keymgmt:list", "keymgmt:derive": "keymgmt:gen"}
    wrong = [s for s in SCOPES + ("system:config",) if s not in (allowed, also.get(allowed))]
    for scope in wrong:
        assert hem.request(method, path, body=body, token=tokens[scope]).status == 403, scope
    assert hem.request(method, path, body=body, auth=False).status == 401
    assert hem.request(method, path, body=body, token=tokens[allowed]).status in (200, 406)


def test_master_role_refused(hem, tokens, emu):
    master = client(emu)
    master.login(PASS + "-master", scope="keymgmt:gen")
    assert master.post("/api/keymgmt/create", {"label": "m", "type": "AES128"}).status == 403
    master.login(PASS + "-master", scope="keymgmt:list")
    assert master.get("/api/keymgmt/list").status == 403


def test_state_dir_keeps_the_repository_and_a_wipe_empties_it(tmp_path):
    state = tmp_path / "state"
    emu = Emulator(passphrase=PASS, rtc_set=True, state_dir=state, tmp_path=tmp_path, reboot_seconds=0.3)
    emu.start()
    try:
        hem = client(emu)
        hem.login(PASS, scope="keymgmt:gen")
        kid = hem.post("/api/keymgmt/create", {"label": "kept", "type": "SECP384R1"}).json["kid"]
        pub = hem.get("/api/keymgmt/get/" + kid).json["pubkey"]
    finally:
        emu.stop_keep_tmp()
    emu = Emulator(passphrase=PASS, rtc_set=True, state_dir=state, tmp_path=tmp_path, reboot_seconds=0.3)
    emu.start()
    try:
        hem = client(emu)
        hem.login(PASS, scope="keymgmt:gen")
        assert hem.get("/api/keymgmt/get/" + kid).json["pubkey"] == pub
        assert hem.get("/api/system/selftest").json["repo_stats"]["total"] == 3        # TLS key, certificate, kid
        hem.login(PASS, scope="system:config")
        boot = emu.state(0)["boot_id"]
        assert hem.post("/api/system/config", {"wipeout": True}).status == 200
        assert emu.wait_new_boot(0, boot, timeout=10)
        hem.ca_file = emu.factory_ca_file                                          # a wiped device's factory certificate
        stats = Hem(emu.url(0), emu.factory_ca_file).get("/api/system/selftest").json["repo_stats"]   # no token
        assert stats["total"] == 2 and stats["deleted"] == 0
        hem.checkin(emu.backend_url)                                               # the clock after the reboot
        hem.personalise(PASS)
        hem.login(PASS, scope="keymgmt:list")
        labels = [e["label"] for e in hem.get("/api/keymgmt/list").json["list"]]
        assert sorted(labels) == sorted(TLS_LABELS)
    finally:
        emu.stop()
