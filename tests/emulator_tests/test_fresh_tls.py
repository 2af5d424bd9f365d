# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A device without a TLS bundle (`--no-tls-bundle`), over real HTTP and HTTPS.

OpenAPI POST /api/system/config: on a factory-fresh device an unauthenticated body with
`tls` is persisted as the initial TLS bundle and the HTTPS server is started; GET
/api/system/status has `https` only on plain-HTTP requests (PROTOCOL.md "Factory-fresh
TLS"). The bundle's `emp`/`key` use the emulator's key transport, encrypted to the
device's factory TLS key (control interface `state.tls_public_key`, standing in for what
the vendor backend knows). `make_bundle` is shared with tests/integration/test_fresh_tls.py.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import socket
import ssl

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.emulator import util

CONFIG = "/api/system/config"
STATUS = "/api/system/status"
UTC = datetime.timezone.utc


# ------------------------------------------------------------------ bundle built as the vendor backend would

def b64(data):
    return base64.b64encode(data).decode()


def make_ca(cn="Fresh TLS test CA"):
    return util.make_ca(cn, "encedo.hem tests")


def write_ca(ca, path):
    path.write_text(ca[1].public_bytes(serialization.Encoding.PEM).decode())
    return str(path)


def issue(ca, public_key, names=("localhost",), ips=("127.0.0.1",)):
    ca_key, ca_cert = ca
    now = datetime.datetime.now(UTC)
    sans = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    return (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_cert.subject).public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(ca_key, hashes.SHA256()))


def device_tls_public_key(emu, i=0):
    return serialization.load_der_public_key(base64.b64decode(emu.state(i)["tls_public_key"]))


def make_bundle(emu, ca, i=0, names=("localhost",)):
    """-> ({emp, key, crt (base64 DER)}, the new private key): what the vendor backend answers."""
    new_key = ec.generate_private_key(ec.SECP256R1())
    bundle = util.wrap_tls_key(new_key, device_tls_public_key(emu, i))
    bundle["crt"] = b64(issue(ca, new_key.public_key(), names=names).public_bytes(serialization.Encoding.DER))
    return bundle, new_key


# ------------------------------------------------------------------ transport helpers

def https_outcome(url, ca_file=None):
    """'ok' (handshake verified or not), or the error class name the client sees."""
    host, port = url.split("//")[1].split(":")
    ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl._create_unverified_context()  # noqa: S323
    try:
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            with ctx.wrap_socket(sock, server_hostname=host) as tls:
                return "ok" if tls.version() else "no-tls"
    except (OSError, ssl.SSLError) as exc:
        return type(exc).__name__


def plain(emu, method, path, body=None, i=0):
    return requests.request(method, emu.http_url(i) + path, json=body, timeout=10, headers={"Connection": "close"})


# ------------------------------------------------------------------ tests

@pytest.fixture
def fresh(emulator):
    return emulator(no_tls_bundle=True, rtc_set=True)


def test_no_bundle_refuses_https_and_says_so_over_plain_http(fresh):
    outcome = https_outcome(fresh.url(0))
    assert outcome in ("ConnectionResetError", "SSLEOFError", "SSLError", "SSLZeroReturnError", "ConnectionAbortedError"), outcome
    status = plain(fresh, "GET", STATUS).json()
    assert status["https"] is False
    assert status["inited"] is False
    state = fresh.state(0)
    assert state["tls_bundle"] is False and state["tls_public_key"]


def test_default_device_has_a_bundle(emulator):
    emu = emulator()
    assert plain(emu, "GET", STATUS).json()["https"] is True
    assert https_outcome(emu.url(0), emu.ca_file) == "ok"
    assert emu.state(0)["tls_bundle"] is True


def test_plain_http_post_stores_the_bundle_and_starts_https(fresh, tmp_path):
    ca = make_ca()
    ca_file = write_ca(ca, tmp_path / "ca.pem")
    bundle, new_key = make_bundle(fresh, ca)
    # without tls: 406, bad material: 400 - nothing stored
    assert plain(fresh, "POST", CONFIG, {"user": "x"}).status_code == 406
    wrong, _k = make_bundle(fresh, ca)
    wrong["crt"] = bundle["crt"]                       # key and certificate do not match
    assert plain(fresh, "POST", CONFIG, {"tls": wrong}).status_code == 400
    assert plain(fresh, "GET", STATUS).json()["https"] is False

    # Other keys beside tls, and inside it (the web manager posts the backend's answer as it is), are ignored.
    resp = plain(fresh, "POST", CONFIG, {"tls": dict(bundle, id="reg-1", status="done"), "user": "x"})
    assert resp.status_code == 200 and resp.content == b""
    assert plain(fresh, "GET", STATUS).json()["https"] is True
    assert https_outcome(fresh.url(0), ca_file) == "ok"       # served at once, chains to the bundle's CA
    served = requests.get(fresh.url(0) + STATUS, verify=ca_file, timeout=10).json()
    assert "https" not in served                                 # only on plain-HTTP requests
    assert fresh.state(0)["tls_public_key"] == b64(new_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    log = fresh.log(0)
    stored = [e for e in log if e["method"] == "POST" and e["status"] == 200]
    assert [(e["scheme"], e["auth"], e["tls_keys"]) for e in stored] == [("http", "none", ["crt", "emp", "id", "key", "status"])]
    assert fresh.state(0)["config"]["user"] == ""              # the extra field was not applied


def test_wipe_removes_the_bundle_only_with_the_option(emulator, tmp_path):
    from .hemclient import Hem
    pw = "fresh-tls-pass"
    for no_bundle in (False, True):
        emu = emulator(no_tls_bundle=no_bundle, rtc_set=True, passphrase=pw)
        ca = make_ca()
        ca_file = write_ca(ca, tmp_path / ("ca-%s.pem" % no_bundle))
        if no_bundle:
            # personalised at start without a bundle: the fresh-mode (unauthenticated) store is over
            bundle, _key = make_bundle(emu, ca)
            assert plain(emu, "POST", CONFIG, {"tls": bundle}).status_code == 401
            assert https_outcome(emu.url(0)) != "ok"
            hem = Hem(emu.http_url(0), None)      # test only: the token over plain HTTP
        else:
            hem = Hem(emu.url(0), emu.ca_file)
            ca_file = emu.factory_ca_file           # what the wiped device's factory certificate chains to
        hem.login(pw)
        assert hem.post(CONFIG, {"wipeout": True}).status == 200
        emu.wait_down(0)
        emu.wait_up(0)
        status = plain(emu, "GET", STATUS).json()
        assert status["inited"] is False
        assert status["https"] is (not no_bundle)
        assert emu.state(0)["tls_bundle"] is (not no_bundle)
        assert (https_outcome(emu.url(0), ca_file) == "ok") is (not no_bundle)


def test_authenticated_import_on_a_personalised_device_counts_from_the_reboot(emulator, tmp_path):
    from .hemclient import Hem
    pw = "fresh-tls-import"
    emu = emulator(no_tls_bundle=True, rtc_set=True, passphrase=pw)
    ca = make_ca()
    ca_file = write_ca(ca, tmp_path / "ca.pem")
    bundle, _key = make_bundle(emu, ca)
    hem = Hem(emu.http_url(0), None)          # test only: the token over plain HTTP
    hem.login(pw)
    ans = hem.post(CONFIG, {"tls": bundle})
    assert ans.status == 200 and ans.json["reboot_required"] is True and ans.json["updated"] is True
    assert plain(emu, "GET", STATUS).json()["https"] is False         # pending until the reboot
    assert hem.get("/api/system/reboot").status == 200
    emu.wait_down(0)
    emu.wait_up(0)
    assert plain(emu, "GET", STATUS).json()["https"] is True
    assert https_outcome(emu.url(0), ca_file) == "ok"


# ------------------------------------------------------------------ a bundle served from the next boot (issue 25 item 5)

def test_bundle_at_boot_keeps_https_off_until_a_reboot(emulator, tmp_path):
    """--tls-bundle-at-boot: the rescue page's reading (core-rescue-final.js reboots after storing a bundle): stored,
    HTTPS still off, served after the unauthenticated reboot (OpenAPI: reboot needs no token on a fresh device)."""
    emu = emulator(no_tls_bundle=True, reboot_seconds=0.3, extra_args=["--tls-bundle-at-boot"])
    ca = make_ca()
    ca_file = write_ca(ca, tmp_path / "ca.pem")
    bundle, _key = make_bundle(emu, ca)
    assert plain(emu, "POST", CONFIG, {"tls": bundle}).status_code == 200
    assert plain(emu, "GET", STATUS).json()["https"] is False
    assert https_outcome(emu.url(0), ca_file) != "ok"
    boot = emu.state(0)["boot_id"]
    assert plain(emu, "GET", "/api/system/reboot").status_code == 200
    assert emu.wait_new_boot(0, boot, timeout=10)
    assert https_outcome(emu.url(0), ca_file) == "ok"
    assert plain(emu, "GET", STATUS).json()["https"] is True


def _collection():
    import sys
    from pathlib import Path
    try:
        from ansible_collections.encedo.hem.plugins.module_utils import _module, _tls_bundle
    except ImportError:     # run without the collection link on sys.path (make link)
        sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "build" / "collections"))
        from ansible_collections.encedo.hem.plugins.module_utils import _module, _tls_bundle
    return _module, _tls_bundle


@pytest.mark.parametrize("at_boot", [False, True], ids=["https-at-once", "https-after-reboot"])
def test_collection_stores_a_bundle_on_either_firmware(emulator, tmp_path, at_boot):
    """The collection's prepare() (encedo_info, encedo_init, the role) against both readings: HTTPS at once (OpenAPI)
    - no reboot; HTTPS from the next boot - one unauthenticated reboot over plain HTTP, then HTTPS. Before issue 25
    it waited for HTTPS only and failed on the second."""
    try:
        from ansible.module_utils.testing import patch_module_args
    except ImportError:     # ansible-core < 2.19 (make matrix)
        from tests.unit.plugins.module_utils.test_hem_module import patch_module_args
    _module, _tls_bundle = _collection()
    emu = emulator(no_tls_bundle=True, reboot_seconds=0.5, extra_args=["--tls-bundle-at-boot"] if at_boot else [])
    ca = make_ca()
    ca_file = write_ca(ca, tmp_path / "ca.pem")
    bundle, _key = make_bundle(emu, ca)
    args = {"url": emu.url(0), "http_url": emu.http_url(0), "ca_path": ca_file, "timeout": 10, "tls_bundle": bundle}
    with patch_module_args(args):
        module = _module.HemModule(argument_spec=_tls_bundle.fresh_argument_spec(), supports_check_mode=True)
    to_send, _cert = _tls_bundle.check_inputs(module.params)
    found = _tls_bundle.prepare(module, to_send)
    assert found.stored is True and found.https is True and "uptime" in found.status
    requests_made = [(e["scheme"], e["method"], e["path"], e["auth"]) for e in emu.log(0)]
    reboots = [r for r in requests_made if r[2] == "/api/system/reboot"]
    assert reboots == ([("http", "GET", "/api/system/reboot", "none")] if at_boot else [])
    assert ("rebooted to serve it" in found.message) is at_boot
    assert [r for r in requests_made if r[0] == "http" and r[3] != "none"] == []      # nothing authenticated over HTTP
    assert https_outcome(emu.url(0), ca_file) == "ok"
