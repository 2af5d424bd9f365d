# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A custody CA of the test's own for the encedo_attestation integration target (generated at run time).

Used by tests/integration/test_attestation.py (pytest) and, as a command, by the target itself
when `ansible-test integration` runs it against the emulators that setup_emulator started::

    python -m tests.integration.helpers.attestation_pki --url URL --ca-file CA --control-url URL \\
        --index 0 --genuine-id ID

prints one JSON object: the target's hem_fresh_* variables and hem_test_ca_pem, for the
factory-fresh secure element of device INDEX (a certificate for its public key, issued by a
new custody CA, for state=provisioned).
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import sys

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ATTESTATION = "/api/system/config/attestation"


def _name(cn, org="Attestation Test"):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def make_ca(subject=None):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = subject or _name("Test Custody CA")
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(days=1)).not_valid_after(_now() + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def issue(ca_key, ca_cert, public_key, genuine_id):
    return (x509.CertificateBuilder().subject_name(_name("#" + genuine_id, "Encedo Ltd")).issuer_name(ca_cert.subject)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(days=1)).not_valid_after(_now() + datetime.timedelta(days=365))
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .sign(ca_key, hashes.SHA256()))


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def se_public_key(url, ca_file):
    """The fresh secure element's public key, read directly (no module code)."""
    answer = requests.get(url + ATTESTATION, verify=ca_file, timeout=10)
    assert answer.status_code == 200, answer.status_code
    body = answer.json()
    assert "crt" not in body and "key" in body, body
    return serialization.load_der_public_key(base64.b64decode(body["key"]))


def fresh_target_vars(url, ca_file, control_url, index, genuine_id):
    """The target's variables for the fresh device at url: a certificate for its secure element from a new custody CA."""
    ca_key, ca_cert = make_ca()
    cert = issue(ca_key, ca_cert, se_public_key(url, ca_file), genuine_id)
    return {"hem_fresh_url": url, "hem_fresh_ca_path": ca_file, "hem_fresh_control_url": control_url,
            "hem_fresh_device": index, "hem_fresh_genuine_id": genuine_id, "hem_fresh_certificate": pem(cert),
            "hem_test_ca_pem": pem(ca_cert)}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.integration.helpers.attestation_pki", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--ca-file", required=True)
    parser.add_argument("--control-url", required=True)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--genuine-id", required=True)
    args = parser.parse_args(argv)
    json.dump(fresh_target_vars(args.url, args.ca_file, args.control_url, args.index, args.genuine_id), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
