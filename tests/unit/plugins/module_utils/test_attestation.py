# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the attestation verification logic (plugins/module_utils/_attestation.py).

The vendor's real sample (tests/unit/fixtures/attestation_sample.json) is the anchor: it
must pass the signature, key id and genuine_id checks, with freshness judged at the
token's own time (the sample is from 2022); judged now, its certificate (valid 2020-10-05
to 2023-10-05) fails the validity check, which does not decide ``verified`` unless enforced. Tokens and certificates for the other cases
are built here with ``cryptography`` directly, not with the code under test.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

try:
    from ansible_collections.encedo.hem.plugins.module_utils import _attestation as att
except ImportError:  # run without the collection link on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "build" / "collections"))
    from ansible_collections.encedo.hem.plugins.module_utils import _attestation as att

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "attestation_sample.json")
UTC = datetime.timezone.utc

with open(FIXTURE) as _fh:
    SAMPLE = json.load(_fh)
SAMPLE_TIME = datetime.datetime.fromtimestamp(SAMPLE["token_timestamp"], UTC)
NOW = datetime.datetime.now(UTC).replace(microsecond=0)


def b64(data):
    return base64.b64encode(data).decode("ascii")


def token_parts(token):
    return [base64.b64decode(p) for p in token.split(".")]


def join_token(key_id, ts, sig):
    return ".".join(b64(p) for p in (key_id, ts, sig))


def status(result, name):
    return result["checks"][name]["status"]


def sample_verify(genuine=None, crt=None, **kw):
    kw.setdefault("genuine_ids", {"option": SAMPLE["genuine_id"]})
    kw.setdefault("now", SAMPLE_TIME)
    return att.verify(genuine or SAMPLE["genuine"], crt or SAMPLE["crt"], **kw)


# ---------------------------------------------------------------------------- a small independent PKI

def _name(cn, org="Test Custody"):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn="Test Custody CA", ca=True, key_cert_sign=True, bc_critical=True, days=(-1, 3650), with_bc=True):
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(NOW + datetime.timedelta(days=days[0]))
               .not_valid_after(NOW + datetime.timedelta(days=days[1])))
    if with_bc:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=bc_critical)
    builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, key_cert_sign, key_cert_sign, False, False),
                                    critical=True)
    return key, builder.sign(key, hashes.SHA256())


def issue(ca_key, ca_cert, genuine_id="00aabbccddeeff0011", key=None, days=(-1, 365), ski=True):
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder().subject_name(_name("#" + genuine_id, "Encedo Ltd"))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(NOW + datetime.timedelta(days=days[0]))
               .not_valid_after(NOW + datetime.timedelta(days=days[1]))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=False))
    if ski:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def make_token(key, cert, when=None):
    ts = str(int((when or NOW).timestamp())).encode("ascii")
    sig = key.sign(ts, ec.ECDSA(hashes.SHA256()))
    kid = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    return join_token(kid, ts, sig)


def pem(*certs):
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in certs)


@pytest.fixture(scope="module")
def pki():
    ca_key, ca = make_ca()
    dev_key, dev = issue(ca_key, ca)
    return dict(ca_key=ca_key, ca=ca, dev_key=dev_key, dev=dev, token=make_token(dev_key, dev))


# ---------------------------------------------------------------------------- the vendor sample

def test_sample_passes_signature_key_id_genuine_id_and_freshness_at_its_own_time():
    result = sample_verify()
    assert status(result, "signature") == att.PASSED
    assert status(result, "key_id") == att.PASSED
    assert status(result, "genuine_id") == att.PASSED
    assert status(result, "freshness") == att.PASSED
    assert status(result, "validity") == att.PASSED          # at its own time the certificate was valid
    assert set(result["checks"]) == set(att.CHECKS) and len(att.CHECKS) == 6
    # no trust anchor: the chain check did not run, and a check that did not run never counts
    assert status(result, "chain") == att.NOT_RUN
    assert "trust anchor" in result["checks"]["chain"]["reason"]
    assert result["verified"] is False
    assert result["token_timestamp"] == 1647641285
    assert result["token_time"] == "2022-03-18T22:08:05Z"
    assert result["common_name"] == "#0123eb561f5ea073ee"
    assert result["issuer"] == "CN=Encedo Custody CA,O=Encedo Limited,C=UK"
    assert result["serial_number"] == 109
    assert (result["not_before"], result["not_after"]) == ("2020-10-05T19:29:33Z", "2023-10-05T19:29:33Z")
    assert result["token_key_id"] == result["subject_key_id"] == "aa0249c0cdb08732e8e2fbba49852b251f2b80a5"


def test_sample_verified_only_when_chain_explicitly_skipped():
    result = sample_verify(skip=["chain"])
    assert result["verified"] is True
    assert result["checks"]["chain"] == {"status": att.NOT_RUN, "reason": "skipped: listed in skip_checks"}


def test_sample_is_stale_now():
    result = sample_verify(now=NOW)
    assert status(result, "freshness") == att.FAILED
    assert "more than max_age 300" in result["checks"]["freshness"]["reason"]
    assert status(result, "signature") == att.PASSED


def test_sample_certificate_accepted_as_pem_and_der_bytes():
    der = base64.b64decode(SAMPLE["crt"])
    cert = x509.load_der_x509_certificate(der)
    for form in (der, pem(cert), cert):
        assert status(sample_verify(crt=form), "signature") == att.PASSED


def test_url_safe_unpadded_token_parses_the_same():
    kid, ts, sig = token_parts(SAMPLE["genuine"])
    urlsafe = ".".join(base64.urlsafe_b64encode(p).decode("ascii").rstrip("=") for p in (kid, ts, sig))
    result = sample_verify(genuine=urlsafe)
    assert [status(result, n) for n in ("signature", "key_id", "freshness")] == [att.PASSED] * 3


@pytest.mark.parametrize("index", range(20))
def test_each_key_id_byte_tamper_fails_key_id_only(index):
    kid, ts, sig = token_parts(SAMPLE["genuine"])
    kid = bytearray(kid)
    kid[index] ^= 0x01
    result = sample_verify(genuine=join_token(bytes(kid), ts, sig))
    assert status(result, "key_id") == att.FAILED
    assert "differs from the certificate's Subject Key Identifier" in result["checks"]["key_id"]["reason"]
    assert status(result, "signature") == att.PASSED
    assert result["verified"] is False


@pytest.mark.parametrize("index", range(10))
def test_each_timestamp_byte_tamper_fails_signature(index):
    kid, ts, sig = token_parts(SAMPLE["genuine"])
    ts = bytearray(ts)
    ts[index] = ord("0") + (ts[index] - ord("0") + 1) % 10   # still a decimal digit
    result = sample_verify(genuine=join_token(kid, bytes(ts), sig), now=SAMPLE_TIME, max_age=10 ** 10)
    assert status(result, "signature") == att.FAILED
    assert "does not verify" in result["checks"]["signature"]["reason"]
    assert status(result, "key_id") == att.PASSED
    assert result["verified"] is False


def test_every_signature_byte_tamper_fails_signature():
    kid, ts, sig = token_parts(SAMPLE["genuine"])
    for index in range(len(sig)):
        for mask in (0x01, 0x80):
            bad = bytearray(sig)
            bad[index] ^= mask
            result = sample_verify(genuine=join_token(kid, ts, bytes(bad)))
            assert status(result, "signature") == att.FAILED, (index, mask)
            assert status(result, "key_id") == att.PASSED
            assert status(result, "freshness") == att.PASSED


@settings(max_examples=200, deadline=None)
@given(part=st.sampled_from([0, 1, 2]), data=st.data())
def test_any_token_tamper_is_never_verified(part, data):
    parts = token_parts(SAMPLE["genuine"])
    target = bytearray(parts[part])
    index = data.draw(st.integers(0, len(target) - 1))
    mask = data.draw(st.integers(1, 255))
    target[index] ^= mask
    parts[part] = bytes(target)
    try:
        result = sample_verify(genuine=join_token(*parts), skip=["chain"])
    except att.AttestationError:
        assert part == 1  # a timestamp that is no longer decimal digits is a malformed token
        return
    assert result["verified"] is False
    assert status(result, "signature" if part else "key_id") == att.FAILED


def test_different_certificate_same_name_and_ski_fails_signature(pki):
    # a certificate for another key but claiming the sample's SKI and CN: the signature exposes it
    sample = x509.load_der_x509_certificate(base64.b64decode(SAMPLE["crt"]))
    other_key = ec.generate_private_key(ec.SECP256R1())
    if hasattr(sample, "not_valid_before_utc"):
        valid_from, valid_to = sample.not_valid_before_utc, sample.not_valid_after_utc
    else:  # cryptography < 42 (the floor is tested: tests/unit/test_dependency_floor.py)
        valid_from, valid_to = sample.not_valid_before, sample.not_valid_after
    forged = (x509.CertificateBuilder().subject_name(sample.subject).issuer_name(sample.issuer)
              .public_key(other_key.public_key()).serial_number(109)
              .not_valid_before(valid_from).not_valid_after(valid_to)
              .add_extension(sample.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value, critical=False)
              .sign(other_key, hashes.SHA256()))
    result = sample_verify(crt=forged)
    assert status(result, "signature") == att.FAILED
    assert status(result, "key_id") == att.PASSED
    assert status(result, "genuine_id") == att.PASSED


def test_different_device_certificate_fails_signature_key_id_and_genuine_id(pki):
    result = sample_verify(crt=pki["dev"])
    assert status(result, "signature") == att.FAILED
    assert status(result, "key_id") == att.FAILED
    assert status(result, "genuine_id") == att.FAILED
    assert "#00aabbccddeeff0011" in result["checks"]["genuine_id"]["reason"]


def test_certificate_without_ski_fails_key_id(pki):
    key, cert = issue(pki["ca_key"], pki["ca"], ski=False)
    ts = str(int(NOW.timestamp())).encode("ascii")
    token = join_token(b"\x01" * 20, ts, key.sign(ts, ec.ECDSA(hashes.SHA256())))
    result = att.verify(token, cert, now=NOW)
    assert status(result, "signature") == att.PASSED
    assert status(result, "key_id") == att.FAILED
    assert "no Subject Key Identifier" in result["checks"]["key_id"]["reason"]


# ---------------------------------------------------------------------------- genuine_id

def test_genuine_id_mismatch_and_sources():
    result = sample_verify(genuine_ids={"option": "0123eb561f5ea073ef"})
    assert status(result, "genuine_id") == att.FAILED
    assert "option 0123eb561f5ea073ef" in result["checks"]["genuine_id"]["reason"]
    # the device's own claim and the inventory must both match
    result = sample_verify(genuine_ids={"option": SAMPLE["genuine_id"], "device": "ffff"})
    assert status(result, "genuine_id") == att.FAILED
    assert "device ffff" in result["checks"]["genuine_id"]["reason"]
    # '#'-prefixed and upper-case forms of the same id are accepted
    assert status(sample_verify(genuine_ids={"device": "#0123EB561F5EA073EE"}), "genuine_id") == att.PASSED


def test_genuine_id_unknown_is_not_run_and_not_verified():
    result = sample_verify(genuine_ids={}, skip=["chain"])
    assert status(result, "genuine_id") == att.NOT_RUN
    assert "genuine_id option" in result["checks"]["genuine_id"]["reason"]
    assert result["verified"] is False
    assert "check genuine_id not run" in att.failed_summary(result)
    assert sample_verify(genuine_ids={"option": None}, skip=["chain", "genuine_id"])["verified"] is True


# ---------------------------------------------------------------------------- freshness and validity

@pytest.mark.parametrize("offset,verdict", [(0, att.PASSED), (300, att.PASSED), (301, att.FAILED), (-300, att.PASSED), (-301, att.FAILED)])
def test_freshness_window(offset, verdict):
    result = sample_verify(now=SAMPLE_TIME + datetime.timedelta(seconds=offset), max_age=300)
    assert status(result, "freshness") == verdict
    if offset < -300:
        assert "in the future" in result["checks"]["freshness"]["reason"]


def test_sample_expired_now_is_verified_unless_validity_is_enforced():
    # the vendor's own sample: a genuine device whose factory certificate expired on 2023-10-05
    result = sample_verify(now=NOW, skip=["chain", "freshness"])
    validity = result["checks"]["validity"]
    assert validity["status"] == att.FAILED
    assert "expired at 2023-10-05T19:29:33Z" in validity["reason"]
    assert "valid 2020-10-05T19:29:33Z to 2023-10-05T19:29:33Z" in validity["reason"]
    assert "not enforced (enforce_validity is false)" in validity["reason"]
    assert result["verified"] is True
    assert "validity" not in att.failed_summary(result)
    enforced = sample_verify(now=NOW, skip=["chain", "freshness"], enforce_validity=True)
    assert enforced["verified"] is False
    assert enforced["checks"]["validity"]["status"] == att.FAILED
    assert "not enforced" not in enforced["checks"]["validity"]["reason"]
    summary = att.failed_summary(enforced, enforce_validity=True)
    assert summary.startswith("check validity failed: the attestation certificate expired at 2023-10-05T19:29:33Z")


def test_required_checks():
    assert att.required_checks() == ["signature", "key_id", "chain", "genuine_id", "freshness"]
    assert att.required_checks(["chain"], enforce_validity=True) == ["signature", "key_id", "genuine_id", "freshness", "validity"]


def test_certificate_not_yet_valid_fails_validity_only(pki):
    key, cert = issue(pki["ca_key"], pki["ca"], days=(1, 30))   # not yet valid now
    kw = dict(anchors=[pki["ca"]], genuine_ids={"option": "00aabbccddeeff0011"}, now=NOW)
    result = att.verify(make_token(key, cert), cert, **kw)
    assert status(result, "validity") == att.FAILED
    assert "is not valid before" in result["checks"]["validity"]["reason"]
    assert [status(result, n) for n in att.required_checks()] == [att.PASSED] * 5
    assert result["verified"] is True
    assert att.verify(make_token(key, cert), cert, enforce_validity=True, **kw)["verified"] is False


def test_expired_certificate_under_valid_anchor(pki):
    key, cert = issue(pki["ca_key"], pki["ca"], days=(-1100, -5))
    result = att.verify(make_token(key, cert), cert, anchors=[pki["ca"]], genuine_ids={"option": "00aabbccddeeff0011"}, now=NOW)
    assert status(result, "chain") == att.PASSED                  # the chain is about signatures, not dates
    assert status(result, "freshness") == att.PASSED              # the token is fresh: the device signed it now
    assert status(result, "validity") == att.FAILED
    assert result["verified"] is True


# ---------------------------------------------------------------------------- an unset device clock

def token_at(key, cert, timestamp):
    ts = str(int(timestamp)).encode("ascii")
    kid = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    return join_token(kid, ts, key.sign(ts, ec.ECDSA(hashes.SHA256())))


@pytest.mark.parametrize("timestamp", [0, 42, 86400 * 365, 946684799])
def test_token_from_an_unset_clock_asks_for_a_check_in(pki, timestamp):
    result = att.verify(token_at(pki["dev_key"], pki["dev"], timestamp), pki["dev"], anchors=[pki["ca"]], now=NOW)
    fresh = result["checks"]["freshness"]
    assert fresh["status"] == att.FAILED
    assert "before 2000 comes from an unset device clock" in fresh["reason"]
    assert "run a check-in (encedo.hem.encedo_checkin" in fresh["reason"]
    assert status(result, "signature") == att.PASSED and status(result, "chain") == att.PASSED
    assert "check freshness failed" in att.failed_summary(result) and "encedo_checkin" in att.failed_summary(result)


def test_status_without_time_means_unset_clock(pki):
    token = token_at(pki["dev_key"], pki["dev"], NOW.timestamp() - 3600)
    unset = att.verify(token, pki["dev"], now=NOW, clock_set=False)["checks"]["freshness"]
    assert unset["status"] == att.FAILED and "status shows no time" in unset["reason"] and "encedo_checkin" in unset["reason"]
    for known in (True, None):
        wrong = att.verify(token, pki["dev"], now=NOW, clock_set=known)["checks"]["freshness"]
        assert wrong["status"] == att.FAILED and "more than max_age 300" in wrong["reason"]
        assert "encedo_checkin" not in wrong["reason"]          # a set clock that is wrong: no check-in claim
    # a fresh token passes whatever the status said
    assert att.verify(token_at(pki["dev_key"], pki["dev"], NOW.timestamp()), pki["dev"], now=NOW,
                      clock_set=False)["checks"]["freshness"]["status"] == att.PASSED


def test_token_before_the_certificate_means_unset_or_wrong_clock(pki):
    token = token_at(pki["dev_key"], pki["dev"], NOW.timestamp() - 3 * 86400)   # the certificate is from yesterday
    fresh = att.verify(token, pki["dev"], now=NOW, clock_set=True)["checks"]["freshness"]
    assert fresh["status"] == att.FAILED
    assert "before the attestation certificate was issued" in fresh["reason"] and "encedo_checkin" in fresh["reason"]


# ---------------------------------------------------------------------------- chain

def test_own_pki_verifies_completely(pki):
    result = att.verify(pki["token"], pki["dev"], anchors=[pki["ca"]], genuine_ids={"option": "00aabbccddeeff0011"}, now=NOW)
    assert result["verified"] is True, result["checks"]
    assert all(c["status"] == att.PASSED for c in result["checks"].values())


def test_chain_with_bundle_where_second_anchor_is_right(pki):
    _key, other = make_ca("Other CA")
    anchors = att.parse_trust_anchors(pem(other, pki["ca"]), "trust_anchor")
    assert len(anchors) == 2
    assert status(att.verify(pki["token"], pki["dev"], anchors=anchors, now=NOW), "chain") == att.PASSED


def test_wrong_anchor_same_name_fails_chain(pki):
    _key, impostor = make_ca("Test Custody CA")     # same subject, different key
    result = att.verify(pki["token"], pki["dev"], anchors=[impostor], now=NOW)
    assert status(result, "chain") == att.FAILED
    assert "does not verify" in result["checks"]["chain"]["reason"]
    assert status(result, "signature") == att.PASSED


def test_wrong_anchor_other_name_fails_chain(pki):
    _key, other = make_ca("Other CA")
    result = att.verify(pki["token"], pki["dev"], anchors=[other], now=NOW)
    assert status(result, "chain") == att.FAILED
    assert "is not among the 1 trust anchor" in result["checks"]["chain"]["reason"]


def test_forged_issuer_name_fails_chain(pki):
    # signed by another key but naming the trusted CA as issuer
    rogue_key, _rogue = make_ca("Rogue")
    key, cert = issue(rogue_key, pki["ca"])
    result = att.verify(make_token(key, cert), cert, anchors=[pki["ca"]], now=NOW)
    assert status(result, "chain") == att.FAILED
    assert status(result, "signature") == att.PASSED


def test_expired_anchor_passes_chain_and_fails_validity():
    ca_key, ca = make_ca(days=(-400, -1))
    key, cert = issue(ca_key, ca)
    result = att.verify(make_token(key, cert), cert, anchors=[ca], genuine_ids={"option": "00aabbccddeeff0011"}, now=NOW)
    assert status(result, "chain") == att.PASSED
    validity = result["checks"]["validity"]
    assert validity["status"] == att.FAILED
    assert "trust anchor CN=Test Custody CA,O=Test Custody expired at" in validity["reason"]
    assert "the attestation certificate" not in validity["reason"]     # the certificate itself is within its dates
    assert result["verified"] is True
    assert att.verify(make_token(key, cert), cert, anchors=[ca], genuine_ids={"option": "00aabbccddeeff0011"}, now=NOW,
                      enforce_validity=True)["verified"] is False


def test_chain_accepts_custody_ca_with_non_critical_basic_constraints():
    # cryptography.x509.verification (web PKI profile) would refuse this CA; attestation does not need that profile
    ca_key, ca = make_ca(bc_critical=False)
    key, cert = issue(ca_key, ca)
    assert status(att.verify(make_token(key, cert), cert, anchors=[ca], now=NOW), "chain") == att.PASSED


# ---------------------------------------------------------------------------- trust anchor loading

def test_non_ca_anchors_rejected(pki):
    sample_pem = pem(x509.load_der_x509_certificate(base64.b64decode(SAMPLE["crt"])))
    with pytest.raises(att.AttestationError, match=r"trust_anchor: certificate 1 of 1 .*is not a CA certificate"):
        att.load_trust_anchors(trust_anchor=sample_pem)
    _key, not_ca = make_ca(ca=False)     # keyCertSign but CA:FALSE
    with pytest.raises(att.AttestationError, match="CA:FALSE"):
        att.parse_trust_anchors(pem(not_ca), "trust_anchor")
    _key, no_bc = make_ca(with_bc=False)
    _key, no_sign = make_ca(key_cert_sign=False)
    with pytest.raises(att.AttestationError, match="no basicConstraints"):
        att.parse_trust_anchors(pem(pki["ca"], no_bc), "trust_anchor")
    with pytest.raises(att.AttestationError, match="certificate 2 of 2 .*keyCertSign"):
        att.parse_trust_anchors(pem(pki["ca"], no_sign), "trust_anchor")


def test_unreadable_and_malformed_anchor_files(tmp_path, pki):
    missing = tmp_path / "missing.pem"
    with pytest.raises(att.AttestationError, match="trust_anchor_path .*missing.pem cannot be read"):
        att.load_trust_anchors(trust_anchor_path=str(missing))
    binary = tmp_path / "ca.der"
    binary.write_bytes(pki["ca"].public_bytes(serialization.Encoding.DER))
    with pytest.raises(att.AttestationError, match="not a PEM file"):
        att.load_trust_anchors(trust_anchor_path=str(binary))
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(att.AttestationError, match="holds no PEM certificate"):
        att.load_trust_anchors(trust_anchor_path=str(text))
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(att.AttestationError, match="certificate 1 of 1 cannot be parsed"):
        att.load_trust_anchors(trust_anchor_path=str(broken))
    good = tmp_path / "bundle.pem"
    good.write_text(pem(pki["ca"]))
    assert att.load_trust_anchors(trust_anchor_path=str(good))[0] == pki["ca"]
    assert att.load_trust_anchors() == []


# ---------------------------------------------------------------------------- malformed device data

@pytest.mark.parametrize("token,message", [
    ("", "missing or empty"),
    ("abc.def", "2 dot-separated parts"),
    ("a.b.c.d", "4 dot-separated parts"),
    ("qgJJ.!!!!.MEYC", "timestamp is not valid base64"),
    (".MTY0NzY0MTI4NQ==.MEYC", "key id is empty"),
    ("qgJJ.bm90LWEtbnVtYmVy.MEYC", "not a Unix time"),
    ("qgJJ.MTY0NzY0MTI4NQ==.", "signature is empty"),
])
def test_malformed_tokens_raise(token, message):
    with pytest.raises(att.AttestationError, match=message):
        att.verify(token, SAMPLE["crt"])


def test_malformed_certificate_raises():
    with pytest.raises(att.AttestationError, match=r"attestation certificate \(crt\) is not an X.509 certificate"):
        att.verify(SAMPLE["genuine"], b64(b"not a certificate"))


def test_certificates_and_base64_are_read_by_the_helpers_of_x509():
    # One set of certificate helpers (issue 15): the attestation module reads PEM, base64 DER and DER as _x509 does.
    from ansible_collections.encedo.hem.plugins.module_utils import _x509  # pylint: disable=import-outside-toplevel
    crt = att.load_certificate(SAMPLE["crt"], "crt")
    assert att.cert_der(crt) == _x509.cert_der(_x509.load_certificate(SAMPLE["crt"]))
    for form in (_x509.cert_pem(crt), _x509.cert_der(crt), b64(_x509.cert_der(crt)).rstrip("=")):
        assert att.cert_der(att.load_certificate(form, "crt")) == att.cert_der(crt)
    assert att.spki_der is _x509.spki_der and att.cert_der is _x509.cert_der
    assert att.b64decode_any("-_8", "x") == _x509.b64decode_strict("+/8=")
    with pytest.raises(att.AttestationError, match="crt holds 2 certificates"):
        att.load_certificate(_x509.cert_pem(crt) * 2, "crt")


def test_skip_checks_cannot_skip_core_checks():
    with pytest.raises(att.AttestationError, match="signature cannot be skipped"):
        sample_verify(skip=["signature"])


# ---------------------------------------------------------------------------- fresh secure element

def test_fresh_secure_element_checks_signature_with_its_key():
    key = ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ts = str(int(NOW.timestamp())).encode("ascii")
    token = join_token(x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest, ts,
                       key.sign(ts, ec.ECDSA(hashes.SHA256())))
    se_key = att.load_public_key(b64(spki), "key")
    result = att.verify(token, None, se_key=se_key, genuine_ids={"option": "00"}, now=NOW)
    assert status(result, "signature") == att.PASSED
    assert status(result, "freshness") == att.PASSED
    for name in ("key_id", "chain", "genuine_id", "validity"):
        assert status(result, name) == att.NOT_RUN
        assert "not provisioned" in result["checks"][name]["reason"]
    assert result["verified"] is False and result["subject"] is None
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    assert status(att.verify(token, None, se_key=other, now=NOW), "signature") == att.FAILED
    # a raw uncompressed point is accepted too
    point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    assert att.spki_der(att.load_public_key(b64(point[1:]))) == spki
    with pytest.raises(att.AttestationError, match="key is not a valid public key"):
        att.load_public_key(b64(b"\x00" * 10), "key")


def test_failed_summary_names_failed_and_not_run_checks():
    result = sample_verify(genuine_ids={"option": "ff"}, now=NOW)
    summary = att.failed_summary(result)
    assert "check genuine_id failed" in summary
    assert "check freshness failed" in summary
    assert "check chain not run: no trust anchor" in summary
    assert "signature" not in summary
    assert "validity" not in summary                                  # failed, but not enforced
    enforced = sample_verify(genuine_ids={"option": "ff"}, now=NOW, enforce_validity=True)
    assert "check validity failed" in att.failed_summary(enforced, enforce_validity=True)
