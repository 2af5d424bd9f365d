# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils file is PRIVATE to the encedo.hem collection. It may change or
# disappear without notice; do not import it from outside the collection.
"""Verification of HEM attestation data (``GET /api/system/config/attestation``).

The checks are pure logic, no I/O except reading a trust-anchor bundle file; :func:`attest` (at the end) reads
the device and verifies what it answered. The device answers with
an attestation certificate ``crt`` (base64 DER) and a ``genuine`` token
``b64(key id) "." b64(timestamp) "." b64(signature)``. :func:`verify` runs six checks:

``signature``   the token's signature (ECDSA P-256/SHA-256 over the ASCII timestamp)
                verifies under the certificate's public key;
``key_id``      the token's key id equals the certificate's Subject Key Identifier;
``chain``       the certificate is issued directly by one of the trusted custody CAs
                (signature and names; no validity periods, see ``validity``);
``genuine_id``  the certificate's CN is ``#`` + the device's genuine_id;
``freshness``   the token time is within ``max_age`` seconds of now; a token stamped by
                an unset device clock fails with a request to check in;
``validity``    the certificate (and the trust anchor that issued it) are within their
                validity periods now.

Each check ends ``passed``, ``failed`` (with the reason) or ``not_run`` (with why). A
check that did not run never counts as passed: ``verified`` is true only when every
check passed, except the ones the caller explicitly skipped, and except ``validity``
unless the caller enforces it.

Why ``validity`` is reported but not enforced by default: the vendor's own sample
attestation certificate was valid 2020-10-05 to 2023-10-05 (PROTOCOL.md "Attestation
certificates expire") and provisioning the secure element is one-shot, so genuine devices
present attestation certificates past ``notAfter``. The proof of genuineness is the
signature chain (custody CA -> certificate -> token) plus a fresh token, not the
certificate's period. The trust anchor's own period is treated the same way: RFC 5280
section 6.1.1 (d) takes the trust anchor as an input (name and key) to path validation,
the user chose to trust it, and an expired custody CA would otherwise declare the same
genuine devices fake. That the anchor is a CA (basicConstraints CA:TRUE, keyCertSign when
keyUsage is present) is still enforced when the anchors are loaded.

Chain verification is done here rather than with ``cryptography.x509.verification``:
that API enforces the CA/B Forum web PKI profile (for instance it rejects a CA whose
basicConstraints extension is not critical), only lets the profile be relaxed from
cryptography 45 on, and always checks validity periods. The attestation chain is always
one certificate directly under a custody CA, so the rules are checked explicitly: the
issuer name equals the anchor's subject and the signature verifies under the anchor's key
(``verify_directly_issued_by``).

An unset device clock: after every power-up the device clock is unset until a check-in
(PROTOCOL.md "Check-in"), and the token carries whatever the unset clock reads (the
sources do not say what; an RTC counting from its reset value gives a time decades ago).
A failing freshness check names the check-in as the fix when any of these holds: the
device status shows no ``time`` (OpenAPI ``GET /api/system/status``: "present only when
the RTC is set"), the token time is before 2000-01-01 (no set clock of a device made
after 2019 gives that), or it is before the certificate's ``notBefore`` (the device
cannot sign with its certificate before that was issued).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import re
import time

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.encedo.hem.plugins.module_utils import _x509
from ansible_collections.encedo.hem.plugins.module_utils._errors import HemError
from ansible_collections.encedo.hem.plugins.module_utils._fields import device_model

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    HAS_CRYPTOGRAPHY = True
except ImportError:  # pragma: no cover - reported by check_options with missing_required_lib
    HAS_CRYPTOGRAPHY = False

CHECKS = ("signature", "key_id", "chain", "genuine_id", "freshness", "validity")
SKIPPABLE_CHECKS = ("chain", "genuine_id", "freshness")
# Before this, a token time comes from an unset device clock (see the module docstring).
UNSET_CLOCK_BEFORE = 946684800      # 2000-01-01T00:00:00Z
CHECKIN_FIX = ('run a check-in (encedo.hem.encedo_checkin, or encedo.hem.encedo_reboot with checkin enabled) to set '
               'the device clock, then verify again')
PASSED = "passed"
FAILED = "failed"
NOT_RUN = "not_run"

_PEM_CERT_RE = re.compile(r"-----BEGIN CERTIFICATE-----\s.*?-----END CERTIFICATE-----", re.DOTALL)


class AttestationError(HemError):
    """Bad input: unreadable or unusable trust anchors, malformed token or certificate."""


# ---------------------------------------------------------------------------- decoding

def b64decode_any(text, what):
    """Decode standard or URL-safe base64, padding optional (the device accepts both): _x509.b64decode_strict,
    with ``what`` named in the error."""
    if not isinstance(text, str) or not text.strip():
        raise AttestationError("%s is empty or not a string" % what)
    try:
        return _x509.b64decode_strict(text)
    except ValueError as exc:
        raise AttestationError("%s is not valid base64 (%s)" % (what, exc)) from exc


class Token:
    """A parsed ``genuine`` token."""

    def __init__(self, key_id, timestamp_bytes, signature):
        self.key_id = key_id
        self.timestamp_bytes = timestamp_bytes
        self.timestamp = int(timestamp_bytes.decode("ascii"))
        self.signature = signature

    @property
    def time(self):
        """The token time as an aware UTC datetime, or None when out of range."""
        return _from_epoch(self.timestamp)


def parse_token(text):
    """Parse ``genuine``; AttestationError when it is not three base64 parts with a decimal timestamp."""
    if not isinstance(text, str) or not text.strip():
        raise AttestationError("the attestation token (genuine) is missing or empty")
    parts = text.strip().split(".")
    if len(parts) != 3:
        raise AttestationError("the attestation token (genuine) has %d dot-separated parts, expected 3 "
                               "(key id, timestamp, signature)" % len(parts))
    key_id = b64decode_any(parts[0], "the attestation token's key id")
    ts = b64decode_any(parts[1], "the attestation token's timestamp")
    signature = b64decode_any(parts[2], "the attestation token's signature")
    if not re.match(br"^[0-9]{1,12}\Z", ts):
        raise AttestationError("the attestation token's timestamp is not a Unix time in ASCII decimal digits")
    if not key_id:
        raise AttestationError("the attestation token's key id is empty")
    if not signature:
        raise AttestationError("the attestation token's signature is empty")
    return Token(key_id, ts, signature)


def load_certificate(data, what="certificate"):
    """One certificate from PEM text, base64 DER text, or DER bytes (_x509.load_certificate, ``what`` named in the error)."""
    if not isinstance(data, (str, bytes)) or not data.strip():
        raise AttestationError("%s is empty or not a string" % what)
    try:
        return _x509.load_certificate(data)
    except _x509.X509Error as exc:
        raise AttestationError("%s %s" % (what, exc)) from exc


def load_public_key(data, what="public key"):
    """A public key from base64 DER SubjectPublicKeyInfo, a raw P-256 point (64/65 bytes), or PEM."""
    try:
        if isinstance(data, str) and "-----BEGIN" in data:
            return serialization.load_pem_public_key(data.strip().encode("ascii"))
        raw = b64decode_any(data, what)
        if len(raw) == 64:
            raw = b"\x04" + raw
        if len(raw) == 65 and raw[:1] == b"\x04":
            return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
        return serialization.load_der_public_key(raw)
    except AttestationError:
        raise
    except (ValueError, TypeError, UnicodeError, UnsupportedAlgorithm) as exc:
        raise AttestationError("%s is not a valid public key (%s)" % (what, exc)) from exc


spki_der = _x509.spki_der
cert_der = _x509.cert_der


def cert_b64(cert):
    return base64.b64encode(cert_der(cert)).decode("ascii")


# ---------------------------------------------------------------------------- trust anchors

def _is_ca(cert):
    """-> None when cert may act as a CA, else the reason why not."""
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return "it has no basicConstraints extension (CA:TRUE is required)"
    if not bc.ca:
        return "its basicConstraints say CA:FALSE"
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
    if not ku.key_cert_sign:
        return "its keyUsage lacks keyCertSign"
    return None


def parse_trust_anchors(pem_text, option):
    """Every certificate of a PEM bundle; each must be a CA. ``option`` names the source in errors."""
    if not isinstance(pem_text, str) or not pem_text.strip():
        raise AttestationError("%s is empty" % option)
    blocks = _PEM_CERT_RE.findall(pem_text)
    if not blocks:
        raise AttestationError("%s holds no PEM certificate (-----BEGIN CERTIFICATE-----)" % option)
    anchors = []
    for index, block in enumerate(blocks, 1):
        try:
            cert = _x509.load_certificate(block)
        except _x509.X509Error as exc:
            raise AttestationError("%s: certificate %d of %d cannot be parsed (it %s)" % (option, index, len(blocks), exc)) from exc
        why = _is_ca(cert)
        if why:
            raise AttestationError("%s: certificate %d of %d (%s) is not a CA certificate: %s; give the custody CA, "
                                   "not a device certificate" % (option, index, len(blocks), name_text(cert.subject), why))
        anchors.append(cert)
    return anchors


def load_trust_anchors(trust_anchor=None, trust_anchor_path=None):
    """Trust anchors from PEM content or a bundle file; [] when neither is given."""
    if trust_anchor:
        return parse_trust_anchors(trust_anchor, "trust_anchor")
    if trust_anchor_path:
        try:
            with open(trust_anchor_path, "rb") as fh:
                raw = fh.read()
        except (IOError, OSError) as exc:
            raise AttestationError("trust_anchor_path %s cannot be read: %s" % (trust_anchor_path, exc.strerror or exc)) from exc
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise AttestationError("trust_anchor_path %s is not a PEM file (DER or binary content)" % trust_anchor_path) from exc
        return parse_trust_anchors(text, "trust_anchor_path %s" % trust_anchor_path)
    return []


# ---------------------------------------------------------------------------- descriptions

def _from_epoch(seconds):
    try:
        return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def iso(when):
    return when.strftime("%Y-%m-%dT%H:%M:%SZ") if when is not None else None


def _validity(cert):
    try:
        return cert.not_valid_before_utc, cert.not_valid_after_utc
    except AttributeError:  # cryptography < 42
        utc = datetime.timezone.utc
        return cert.not_valid_before.replace(tzinfo=utc), cert.not_valid_after.replace(tzinfo=utc)


def name_text(name):
    return name.rfc4514_string()


def common_name(cert):
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return values[0].value if values else None


def subject_key_id(cert):
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


def describe_certificate(cert):
    """The result keys that describe the attestation certificate (no secrets in it)."""
    not_before, not_after = _validity(cert)
    ski = subject_key_id(cert)
    return dict(
        subject=name_text(cert.subject),
        common_name=common_name(cert),
        issuer=name_text(cert.issuer),
        serial_number=cert.serial_number,
        not_before=iso(not_before),
        not_after=iso(not_after),
        subject_key_id=binascii.hexlify(ski).decode("ascii") if ski is not None else None,
        fingerprint_sha256=hashlib.sha256(cert_der(cert)).hexdigest(),
    )


def normalise_genuine_id(value):
    if value is None:
        return None
    value = str(value).strip()
    if value.startswith("#"):
        value = value[1:]
    return value.lower() or None


# ---------------------------------------------------------------------------- checks

def _result(status, reason):
    return {"status": status, "reason": reason}


def check_signature(token, public_key, key_source="the attestation certificate's key"):
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        return _result(FAILED, "%s is not an elliptic-curve key; the token needs ECDSA P-256" % key_source)
    try:
        public_key.verify(token.signature, token.timestamp_bytes, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return _result(FAILED, "the token's signature does not verify under %s" % key_source)
    return _result(PASSED, "the token's ECDSA P-256/SHA-256 signature over its timestamp verifies under %s" % key_source)


def check_key_id(token, cert):
    ski = subject_key_id(cert)
    if ski is None:
        return _result(FAILED, "the attestation certificate has no Subject Key Identifier to compare with")
    if token.key_id != ski:
        return _result(FAILED, "the token's key id %s differs from the certificate's Subject Key Identifier %s"
                       % (binascii.hexlify(token.key_id).decode("ascii"), binascii.hexlify(ski).decode("ascii")))
    return _result(PASSED, "the token's key id equals the certificate's Subject Key Identifier")


def _valid_at(cert, when):
    not_before, not_after = _validity(cert)
    if when < not_before:
        return "is not valid before %s" % iso(not_before)
    if when > not_after:
        return "expired at %s" % iso(not_after)
    return None


def _issuing_anchor(cert, anchors):
    """-> (the anchor whose signature on cert verifies, or None; the problems met)."""
    candidates = [a for a in anchors if a.subject == cert.issuer]
    if not candidates:
        return None, ["the certificate's issuer %s is not among the %d trust anchor(s) given (%s)"
                      % (name_text(cert.issuer), len(anchors), "; ".join(name_text(a.subject) for a in anchors))]
    problems = []
    for anchor in candidates:
        try:
            cert.verify_directly_issued_by(anchor)
        except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm) as exc:
            problems.append("the signature by trust anchor %s (sha256 %s) does not verify (%s)"
                            % (name_text(cert.issuer), hashlib.sha256(cert_der(anchor)).hexdigest()[:16],
                               exc or "invalid signature"))
            continue
        return anchor, []
    return None, problems


def check_chain(cert, anchors):
    """cert directly issued by one of anchors (already checked to be CAs).

    Validity periods are not part of this check (check_validity reports them).
    """
    anchor, problems = _issuing_anchor(cert, anchors)
    if anchor is None:
        return _result(FAILED, "; ".join(problems))
    return _result(PASSED, "issued and signed by trust anchor %s" % name_text(cert.issuer))


def _period(cert):
    not_before, not_after = _validity(cert)
    return "valid %s to %s" % (iso(not_before), iso(not_after))


def check_validity(cert, now, anchor=None, enforced=False):
    """The certificate's (and its issuing trust anchor's) validity period at now."""
    problems = []
    late = _valid_at(cert, now)
    if late:
        problems.append("the attestation certificate %s (%s)" % (late, _period(cert)))
    if anchor is not None:
        late = _valid_at(anchor, now)
        if late:
            problems.append("trust anchor %s %s (%s)" % (name_text(anchor.subject), late, _period(anchor)))
    if problems:
        reason = "%s, now is %s" % ("; ".join(problems), iso(now))
        if not enforced:
            reason += ("; not enforced (enforce_validity is false): genuine devices keep their factory attestation "
                       "certificate after it expires")
        return _result(FAILED, reason)
    what = "the attestation certificate (%s)" % _period(cert)
    if anchor is not None:
        what += " and trust anchor %s (%s)" % (name_text(anchor.subject), _period(anchor))
    return _result(PASSED, "%s %s valid now, %s" % (what, "are" if anchor is not None else "is", iso(now)))


def check_genuine_id(cert, genuine_ids):
    """genuine_ids: {source: id} with at least one entry; every source must match the CN."""
    cn = common_name(cert)
    expected = dict((source, normalise_genuine_id(value)) for source, value in genuine_ids.items())
    wrong = ["%s %s" % (source, value) for source, value in sorted(expected.items())
             if cn is None or cn.lower() != "#" + value]
    if wrong:
        return _result(FAILED, "the certificate's CN %s is not '#' + the expected genuine_id (%s)"
                       % (cn if cn is not None else "(none)", ", ".join(wrong)))
    return _result(PASSED, "the certificate's CN %s matches the genuine_id (%s)"
                   % (cn, ", ".join(sorted(expected))))


def unset_clock_evidence(token, cert=None, clock_set=None):
    """-> why the token looks stamped by an unset device clock, or None."""
    if clock_set is False:
        return "the device status shows no time, so its clock is unset (no check-in since it powered up)"
    if token.timestamp < UNSET_CLOCK_BEFORE:
        return "a token time before 2000 comes from an unset device clock (no check-in since it powered up)"
    if cert is not None:
        not_before = _validity(cert)[0]
        when = token.time
        if when is not None and when < not_before:
            return ("the token time is before the attestation certificate was issued (%s), so the device clock is "
                    "unset or wrong" % iso(not_before))
    return None


def check_freshness(token, cert, now, max_age, clock_set=None):
    """The token time within max_age of now (either way); the certificate's period is check_validity's.

    clock_set: whether the device status shows its clock set (True/False), None when unknown.
    """
    when = token.time
    if when is None:
        return _result(FAILED, "the token timestamp %d is not a representable time" % token.timestamp)
    age = (now - when).total_seconds()
    if age > max_age:
        unset = unset_clock_evidence(token, cert, clock_set)
        if unset:
            return _result(FAILED, "the token is %d s old (token time %s), more than max_age %d s: %s; %s"
                           % (age, iso(when), max_age, unset, CHECKIN_FIX))
        return _result(FAILED, "the token is %d s old (token time %s), more than max_age %d s; the device clock may "
                       "be wrong or unset (a check-in sets it)" % (age, iso(when), max_age))
    if -age > max_age:
        return _result(FAILED, "the token time %s is %d s in the future, more than max_age %d s; the device or "
                       "controller clock is wrong" % (iso(when), -age, max_age))
    return _result(PASSED, "token time %s is within %d s of now" % (iso(when), max_age))


def verify(genuine, crt=None, anchors=None, genuine_ids=None, now=None, max_age=300, skip=(), se_key=None,
           enforce_validity=False, clock_set=None):
    """Run the six checks on the device's attestation data.

    genuine: the token text (parse errors raise AttestationError).
    crt: the certificate (x509 object, base64 DER or PEM), or None on a fresh secure element.
    anchors: list of trust-anchor certificates ([]/None: chain check not run).
    genuine_ids: {source: expected genuine_id} ({}/None: genuine_id check not run).
    now: aware datetime (default: the current time); max_age: seconds.
    skip: names of checks the caller explicitly does not require.
    se_key: the secure element's public key, used for the signature when there is no crt.
    enforce_validity: whether the validity check counts for ``verified`` (it is always reported).
    clock_set: whether the device status shows its clock set (None: unknown), for freshness.

    Returns a dict: verified, checks {name: {status, reason}}, token_time, token_timestamp,
    token_key_id, and the certificate description keys (None without a certificate).
    """
    token = parse_token(genuine)
    if crt is not None and not isinstance(crt, x509.Certificate):
        crt = load_certificate(crt, "the attestation certificate (crt)")
    if now is None:
        now = datetime.datetime.now(datetime.timezone.utc)
    anchors = anchors or []
    genuine_ids = dict((k, v) for k, v in (genuine_ids or {}).items() if normalise_genuine_id(v))
    skip = set(skip or ())
    unknown = skip - set(SKIPPABLE_CHECKS)
    if unknown:
        raise AttestationError("skip_checks: %s cannot be skipped (only %s)" % (", ".join(sorted(unknown)), ", ".join(SKIPPABLE_CHECKS)))

    no_crt = "the secure element is not provisioned: the device has no attestation certificate"
    checks = {}
    if crt is not None:
        checks["signature"] = check_signature(token, crt.public_key())
        checks["key_id"] = check_key_id(token, crt)
    else:
        if se_key is not None:
            checks["signature"] = check_signature(token, se_key, "the secure element's public key (key)")
        else:
            checks["signature"] = _result(NOT_RUN, no_crt + " nor public key")
        checks["key_id"] = _result(NOT_RUN, no_crt)

    if "chain" in skip:
        checks["chain"] = _result(NOT_RUN, "skipped: listed in skip_checks")
    elif crt is None:
        checks["chain"] = _result(NOT_RUN, no_crt)
    elif not anchors:
        checks["chain"] = _result(NOT_RUN, "no trust anchor given (trust_anchor or trust_anchor_path)")
    else:
        checks["chain"] = check_chain(crt, anchors)

    if "genuine_id" in skip:
        checks["genuine_id"] = _result(NOT_RUN, "skipped: listed in skip_checks")
    elif crt is None:
        checks["genuine_id"] = _result(NOT_RUN, no_crt)
    elif not genuine_ids:
        checks["genuine_id"] = _result(NOT_RUN, "the device's genuine_id is not known: give the genuine_id option, or "
                                       "credentials allowed to read the configuration (scope system:config)")
    else:
        checks["genuine_id"] = check_genuine_id(crt, genuine_ids)

    if "freshness" in skip:
        checks["freshness"] = _result(NOT_RUN, "skipped: listed in skip_checks")
    else:
        checks["freshness"] = check_freshness(token, crt, now, max_age, clock_set)

    if crt is None:
        checks["validity"] = _result(NOT_RUN, no_crt)
    else:
        # the anchor that signed the certificate, whether or not the chain check was asked for
        anchor = _issuing_anchor(crt, anchors)[0] if anchors else None
        checks["validity"] = check_validity(crt, now, anchor, enforce_validity)

    verified = all(checks[name]["status"] == PASSED for name in required_checks(skip, enforce_validity))
    result = dict(
        verified=verified,
        checks=checks,
        token_timestamp=token.timestamp,
        token_time=iso(token.time),
        token_key_id=binascii.hexlify(token.key_id).decode("ascii"),
    )
    empty = dict.fromkeys(("subject", "common_name", "issuer", "serial_number", "not_before", "not_after",
                           "subject_key_id", "fingerprint_sha256"))
    result.update(describe_certificate(crt) if crt is not None else empty)
    return result


def required_checks(skip=(), enforce_validity=False):
    """The checks that must pass for ``verified``."""
    return [name for name in CHECKS if name not in set(skip or ()) and (name != "validity" or enforce_validity)]


def failed_summary(result, enforce_validity=False):
    """One line naming every required check that did not pass (for fail_json)."""
    parts = []
    for name in required_checks((), enforce_validity):
        check = result["checks"][name]
        if check["status"] == FAILED:
            parts.append("check %s failed: %s" % (name, check["reason"]))
        elif check["status"] == NOT_RUN and not check["reason"].startswith("skipped:"):
            parts.append("check %s not run: %s" % (name, check["reason"]))
    return "; ".join(parts)


# ---------------------------------------------------------------------------- reading and verifying a device
# What encedo_attestation does for ``state: verified``, and any module that verifies a device on the way: plain
# functions of ``(module, client)`` (the options: url, trust_anchor, trust_anchor_path, genuine_id, max_age,
# skip_checks, enforce_validity, fail_on_invalid; ``state`` and ``certificate`` when provisioning) that return a
# result dict or raise HemError.

ATTESTATION = '/api/system/config/attestation'
CONFIG = '/api/system/config'
VERSION = '/api/system/version'


def check_options(params):
    """The attestation options' checks before any request (raises HemError)."""
    if not HAS_CRYPTOGRAPHY:
        raise HemError(missing_required_lib('cryptography'))
    if params['max_age'] <= 0:
        raise HemError('option max_age: must be a positive number of seconds, got %d' % params['max_age'])


def attest(module, client, provision=None, status=None, config=None):
    """Read the device's attestation data and verify it -> the result of encedo_attestation.

    ``provision(module, client, anchors, status, data)``: what to do instead of verifying the data read
    (encedo_attestation's ``state: provisioned``); it returns the result dict too. ``status`` and ``config``:
    the device's status and configuration when the caller has read them already (encedo_device), not read again.
    """
    params = module.params
    # Bad trust anchors or certificate: refused before any request (an AttestationError fails the task).
    anchors = load_trust_anchors(params['trust_anchor'], params['trust_anchor_path'])
    if provision is not None:
        load_certificate(params['certificate'], 'option certificate')
    # A token comes from a login on a personalised device: with one, the attestation data is read at once, and the
    # status only when it is needed (verified_result). Without one (or to provision), the status says whether the
    # device is personalised, so whether the read needs credentials, and the version is read only when the status
    # does not show a PPA (an EPA then stops before any login).
    version = None
    if status is None and (provision is not None or not client.token):
        status = client.status()
    if status is not None and device_model(status, None) is None:
        version = client.get(VERSION, auth=False)
        if device_model(status, version) == 'epa':
            return epa_result(module, version)
    personalised = status is None or status.get('inited') is not False
    data = read_attestation(module, client, personalised)
    if data is None:
        result = no_attestation(module, client, status, version)
    else:
        verify = provision or (lambda *args: verified_result(*args, config=config))
        result = verify(module, client, anchors, status, data)
    if result.get('supported') is False and params['fail_on_invalid']:
        raise AttestationFailure('the device %s cannot attest: %s' % (params['url'],
                                                                      result['attestation']['checks']['signature']['reason']), **result)
    return result


class AttestationFailure(HemError):
    """The task fails with this message and the partial result (``changed`` false unless given).

    A type of its own so that a failed re-read after a lost provisioning answer tells the device's
    errors (outcome unknown) from this module's verdicts (raised as they are)."""

    def __init__(self, msg, **result):
        result.setdefault('changed', False)
        super().__init__(msg, result=result)


def unsupported_result(why):
    checks = dict((name, {'status': NOT_RUN, 'reason': why}) for name in CHECKS)
    return dict(changed=False, supported=False, sent=[], attestation=dict(verified=False, checks=checks, provisioned=False))


def read_attestation(module, client, personalised):
    """GET the attestation data; None when the endpoint does not exist (no attestation on this model)."""
    if personalised and not module.has_credentials():
        raise AttestationFailure('the device %s is personalised: reading its attestation data needs credentials '
                                 '(option passphrase, or token of any scope)' % module.params['url'])
    try:
        data = client.get(ATTESTATION, auth=personalised)
    except HemError as exc:
        if exc.status == 404:
            return None
        raise
    if not isinstance(data, dict) or not isinstance(data.get('genuine'), str):
        raise AttestationFailure('the device %s answered GET %s without a genuine token' % (module.params['url'], ATTESTATION))
    return data


def expected_genuine_ids(module, client, personalised, config=None):
    """-> ({source: id}, hint when the device's own genuine_id could not be read). ``config``: already read, else read here."""
    ids = {}
    if module.params['genuine_id']:
        ids['option'] = module.params['genuine_id']
    if not (personalised and module.has_credentials()):
        return ids, None
    try:
        config = client.get(CONFIG) if config is None else config
    except HemError as exc:
        if exc.status in (401, 403):
            return ids, 'the credentials may not read the configuration (%s)' % exc
        raise
    if config.get('genuine_id'):
        ids['device'] = config['genuine_id']
    return ids, None


def clock_set(status):
    """Whether the device status shows its clock set (OpenAPI: `time` is present only when the RTC is set); None if unknown."""
    return ('time' in status) if isinstance(status, dict) else None


def verify_data(module, data, anchors, genuine_ids, hint=None, status=None):
    """Run the checks on the device's answer; malformed device data fails the task naming the device."""
    url = module.params['url']
    try:
        crt = load_certificate(data['crt'], 'the attestation certificate (crt)') if data.get('crt') else None
        se_key = None
        if crt is None and data.get('key'):
            se_key = load_public_key(data['key'], 'the secure element public key (key)')
        result = verify(data['genuine'], crt, anchors=anchors, genuine_ids=genuine_ids,
                        now=datetime.datetime.fromtimestamp(time.time(), datetime.timezone.utc),
                        max_age=module.params['max_age'], skip=module.params['skip_checks'], se_key=se_key,
                        enforce_validity=module.params['enforce_validity'], clock_set=clock_set(status))
    except AttestationError as exc:
        raise AttestationFailure('the device %s returned malformed attestation data: %s' % (url, exc)) from exc
    if hint and result['checks']['genuine_id']['status'] == NOT_RUN and 'skip_checks' not in result['checks']['genuine_id']['reason']:
        result['checks']['genuine_id']['reason'] += '; %s' % hint
    result['provisioned'] = crt is not None
    expected = genuine_ids.get('option') or genuine_ids.get('device')
    result['genuine_id'] = normalise_genuine_id(expected)
    result['genuine_id_sources'] = sorted(genuine_ids)
    if crt is None:
        if data.get('key'):
            result['se_key'] = data['key']
        if data.get('csr'):
            result['csr'] = data['csr']
    return result, crt


def verified_result(module, client, anchors, status, data, config=None):
    url = module.params['url']
    personalised = status is None or status.get('inited') is not False
    genuine_ids, hint = expected_genuine_ids(module, client, personalised, config)
    result, _crt = verify_data(module, data, anchors, genuine_ids, hint, status)
    if status is None and result['checks']['freshness']['status'] == FAILED:
        # Only now is the status worth a request: it tells whether the device clock is unset (the fix: a check-in).
        result, _crt = verify_data(module, data, anchors, genuine_ids, hint, client.status())
    out = dict(changed=False, supported=True, sent=[], attestation=result)
    if module.params['fail_on_invalid'] and not result['verified']:
        raise AttestationFailure('the device %s is not verified as genuine: %s'
                                 % (url, failed_summary(result, module.params['enforce_validity'])), **out)
    return out


def epa_result(module, version):
    """An EPA has no secure-element attestation: the task fails, or (fail_on_invalid false) reports it unsupported."""
    if module.params.get('state') == 'provisioned' or module.params['fail_on_invalid']:
        raise AttestationFailure('the device %s is an EPA (%s): this model has no secure-element attestation, it cannot attest '
                                 'or be provisioned' % (module.params['url'], version.get('hwv')), supported=False)
    return unsupported_result('the EPA model has no secure-element attestation (hwv %s)' % version.get('hwv'))


def no_attestation(module, client, status, version):
    """The attestation endpoint answered 404: the model decides what the task says. The version is read only now (when
    not read yet), the status only when the version does not name the model."""
    url = module.params['url']
    if version is None:
        version = client.get(VERSION, auth=False)
    if status is None and device_model(None, version) is None:
        status = client.status()
    if device_model(status, version) == 'epa':
        return epa_result(module, version)
    if module.params.get('state') == 'provisioned':
        raise AttestationFailure('the device %s cannot be provisioned: it has no attestation endpoints (%s answered 404)'
                                 % (url, ATTESTATION))
    return unsupported_result('the device has no attestation endpoint (%s answered 404)' % ATTESTATION)
