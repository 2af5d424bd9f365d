# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of plugins/module_utils/_x509.py.

Every CA, key and certificate is generated at run time; no private key is committed.
The TLS handshake tests use a real TLS server on 127.0.0.1 (free port, stopped at the end).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import socket
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from ansible_collections.encedo.hem.plugins.module_utils import _x509
from ansible_collections.encedo.hem.plugins.module_utils._client import HemClient
from ansible_collections.encedo.hem.plugins.module_utils._x509 import X509Error
from tests.unit.loopback import ConnectProxy, LoopbackServer

UTC = datetime.timezone.utc
NOW = datetime.datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)


# ----------------------------------------------------------------------------- builders

def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn="Test CA", key=None):
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(_name(cn))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_leaf(ca_key, ca_cert, key=None, cn="hem0.emulator.test", days=365, start=None,
              sans=("localhost", "127.0.0.1", "hem0.emulator.test")):
    key = key or ec.generate_private_key(ec.SECP256R1())
    start = start or datetime.datetime.now(UTC) - datetime.timedelta(minutes=5)
    names = []
    for s in sans:
        try:
            import ipaddress
            names.append(x509.IPAddress(ipaddress.ip_address(s)))
        except ValueError:
            names.append(x509.DNSName(s))
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=days))
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def make_csr(key, cn="hem0.emulator.test"):
    return x509.CertificateSigningRequestBuilder().subject_name(_name(cn)).sign(key, hashes.SHA256())


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def der(cert):
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def pki():
    ca_key, ca = make_ca("Test CA")
    leaf_key, leaf = make_leaf(ca_key, ca)
    return {"ca_key": ca_key, "ca": ca, "leaf_key": leaf_key, "leaf": leaf}


# ----------------------------------------------------------------------------- parsing

def test_pem_and_base64_der_give_the_same_certificate(pki):
    leaf = pki["leaf"]
    b64 = base64.b64encode(der(leaf)).decode()
    wrapped = "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
    urlsafe = base64.urlsafe_b64encode(der(leaf)).decode().rstrip("=")
    for form in (pem(leaf), b64, wrapped, "  " + b64 + "\n", urlsafe, der(leaf), pem(leaf).encode()):
        cert = _x509.load_certificate(form)
        assert _x509.cert_der(cert) == der(leaf)


def test_pem_with_text_around_is_accepted(pki):
    text = "Certificate:\n    Data: whatever openssl printed\n" + pem(pki["leaf"])
    assert _x509.cert_der(_x509.load_certificate(text)) == der(pki["leaf"])


def test_chain_is_refused(pki):
    with pytest.raises(X509Error, match="2 certificates"):
        _x509.load_certificate(pem(pki["leaf"]) + pem(pki["ca"]))


def test_der_with_trailing_certificate_is_refused(pki):
    blob = base64.b64encode(der(pki["leaf"]) + der(pki["ca"])).decode()
    with pytest.raises(X509Error, match="more than one certificate|not an X.509"):
        _x509.load_certificate(blob)


def test_private_key_is_refused_and_not_echoed(pki):
    key_pem = pki["leaf_key"].private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    with pytest.raises(X509Error, match="private key") as err:
        _x509.load_certificate(key_pem + pem(pki["leaf"]))
    assert key_pem.splitlines()[1] not in str(err.value)


def test_csr_given_as_certificate_is_named(pki):
    csr = make_csr(pki["leaf_key"])
    with pytest.raises(X509Error, match="CERTIFICATE REQUEST"):
        _x509.load_certificate(csr.public_bytes(serialization.Encoding.PEM).decode())
    with pytest.raises(X509Error, match="signing request"):
        _x509.load_certificate(base64.b64encode(csr.public_bytes(serialization.Encoding.DER)).decode())


@pytest.mark.parametrize("bad", ["", "   ", "hello world", "SGVsbG8gd29ybGQ=", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                                 "-----BEGIN CERTIFICATE-----\nno end"])
def test_non_certificates_are_refused(bad):
    with pytest.raises(X509Error):
        _x509.load_certificate(bad)


def test_load_certificates_reads_a_bundle(pki):
    other_key, other = make_ca("Other CA")
    certs = _x509.load_certificates(pem(pki["ca"]) + pem(other))
    assert [der(c) for c in certs] == [der(pki["ca"]), der(other)]
    with pytest.raises(X509Error, match="not certificates"):
        _x509.load_certificates(pem(pki["ca"]) + make_csr(other_key).public_bytes(serialization.Encoding.PEM).decode())


# ----------------------------------------------------------------------------- facts

def test_facts_are_computed_independently(pki):
    leaf = pki["leaf"]
    facts = _x509.certificate_facts(leaf, now=NOW)
    want_fp = hashlib.sha256(der(leaf)).hexdigest()
    spki = leaf.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    want_spki = hashlib.sha256(spki).hexdigest()
    assert facts["fingerprint_sha256"].replace(":", "") == want_fp
    assert facts["spki_sha256"].replace(":", "") == want_spki
    assert facts["subject"] == "CN=hem0.emulator.test"
    assert facts["issuer"] == "CN=Test CA"
    assert facts["subject_alt_names"] == ["DNS:localhost", "IP:127.0.0.1", "DNS:hem0.emulator.test"]
    assert facts["serial_number"] == "%x" % leaf.serial_number
    assert facts["public_key_type"] == "EC secp256r1"
    assert facts["self_signed"] is False
    assert _x509.certificate_facts(pki["ca"])["self_signed"] is True


def test_dates_and_days_remaining():
    ca_key, ca = make_ca()
    start = datetime.datetime(2030, 1, 1, 0, 0, 0, tzinfo=UTC)
    dummy, leaf = make_leaf(ca_key, ca, start=start, days=200)
    facts = _x509.certificate_facts(leaf, now=NOW)
    assert facts["not_before"] == "2030-01-01T00:00:00Z"
    assert facts["not_after"] == "2030-07-20T00:00:00Z"
    # 2030-06-01T12:00 -> 2030-07-20T00:00 is 48.5 days: whole days left = 48
    assert facts["days_remaining"] == 48
    assert not _x509.is_expired(leaf, now=NOW)
    later = datetime.datetime(2030, 8, 1, tzinfo=UTC)
    assert _x509.is_expired(leaf, now=later)
    assert _x509.days_remaining(leaf, now=later) < 0
    assert _x509.is_not_yet_valid(leaf, now=datetime.datetime(2029, 12, 31, tzinfo=UTC))


def test_rsa_certificate_facts_and_issuer():
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_key, ca = make_ca("RSA CA", key=rsa_key)
    dummy, leaf = make_leaf(ca_key, ca, sans=())
    assert _x509.certificate_facts(ca)["public_key_type"] == "RSA 2048"
    assert _x509.certificate_facts(leaf)["subject_alt_names"] == []
    assert _x509.is_issued_by(leaf, ca)


# ----------------------------------------------------------------------------- issuer and key match

def test_issuer_match_checks_the_signature_not_only_the_name(pki):
    assert _x509.is_issued_by(pki["leaf"], pki["ca"])
    # same subject name, different key: an impostor CA must not match
    dummy, impostor = make_ca("Test CA")
    assert not _x509.is_issued_by(pki["leaf"], impostor)
    dummy, other = make_ca("Other CA")
    assert not _x509.is_issued_by(pki["leaf"], other)
    assert _x509.issued_by_any(pki["leaf"], [other, impostor, pki["ca"]])
    assert not _x509.issued_by_any(pki["leaf"], [other, impostor])


def test_key_match_between_certificate_and_csr(pki):
    csr = make_csr(pki["leaf_key"])
    assert _x509.same_key(pki["leaf"], csr)
    assert _x509.spki_sha256(csr) == _x509.spki_sha256(pki["leaf"])
    dummy, other_leaf = make_leaf(pki["ca_key"], pki["ca"])
    assert not _x509.same_key(other_leaf, csr)


def test_tls_client_accepts_host_names(pki):
    leaf = pki["leaf"]
    assert _x509.tls_client_accepts_host(leaf, "localhost")
    assert _x509.tls_client_accepts_host(leaf, "127.0.0.1")
    assert _x509.tls_client_accepts_host(leaf, "HEM0.emulator.test")
    assert not _x509.tls_client_accepts_host(leaf, "hem1.emulator.test")
    assert not _x509.tls_client_accepts_host(leaf, "127.0.0.2")
    dummy, wild = make_leaf(pki["ca_key"], pki["ca"], sans=("*.example.org",))
    assert _x509.tls_client_accepts_host(wild, "a.example.org")
    assert not _x509.tls_client_accepts_host(wild, "a.b.example.org")


# ----------------------------------------------------------------------------- CSR normalisation

def test_csr_pem_and_base64_der_normalise_to_the_same_pem(pki):
    csr = make_csr(pki["leaf_key"])
    want = csr.public_bytes(serialization.Encoding.PEM).decode()
    b64 = base64.b64encode(csr.public_bytes(serialization.Encoding.DER)).decode()
    for form in (want, b64, b64.rstrip("="), want.replace("\n", "\r\n")):
        assert _x509.csr_pem(_x509.load_csr(form)) == want
    facts = _x509.csr_facts(_x509.load_csr(b64))
    assert facts["signature_valid"] is True
    assert facts["spki_sha256"] == _x509.spki_sha256(pki["leaf"])


@pytest.mark.parametrize("bad", ["", "not a csr", "QUJD"])
def test_bad_csr(bad):
    with pytest.raises(X509Error):
        _x509.load_csr(bad)


def test_certificate_is_not_a_csr(pki):
    with pytest.raises(X509Error):
        _x509.load_csr(pem(pki["leaf"]))


# ----------------------------------------------------------------------------- key import shape

def _good_key_import():
    point = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    emp = base64.b64encode(point).decode()
    key = base64.b64encode(os.urandom(16)).decode() + "." + base64.b64encode(os.urandom(64)).decode()
    return emp, key


def test_key_import_good_shape_passes_untouched():
    emp, key = _good_key_import()
    assert len(key) == 113
    assert _x509.validate_key_import(emp, key) == {"emp": emp, "key": key}


def test_key_import_emp_as_spki_der_is_refused():
    pub = ec.generate_private_key(ec.SECP256R1()).public_key()
    spki = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    dummy, key = _good_key_import()
    with pytest.raises(X509Error, match="key_import.emp .*65-byte uncompressed point"):
        _x509.validate_key_import(base64.b64encode(spki).decode(), key)


def test_key_import_emp_off_curve_is_refused():
    dummy, key = _good_key_import()
    bogus = base64.b64encode(b"\x04" + b"\x01" * 64).decode()
    with pytest.raises(X509Error, match="not a point on the P-256 curve"):
        _x509.validate_key_import(bogus, key)


@pytest.mark.parametrize("mutate, match", [
    (lambda k: k[:-1], "exactly 113"),
    (lambda k: k + "A", "exactly 113"),
    (lambda k: k.replace(".", "A"), "exactly one '.'"),
    (lambda k: k[:24] + "!" + k[25:], "exactly one '.'"),
    (lambda k: "@" + k[1:], "not base64"),
    (lambda k: base64.b64encode(os.urandom(15)).decode() + "." + base64.b64encode(os.urandom(69)).decode(), "IV must be 16 bytes"),
    (lambda k: base64.b64encode(os.urandom(16)).decode() + "." + base64.b64encode(os.urandom(66)).decode(), "16-byte AES blocks"),
])
def test_key_import_malformed_key_is_refused_without_echo(mutate, match):
    emp, key = _good_key_import()
    bad = mutate(key)
    with pytest.raises(X509Error, match=match) as err:
        _x509.validate_key_import(emp, bad)
    assert bad not in str(err.value)
    assert key.split(".")[1][:20] not in str(err.value)


@pytest.mark.parametrize("emp", ["", "%%%", base64.b64encode(b"\x04" + b"\x00" * 10).decode()])
def test_key_import_bad_emp(emp):
    dummy, key = _good_key_import()
    with pytest.raises(X509Error, match="key_import.emp"):
        _x509.validate_key_import(emp, key)


# ----------------------------------------------------------------------------- TLS handshake

def fetch_served(url, validate_certs=True, ca_path=None, timeout=30):
    """The served certificate as encedo_tls reads it: from the module's client."""
    return _x509._served_der(HemClient(url, validate_certs=validate_certs, ca_path=ca_path, timeout=timeout))


class TLSServer(LoopbackServer):
    """A minimal TLS server on 127.0.0.1 (free port) presenting one certificate."""

    def __init__(self, tmp_path, key, cert):
        self.certfile = tmp_path / "srv.pem"
        self.certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(self.certfile))
        super().__init__()

    def handle(self, conn):
        try:
            conn.settimeout(2)
            with self.ctx.wrap_socket(conn, server_side=True):
                pass
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def close(self):
        super().close()
        os.unlink(self.certfile)


@pytest.fixture()
def served(tmp_path, pki):
    server = TLSServer(tmp_path, pki["leaf_key"], pki["leaf"])
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(pem(pki["ca"]))
    yield server, ca_file
    server.close()


def test_fetch_verified_with_the_right_ca(served, pki):
    server, ca_file = served
    got = fetch_served("https://127.0.0.1:%d" % server.port, ca_path=str(ca_file), timeout=5)
    assert got == der(pki["leaf"])
    got = fetch_served("https://localhost:%d/api" % server.port, ca_path=str(ca_file), timeout=5)
    assert got == der(pki["leaf"])


def test_served_certificate_of_a_client(served, pki):
    """The one helper: the certificate the client's last HTTPS request met when it made one (no connection),
    else a handshake of its own, verified like the client's requests."""
    server, ca_file = served
    client = HemClient("https://127.0.0.1:%d" % server.port, ca_path=str(ca_file), timeout=5)
    assert _x509.served_certificate(client) == pki["leaf"]      # no request made yet: one of its own

    class Captured(object):
        """A client that already met a certificate; its url has nothing listening, so a connection would fail."""
        url, validate_certs, ca_path, timeout = "https://127.0.0.1:1", True, None, 1.0

        @staticmethod
        def served_certificate():
            return der(pki["ca"])

    assert _x509.served_certificate(Captured()) == pki["ca"]
    Captured.served_certificate = staticmethod(lambda: b"not DER")
    with pytest.raises(X509Error, match="the certificate the device serves is not an X.509 certificate"):
        _x509.served_certificate(Captured())


def test_fetch_with_a_ca_directory(served, pki, tmp_path):
    server, ca_file = served
    cadir = tmp_path / "cadir"
    cadir.mkdir()
    # OpenSSL looks CAs up in a directory by subject hash: let it build the link name.
    (cadir / "ca.pem").write_text(pem(pki["ca"]))
    ctx = ssl.create_default_context(cafile=str(ca_file))
    assert ctx.cert_store_stats()["x509_ca"] == 1
    import subprocess
    h = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(cadir / "ca.pem")], capture_output=True, text=True, check=False)
    if h.returncode != 0:
        pytest.fail("openssl is needed to hash a CA directory: %s" % h.stderr)
    os.symlink("ca.pem", str(cadir / (h.stdout.strip() + ".0")))
    got = fetch_served("https://127.0.0.1:%d" % server.port, ca_path=str(cadir), timeout=5)
    assert got == der(pki["leaf"])


def test_fetch_untrusted_says_what_is_served(served, tmp_path):
    server, dummy = served
    dummy_key, other_ca = make_ca("Users New CA")
    other = tmp_path / "other.pem"
    other.write_text(pem(other_ca))
    with pytest.raises(X509Error) as err:
        fetch_served("https://127.0.0.1:%d" % server.port, ca_path=str(other), timeout=5)
    msg = str(err.value)
    assert "TLS verification of 127.0.0.1:%d failed" % server.port in msg
    assert "CN=hem0.emulator.test" in msg and "issuer CN=Test CA" in msg
    assert "ca_path must trust" in msg


def test_fetch_wrong_hostname_is_refused(pki, tmp_path):
    key, leaf = make_leaf(pki["ca_key"], pki["ca"], sans=("hem0.emulator.test",))
    server = TLSServer(tmp_path, key, leaf)
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(pem(pki["ca"]))
    try:
        # trusted issuer, but no SAN for 127.0.0.1: verification on must refuse it
        with pytest.raises(X509Error, match="TLS verification.*(IP address mismatch|hostname)"):
            fetch_served("https://127.0.0.1:%d" % server.port, ca_path=str(ca_file), timeout=5)
        assert fetch_served("https://127.0.0.1:%d" % server.port, validate_certs=False, timeout=5) == der(leaf)
    finally:
        server.close()


def test_fetch_without_verification(served, pki):
    server, dummy = served
    got = fetch_served("https://127.0.0.1:%d" % server.port, validate_certs=False, timeout=5)
    assert got == der(pki["leaf"])


def test_fetch_errors():
    with pytest.raises(X509Error, match="https://"):
        fetch_served("http://127.0.0.1:1")
    with pytest.raises(X509Error, match="ca_path /nonexistent/ca.pem cannot be read as a PEM CA bundle"):
        fetch_served("https://127.0.0.1:1", ca_path="/nonexistent/ca.pem")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(X509Error, match="cannot connect"):
        fetch_served("https://127.0.0.1:%d" % port, validate_certs=False, timeout=2)


def test_fetch_goes_through_the_environment_proxy_like_the_api_requests(served, pki, monkeypatch):
    server, ca_file = served
    proxy = ConnectProxy()
    try:
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTPS_PROXY", "http://user:s%%40cret@127.0.0.1:%d" % proxy.port)
        url = "https://localhost:%d" % server.port
        assert fetch_served(url, ca_path=str(ca_file), timeout=5) == der(pki["leaf"])
        assert proxy.tunnels == ["localhost:%d" % server.port]
        assert proxy.auth == ["Proxy-Authorization: Basic " + base64.b64encode(b"user:s@cret").decode()]
        monkeypatch.setenv("NO_PROXY", "localhost")
        assert fetch_served(url, ca_path=str(ca_file), timeout=5) == der(pki["leaf"])
        assert len(proxy.tunnels) == 1  # bypassed
    finally:
        proxy.close()


def test_default_trust_is_certifi_never_the_environment(served, monkeypatch):
    server, ca_file = served
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    # the test CA is in no public bundle: verification on without ca_path must refuse it
    with pytest.raises(X509Error, match="TLS verification"):
        fetch_served("https://127.0.0.1:%d" % server.port, timeout=5)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.setenv(name, str(ca_file))    # requests would trust these; the collection does not
    with pytest.raises(X509Error, match="TLS verification"):
        fetch_served("https://127.0.0.1:%d" % server.port, timeout=5)
