# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small helpers of the HEM emulator: encodings, JWTs, key derivation, X.509, files."""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import ipaddress
import json
import os
import re
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from cryptography.x509.oid import NameOID

PBKDF2_ITERATIONS = 600000
GENUINE_SAN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.56231.1")
LOGIN_HEADER = b'{"ecdh":"x25519","alg":"HS256","typ":"JWT"}'
BEARER_HEADER = b'{"alg":"HS256","typ":"JWT"}'


# ---------------------------------------------------------------------------- encodings

def b64e(data: bytes) -> str:
    """Standard base64 with padding (what the device emits)."""
    return base64.b64encode(data).decode("ascii")


def b64d(text) -> bytes:
    """Decode base64 as the device does: standard or URL-safe alphabet, padding optional.

    Raises ValueError on anything else (wrong type, stray characters, bad length).
    """
    if not isinstance(text, str) or not text.isascii():
        raise ValueError("not a base64 string")
    text = text.strip().replace("-", "+").replace("_", "/")
    if "=" in text.rstrip("="):
        raise ValueError("padding inside base64")
    text = text.rstrip("=")
    if len(text) % 4 == 1:
        raise ValueError("bad base64 length")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("bad base64") from exc


def b64url(data: bytes) -> str:
    """base64url without padding (JWT segments)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_d(text: str) -> bytes:
    if not isinstance(text, str) or not text.isascii() or "=" in text or "+" in text or "/" in text:
        raise ValueError("bad base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("bad base64url") from exc


def json_bytes(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


# ---------------------------------------------------------------------------- JWT

def jwt_sign(header: bytes, payload: dict, key: bytes) -> str:
    signing_input = b64url(header) + "." + b64url(json_bytes(payload))
    sig = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64url(sig)


def jwt_split(token):
    """Split a compact JWS into (header bytes, payload dict, signing input, signature).

    Raises ValueError when it is not a well-formed compact JWS with a JSON object payload.
    """
    if not isinstance(token, str) or token.count(".") != 2:
        raise ValueError("not a compact JWS")
    h, p, s = token.split(".")
    header = b64url_d(h)
    payload = json.loads(b64url_d(p).decode("utf-8"))
    if not isinstance(payload, dict):
        raise ValueError("payload is not an object")
    json.loads(header.decode("utf-8"))
    return header, payload, (h + "." + p).encode("ascii"), b64url_d(s)


def hs256_ok(signing_input: bytes, sig: bytes, key: bytes) -> bool:
    return hmac.compare_digest(hmac.new(key, signing_input, hashlib.sha256).digest(), sig)


# ---------------------------------------------------------------------------- keys

def derive_private(passphrase: str, eid_b64: str) -> bytes:
    """PBKDF2-HMAC-SHA256(passphrase, salt = eid base64 text, 600000, 32) -> X25519 private bytes."""
    return hashlib.pbkdf2_hmac("sha256", passphrase.encode("utf-8"), eid_b64.encode("utf-8"), PBKDF2_ITERATIONS, 32)


def x25519_public(private: bytes) -> bytes:
    return x25519.X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def x25519_shared(private: bytes, public: bytes) -> bytes:
    return x25519.X25519PrivateKey.from_private_bytes(private).exchange(x25519.X25519PublicKey.from_public_bytes(public))


def new_x25519() -> bytes:
    return x25519.X25519PrivateKey.generate().private_bytes_raw()


def new_ed25519() -> bytes:
    return ed25519.Ed25519PrivateKey.generate().private_bytes_raw()


def ed25519_public(private: bytes) -> bytes:
    return ed25519.Ed25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def new_p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode("ascii")


def load_key_pem(text: str):
    return serialization.load_pem_private_key(text.encode("ascii"), None)


def spki_der(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def same_public(a, b) -> bool:
    try:
        return spki_der(a) == spki_der(b)
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------------------- X.509

def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def make_ca(common_name: str, organisation: str, not_before=None):
    """Self-signed P-256 CA valid from not_before (default: yesterday) to 10 years from now."""
    key = new_p256()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    start = _now() - datetime.timedelta(days=1)
    if not_before is not None and not_before < start:
        start = not_before
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(_now() + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def write_ca(directory, common_name: str, organisation: str = "encedo.hem tests", stem: str = "ca"):
    """Make a CA with make_ca() and write it as <stem>.pem and <stem>.key (mode 0600) in directory.

    For tests, the demo and benchmarks: no CA key is ever committed, they are made at run time.
    Returns (certificate, certificate path, key path) with the paths as strings.
    """
    key, cert = make_ca(common_name, organisation)
    cert_path = os.path.join(str(directory), stem + ".pem")
    key_path = os.path.join(str(directory), stem + ".key")
    with open(cert_path, "wb") as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return cert, cert_path, key_path


def _aki(ca_cert):
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def dns_name_ok(name: str) -> bool:
    """Whether ``name`` can stand in a certificate as a DNS name (letters, digits, hyphens; dot-separated labels)."""
    label = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
    return len(name) <= 253 and re.fullmatch(r"%s(\.%s)*" % (label, label), name.lower()) is not None


def issue_tls_cert(ca_key, ca_cert, public_key, hostnames, ips):
    """Leaf TLS server certificate for a device: CN = hostnames[0], SANs = every name and address."""
    sans = [x509.DNSName(h) for h in hostnames] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cn = hostnames[0] if hostnames else "hem"
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_cert.subject).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(days=1))
            .not_valid_after(_now() + datetime.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(_aki(ca_cert), critical=False)
            .sign(ca_key, hashes.SHA256()))


def genuine_san(eid_public: bytes):
    """The attestation SAN: otherName 1.3.6.1.4.1.56231.1 holding an OCTET STRING of 20 bytes (as the sample)."""
    digest = hashlib.sha1(eid_public).digest()  # an identifier (SHA-1 of the eid), not a security use
    value = b"\x04\x14" + digest
    return x509.SubjectAlternativeName([x509.OtherName(GENUINE_SAN_OID, value)])


def attestation_validity(not_after=None):
    """(notBefore, notAfter) of an emulator-issued attestation certificate.

    Default: yesterday to three years from now. With not_after (an aware datetime, from
    --attestation-not-after): three years ending then, like the vendor's sample (valid
    2020-10-05 to 2023-10-05); 29 February falls back to 28 February.
    """
    if not_after is None:
        return _now() - datetime.timedelta(days=1), _now() + datetime.timedelta(days=3 * 365)
    try:
        start = not_after.replace(year=not_after.year - 3)
    except ValueError:
        start = not_after.replace(year=not_after.year - 3, day=28)
    return start, not_after


def issue_attestation_cert(ca_key, ca_cert, public_key, genuine_id: str, eid_public: bytes, not_after=None):
    """Attestation certificate in the shape of the vendor sample (CN '#<genuine_id>', SKI, AKI, SAN otherName).

    not_after: see attestation_validity() (None: valid now for three years).
    """
    not_before, not_after = attestation_validity(not_after)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "UK"),
                                     x509.NameAttribute(NameOID.ORGANIZATION_NAME, "HEM Emulator"),
                                     x509.NameAttribute(NameOID.COMMON_NAME, "#" + genuine_id)]))
            .issuer_name(ca_cert.subject).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(_aki(ca_cert), critical=False)
            .add_extension(genuine_san(eid_public), critical=False)
            .sign(ca_key, hashes.SHA256()))


def wrap_tls_key(new_key, device_public_key) -> dict:
    """The client side of the emulator's `tls` key transport (package docstring, "tls import"):
    {"emp": b64 uncompressed ephemeral P-256 point, "key": "<b64 IV>.<b64 AES-256-CBC(d || Qx)>"},
    the AES key being SHA-256 of the ECDH secret of the ephemeral key and `device_public_key`."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # pylint: disable=import-outside-toplevel
    eph = ec.generate_private_key(ec.SECP256R1())
    aes = hashlib.sha256(eph.exchange(ec.ECDH(), device_public_key)).digest()
    numbers = new_key.private_numbers()
    plain = numbers.private_value.to_bytes(32, "big") + numbers.public_numbers.x.to_bytes(32, "big")
    iv = os.urandom(16)
    enc = Cipher(algorithms.AES(aes), modes.CBC(iv)).encryptor()
    blob = b64e(iv) + "." + b64e(enc.update(plain) + enc.finalize())
    assert len(blob) == 113
    emp = eph.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return {"emp": b64e(emp), "key": blob}


def make_csr(key, common_name: str, hostnames=(), ips=()):
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
    sans = [x509.DNSName(h) for h in hostnames] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode("ascii")


def cert_pem(cert) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def cert_der(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def ski_of(cert=None, public_key=None) -> bytes:
    """The certificate's SKI extension, or the RFC 5280 method-1 SKI of a bare public key."""
    if cert is not None:
        try:
            return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        except x509.ExtensionNotFound:
            public_key = cert.public_key()
    return x509.SubjectKeyIdentifier.from_public_key(public_key).digest


# ---------------------------------------------------------------------------- attestation token

def genuine_token(att_key, key_id: bytes, timestamp: int, tamper: bool = False) -> str:
    ts = str(int(timestamp)).encode("ascii")
    sig = bytearray(att_key.sign(ts, ec.ECDSA(hashes.SHA256())))
    if tamper:
        sig[len(sig) // 2] ^= 0x01
    return b64e(key_id) + "." + b64e(ts) + "." + b64e(bytes(sig))


def parse_genuine(token):
    """-> (key id bytes, timestamp int, signature bytes, timestamp bytes); ValueError when malformed."""
    if not isinstance(token, str) or token.count(".") != 2:
        raise ValueError("not a genuine token")
    kid, ts, sig = (b64d(part) for part in token.split("."))
    if not ts.isdigit():
        raise ValueError("timestamp is not decimal")
    return kid, int(ts), sig, ts


def verify_genuine(token, public_key, key_id: bytes) -> bool:
    try:
        kid, _ts, sig, ts_bytes = parse_genuine(token)
        if kid != key_id:
            return False
        public_key.verify(sig, ts_bytes, ec.ECDSA(hashes.SHA256()))
        return True
    except Exception:  # pylint: disable=broad-except  # any failure means "not genuine"
        return False


# ---------------------------------------------------------------------------- files

def atomic_write(path: str, data: bytes, mode: int = 0o600) -> None:
    """Write via a temporary file in the same directory + os.replace: never half-written."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
