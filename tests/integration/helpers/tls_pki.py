# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""PKI of the encedo_tls integration target, generated at run time (nothing secret is committed).

Used by tests/integration/test_tls.py (pytest) and, as a command, by the target itself when
`ansible-test integration` runs it against the emulator that setup_emulator started::

    python -m tests.integration.helpers.tls_pki --url URL --ca-file CA --control-url URL \\
        --index 0 --dir DIR [--personalise PASSPHRASE]

prints one JSON object: the target's variables hem_tls_dir, hem_tls_trust, hem_tls_ca_cert,
hem_tls_ca_key, hem_tls_ca_subject, hem_tls_emulator_ca and hem_tls_bad. With
--personalise the factory-fresh device is first personalised as "localhost" / 127.0.0.1,
as tests/integration/test_tls.py does, so that its CSR names the address it is reached at.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import ipaddress
import json
import sys
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.emulator import util

UTC = datetime.timezone.utc
CA_CN = "encedo.hem test CA"


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def issue(ca_key, ca_cert, public_key, start=None, days=90, names=("localhost",), ips=("127.0.0.1",)):
    start = start or datetime.datetime.now(UTC) - datetime.timedelta(minutes=5)
    sans = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    return (x509.CertificateBuilder().subject_name(_name(names[0] if names else "device")).issuer_name(ca_cert.subject)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(ca_key, hashes.SHA256()))


def pem(obj):
    return obj.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def b64(data):
    return base64.b64encode(data).decode()


def write_user_ca(directory):
    """The user's CA (CA_CN) as ca.pem and ca.key (0600) in directory -> dict key, cert, cert_path, key_path, subject."""
    directory = Path(directory)
    key, cert = make_ca(CA_CN)
    (directory / "ca.pem").write_text(pem(cert))
    key_file = directory / "ca.key"
    key_file.write_text(key_pem(key))
    key_file.chmod(0o600)
    return {"key": key, "cert": cert, "cert_path": str(directory / "ca.pem"), "key_path": str(key_file),
            "subject": cert.subject.rfc4514_string()}


def target_vars(served_pem, emulator_ca_file, user_ca, directory):
    """The extra variables of the encedo_tls target for a device serving served_pem; files go to directory."""
    directory = Path(directory)
    device_key = x509.load_pem_x509_certificate(served_pem.encode()).public_key()
    other_ca_key, other_ca = make_ca("Somebody Else CA")
    throwaway = ec.generate_private_key(ec.SECP256R1())
    throwaway_cert = issue(user_ca["key"], user_ca["cert"], throwaway.public_key())
    expired = issue(user_ca["key"], user_ca["cert"], device_key, start=datetime.datetime.now(UTC) - datetime.timedelta(days=60), days=30)
    (directory / "expired.pem").write_text(pem(expired))
    (directory / "notes.txt").write_text("important notes, not a CSR\n")
    good_import = util.wrap_tls_key(throwaway, device_key)
    spki = throwaway.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    work = directory / "work"
    work.mkdir()
    trust = directory / "trust.pem"
    trust.write_text(Path(emulator_ca_file).read_text() + "\n" + Path(user_ca["cert_path"]).read_text())
    bad = {
        "chain_pem": pem(throwaway_cert) + pem(user_ca["cert"]),
        "key_and_cert_pem": key_pem(throwaway) + pem(throwaway_cert),
        "csr_pem": pem(x509.CertificateSigningRequestBuilder().subject_name(_name("x")).sign(throwaway, hashes.SHA256())),
        "expired_path": str(directory / "expired.pem"),
        "wrong_issuer_pem": pem(issue(other_ca_key, other_ca, device_key)),
        "other_key_pem": pem(throwaway_cert),
        "key_import_short": {"emp": good_import["emp"], "key": good_import["key"][:-1]},
        "key_import_spki": {"emp": b64(spki), "key": good_import["key"]},
        "not_a_csr_path": str(directory / "notes.txt"),
    }
    return {
        "hem_tls_dir": str(work),
        "hem_tls_trust": str(trust),
        "hem_tls_ca_cert": user_ca["cert_path"],
        "hem_tls_ca_key": user_ca["key_path"],
        "hem_tls_ca_subject": user_ca["subject"],
        "hem_tls_emulator_ca": emulator_ca_file,
        "hem_tls_bad": bad,
    }


def _control(url, method="GET"):
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=15) as answer:  # nosec: loopback control URL
        return json.loads(answer.read() or b"null")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.integration.helpers.tls_pki", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--ca-file", required=True)
    parser.add_argument("--control-url", required=True)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--personalise", metavar="PASSPHRASE")
    args = parser.parse_args(argv)
    device = "%s/devices/%d" % (args.control_url, args.index)
    if args.personalise:
        from tests.emulator_tests.hemclient import Hem  # pylint: disable=import-outside-toplevel
        answer = Hem(args.url, args.ca_file).personalise(args.personalise, hostname="localhost", ip="127.0.0.1/8")
        if answer.status != 200:
            sys.stderr.write("personalisation failed: %s\n" % answer)
            return 1
        _control(device + "/log", method="DELETE")
    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    user_ca = write_user_ca(directory)
    served = _control(device + "/state")["tls_cert_pem"]
    json.dump(target_vars(served, args.ca_file, user_ca, directory), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
