# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Personalisation: GET/POST /api/auth/init and the factory-fresh mode of POST /api/system/config."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import x25519

from tests.emulator.harness import REPO_ROOT

from .conftest import client
from .hemclient import derive, jwt_claims, session_jws, shared


def init_payload(hem, passphrase="pp", **cfg_over):
    """A challenge, the user and master private keys, and the claims the vendor's clients sign (manager initFinal,
    SDK initialize): jti, aud = spk, exp = the challenge's, iat, iss = master public key = cfg.masterkey, cfg."""
    ch = hem.get("/api/auth/init").json
    upriv, upub = derive(passphrase, ch["eid"])
    mpriv, mpub = derive(passphrase + "-m", ch["eid"])
    cfg = {"user": "u", "masterkey": mpub, "userkey": upub, "hostname": "h.example", "origin": "*",
           "trusted_ts": True, "trusted_backend": True, "allow_keysearch": False, "email": "",
           "ip": "192.168.7.1/24", "storage_mode": 0x51, "storage_disk0size": 8388608, "dnsd": False}
    cfg.update(cfg_over)
    cfg = {k: v for k, v in cfg.items() if v is not None}
    payload = {"jti": ch["jti"], "aud": ch["spk"], "exp": ch["exp"], "iat": int(time.time()), "iss": mpub, "cfg": cfg}
    return ch, {"user": upriv, "master": mpriv}, payload


def vendor_proof(ch, keys, payload):
    return session_jws(payload, shared(keys["master"], ch["spk"]))


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
    # not applied, no error (OpenAPI: not settable post-init; hem-sdk-js setConfig: unknown fields ignored)
    assert hem.post("/api/system/config", {"hostname": "x.example"}).json == {"updated": False}
    assert hem.post("/api/system/config", {"ip": "10.9.9.1/24"}).json == {"updated": False}
    assert hem.get("/api/system/config").json["hostname"] == "hem1.example.test"


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


# What the emulator refuses in `cfg` (400, device stays fresh): missing fields, wrong JSON types, and
# only the limits with a source (user maxLength 32 and http_option_dosprot_mode 0..4: OpenAPI; storage_disk0size
# up to the storage: the web manager's size slider; keys of 32 bytes and the CIDR form: OpenAPI).
CFG_ERRORS = [
    {"user": None}, {"hostname": None}, {"ip": None}, {"dnsd": None}, {"email": None},
    {"user": "x" * 33}, {"user": 5}, {"hostname": 7}, {"origin": ["*"]}, {"ip": "10.0.0.1"}, {"ip": "300.0.0.1/24"},
    {"ip": "10.0.0.1/33"}, {"ip": "10.0.0.1/255.0.0.0"}, {"trusted_ts": "yes"}, {"storage_mode": "81"},
    {"storage_mode": 81.0}, {"storage_mode": True}, {"storage_disk0size": -1}, {"storage_disk0size": 120979452},
    {"http_option_dosprot_mode": 5}, {"masterkey": "short"}, {"userkey": base64.b64encode(b"x" * 31).decode()},
    {"gen_csr": "yes"}, {"ctx": "1"},
]


@pytest.fixture(scope="module")
def fresh_shared(emulator_module):
    return emulator_module(rtc_set=True)


@pytest.mark.parametrize("over", CFG_ERRORS, ids=[str(i) for i in range(len(CFG_ERRORS))])
def test_init_cfg_validation(fresh_shared, over):
    emu = fresh_shared
    hem = client(emu)
    ch, keys, payload = init_payload(hem, **over)
    ans = hem.post("/api/auth/init", {"init": vendor_proof(ch, keys, payload)})
    assert ans.status == 400
    assert emu.state(0)["personalised"] is False


# What the emulator accepts although it refused it before issue 14: no source limits these (the OpenAPI file gives
# the types only), so the emulator takes what the types allow.
CFG_ACCEPTED = [
    {"hostname": "not a dns name"}, {"hostname": "p" * 63 + ".ence.do"}, {"user": "tab\there"}, {"email": "e" * 300},
    {"origin": "https://a.example," * 20}, {"ip": "10.0.0.1/31"}, {"ip": "10.0.0.0/8"}, {"storage_mode": 0},
    {"storage_mode": 0xA3}, {"storage_mode": 4096}, {"ctx": 2 ** 40}, {"storage_disk0size": 120979451},
]


@pytest.fixture(scope="module")
def fresh_many(emulator_module):
    return emulator_module(devices=len(CFG_ACCEPTED), rtc_set=True)


@pytest.mark.parametrize("index", range(len(CFG_ACCEPTED)), ids=[str(i) for i in range(len(CFG_ACCEPTED))])
def test_init_cfg_without_invented_limits(fresh_many, index):
    over = CFG_ACCEPTED[index]
    hem = client(fresh_many, index)
    ch, keys, payload = init_payload(hem, **over)
    ans = hem.post("/api/auth/init", {"init": vendor_proof(ch, keys, payload)})
    assert ans.status == 200, (over, ans)
    state = fresh_many.state(index)
    assert state["personalised"] is True
    for name, value in over.items():
        assert state["config"][name] == value


def test_user_key_proof_gets_401_master_key_proof_200(emulator):
    """Issue 14: the init proof is the master key's (manager initFinal, SDK initialize); one keyed with the user
    key is refused with 401 as any proof the device cannot verify, and the device stays factory-fresh."""
    emu = emulator(rtc_set=True)
    hem = client(emu)
    # The old form: iss = user key, keyed with X25519(user private, spk).
    ch, keys, payload = init_payload(hem)
    payload["iss"] = payload["cfg"]["userkey"]
    assert hem.post("/api/auth/init", {"init": session_jws(payload, shared(keys["user"], ch["spk"]))}).status == 401
    assert emu.state(0)["personalised"] is False
    # iss names the master key, but the HMAC is keyed with the user key.
    ch, keys, payload = init_payload(hem)
    assert hem.post("/api/auth/init", {"init": session_jws(payload, shared(keys["user"], ch["spk"]))}).status == 401
    # Keyed with the master key, but iss missing or naming another key.
    for iss in (None, payload["cfg"]["userkey"], "!!"):
        ch, keys, payload = init_payload(hem)
        payload["iss"] = iss
        assert hem.post("/api/auth/init", {"init": vendor_proof(ch, keys, payload)}).status == 401
    assert emu.state(0)["personalised"] is False
    assert [e["status"] for e in emu.log(0) if e["method"] == "POST"] == [401] * 5
    # The vendor's form.
    ch, keys, payload = init_payload(hem)
    ans = hem.post("/api/auth/init", {"init": vendor_proof(ch, keys, payload)})
    assert ans.status == 200
    state = emu.state(0)
    assert state["personalised"] is True
    hem.login("pp-m")                                   # cfg.masterkey was stored as the master key ...
    assert jwt_claims(hem.token)["sub"] == "M"
    hem.login("pp")                                     # ... and cfg.userkey as the user key
    assert jwt_claims(hem.token)["sub"] == "U"


def test_gen_csr_names_the_hostname_and_ip(emulator):
    """Issue 14 deliverable 9: the CSR of a personalisation names its hostname (CN and SAN) and the address of ip."""
    emu = emulator(rtc_set=True)
    hem = client(emu)
    ans = hem.personalise("pp", hostname="hem7.example.test", ip="10.1.2.3/16", gen_csr=True)
    csr = x509.load_pem_x509_csr(ans.json["csr"].encode())
    assert csr.is_signature_valid
    assert csr.subject.rfc4514_string() == "CN=hem7.example.test"
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["hem7.example.test"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.1.2.3"]
    assert "genuine" in ans.json


def test_gen_csr_at_personalisation_makes_a_new_tls_key(emulator):
    """Issue 25 item 9, OpenAPI POST /api/auth/init: gen_csr "generate a TLS key + CSR". The CSR is for a new key; the
    device serves its old certificate until a certificate for the new key is imported and it reboots; a certificate
    for the old key is refused from then on (it is no longer the stored key)."""
    from tests.emulator import util
    emu = emulator(rtc_set=True, reboot_seconds=0.3)
    hem = client(emu)
    served_before = x509.load_pem_x509_certificate(emu.state(0)["tls_cert_pem"].encode())
    ans = hem.personalise("pp", hostname="hem8.example.test", ip="10.1.2.4/16", gen_csr=True)
    csr = x509.load_pem_x509_csr(ans.json["csr"].encode())
    assert not util.same_public(csr.public_key(), served_before.public_key())
    assert x509.load_pem_x509_certificate(emu.state(0)["tls_cert_pem"].encode()) == served_before
    hem.login("pp")
    # a later gen_csr (config) is for the same, stored key
    again = x509.load_pem_x509_csr(hem.post("/api/system/config", {"gen_csr": True}).json["csr"].encode())
    assert util.same_public(again.public_key(), csr.public_key())
    ca_key, ca_cert = util.make_ca("item 9 CA", "encedo.hem tests")
    old = util.issue_tls_cert(ca_key, ca_cert, served_before.public_key(), ["hem8.example.test"], ["10.1.2.4"])
    assert hem.post("/api/system/config", {"tls": {"crt": util.b64e(util.cert_der(old))}}).status == 400
    new = util.issue_tls_cert(ca_key, ca_cert, csr.public_key(), ["hem8.example.test"], ["10.1.2.4"])
    ans = hem.post("/api/system/config", {"tls": {"crt": util.b64e(util.cert_der(new))}})
    assert ans.status == 200 and ans.json["reboot_required"] is True
    boot = emu.state(0)["boot_id"]
    assert hem.get("/api/system/reboot").status == 200
    assert emu.wait_new_boot(0, boot, timeout=10)
    served = x509.load_pem_x509_certificate(emu.state(0)["tls_cert_pem"].encode())
    assert served == new


def test_gen_csr_that_cannot_be_made_omits_csr_and_genuine(emulator):
    """OpenAPI POST /api/auth/init: csr "only when gen_csr was true and generation succeeded", genuine "absent if CSR
    generation was requested but failed". A 71-character hostname (a 63-character web-manager prefix + .ence.do)
    cannot be a certificate CN (at most 64)."""
    emu = emulator(rtc_set=True)
    hem = client(emu)
    ans = hem.personalise("pp", hostname="p" * 63 + ".ence.do", gen_csr=True)
    assert ans.status == 200 and "csr" not in ans.json and "genuine" not in ans.json
    assert emu.state(0)["personalised"] is True


def test_init_bad_signature_and_replay(emulator):
    emu = emulator(rtc_set=True)
    hem = client(emu)
    ch, keys, payload = init_payload(hem)
    wrong = session_jws(payload, b"\x00" * 32)
    assert hem.post("/api/auth/init", {"init": wrong}).status == 401
    good = vendor_proof(ch, keys, payload)
    assert hem.post("/api/auth/init", {"init": good}).status == 401          # nonce consumed by the failed try
    for body in ({}, {"init": 1}):
        assert hem.post("/api/auth/init", body).status == 400
    assert hem.post("/api/auth/init", {"init": "garbage"}).status == 401
    assert emu.state(0)["personalised"] is False


def test_epa_init_ignores_msc_fields(emulator):
    # The web manager sends ip/storage/dnsd to every model (build.js initFinal): an EPA ignores them.
    emu = emulator(model="epa", rtc_set=True)
    hem = client(emu)
    ch, keys, payload = init_payload(hem, ip="10.1.2.3/24", unknown=1)
    ans = hem.post("/api/auth/init", {"init": vendor_proof(ch, keys, payload)})
    assert ans.status == 200
    assert "genuine" in ans.json and "reboot_required" not in ans.json
    hem.token = ans.json["token"]
    cfg = hem.get("/api/system/config").json
    assert "genuine_id" not in cfg and "storage_mode" not in cfg and cfg["ip"] == "192.168.7.1/24"


def test_fresh_mode_config_post(emulator):
    emu = emulator(rtc_set=True)
    hem = client(emu)
    assert hem.post("/api/system/config", {"user": "x"}).status == 406          # fresh: tls is required
    assert hem.post("/api/system/config", {"tls": {"crt": "!!"}}).status == 400
    assert emu.state(0)["personalised"] is False


# ---------------------------------------------------------------------------- --master-recovery-phrase

ABANDON_ART = " ".join(["abandon"] * 23 + ["art"])      # BIP39 test phrase (24 words, valid checksum)


def raw_key_login(hem, private):
    """A login proof (PROTOCOL.md "Login") made from a raw X25519 private key; returns the answer."""
    ch = hem.get("/api/auth/token", auth=False).json
    pub = base64.b64encode(x25519.X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()).decode()
    payload = {"jti": ch["jti"], "aud": ch["spk"], "exp": 0, "iat": int(time.time()), "iss": pub, "scope": "system:config"}
    return hem.post("/api/auth/token", {"auth": session_jws(payload, shared(private, ch["spk"]))}, auth=False)


def test_master_recovery_phrase_at_start(emulator):
    """--passphrase with --master-recovery-phrase: the stored master key is the web manager's derivation of the
    phrase (BIP39 seed hex digits 1..64, build.js initFinal), computed here independently."""
    emu = emulator(passphrase="pp", rtc_set=True, extra_args=["--master-recovery-phrase", "  " + ABANDON_ART + "\n"])
    hem = client(emu)
    seed_hex = hashlib.pbkdf2_hmac("sha512", ABANDON_ART.encode(), b"mnemonic", 2048).hex()
    private = bytes.fromhex(seed_hex[1:65])
    public = x25519.X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()
    assert base64.b64encode(public).decode() == "npHoBqiizdNniy/kAK2QJnlTAdGVxgA7dza2FKIaqhY="   # unit test's vector
    ans = raw_key_login(hem, private)
    assert ans.status == 200 and jwt_claims(ans.json["token"])["sub"] == "M"
    assert raw_key_login(hem, bytes.fromhex(seed_hex[0:64])).status == 401     # the off-by-one matters
    hem.login("pp-master", expect=401)                                        # no default master passphrase then
    hem.login("pp")
    assert jwt_claims(hem.token)["sub"] == "U"


def test_master_recovery_phrase_excludes_master_passphrase():
    proc = subprocess.run([sys.executable, "-m", "tests.emulator", "--passphrase", "p", "--master-passphrase", "m",
                           "--master-recovery-phrase", ABANDON_ART], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 2 and "not allowed with argument" in proc.stderr
    helped = subprocess.run([sys.executable, "-m", "tests.emulator", "--help"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60, check=True)
    assert "--master-recovery-phrase" in helped.stdout
