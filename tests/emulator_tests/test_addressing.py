# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Addressing: a device personalised with another `ip` answers there only, from the reboot that applies it;
a wiped device comes back at the factory address with a factory certificate (issue 25 items 1 and 6).

Issue 25 item 1 (package docstring "Addressing", docs/fidelity.md): the web manager shows the PPA's
address "(fixed)" at 192.168.7.1; a personalised `ip` takes effect at the reboot that the
personalisation answer asks for. Here the factory address is the emulator's --bind address.
"""

from __future__ import annotations

import ipaddress

import pytest
import requests
from cryptography import x509

from .conftest import client
from .hemclient import Hem

MOVED = "127.0.0.7"


def _names(cert_pem):
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    return [str(a) for a in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            .get_values_for_type(x509.IPAddress)]


def _moved_url(url, address):
    return url.replace("127.0.0.1", address)


def test_a_new_ip_moves_the_device_at_the_reboot_that_applies_it(emulator):
    emu = emulator(rtc_set=True, reboot_seconds=0.3)
    hem = client(emu)
    ans = hem.personalise("pp", ip=MOVED + "/8")
    assert ans.json.get("reboot_required") is True
    # before the reboot: still at the old address
    assert hem.get("/api/system/status").status == 200
    assert emu.state(0)["address"] == "127.0.0.1"
    boot = emu.state(0)["boot_id"]
    assert hem.get("/api/system/reboot").status == 200
    assert emu.wait_new_boot(0, boot)
    state = emu.state(0)
    assert state["address"] == MOVED and state["url"] == _moved_url(emu.url(0), MOVED)
    assert MOVED in _names(state["tls_cert_pem"])
    # the old address resets every connection, over HTTPS and plain HTTP
    for url in (emu.url(0), emu.http_url(0)):
        with pytest.raises(requests.exceptions.ConnectionError):
            Hem(url, emu.ca_file, timeout=3).get("/api/system/status")
    # the new one answers, with a certificate of the tests' CA naming it (verified: the host is the IP)
    moved = Hem(state["url"], emu.ca_file)
    assert moved.get("/api/system/status").status == 200
    assert Hem(state["http_url"], emu.ca_file).get("/api/system/status").status == 200
    assert [d["url"] for d in emu.devices_info()] == [state["url"]]


def test_the_factory_ip_stays_at_the_bind_address(emulator):
    emu = emulator(rtc_set=True, reboot_seconds=0.3)
    hem = client(emu)
    assert "reboot_required" not in hem.personalise("pp").json
    boot = emu.state(0)["boot_id"]
    assert hem.get("/api/system/reboot").status == 200
    assert emu.wait_new_boot(0, boot)
    assert emu.state(0)["address"] == "127.0.0.1"
    assert hem.get("/api/system/status", auth=False).status == 200


def test_an_address_the_host_cannot_bind_leaves_the_device_unreachable(emulator):
    emu = emulator(rtc_set=True, reboot_seconds=0.3)
    hem = client(emu)
    hem.personalise("pp", ip="10.9.9.9/8")
    boot = emu.state(0)["boot_id"]
    assert hem.get("/api/system/reboot").status == 200
    assert emu.wait_new_boot(0, boot)
    assert emu.state(0)["address"] == "10.9.9.9"
    with pytest.raises(requests.exceptions.ConnectionError):
        Hem(emu.url(0), emu.ca_file, timeout=3).get("/api/system/status")
    assert any("10.9.9.9" in line and "unreachable" in line for line in emu.stderr_lines)


def test_a_wipe_brings_a_moved_device_back_at_the_factory_address(emulator):
    emu = emulator(rtc_set=True, reboot_seconds=0.3)
    hem = client(emu)
    hem.personalise("pp", ip=MOVED + "/8")
    boot = emu.state(0)["boot_id"]
    hem.get("/api/system/reboot")
    assert emu.wait_new_boot(0, boot)
    moved = Hem(emu.state(0)["url"], emu.ca_file)
    moved.login("pp", expect=403)          # clock unset after the reboot
    assert moved.checkin(emu.backend_url).status == 200
    moved.login("pp")
    boot = emu.state(0)["boot_id"]
    assert moved.post("/api/system/config", {"wipeout": True}).status == 200
    assert emu.wait_new_boot(0, boot)
    state = emu.state(0)
    assert state["address"] == "127.0.0.1" and state["url"] == emu.url(0) and not state["personalised"]
    with pytest.raises(requests.exceptions.ConnectionError):
        Hem(moved.url, emu.ca_file, timeout=3).get("/api/system/status")
    assert ipaddress.ip_address(MOVED) not in [ipaddress.ip_address(a) for a in _names(state["tls_cert_pem"])]
    # item 6: back with a factory certificate, which the tests' CA does not verify
    with pytest.raises(requests.exceptions.SSLError):
        Hem(emu.url(0), emu.ca_file, timeout=3).get("/api/system/status")
    assert Hem(emu.url(0), emu.factory_ca_file).get("/api/system/status").json["inited"] is False


def test_a_wiped_device_serves_a_factory_certificate_not_of_the_tests_ca(emulator):
    emu = emulator(passphrase="pp", rtc_set=True, reboot_seconds=0.3)
    hem = client(emu)
    hem.login("pp")
    boot = emu.state(0)["boot_id"]
    assert hem.post("/api/system/config", {"wipeout": True}).status == 200
    assert emu.wait_new_boot(0, boot)
    cert = x509.load_pem_x509_certificate(emu.state(0)["tls_cert_pem"].encode())
    with open(emu.factory_ca_file, "rb") as fh:
        factory = x509.load_pem_x509_certificate(fh.read())
    with open(emu.ca_file, "rb") as fh:
        tests_ca = x509.load_pem_x509_certificate(fh.read())
    assert cert.issuer == factory.subject != tests_ca.subject
    with pytest.raises(requests.exceptions.SSLError):
        Hem(emu.url(0), emu.ca_file, timeout=3).get("/api/system/status")
    assert Hem(emu.url(0), emu.factory_ca_file).get("/api/system/status").json["inited"] is False


def _dns_names(cert_pem):
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)


def test_the_certificate_follows_the_personalised_hostname_from_the_next_boot(emulator):
    """Issue 25 item 9: the device's CSRs name the personalised hostname and ip (OA `gen_csr`), so the emulator's own
    certificate (the tests' CA) names them from the boot after the personalisation; an imported one is never re-issued."""
    emu = emulator(rtc_set=True, reboot_seconds=0.3)
    hem = client(emu)
    hem.personalise("pp", hostname="vault7.example.test", ip=MOVED + "/8")
    assert "vault7.example.test" not in _dns_names(emu.state(0)["tls_cert_pem"])   # served as it was until the reboot
    boot = emu.state(0)["boot_id"]
    assert hem.get("/api/system/reboot").status == 200
    assert emu.wait_new_boot(0, boot)
    served = emu.state(0)["tls_cert_pem"]
    assert "vault7.example.test" in _dns_names(served) and MOVED in _names(served)
    # the names the tests reach it by stay
    assert {"localhost", "my.ence.do"} <= set(_dns_names(served))
