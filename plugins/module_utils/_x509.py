# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.
"""X.509 helpers of encedo_tls: parsing and normalisation of certificates and CSRs,
certificate facts, issuer and key matching, the encrypted key-import shape, and reading
the certificate a device serves from a TLS handshake.

Everything raises X509Error with a user-facing message; the caller names the option.
"""

from __future__ import annotations

import binascii
import datetime
import hashlib
import ipaddress
import re
import ssl

from urllib.parse import urlsplit

from ansible_collections.encedo.hem.plugins.module_utils._errors import HemError, HemTlsError
from ansible_collections.encedo.hem.plugins.module_utils._login import b64decode_any

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError as exc:  # handled by the module with missing_required_lib()
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = exc

# Length of the vendor's encrypted key string "<b64 16-byte IV>.<b64 64-byte ciphertext>".
KEY_IMPORT_LENGTH = 113
# A P-256 public key as an uncompressed point 0x04 || X || Y.
P256_POINT_LENGTH = 65

_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)
_B64_CHARS = re.compile(r"^[A-Za-z0-9+/_-]*=*$")


class X509Error(HemError):
    """A certificate, CSR, key or TLS problem explained for the user."""


# ------------------------------------------------------------------------ encodings

def b64decode_strict(text):
    """Decode standard or URL-safe base64, padding optional, whitespace ignored (_client.b64decode_any, checked first).

    The one base64 decoder of certificates, keys and attestation tokens (_attestation uses it too).
    Raises ValueError on anything that is not base64.
    """
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    if not isinstance(text, str):
        raise ValueError("not a string")
    text = "".join(text.split())
    if not text or not _B64_CHARS.match(text):
        raise ValueError("not base64")
    text = text.rstrip("=")
    if len(text) % 4 == 1:
        raise ValueError("bad base64 length")
    try:
        return b64decode_any(text)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64") from exc


def _as_text(data):
    if isinstance(data, bytes):
        try:
            return data.decode("ascii")
        except UnicodeDecodeError:
            return None
    return data


def _pem_blocks(text):
    return list(_PEM_BLOCK.findall(text))


def _describe_blocks(blocks):
    labels = sorted({label for label, dummy in blocks})
    return ", ".join(labels)


def _decode_der_input(data, what):
    """Return DER bytes from PEM-less input: base64 text or raw DER bytes."""
    text = _as_text(data)
    if text is None:
        return bytes(data)  # raw binary: assume DER
    try:
        return b64decode_strict(text)
    except ValueError:
        raise X509Error("is not %s (neither PEM nor base64 DER of one)" % what)


# ------------------------------------------------------------------------ certificates

def load_certificates(data):
    """Parse every certificate in PEM (one or more CERTIFICATE blocks) or base64/raw DER.

    Used for CA bundles. Raises X509Error when nothing parses or when a PEM block is not
    a certificate.
    """
    text = _as_text(data)
    if text is not None and "-----BEGIN" in text:
        blocks = _pem_blocks(text)
        if not blocks:
            raise X509Error("holds a malformed PEM block")
        others = [label for label, dummy in blocks if label not in ("CERTIFICATE", "TRUSTED CERTIFICATE", "X509 CERTIFICATE")]
        if others:
            raise X509Error("holds PEM blocks that are not certificates (%s)" % ", ".join(sorted(set(others))))
        certs = []
        for label, body in blocks:
            try:
                der = b64decode_strict(body)
                certs.append(x509.load_der_x509_certificate(der))
            except ValueError:
                raise X509Error("holds a CERTIFICATE block that does not parse as an X.509 certificate")
        return certs
    der = _decode_der_input(data, "an X.509 certificate")
    try:
        return [x509.load_der_x509_certificate(der)]
    except ValueError:
        raise X509Error("is not an X.509 certificate (neither PEM nor base64 DER of one)")


def load_issuers(params):
    """The CA certificates of the ``issuer_ca`` / ``issuer_ca_path`` options (encedo_tls, encedo_info).

    Returns (option name, certificates), or (None, None) when neither is set. X509Error names the option.
    """
    if params.get('issuer_ca') is not None:
        option, data = 'issuer_ca', params['issuer_ca']
    elif params.get('issuer_ca_path') is not None:
        option = 'issuer_ca_path'
        try:
            with open(params['issuer_ca_path'], 'rb') as f:
                data = f.read()
        except (IOError, OSError) as exc:
            raise X509Error('option issuer_ca_path: cannot read %s: %s' % (params['issuer_ca_path'], exc))
    else:
        return None, None
    try:
        return option, load_certificates(data)
    except X509Error as exc:
        raise X509Error('option %s %s' % (option, exc))


def load_certificate(data):
    """Parse exactly one certificate from PEM or base64 (or raw) DER.

    Rejects chains, private keys, CSRs and anything else with a message that says what
    was found instead.
    """
    if data is None or (isinstance(data, (str, bytes)) and not data.strip()):
        raise X509Error("is empty")
    text = _as_text(data)
    if text is not None and "-----BEGIN" in text:
        blocks = _pem_blocks(text)
        certs = [b for b in blocks if b[0] in ("CERTIFICATE", "X509 CERTIFICATE")]
        if any("PRIVATE KEY" in label for label, dummy in blocks):
            raise X509Error("contains a private key; give only the certificate (the device keeps its TLS key inside the HSM)")
        if len(certs) > 1:
            raise X509Error("holds %d certificates (a chain or bundle); give only the device certificate" % len(certs))
        if not certs:
            if blocks:
                raise X509Error("holds no certificate but %s" % _describe_blocks(blocks))
            raise X509Error("holds a malformed PEM block")
        try:
            return x509.load_der_x509_certificate(b64decode_strict(certs[0][1]))
        except ValueError:
            raise X509Error("holds a CERTIFICATE block that does not parse as an X.509 certificate")
    der = _decode_der_input(data, "an X.509 certificate")
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        if _looks_like_csr(der):
            raise X509Error("is a certificate signing request, not a certificate; have it signed first")
        raise X509Error("is not an X.509 certificate (neither PEM nor base64 DER of one)")
    if len(cert.public_bytes(serialization.Encoding.DER)) != len(der):
        raise X509Error("holds more than one certificate or trailing data; give only the device certificate")
    return cert


def _looks_like_csr(der):
    try:
        x509.load_der_x509_csr(der)
        return True
    except ValueError:
        return False


def cert_der(cert):
    return cert.public_bytes(serialization.Encoding.DER)


def cert_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _utc(value):
    if value.tzinfo is None:
        return value.replace(tzinfo=datetime.timezone.utc)
    return value


def not_before(cert):
    return _utc(getattr(cert, "not_valid_before_utc", None) or cert.not_valid_before)


def not_after(cert):
    return _utc(getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after)


def _now(now=None):
    return now if now is not None else datetime.datetime.now(datetime.timezone.utc)


def days_remaining(cert, now=None):
    """Whole days left until notAfter (negative once expired)."""
    delta = not_after(cert) - _now(now)
    return int(delta.total_seconds() // 86400)


def is_expired(cert, now=None):
    return not_after(cert) <= _now(now)


def is_not_yet_valid(cert, now=None):
    return not_before(cert) > _now(now)


def _iso(value):
    return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def colon_hex(data):
    return ":".join("%02x" % b for b in bytearray(data))


def spki_der(public_key):
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def spki_sha256(obj):
    """SHA-256 of the SubjectPublicKeyInfo of a certificate, CSR or public key (colon hex)."""
    key = obj.public_key() if hasattr(obj, "public_key") else obj
    return colon_hex(hashlib.sha256(spki_der(key)).digest())


def same_key(a, b):
    """True when two certificates/CSRs/public keys carry the same public key."""
    ka = a.public_key() if hasattr(a, "public_key") else a
    kb = b.public_key() if hasattr(b, "public_key") else b
    return spki_der(ka) == spki_der(kb)


def _name(name):
    return name.rfc4514_string()


def subject_alt_names(cert):
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out = []
    for gn in ext:
        if isinstance(gn, x509.DNSName):
            out.append("DNS:%s" % gn.value)
        elif isinstance(gn, x509.IPAddress):
            out.append("IP:%s" % gn.value)
        elif isinstance(gn, x509.RFC822Name):
            out.append("email:%s" % gn.value)
        elif isinstance(gn, x509.UniformResourceIdentifier):
            out.append("URI:%s" % gn.value)
        elif isinstance(gn, x509.DirectoryName):
            out.append("dirName:%s" % _name(gn.value))
        elif isinstance(gn, x509.RegisteredID):
            out.append("RID:%s" % gn.value.dotted_string)
        elif isinstance(gn, x509.OtherName):
            out.append("otherName:%s" % gn.type_id.dotted_string)
    return out


def public_key_type(key):
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC %s" % key.curve.name
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA %d" % key.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    return type(key).__name__


def certificate_facts(cert, now=None):
    """The facts returned by encedo_tls for one certificate (JSON-safe, no secrets)."""
    return {
        "subject": _name(cert.subject),
        "issuer": _name(cert.issuer),
        "subject_alt_names": subject_alt_names(cert),
        "serial_number": "%x" % cert.serial_number,
        "not_before": _iso(not_before(cert)),
        "not_after": _iso(not_after(cert)),
        "days_remaining": days_remaining(cert, now),
        "fingerprint_sha256": colon_hex(cert.fingerprint(hashes.SHA256())),
        "spki_sha256": spki_sha256(cert),
        "public_key_type": public_key_type(cert.public_key()),
        "self_signed": cert.issuer == cert.subject and _signed_by(cert, cert.public_key()),
    }


def _signed_by(cert, public_key):
    """Verify the certificate's signature with public_key."""
    sig_hash = cert.signature_hash_algorithm
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            params = getattr(cert, "signature_algorithm_parameters", None)
            pad = params if isinstance(params, padding.PSS) else padding.PKCS1v15()
            public_key.verify(cert.signature, cert.tbs_certificate_bytes, pad, sig_hash)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(sig_hash))
        elif isinstance(public_key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            public_key.verify(cert.signature, cert.tbs_certificate_bytes)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def is_issued_by(cert, ca_cert):
    """True when cert names ca_cert's subject as issuer and carries ca_cert's signature."""
    if cert.issuer != ca_cert.subject:
        return False
    return _signed_by(cert, ca_cert.public_key())


def issued_by_any(cert, ca_certs):
    return any(is_issued_by(cert, ca) for ca in ca_certs)


# ------------------------------------------------------------------------ CSRs

def load_csr(data):
    """Parse a CSR from PEM or base64 (or raw) DER. The device may send either."""
    if data is None or (isinstance(data, (str, bytes)) and not data.strip()):
        raise X509Error("is empty")
    text = _as_text(data)
    if text is not None and "-----BEGIN" in text:
        blocks = [b for b in _pem_blocks(text) if b[0] in ("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST")]
        if len(blocks) != 1:
            raise X509Error("does not hold exactly one PEM CERTIFICATE REQUEST")
        der = _decode_der_input(blocks[0][1], "a certificate signing request")
    else:
        der = _decode_der_input(data, "a certificate signing request")
    try:
        return x509.load_der_x509_csr(der)
    except ValueError:
        raise X509Error("is not a certificate signing request (neither PEM nor base64 DER of one)")


def csr_pem(csr):
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def csr_facts(csr):
    return {
        "subject": _name(csr.subject),
        "spki_sha256": spki_sha256(csr),
        "public_key_type": public_key_type(csr.public_key()),
        "signature_valid": bool(csr.is_signature_valid),
    }


# ------------------------------------------------------------------------ key import

def validate_key_import(emp, key):
    """Check the shape of a vendor-style encrypted TLS key; return it untouched.

    emp: the ephemeral P-256 public key as base64 of the uncompressed point
         0x04 || X || Y (65 bytes), which must lie on the curve.
    key: "<b64 IV>.<b64 AES-256-CBC ciphertext>", exactly 113 characters, the IV
         16 bytes and the ciphertext a whole number of 16-byte blocks.
    Raises X509Error naming the sub-option. Never puts the key's value in a message.
    """
    if not isinstance(emp, str) or not emp.strip():
        raise X509Error("key_import.emp is empty")
    try:
        point = b64decode_strict(emp)
    except ValueError:
        raise X509Error("key_import.emp is not base64")
    if len(point) != P256_POINT_LENGTH or point[:1] != b"\x04":
        raise X509Error(
            "key_import.emp must be a P-256 public key as base64 of the 65-byte uncompressed point (04 || X || Y); "
            "got %d bytes" % len(point))
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise X509Error("key_import.emp is not a point on the P-256 curve")
    if not isinstance(key, str):
        raise X509Error("key_import.key must be a string")
    if len(key) != KEY_IMPORT_LENGTH:
        raise X509Error("key_import.key must be exactly %d characters \"<b64 IV>.<b64 ciphertext>\"; got %d" % (KEY_IMPORT_LENGTH, len(key)))
    parts = key.split(".")
    if len(parts) != 2:
        raise X509Error("key_import.key must be \"<b64 IV>.<b64 ciphertext>\" with exactly one '.'")
    try:
        iv = b64decode_strict(parts[0])
        ciphertext = b64decode_strict(parts[1])
    except ValueError:
        raise X509Error("key_import.key: the IV or the ciphertext is not base64")
    if len(iv) != 16:
        raise X509Error("key_import.key: the IV must be 16 bytes; got %d" % len(iv))
    if not ciphertext or len(ciphertext) % 16:
        raise X509Error("key_import.key: the ciphertext must be whole 16-byte AES blocks; got %d bytes" % len(ciphertext))
    return {"emp": emp, "key": key}


# ------------------------------------------------------------------------ TLS handshake

def parse_url(url):
    """Return (host, port) of an https:// device URL."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "https":
        raise X509Error("url must be https:// to read the certificate the device serves; got %r" % parts.scheme)
    if not parts.hostname:
        raise X509Error("url has no host")
    try:
        port = parts.port or 443
    except ValueError:
        raise X509Error("url has an invalid port")
    return parts.hostname, port


def served_certificate(client):
    """The certificate (parsed) the device at ``client.url`` serves, or None when it serves none.

    The one place the collection reads it: ``client`` (HemClient.served_certificate) takes it from
    the TLS handshake of a request it made anyway (or makes one status read when it has made
    none), verified like every other request of the module. It never uses the CA the user wants
    the device to move to: that CA does not trust today's certificate yet. When verification
    fails the error says which certificate the device serves and why it is not trusted.
    """
    der = _served_der(client)
    if not der:
        return None
    try:
        return load_certificate(der)
    except X509Error as exc:
        raise X509Error('the certificate the device serves %s' % exc)


def _served_der(client):
    host, port = parse_url(client.url)
    try:
        return client.served_certificate()
    except HemTlsError as exc:
        detail = ""
        try:
            if getattr(exc, "served", None):
                facts = certificate_facts(x509.load_der_x509_certificate(exc.served))
                detail = " The device serves subject %s, issuer %s, valid until %s, names %s." % (
                    facts["subject"], facts["issuer"], facts["not_after"], ", ".join(facts["subject_alt_names"]) or "none")
        except (ValueError, X509Error):
            pass
        raise X509Error(
            "TLS verification of %s:%d failed (%s).%s ca_path must trust the certificate the device serves now; "
            "after an uploaded certificate is activated by a reboot that is the CA which issued it "
            "(a bundle of the old and the new CA works before and after the reboot)." % (host, port, exc.reason, detail))
    except HemError as exc:
        raise X509Error("cannot connect to %s:%d to read its TLS certificate: %s" % (host, port, exc))


# ------------------------------------------------------------------------ name check (never lock the controller out)

def tls_client_accepts_host(cert, host):
    """Whether a TLS client reaching ``host`` would accept the names of ``cert``, as decided by Python's ``ssl``
    (OpenSSL's own host check, the one the collection's client applies after the reboot): DNS names of the
    subjectAltName with wildcards as TLS clients match them, an IP address only through an IP entry, the subject
    CN only when there is no subjectAltName.

    The device's certificate cannot be presented without the device's key, so a throwaway CA issues a throwaway
    certificate with the same subject and subjectAltName, and an in-memory handshake (no network) checks it
    against ``host``. Raises X509Error when the handshake fails for another reason than the name.
    """
    import os
    import tempfile

    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    day = datetime.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "encedo.hem name check CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - day).not_valid_after(now + day)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    builder = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(ca_name).public_key(leaf_key.public_key())
               .serial_number(2).not_valid_before(now - day).not_valid_after(now + day))
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        builder = builder.add_extension(san.value, critical=san.critical)
    except x509.ExtensionNotFound:
        pass
    leaf = builder.sign(ca_key, hashes.SHA256())

    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory(prefix="encedo_hem_names.") as tmp:
        cert_file, key_file = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        with open(cert_file, "wb") as f:
            f.write(leaf.public_bytes(serialization.Encoding.PEM))
        with open(key_file, "wb") as f:
            f.write(leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        server_ctx.load_cert_chain(cert_file, key_file)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)       # check_hostname and CERT_REQUIRED, like the client's
    client_ctx.load_verify_locations(cadata=ca.public_bytes(serialization.Encoding.PEM).decode("ascii"))

    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(to_client, to_server, server_hostname=host.strip("[]"))
    server = server_ctx.wrap_bio(to_server, to_client, server_side=True)
    for dummy in range(10):
        try:
            client.do_handshake()
            return True
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLCertVerificationError as exc:
            if getattr(exc, "verify_code", None) in (62, 64):    # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
                return False
            raise X509Error("the name check of the certificate failed: %s" % (getattr(exc, "verify_message", None) or exc))
        try:
            server.do_handshake()
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError:
            pass        # the client's side of the failure is read on the next turn
    raise X509Error("the name check of the certificate did not complete")


def name_mismatch(cert, host):
    """None when a TLS client reaching ``host`` accepts ``cert``; else what is wrong, naming the certificate's
    names and what ``host`` needs."""
    if tls_client_accepts_host(cert, host):
        return None
    names = subject_alt_names(cert)
    if not names:
        cn = [a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
        names = ["no subjectAltName (subject CN %s)" % (", ".join(cn) or "none")]
    try:
        ipaddress.ip_address(host.strip("[]"))
        needed = "IP:%s (an IP address matches only an IP entry, never a DNS name)" % host.strip("[]")
    except ValueError:
        parent = host.split(".", 1)[1] if "." in host else None
        needed = "DNS:%s%s" % (host, " or DNS:*.%s" % parent if parent and "." in parent else "")
    return "the certificate names %s; %s (the host of url) needs %s" % (", ".join(names), host, needed)
