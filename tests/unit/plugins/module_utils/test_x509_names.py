# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_x509.tls_client_accepts_host / name_mismatch: the names a TLS client (Python's ssl, OpenSSL's host check)
accepts for a URL host, so that encedo_tls never uploads a certificate that locks the controller out (issue 17).
Pure logic: an in-memory handshake, no network."""

from __future__ import annotations

import datetime
import ipaddress
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

try:
    from ansible_collections.encedo.hem.plugins.module_utils import _x509
except ImportError:  # run without the collection link on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "build" / "collections"))
    from ansible_collections.encedo.hem.plugins.module_utils import _x509


def certificate(dns=(), ips=(), cn="device"):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(7).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=2)))
    sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256())


FLEET = certificate(dns=("hem1.example.com", "*.fleet.example.com"), ips=("10.0.0.5", "fd00::5"))


@pytest.mark.parametrize("host,accepted", [
    ("hem1.example.com", True),
    ("HEM1.Example.COM", True),            # DNS names match case-insensitively
    ("a.fleet.example.com", True),         # a wildcard covers one label ...
    ("a.b.fleet.example.com", False),      # ... not two
    ("fleet.example.com", False),          # ... and not the parent itself
    ("10.0.0.5", True),
    ("fd00::5", True),
    ("[fd00::5]", True),                   # as urlsplit().netloc has it
    ("10.0.0.6", False),
    ("hem2.example.com", False),
])
def test_what_a_tls_client_accepts(host, accepted):
    assert _x509.tls_client_accepts_host(FLEET, host) is accepted
    assert (_x509.name_mismatch(FLEET, host) is None) is accepted


def test_an_ip_address_needs_an_ip_entry_not_a_dns_name():
    cert = certificate(dns=("10.0.0.5",))
    assert not _x509.tls_client_accepts_host(cert, "10.0.0.5")
    assert _x509.name_mismatch(cert, "10.0.0.5") == (
        "the certificate names DNS:10.0.0.5; 10.0.0.5 (the host of url) needs IP:10.0.0.5 (an IP address matches only an "
        "IP entry, never a DNS name)")


def test_the_message_names_the_certificates_names_and_what_the_host_needs():
    assert _x509.name_mismatch(FLEET, "hem2.example.com") == (
        "the certificate names DNS:hem1.example.com, DNS:*.fleet.example.com, IP:10.0.0.5, IP:fd00::5; hem2.example.com "
        "(the host of url) needs DNS:hem2.example.com or DNS:*.example.com")
    assert _x509.name_mismatch(certificate(dns=("a.example.com",)), "my") == (
        "the certificate names DNS:a.example.com; my (the host of url) needs DNS:my")


def test_a_certificate_without_subject_alt_names():
    # Python's ssl falls back to the subject CN only when there is no subjectAltName at all.
    assert _x509.tls_client_accepts_host(certificate(cn="my.ence.do"), "my.ence.do")
    assert _x509.name_mismatch(certificate(cn="my.ence.do"), "192.168.7.1") == (
        "the certificate names no subjectAltName (subject CN my.ence.do); 192.168.7.1 (the host of url) needs IP:192.168.7.1 "
        "(an IP address matches only an IP entry, never a DNS name)")
