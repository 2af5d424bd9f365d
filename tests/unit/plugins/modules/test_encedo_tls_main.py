# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""encedo_tls main() against recorded device answers (conftest.py: the replay fixture)."""

from __future__ import annotations

import base64
import json

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.emulator import util
from tests.unit.plugins.modules import replay as R

UPLOAD = "POST /api/system/config"


def der_b64(pem):
    return base64.b64encode(x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)).decode()


def test_present_uploads_the_certificate_once(replay):
    result, failed, sent = replay.run("encedo_tls_present")
    assert not failed and result["changed"] is True and result["reboot_required"] is True
    uploads = [s["body"] for s in sent if s["method"] == "POST" and s["path"] == "/api/system/config"]
    assert uploads == [{"tls": {"crt": der_b64(replay.fixture["args"]["certificate"])}}]
    assert result["sent"] == ["tls.crt"]
    # the certificate is for the key of the served one (read from the handshake): no CSR was needed
    assert result["key_match"] == "served"
    assert result["uploaded"]["issuer"] == "CN=encedo.hem recorded test CA"
    assert result["certificate"]["issuer"] != result["uploaded"]["issuer"]


def test_present_diff_shows_certificate_facts_only(replay):
    result, dummy, dummy2 = replay.run("encedo_tls_present")
    diff = result["diff"]
    assert diff["before"]["certificate"] == result["certificate"]
    assert diff["after"]["certificate"] == result["uploaded"]
    assert set(diff["after"]["certificate"]) >= {"subject", "issuer", "not_after", "fingerprint_sha256"}
    assert "BEGIN" not in repr(diff) and "key" not in diff["after"]


def test_present_with_key_import_sends_the_key_and_never_shows_it(replay):
    """The wrapped key goes to the device with the certificate, and never into the result or its diff (no_log)."""
    device_key = x509.load_pem_x509_certificate(replay_served_pem().encode()).public_key()
    key_import = util.wrap_tls_key(ec.generate_private_key(ec.SECP256R1()), device_key)
    result, failed, sent = replay.run("encedo_tls_present", key_import=key_import)
    assert not failed and result["key_match"] == "key_import"
    uploads = [s["body"] for s in sent if s["method"] == "POST" and s["path"] == "/api/system/config"]
    assert uploads == [{"tls": {"emp": key_import["emp"], "key": key_import["key"], "crt": der_b64(replay.fixture["args"]["certificate"])}}]
    assert result["sent"] == ["tls.crt", "tls.emp", "tls.key"]
    assert key_import["key"] not in json.dumps(result)


def replay_served_pem():
    fixture = R.load("encedo_tls_present")
    return fixture["certificates"][fixture["exchanges"][0]["peer_certificate"]]


def test_check_mode_uploads_nothing(replay):
    result, failed, sent = replay.run("encedo_tls_present", check_mode=True,
                                      unused=["GET /api/auth/token", "POST /api/auth/token", UPLOAD])
    assert not failed and result["changed"] is True and result["reboot_required"] is True
    assert [s for s in sent if s["method"] == "POST"] == [] and len(sent) == 1
    assert result["diff"]["after"]["certificate"]["issuer"] == "CN=encedo.hem recorded test CA"


def test_served_certificate_again_is_a_noop(replay):
    result, failed, sent = replay.run("encedo_tls_noop")
    assert not failed and result["changed"] is False and result["sent"] == []
    assert [(s["method"], s["path"]) for s in sent] == [("GET", "/api/system/status")]     # no login, no write
    assert "diff" not in result


def test_csr_with_force_asks_the_device(replay):
    result, failed, sent = replay.run("encedo_tls_csr")
    assert not failed and result["changed"] is True
    assert [s["body"] for s in sent if s["method"] == "POST" and s["path"] == "/api/system/config"] == [{"gen_csr": True}]
    assert result["csr_reasons"] == ["force is true"] and result["csr_needed"] is True
    assert result["csr"].startswith("-----BEGIN CERTIFICATE REQUEST-----")
    assert result["genuine"] == replay.fixture["exchanges"][-1]["json"].get("genuine")


def test_csr_not_needed_sends_nothing(replay):
    """Without force the served certificate (valid for long, from the expected issuer) needs no CSR."""
    result, failed, sent = replay.run("encedo_tls_csr", force=None, unused=["GET /api/auth/token", "POST /api/auth/token", UPLOAD])
    assert not failed and result["changed"] is False and result["csr_needed"] is False and len(sent) == 1


def test_csr_for_a_certificate_ending_soon(replay):
    """The same recorded device, read 1000 days later: its certificate has ended, a CSR is due."""
    result, failed, sent = replay.run("encedo_tls_csr", force=None, shift=1000 * 86400)
    assert not failed and result["changed"] is True
    assert result["csr_reasons"] and "days left" in result["csr_reasons"][0]


def test_busy_device_fails_clearly(replay):
    result, failed, sent = replay.run("encedo_tls_busy")
    assert failed
    assert result["status"] == 409 and result["endpoint"] == "POST /api/system/config"
    assert "busy" in result["msg"]
