# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""HemClient's transport (requests) against the emulator over real sockets: IPv6 device
addresses directly and through a proxy, an HTTPS proxy, ``no_proxy`` with CIDR blocks,
the ``proxy_url`` option, non-ASCII host names, the default trust and ``ca_path``
against ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``, the served certificate read from the
requests made anyway, and the lazy import of requests."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.emulator.proxy import CountingProxy

try:
    from ansible_collections.encedo.hem.plugins.module_utils import _client as C
except ImportError:  # run without the collection link on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "build" / "collections"))
    from ansible_collections.encedo.hem.plugins.module_utils import _client as C
from ansible_collections.encedo.hem.plugins.module_utils import _errors as E

PASSPHRASE = "transport-passphrase-42"
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy")
CA_VARS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in PROXY_VARS + CA_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def v4(emulator_module):
    return emulator_module(passphrase=PASSPHRASE, rtc_set=True)


@pytest.fixture(scope="module")
def v6(emulator_module):
    return emulator_module(passphrase=PASSPHRASE, rtc_set=True, bind="::1")


def status_count(emu):
    return sum(1 for e in emu.log(0) if e["path"] == "/api/system/status")


def make_tls_pair(tmp_path, name="127.0.0.1"):
    """A CA and a server certificate for ``name`` (an IP address): (ca_pem_path, cert_path, key_path)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Proxy Test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "proxy")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(name))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = tmp_path / "proxy-ca.pem", tmp_path / "proxy.pem", tmp_path / "proxy.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return [str(p) for p in paths]


# ------------------------------------------------------------------ lazy import

def test_requests_is_imported_by_the_first_request_only(v4):
    """A module run that sends nothing does not pay the import of requests (nor of cryptography)."""
    collections = str(Path(C.__file__).parents[5])     # the directory that holds ansible_collections/
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from ansible_collections.encedo.hem.plugins.module_utils import _client, _module\n"
            "client = _client.HemClient(%r, ca_path=%r)\n"
            "third = ('requests', 'urllib3', 'certifi', 'cryptography')\n"
            "print(sorted(m for m in third if m in sys.modules))\n"
            "assert 'uptime' in client.status()\n"
            "print(sorted(m for m in third if m in sys.modules))\n" % (collections, v4.url(0), v4.ca_file))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout.split("\n")
    assert out[0] == "[]"
    assert "'requests'" in out[1] and "'cryptography'" not in out[1]


# ------------------------------------------------------------------ trust

def test_default_trust_is_certifi_and_ca_path_always_wins(v4, tmp_path, monkeypatch):
    unrelated = make_tls_pair(tmp_path)[0]          # a CA bundle that did not sign the device certificate
    # nothing set: certifi's bundle, which does not hold the emulator's CA
    with pytest.raises(E.HemTlsError, match="CERTIFICATE_VERIFY_FAILED.*Set ca_path"):
        C.HemClient(v4.url(0)).status()
    # without ca_path, the environment does not widen the trust either (requests would read these variables)
    for name in CA_VARS[:3]:
        monkeypatch.setenv(name, v4.ca_file)
    with pytest.raises(E.HemTlsError, match="CERTIFICATE_VERIFY_FAILED"):
        C.HemClient(v4.url(0)).status()
    # an explicit ca_path is never replaced by either variable, in both directions
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", unrelated)
    monkeypatch.setenv("CURL_CA_BUNDLE", unrelated)
    assert "uptime" in C.HemClient(v4.url(0), ca_path=v4.ca_file).status()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", v4.ca_file)
    monkeypatch.setenv("CURL_CA_BUNDLE", v4.ca_file)
    with pytest.raises(E.HemTlsError, match="CERTIFICATE_VERIFY_FAILED"):
        C.HemClient(v4.url(0), ca_path=unrelated).status()
    # a CA directory (c_rehash layout) works as ca_path
    cadir = tmp_path / "cadir"
    cadir.mkdir()
    pem = Path(v4.ca_file).read_text()
    first = pem[:pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")] + "\n"
    subject_hash = subprocess.run(["openssl", "x509", "-hash", "-noout"], input=first, capture_output=True, text=True, check=True).stdout.strip()
    (cadir / (subject_hash + ".0")).write_text(first)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("CURL_CA_BUNDLE")
    assert "uptime" in C.HemClient(v4.url(0), ca_path=str(cadir)).status()


# ------------------------------------------------------------------ IPv6 and proxies

def test_ipv6_device_directly(v6):
    assert v6.url(0).startswith("https://[::1]:")
    client = C.HemClient(v6.url(0), passphrase=PASSPHRASE, ca_path=v6.ca_file)
    assert "uptime" in client.status()
    assert "user" in client.get("/api/system/config")     # login and an authenticated read over IPv6
    served = x509.load_der_x509_certificate(client.served_certificate())
    names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("::1") in names.get_values_for_type(x509.IPAddress)


@pytest.mark.parametrize("proxy_host", ["127.0.0.1", "::1"])
def test_ipv6_device_through_a_proxy(v6, proxy_host, monkeypatch):
    port = int(v6.url(0).rsplit(":", 1)[1])
    with CountingProxy(host=proxy_host) as proxy:
        monkeypatch.setenv("https_proxy", proxy.url)
        before = status_count(v6)
        assert "uptime" in C.HemClient(v6.url(0), ca_path=v6.ca_file).status()
        assert proxy.tunnels == ["[::1]:%d" % port]          # brackets in CONNECT
        assert status_count(v6) == before + 1
        assert proxy.errors == []


def test_https_proxy_with_credentials(v4, tmp_path, monkeypatch):
    proxy_ca, cert, key = make_tls_pair(tmp_path)
    bundle = tmp_path / "bundle.pem"     # trust for the device and for the proxy: one ca_path
    bundle.write_text(Path(v4.ca_file).read_text() + Path(proxy_ca).read_text())
    with CountingProxy(tls=(cert, key)) as proxy:
        assert proxy.url.startswith("https://127.0.0.1:")
        monkeypatch.setenv("https_proxy", proxy.url_with("user", "s%40cret"))
        client = C.HemClient(v4.url(0), passphrase=PASSPHRASE, ca_path=str(bundle))
        assert "uptime" in client.status()
        assert "user" in client.get("/api/system/config")     # challenge, login, config
        target = v4.url(0).split("//", 1)[1]
        assert proxy.tunnels == [target] * 4
        assert proxy.auth == ["Proxy-Authorization: Basic dXNlcjpzQGNyZXQ="] * 4       # user:s@cret
        # the proxy's certificate is verified with the same trust as the device's
        with pytest.raises(E.HemError) as err:
            C.HemClient(v4.url(0), ca_path=v4.ca_file, timeout=3).status()
        assert "CERTIFICATE_VERIFY_FAILED" in str(err.value) and "s@cret" not in str(err.value) and "s%40cret" not in str(err.value)
        assert len(proxy.tunnels) == 4


@pytest.mark.parametrize("no_proxy,bypassed", [
    ("127.0.0.0/8", True),
    ("10.0.0.0/8,127.0.0.1/32", True),
    ("10.0.0.0/8", False),
    ("192.168.0.0/16, example.com", False),
])
def test_no_proxy_with_cidr(v4, monkeypatch, no_proxy, bypassed):
    with CountingProxy() as proxy:
        monkeypatch.setenv("https_proxy", proxy.url)
        monkeypatch.setenv("no_proxy", no_proxy)
        assert "uptime" in C.HemClient(v4.url(0), ca_path=v4.ca_file).status()
        assert len(proxy.tunnels) == (0 if bypassed else 1)


def test_proxy_url_option_wins_over_the_environment(v4, monkeypatch):
    with CountingProxy() as env_proxy, CountingProxy() as option_proxy:
        monkeypatch.setenv("https_proxy", env_proxy.url)
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        assert "uptime" in C.HemClient(v4.url(0), ca_path=v4.ca_file, proxy_url=option_proxy.url).status()
        assert len(option_proxy.tunnels) == 1 and env_proxy.connections == 0


def test_a_dead_proxy_is_named_without_its_credentials(v4, monkeypatch):
    with CountingProxy() as proxy:
        url = proxy.url_with("user", "topsecret")
    # the proxy is closed now: nothing listens on its port
    with pytest.raises(E.HemError) as err:
        C.HemClient(v4.url(0), ca_path=v4.ca_file, proxy_url=url, timeout=2).status()
    assert "proxy http://127.0.0.1 failed" in str(err.value) and "topsecret" not in str(err.value)


# ------------------------------------------------------------------ host names

@pytest.mark.parametrize("host", ["bücher.invalid", "xn--bcher-kva.invalid"])
def test_an_idn_host_name_is_encoded_and_fails_only_on_resolution(host):
    with pytest.raises(E.HemError) as err:
        C.HemClient("https://%s:4443" % host, timeout=1).status()
    assert "cannot reach the device at https://%s:4443" % host in str(err.value)
    assert "Traceback" not in str(err.value)


def test_an_invalid_idn_host_name_is_a_clear_error():
    with pytest.raises(E.HemError) as err:
        C.HemClient("https://a\u2603\u200b\u0301.invalid", timeout=1).status()
    assert "cannot be used" in str(err.value) and "check the host name" in str(err.value)


# ------------------------------------------------------------------ served certificate

def test_served_certificate_comes_from_the_requests_made_anyway(v4):
    expected = ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", int(v4.url(0).rsplit(":", 1)[1]))))
    client = C.HemClient(v4.url(0), ca_path=v4.ca_file)
    client.status()
    before = len(v4.log(0))
    assert client.served_certificate() == expected
    assert len(v4.log(0)) == before          # no request of its own
    # a client that made no request yet reads the status once; also with validate_certs false
    unverified = C.HemClient(v4.url(0), validate_certs=False)
    assert unverified.served_certificate() == expected
    assert len(v4.log(0)) == before + 1


def test_served_certificate_through_a_proxy(v4, monkeypatch):
    with CountingProxy() as proxy:
        monkeypatch.setenv("https_proxy", proxy.url)
        client = C.HemClient(v4.url(0), ca_path=v4.ca_file)
        assert x509.load_der_x509_certificate(client.served_certificate()).issuer
        assert len(proxy.tunnels) == 1


def test_served_certificate_needs_https(v4):
    with pytest.raises(E.HemError, match="must be https://"):
        C.HemClient(v4.http_url(0)).served_certificate()


def test_one_connection_per_request_as_the_device_closes_them(v4):
    """The emulator (like the device, PROTOCOL.md) closes each connection after its answer: the
    session opens one connection per request, and never sends a request on a closed one."""
    with CountingProxy() as proxy:
        client = C.HemClient(v4.url(0), ca_path=v4.ca_file, proxy_url=proxy.url)
        for dummy in range(3):
            client.status()
        assert proxy.connections == 3


def test_403_for_a_too_narrow_token_names_the_scopes(v4):
    """Issue 17 defect 7: the device (emulator) refuses a logger:get token for a configuration change."""
    narrow = C.HemClient(v4.url(0), passphrase=PASSPHRASE, ca_path=v4.ca_file).login(scope="logger:get")
    with pytest.raises(E.HemError) as err:
        C.HemClient(v4.url(0), token=narrow, ca_path=v4.ca_file).post("/api/system/config", {"user": "x"})
    assert "answered HTTP 403" in str(err.value)
    assert "needs a token with scope system:config, and the token given has scope logger:get" in str(err.value)
