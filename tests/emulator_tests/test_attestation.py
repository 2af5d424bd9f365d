# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Attestation tokens and certificates, factory provisioning (PPA), and their absence on EPA;
the device clock in tokens, expired attestation certificates, and the names on TLS certificates."""

from __future__ import annotations

import base64
import datetime
import os
import re
import socket
import ssl
import subprocess
import sys
import time
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .conftest import PASS, client
from .contract import REPO_ROOT

SEED = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "reference", "seed-system-configuration.md"))
OID = x509.ObjectIdentifier("1.3.6.1.4.1.56231.1")


def verify_genuine(token, cert=None, public_key=None):
    """Independent check of the PROTOCOL.md format -> timestamp; raises on any mismatch."""
    kid_b64, ts_b64, sig_b64 = token.split(".")
    kid, ts, sig = (base64.b64decode(p, validate=True) for p in (kid_b64, ts_b64, sig_b64))
    assert re.fullmatch(rb"[0-9]+", ts), ts
    if cert is not None:
        public_key = cert.public_key()
        assert kid == cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    else:
        assert kid == x509.SubjectKeyIdentifier.from_public_key(public_key).digest
    public_key.verify(sig, ts, ec.ECDSA(hashes.SHA256()))
    return int(ts)


def load_pem(path):
    with open(path, "rb") as fh:
        return x509.load_pem_x509_certificate(fh.read())


@pytest.mark.skipif(not os.path.isfile(SEED), reason="vendor sample not found at %s" % SEED)
def test_format_matches_vendor_sample():
    with open(SEED, encoding="utf-8") as fh:
        text = fh.read()
    crt = re.search(r'"crt":\s*"([^"]+)"', text).group(1)
    genuine = re.search(r'"genuine":\s*"([^"]+)"', text).group(1)
    cert = x509.load_der_x509_certificate(base64.b64decode(crt))
    assert verify_genuine(genuine, cert) == 1647641285
    tampered = genuine[:-6] + ("A" if genuine[-6] != "A" else "B") + genuine[-5:]
    with pytest.raises((InvalidSignature, ValueError)):
        verify_genuine(tampered, cert)
    # the emulator's certificates have the sample's shape
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "#0123eb561f5ea073ee"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [o.type_id for o in san.get_values_for_type(x509.OtherName)] == [OID]


def test_provisioned_attestation(emulator):
    emu = emulator(passphrase=PASS, rtc_set=True)
    hem = client(emu)
    assert hem.get("/api/system/config/attestation").status == 401          # personalised: token needed
    hem.login(PASS, scope="anything")                                          # any scope will do
    ans = hem.get("/api/system/config/attestation")
    assert ans.status == 200 and set(ans.json) == {"crt", "genuine"}
    cert = x509.load_der_x509_certificate(base64.b64decode(ans.json["crt"]))
    ts = verify_genuine(ans.json["genuine"], cert)
    assert abs(ts - time.time()) < 30
    genuine_id = emu.device(0)["genuine_id"]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "#" + genuine_id
    assert hem.get("/api/system/config").status == 403                      # that scope reads nothing else
    assert emu.state(0)["config"]["genuine_id"] == genuine_id
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    other = san.get_values_for_type(x509.OtherName)
    assert [o.type_id for o in other] == [OID] and len(other[0].value) == 22
    custody = load_pem(emu.custody_ca_file)
    cert.verify_directly_issued_by(custody)
    assert emu.custody_ca_file.endswith("-custody.pem")
    # gen_csr and init tokens use the same key and format
    csr = hem.post("/api/system/config", {"gen_csr": True}, token=client_token(hem, PASS))
    verify_genuine(csr.json["genuine"], cert)


def client_token(hem, passphrase):
    hem.login(passphrase)
    return hem.token


def test_clock_offset_moves_timestamps(emulator):
    emu = emulator(passphrase=PASS, rtc_set=True)
    hem = client(emu)
    hem.login(PASS)
    emu.clock(0, -86400)
    ans = hem.get("/api/system/config/attestation").json
    cert = x509.load_der_x509_certificate(base64.b64decode(ans["crt"]))
    assert abs(verify_genuine(ans["genuine"], cert) - (time.time() - 86400)) < 30


def test_tamper_fault(emulator):
    emu = emulator(rtc_set=True)
    hem = client(emu)
    emu.fault(0, "tamper_attestation", count=1)
    first = hem.get("/api/system/config/attestation").json
    second = hem.get("/api/system/config/attestation").json
    cert = x509.load_der_x509_certificate(base64.b64decode(first["crt"]))
    with pytest.raises(InvalidSignature):
        verify_genuine(first["genuine"], cert)
    verify_genuine(second["genuine"], cert)
    emu.fault(0, "tamper_attestation", count=1)
    with pytest.raises(InvalidSignature):
        verify_genuine(hem.get("/api/auth/init").json["genuine"], cert)


def issue(public_key, genuine_id):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Factory CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "#" + genuine_id)]))
            .issuer_name(name).public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .sign(key, hashes.SHA256()))


def b64der(cert):
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def test_fresh_secure_element_and_provisioning(emulator):
    emu = emulator(rtc_set=True, se_fresh=True)
    hem = client(emu)
    ans = hem.get("/api/system/config/attestation")                 # fresh device: no token needed
    assert ans.status == 200 and set(ans.json) == {"csr", "key", "genuine"}
    se_pub = serialization.load_der_public_key(base64.b64decode(ans.json["key"]))
    verify_genuine(ans.json["genuine"], public_key=se_pub)
    csr = x509.load_pem_x509_csr(ans.json["csr"].encode())
    assert csr.public_key().public_numbers() == se_pub.public_numbers()
    genuine_id = emu.device(0)["genuine_id"]
    assert emu.state(0)["se_provisioned"] is False
    # refusals: malformed, a foreign key, a bad token
    foreign = issue(ec.generate_private_key(ec.SECP256R1()).public_key(), genuine_id)
    good = issue(se_pub, genuine_id)
    assert hem.post("/api/system/config/provisioning", {"genuine": ans.json["genuine"]}).status == 400
    assert hem.post("/api/system/config/provisioning", {"genuine": "x", "crt": b64der(good)}).status == 400
    assert hem.post("/api/system/config/provisioning", {"genuine": ans.json["genuine"], "crt": "!!"}).status == 400
    bad_sig = ans.json["genuine"].rsplit(".", 1)[0] + "." + base64.b64encode(b"0" * 70).decode()
    assert hem.post("/api/system/config/provisioning", {"genuine": bad_sig, "crt": b64der(good)}).status == 400
    assert hem.post("/api/system/config/provisioning",
                    {"genuine": ans.json["genuine"], "crt": b64der(foreign)}).status == 406
    # success, then 406
    ans2 = hem.post("/api/system/config/provisioning", {"genuine": ans.json["genuine"], "crt": b64der(good)})
    assert ans2.status == 200 and ans2.raw == b""
    assert emu.state(0)["se_provisioned"] is True
    att = hem.get("/api/system/config/attestation").json
    assert set(att) == {"crt", "genuine"} and att["crt"] == b64der(good)
    verify_genuine(att["genuine"], good)
    assert hem.post("/api/system/config/provisioning", {"genuine": att["genuine"], "crt": b64der(good)}).status == 406


def test_provisioning_refused_once_personalised(emulator):
    emu = emulator(rtc_set=True, se_fresh=True)
    hem = client(emu)
    ans = hem.get("/api/system/config/attestation").json
    se_pub = serialization.load_der_public_key(base64.b64decode(ans["key"]))
    hem.personalise("pp")
    crt = issue(se_pub, emu.device(0)["genuine_id"])
    assert hem.post("/api/system/config/provisioning", {"genuine": ans["genuine"], "crt": b64der(crt)}).status == 403


# ------------------------------------------------------------------ the device clock and expired certificates

def test_genuine_is_stamped_by_the_device_clock(emulator):
    """Unset clock (no check-in since power-up): the seconds since power-up; after a check-in: the real time."""
    emu = emulator()                                            # --rtc-set not given: the clock starts unset
    hem = client(emu)
    status = hem.get("/api/system/status").json
    assert "time" not in status and "ts" not in status
    ans = hem.get("/api/system/config/attestation")             # factory-fresh: no token needed
    cert = x509.load_der_x509_certificate(base64.b64decode(ans.json["crt"]))
    ts = verify_genuine(ans.json["genuine"], cert)
    assert 0 <= ts <= hem.get("/api/system/status").json["uptime"] + 1 < 120
    emu.clock(0, -86400)                                        # the control offset moves a set clock only
    assert verify_genuine(hem.get("/api/system/config/attestation").json["genuine"], cert) < 120
    hem.checkin(emu.backend_url)
    assert "time" in hem.get("/api/system/status").json
    ts = verify_genuine(hem.get("/api/system/config/attestation").json["genuine"], cert)
    assert abs(ts - (time.time() - 86400)) < 30
    # a reboot unsets the clock again
    emu.fault(0, "reboot")
    assert emu.wait_down(0) and emu.wait_up(0)
    assert verify_genuine(hem.get("/api/system/config/attestation").json["genuine"], cert) < 120


def test_attestation_not_after(emulator):
    emu = emulator(rtc_set=True, attestation_not_after="2023-10-05")
    hem = client(emu)
    ans = hem.get("/api/system/config/attestation").json
    cert = x509.load_der_x509_certificate(base64.b64decode(ans["crt"]))
    utc = datetime.timezone.utc
    assert cert.not_valid_before_utc == datetime.datetime(2020, 10, 5, tzinfo=utc)
    assert cert.not_valid_after_utc == datetime.datetime(2023, 10, 5, tzinfo=utc)
    assert abs(verify_genuine(ans["genuine"], cert) - time.time()) < 30    # the device still signs now
    custody = load_pem(emu.custody_ca_file)
    cert.verify_directly_issued_by(custody)
    now = datetime.datetime.now(utc)
    assert custody.not_valid_before_utc < cert.not_valid_before_utc and custody.not_valid_after_utc > now
    # the same shape as without the option
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "#" + emu.device(0)["genuine_id"]


def test_attestation_not_after_is_a_date():
    run = subprocess.run([sys.executable, "-m", "tests.emulator", "--attestation-not-after", "5 Oct 2023"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 2 and "--attestation-not-after" in run.stderr and "YYYY-MM-DD" in run.stderr


# ------------------------------------------------------------------ certificates on the device's names

def served_certificate(url, ca_file, name=None):
    """The certificate served at url, verified against ca_file for `name` (default: the URL's host)."""
    parts = urlsplit(url)
    ctx = ssl.create_default_context(cafile=ca_file)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname=name or parts.hostname) as tls:   # verifies the name too
            return x509.load_der_x509_certificate(tls.getpeercert(True))


def names(cert):
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)), {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


def test_served_certificate_names_my_ence_do_and_the_bind_address(emulator):
    emu = emulator(devices=2, bind="127.0.0.2", passphrase=PASS, rtc_set=True, reboot_seconds=0.3)
    assert emu.url(1).startswith("https://127.0.0.2:")
    for i in (0, 1):
        dns, ips = names(served_certificate(emu.url(i), emu.ca_file))
        assert dns == {"localhost", "hem%d.emulator.test" % i, "my.ence.do"}, dns
        assert ips == {"127.0.0.1", "127.0.0.2"}, ips
    # a wiped device gets a new certificate on the same names, from the factory CA (not the tests' CA)
    hem = client(emu, 1)
    hem.login(PASS)
    before = served_certificate(emu.url(1), emu.ca_file)
    boot = emu.state(1)["boot_id"]
    assert hem.post("/api/system/config", {"wipeout": True}).status == 200
    assert emu.wait_new_boot(1, boot, timeout=10)
    with pytest.raises(ssl.SSLCertVerificationError):
        served_certificate(emu.url(1), emu.ca_file)
    after = served_certificate(emu.url(1), emu.factory_ca_file)
    assert after.serial_number != before.serial_number
    assert names(after) == ({"localhost", "hem1.emulator.test", "my.ence.do"}, {"127.0.0.1", "127.0.0.2"})


def test_default_bind_names(emulator):
    emu = emulator()
    dns, ips = names(served_certificate(emu.url(0), emu.ca_file))
    assert "my.ence.do" in dns and ips == {"127.0.0.1"}
    # a client that reaches the device as https://my.ence.do (as the vendor's clients do) verifies it
    assert served_certificate(emu.url(0), emu.ca_file, name="my.ence.do").serial_number
    with pytest.raises(ssl.SSLCertVerificationError):
        served_certificate(emu.url(0), emu.ca_file, name="other.ence.do")
