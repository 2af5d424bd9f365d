# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Contract test: 200 answers validate against the OpenAPI response schemas.

Every emulator test feeds the hook in contract.py (through hemclient.Hem), which fails the
test that received a non-conforming 200 answer. This module proves the hook can fail and
drives every implemented operation once, so the coverage does not depend on which other
tests were selected.
"""

from __future__ import annotations

import base64
import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from . import contract
from .conftest import client

pytestmark = pytest.mark.skipif(not contract.spec_available(),
                                reason="OpenAPI file not found at %s (set HEM_API_SPEC)" % contract.SPEC_PATH)

IMPLEMENTED = {
    ("GET", "/api/system/status"), ("GET", "/api/system/version"), ("GET", "/api/system/selftest"),
    ("GET", "/api/system/checkin"), ("POST", "/api/system/checkin"), ("GET", "/api/auth/token"),
    ("POST", "/api/auth/token"), ("GET", "/api/auth/init"), ("POST", "/api/auth/init"),
    ("GET", "/api/system/config"), ("POST", "/api/system/config"), ("GET", "/api/system/config/attestation"),
    ("POST", "/api/system/config/provisioning"), ("GET", "/api/system/reboot"), ("GET", "/api/system/shutdown"),
    ("GET", "/api/logger/key"), ("GET", "/api/logger/list"), ("GET", "/api/logger/list/{offset}"),
    ("GET", "/api/logger/{file}"),
}


def test_hook_rejects_bad_answers():
    ops = contract.operations()
    assert IMPLEMENTED <= set(ops)
    contract.validate("GET", "/api/system/status", {"ctx": 0, "uptime": 1, "temp": 1.0, "fls_state": 0})
    with pytest.raises(AssertionError):
        contract.validate("GET", "/api/system/status", {"ctx": 0, "uptime": 1, "temp": 1.0})        # fls_state missing
    with pytest.raises(AssertionError):
        contract.validate("GET", "/api/system/status", {"ctx": 0, "uptime": "1", "temp": 1.0, "fls_state": 0})
    with pytest.raises(AssertionError):                                                             # invented field
        contract.validate("GET", "/api/system/status", {"ctx": 0, "uptime": 1, "temp": 1.0, "fls_state": 0, "x": 1})
    with pytest.raises(AssertionError):
        contract.validate("POST", "/api/auth/token", {"token": "t", "extra": True})
    with pytest.raises(AssertionError):
        contract.validate("GET", "/api/auth/token", {"exp": 1, "spk": "not base64!", "jti": "", "lbl": "", "eid": ""})
    with pytest.raises(AssertionError):
        contract.validate("GET", "/api/system/reboot", {"unexpected": "body"})
    assert contract.match("GET", "/api/keymgmt/get/00112233445566778899aabbccddeeff") == \
        ("GET", "/api/keymgmt/get/{kid}")


def test_every_implemented_operation_conforms(emulator):
    before = len(contract.RECORDED)
    emu = emulator(devices=1, se_fresh=True, reboot_seconds=0.3)
    hem = client(emu)
    hem.get("/api/system/status")
    hem.get("/api/system/version")
    hem.get("/api/system/selftest")
    hem.checkin(emu.backend_url)
    att = hem.get("/api/system/config/attestation").json
    se_pub = serialization.load_der_public_key(base64.b64decode(att["key"]))
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    crt = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "se")]))
           .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")])).public_key(se_pub)
           .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
           .add_extension(x509.SubjectKeyIdentifier.from_public_key(se_pub), critical=False)
           .sign(key, hashes.SHA256()))
    der = base64.b64encode(crt.public_bytes(serialization.Encoding.DER)).decode()
    assert hem.post("/api/system/config/provisioning", {"genuine": att["genuine"], "crt": der}).status == 200
    hem.personalise("contract pass", gen_csr=True, ip="127.0.0.1/8")   # another ip than the factory one, served here
    hem.login("contract pass")
    hem.get("/api/system/config")
    hem.get("/api/system/config/attestation")
    hem.post("/api/system/config", {"gen_csr": True, "user": "c"})
    hem.get("/api/system/version")
    hem.get("/api/system/selftest")
    hem.get("/api/system/status")
    assert hem.get("/api/system/reboot").status == 200
    assert emu.wait_up(0)
    hem.checkin(emu.backend_url)
    hem.login("contract pass", scope="logger:get")
    hem.get("/api/logger/key")
    hem.get("/api/logger/list/0")
    assert hem.get("/api/logger/" + hem.get("/api/logger/list").json["id"][0]).status == 200   # the first boot's file
    hem.login("contract pass")
    assert hem.get("/api/system/shutdown").status == 200
    seen = {e["operation"] for e in contract.RECORDED[before:]}
    assert all(e["validated"] for e in contract.RECORDED[before:])
    assert seen == IMPLEMENTED
