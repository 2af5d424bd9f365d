# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reboot, shutdown and TLS certificate import (served only after a reboot)."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import socket
import ssl

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.emulator import util

from .conftest import PASS, client


def served_cert(url):
    host, port = url.split("//")[1].split(":")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        with ctx.wrap_socket(sock) as tls:
            der = tls.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der)


def make_ca():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Ops CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def sign(ca, public_key, cn="localhost"):
    ca_key, ca_cert = ca
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_cert.subject).public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))


def der_b64(cert):
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


@pytest.fixture
def dev(emulator):
    emu = emulator(passphrase=PASS, rtc_set=True, reboot_seconds=0.5)
    hem = client(emu)
    hem.login(PASS)
    return emu, hem


def reboot(emu, hem):
    boot = emu.state(0)["boot_id"]
    assert hem.get("/api/system/reboot").status == 200
    assert emu.wait_new_boot(0, boot, timeout=10)
    assert emu.state(0)["boot_id"] != boot


def test_reboot_semantics(dev):
    emu, hem = dev
    st0 = emu.state(0)
    assert st0["rtc_set"] is True
    spk0 = hem.get("/api/system/config").json["spk"]
    assert hem.get("/api/system/reboot").status == 200
    with pytest.raises(requests.ConnectionError):          # unreachable while rebooting
        hem.get("/api/system/status")
    assert emu.wait_up(0, timeout=10)
    st = emu.state(0)
    assert st["boot_id"] != st0["boot_id"] and st["rtc_set"] is False and st["uptime"] <= 1
    assert hem.get("/api/system/config").status == 401
    hem.token = None
    hem.login(PASS, expect=403)
    hem.checkin(emu.backend_url)
    hem.login(PASS)
    assert hem.get("/api/system/config").json["spk"] != spk0       # new session key per boot


def test_reboot_needs_scope_shutdown_needs_token(emulator):
    emu = emulator(passphrase=PASS, rtc_set=True, reboot_seconds=0.3)
    hem = client(emu)
    assert hem.get("/api/system/reboot").status == 401
    assert hem.get("/api/system/shutdown").status == 401
    hem.login(PASS, scope="logger:get")
    assert hem.get("/api/system/reboot").status == 403
    assert hem.get("/api/system/shutdown").status == 403
    hem.login(PASS, scope="system:shutdown")
    boot = emu.state(0)["boot_id"]
    assert hem.get("/api/system/shutdown").status == 200
    assert emu.wait_new_boot(0, boot, timeout=10) and emu.state(0)["boot_id"] != boot
    fresh = emulator(reboot_seconds=0.3)
    fresh_boot = fresh.state(0)["boot_id"]
    assert client(fresh).get("/api/system/reboot").status == 200      # no token needed on a fresh device
    assert fresh.wait_new_boot(0, fresh_boot, timeout=10)
    assert client(fresh).get("/api/system/shutdown").status == 401    # shutdown always needs a token


def test_reboot_fault(dev):
    emu, hem = dev
    boot = emu.state(0)["boot_id"]
    emu.fault(0, "reboot")
    assert emu.wait_up(0, timeout=10)
    assert emu.state(0)["boot_id"] != boot
    assert hem.get("/api/system/config").status == 401


def test_tls_import_crt_alone(dev):
    emu, hem = dev
    ca = make_ca()
    before = served_cert(emu.url(0))
    csr = x509.load_pem_x509_csr(hem.post("/api/system/config", {"gen_csr": True}).json["csr"].encode())
    # a certificate for another key is refused, nothing pending
    other = sign(ca, ec.generate_private_key(ec.SECP256R1()).public_key())
    ans = hem.post("/api/system/config", {"tls": {"crt": der_b64(other)}})
    assert ans.status == 400 and ans.json == {"updated": False}
    assert emu.state(0)["pending_tls"] is False
    # the right one is accepted, pending until the reboot
    new = sign(ca, csr.public_key())
    ans = hem.post("/api/system/config", {"tls": {"crt": der_b64(new)}, "gen_csr": True})
    assert ans.json == {"updated": True, "reboot_required": True}            # gen_csr ignored with an import
    assert emu.state(0)["pending_tls"] is True
    assert served_cert(emu.url(0)).serial_number == before.serial_number
    log = emu.posts(0)[-1]
    assert log["keys"] == ["gen_csr", "tls"] and log["tls_keys"] == ["crt"]
    reboot(emu, hem)
    assert served_cert(emu.url(0)).serial_number == new.serial_number
    assert emu.state(0)["pending_tls"] is False
    ca_file = os.path.join(os.path.dirname(emu.ca_file), "ops-ca.pem")
    with open(ca_file, "wb") as fh:
        fh.write(ca[1].public_bytes(serialization.Encoding.PEM))
    assert requests.get(emu.url(0) + "/api/system/status", verify=ca_file, timeout=5).status_code == 200


def test_tls_import_with_key(dev):
    emu, hem = dev
    ca = make_ca()
    device_pub = served_cert(emu.url(0)).public_key()
    new_key = ec.generate_private_key(ec.SECP256R1())
    wrapped = util.wrap_tls_key(new_key, device_pub)
    emp, blob = wrapped["emp"], wrapped["key"]
    assert len(blob) == 113
    crt = sign(ca, new_key.public_key())
    # a crt not matching the imported key is refused; a malformed key too
    wrong = sign(ca, ec.generate_private_key(ec.SECP256R1()).public_key())
    assert hem.post("/api/system/config", {"tls": {"emp": emp, "key": blob, "crt": der_b64(wrong)}}).status == 400
    assert hem.post("/api/system/config", {"tls": {"emp": emp, "key": blob[:-1], "crt": der_b64(crt)}}).status == 400
    assert hem.post("/api/system/config", {"tls": {"emp": "AAAA", "key": blob, "crt": der_b64(crt)}}).status == 400
    assert hem.post("/api/system/config", {"tls": {"key": blob, "crt": der_b64(crt)}}).status == 400
    ans = hem.post("/api/system/config", {"tls": {"emp": emp, "key": blob, "crt": der_b64(crt)}})
    assert ans.json == {"updated": True, "reboot_required": True}
    assert emu.posts(0)[-1]["tls_keys"] == ["crt", "emp", "key"]
    reboot(emu, hem)
    served = served_cert(emu.url(0))
    assert served.serial_number == crt.serial_number
    assert served.public_key().public_numbers() == new_key.public_key().public_numbers()


def test_fresh_mode_tls_is_installed_at_once(emulator):
    emu = emulator()
    hem = client(emu)
    ca = make_ca()
    key = served_cert(emu.url(0)).public_key()
    crt = sign(ca, key)
    ans = hem.post("/api/system/config", {"tls": {"crt": der_b64(crt)}})
    assert ans.status == 200 and ans.raw == b""
    assert served_cert(emu.url(0)).serial_number == crt.serial_number


def test_device_certificate_names(emulator):
    emu = emulator(devices=2)
    cert = served_cert(emu.url(1))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "hem1.emulator.test", "my.ence.do"}
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert requests.get(emu.url(1) + "/api/system/status", verify=emu.ca_file, timeout=5).status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(emu.url(1) + "/api/system/status", timeout=5)          # not trusted without the CA file
