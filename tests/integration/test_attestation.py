# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""encedo_attestation: the module's rules against the emulator over real HTTPS, in-process.

Each test runs the module's main() in this process (helpers/inprocess.py ModuleRunner), with
the emulator's control interface and request log as the proof of what reached the device; the
tests here drive the failure cases. Certificates for provisioning are issued here by a custody
CA the test owns (cryptography, independent of the module).

What only a playbook shows is proven by playbook runs elsewhere: the four-step shape (check,
apply, apply again, check) for state=verified on a genuine device and state=provisioned on a
factory-fresh secure element is the ansible-test target (tests/integration/targets/encedo_attestation);
a token registered by encedo_login and given to encedo_attestation, and no secret in the output
of encedo_attestation and the role at -vvvv, tests/reliability/test_secrets.py; the token guard
(the action plugin) tests/integration/test_info_login.py; the role's attestation step
tests/integration/test_role.py. Here a secret is checked against the module's whole result
(its arguments included, as censored by no_log).
"""

from __future__ import annotations

import base64

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.emulator.harness import Emulator
from tests.integration.helpers.attestation_pki import _name, issue, make_ca, pem
from tests.integration.helpers.attestation_pki import se_public_key as _se_public_key
from tests.integration.helpers.inprocess import ModuleRunner
from tests.integration.helpers.playbook import TaskResult

PW = "attestation-pass-1"
ATTESTATION = "/api/system/config/attestation"
PROVISIONING = "/api/system/config/provisioning"
TASK = "attestation under test"


# ------------------------------------------------------------------ emulators

def _start(tmp_path_factory, name, **kwargs):
    emu = Emulator(auth_delay=0.0, control=True, tmp_path=tmp_path_factory.mktemp(name), **kwargs)
    emu.start()
    return emu


@pytest.fixture(scope="module")
def ppa(tmp_path_factory):
    emu = _start(tmp_path_factory, "attestation-ppa", devices=6, passphrase=PW, rtc_set=True)
    yield emu
    emu.stop()


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """Factory-fresh PPAs (not personalised) whose secure elements hold no certificate; clock set (as after a
    check-in), since the device stamps its attestation tokens with its clock."""
    emu = _start(tmp_path_factory, "attestation-fresh", devices=4, se_fresh=True, rtc_set=True)
    yield emu
    emu.stop()


@pytest.fixture(scope="module")
def expired(tmp_path_factory):
    """Genuine PPAs whose attestation certificates, like the vendor's sample, ended their validity on 2023-10-05."""
    emu = _start(tmp_path_factory, "attestation-expired", devices=1, passphrase=PW, rtc_set=True,
                 attestation_not_after="2023-10-05")
    yield emu
    emu.stop()


@pytest.fixture(scope="module")
def unset_clock(tmp_path_factory):
    """Factory-fresh PPAs (provisioned secure element) whose clock is unset: no check-in since power-up."""
    emu = _start(tmp_path_factory, "attestation-unset-clock", devices=1)
    yield emu
    emu.stop()


@pytest.fixture(scope="module")
def epa(tmp_path_factory):
    emu = _start(tmp_path_factory, "attestation-epa", devices=1, passphrase=PW, rtc_set=True, model="epa")
    yield emu
    emu.stop()


# ------------------------------------------------------------------ a custody CA of the test's own

# (tests/integration/helpers/attestation_pki.py, shared with the target's own run under ansible-test)

def se_public_key(emu, i):
    """The fresh secure element's public key, read directly (no module code)."""
    return _se_public_key(emu.url(i), emu.ca_file)


def genuine_id(emu, i):
    return emu.device(i)["genuine_id"]


# ------------------------------------------------------------------ running tasks

def attest(run, check=False, diff=False, **args):
    """Run encedo_attestation once in-process (url and ca_path given, no passphrase unless in args); -> a TaskResult."""
    args.setdefault("passphrase", None)
    result = run("encedo.hem.encedo_attestation", args, check=check, diff=diff)
    return TaskResult(host="hem%d" % run.index, task=TASK, action="encedo.hem.encedo_attestation",
                      status="failed" if result.get("failed") else "ok", changed=bool(result.get("changed")), result=result)


def statuses(result):
    return {name: check["status"] for name, check in result["attestation"]["checks"].items()}


def attestation_requests(emu, i):
    return [(e["method"], e["path"]) for e in emu.log(i) if e["path"] in (ATTESTATION, PROVISIONING)]


# ------------------------------------------------------------------ state=verified failures

def test_wrong_anchor_fails_chain(ppa):
    runner = ModuleRunner(ppa, 1)
    _key, other = make_ca()
    res = attest(runner, passphrase=PW, trust_anchor=pem(other))
    assert res.failed
    assert "check chain failed" in res.msg and "is not among the 1 trust anchor" in res.msg
    assert statuses(res.result) == {"signature": "passed", "key_id": "passed", "chain": "failed",
                                    "genuine_id": "passed", "freshness": "passed", "validity": "passed"}
    assert res.result["attestation"]["verified"] is False
    # same subject as the real custody CA, different key: the signature of the chain exposes it
    with open(ppa.custody_ca_file, "rb") as fh:
        custody = x509.load_pem_x509_certificate(fh.read())
    _key, impostor = make_ca(subject=custody.subject)
    res = attest(runner, passphrase=PW, trust_anchor=pem(impostor), fail_on_invalid=False)
    assert not res.failed and not res.changed
    assert statuses(res.result)["chain"] == "failed"
    assert "does not verify" in res.result["attestation"]["checks"]["chain"]["reason"]
    assert res.result["attestation"]["verified"] is False


def test_stale_token_fails_freshness(ppa):
    runner = ModuleRunner(ppa, 2)
    ppa.clock(2, -3600)
    try:
        res = attest(runner, passphrase=PW, trust_anchor_path=ppa.custody_ca_file, max_age=60)
        assert res.failed
        assert "check freshness failed" in res.msg and "more than max_age 60" in res.msg
        assert statuses(res.result) == {"signature": "passed", "key_id": "passed", "chain": "passed",
                                        "genuine_id": "passed", "freshness": "failed", "validity": "passed"}
        assert "encedo_checkin" not in res.msg        # the clock is set, just wrong: no check-in claim
        ppa.clock(2, 3600)
        res = attest(runner, passphrase=PW, trust_anchor_path=ppa.custody_ca_file, max_age=60, fail_on_invalid=False)
        assert not res.failed
        assert statuses(res.result)["freshness"] == "failed"
        assert "in the future" in res.result["attestation"]["checks"]["freshness"]["reason"]
        # an explicit skip makes the remaining checks sufficient, and says so
        res = attest(runner, passphrase=PW, trust_anchor_path=ppa.custody_ca_file, max_age=60, skip_checks=["freshness"])
        assert not res.failed and res.result["attestation"]["verified"] is True
        assert res.result["attestation"]["checks"]["freshness"]["reason"].startswith("skipped")
    finally:
        ppa.clock(2, 0)
    res = attest(runner, passphrase=PW, trust_anchor_path=ppa.custody_ca_file, max_age=60)
    assert not res.failed and res.result["attestation"]["verified"] is True


def test_tampered_attestation_fails_signature(ppa):
    runner = ModuleRunner(ppa, 3)
    ppa.fault(3, "tamper_attestation")
    res = attest(runner, passphrase=PW, trust_anchor_path=ppa.custody_ca_file)
    assert res.failed
    assert "check signature failed" in res.msg
    assert statuses(res.result) == {"signature": "failed", "key_id": "passed", "chain": "passed",
                                    "genuine_id": "passed", "freshness": "passed", "validity": "passed"}
    # the fault was one token: the next read verifies
    res = attest(runner, passphrase=PW, trust_anchor_path=ppa.custody_ca_file)
    assert not res.failed and res.result["attestation"]["verified"] is True


def test_any_scope_token_and_explicit_genuine_id(ppa):
    runner = ModuleRunner(ppa, 4)
    gid = genuine_id(ppa, 4)
    ppa.clear_log(4)
    login = runner("encedo.hem.encedo_login", {"passphrase": PW, "scope": "keymgmt:list"})
    assert not login.get("failed"), runner.output
    with_token = dict(token=login["token"], trust_anchor_path="{{ hem_custody_ca_path }}")
    unknown = attest(runner, fail_on_invalid=False, **with_token)
    assert not unknown.failed, unknown.msg
    unknown = unknown.result
    assert statuses(unknown)["genuine_id"] == "not_run"
    assert "may not read the configuration" in unknown["attestation"]["checks"]["genuine_id"]["reason"]
    assert unknown["attestation"]["verified"] is False
    assert [s for n, s in statuses(unknown).items() if n != "genuine_id"] == ["passed"] * 5
    known = attest(runner, genuine_id=gid, **with_token)
    assert not known.failed, known.msg
    known = known.result
    assert known["attestation"]["verified"] is True
    assert known["attestation"]["genuine_id_sources"] == ["option"]
    wrong = attest(runner, genuine_id="0123ffffffffffffff", fail_on_invalid=False, **with_token)
    assert not wrong.failed, wrong.msg
    wrong = wrong.result
    assert statuses(wrong)["genuine_id"] == "failed"
    # one login for all three tasks, and the attestation itself was read with the narrow token
    log = ppa.log(4)
    assert [(e["method"], e["path"]) for e in log].count(("POST", "/api/auth/token")) == 1
    assert all(e["status"] == 200 and e["auth"] == "bearer" for e in log if e["path"] == ATTESTATION)


def test_epa_is_not_supported(epa):
    runner = ModuleRunner(epa, 0)
    res = attest(runner, passphrase=PW, trust_anchor_path=epa.custody_ca_file)
    assert res.failed
    assert "EPA" in res.msg and "cannot attest" in res.msg
    assert res.result["supported"] is False
    res = attest(runner, passphrase=PW, trust_anchor_path=epa.custody_ca_file, fail_on_invalid=False)
    assert not res.failed and not res.changed
    assert res.result["supported"] is False
    assert res.result["attestation"]["verified"] is False
    res = attest(runner, state="provisioned", certificate=pem(make_ca()[1]))
    assert res.failed and "cannot attest or be provisioned" in res.msg
    assert [e for e in epa.log(0) if e["method"] == "POST" and e["path"] != "/api/auth/token"] == []


def test_bad_input_fails_clearly(ppa, tmp_path):
    runner = ModuleRunner(ppa, 5)
    with open(ppa.custody_ca_file) as fh:
        custody_pem = fh.read()
    leaf = ppa.state(5)["tls_cert_pem"]           # the device's TLS certificate: not a CA
    res = attest(runner, passphrase=PW, trust_anchor=custody_pem + leaf)
    assert res.failed and "trust_anchor: certificate 2 of 2" in res.msg and "is not a CA certificate" in res.msg
    res = attest(runner, passphrase=PW, trust_anchor_path=str(tmp_path / "missing.pem"))
    assert res.failed and "trust_anchor_path" in res.msg and "cannot be read" in res.msg
    res = attest(runner, passphrase=PW, trust_anchor="not a certificate")
    assert res.failed and "trust_anchor holds no PEM certificate" in res.msg
    res = attest(runner, trust_anchor_path=ppa.custody_ca_file)
    assert res.failed and "is personalised" in res.msg and "needs credentials" in res.msg
    res = attest(runner, passphrase=PW, trust_anchor_path=ppa.custody_ca_file, max_age=0)
    assert res.failed and "max_age" in res.msg
    # no trust anchor: the chain check does not run, so the device is not verified, and the task says why
    res = attest(runner, passphrase=PW)
    assert res.failed and "check chain not run: no trust anchor given" in res.msg
    # the passphrase never shows up in the result (ansible-playbook's output at -vvvv: tests/reliability/test_secrets.py)
    res = attest(runner, passphrase=PW, trust_anchor_path=ppa.custody_ca_file)
    assert not res.failed, res.msg
    assert PW not in runner.output


# ------------------------------------------------------------------ real-device conditions: expired certificate, unset clock

def test_expired_attestation_certificate_verifies_unless_validity_is_enforced(expired):
    runner = ModuleRunner(expired, 0)
    expired.clear_log(0)
    res = attest(runner, passphrase=PW, trust_anchor_path=expired.custody_ca_file)
    assert not res.failed and not res.changed, res.msg
    att = res.result["attestation"]
    assert att["verified"] is True
    assert (att["not_before"], att["not_after"]) == ("2020-10-05T00:00:00Z", "2023-10-05T00:00:00Z")
    assert statuses(res.result) == {"signature": "passed", "key_id": "passed", "chain": "passed",
                                    "genuine_id": "passed", "freshness": "passed", "validity": "failed"}
    reason = att["checks"]["validity"]["reason"]
    assert "expired at 2023-10-05T00:00:00Z" in reason and "not enforced (enforce_validity is false)" in reason
    # asked for: the same device fails, and the message names the check and the date
    res = attest(runner, passphrase=PW, trust_anchor_path=expired.custody_ca_file, enforce_validity=True)
    assert res.failed and not res.changed
    assert "is not verified as genuine: check validity failed: the attestation certificate expired at 2023-10-05T00:00:00Z" in res.msg
    assert "check chain" not in res.msg and "check freshness" not in res.msg
    assert res.result["attestation"]["verified"] is False
    # reported without failing when fail_on_invalid is false
    res = attest(runner, passphrase=PW, trust_anchor_path=expired.custody_ca_file, enforce_validity=True, fail_on_invalid=False)
    assert not res.failed and res.result["attestation"]["verified"] is False
    # verifying only reads
    assert [e for e in expired.log(0) if e["method"] == "POST" and e["path"] != "/api/auth/token"] == []


def test_token_from_an_unset_clock_asks_for_a_check_in(unset_clock):
    runner = ModuleRunner(unset_clock, 0)
    args = dict(trust_anchor_path=unset_clock.custody_ca_file, genuine_id=genuine_id(unset_clock, 0))
    assert unset_clock.state(0)["rtc_set"] is False
    res = attest(runner, **args)
    assert res.failed
    assert "check freshness failed" in res.msg
    assert "the device status shows no time, so its clock is unset" in res.msg
    assert "run a check-in (encedo.hem.encedo_checkin" in res.msg
    assert statuses(res.result) == {"signature": "passed", "key_id": "passed", "chain": "passed",
                                    "genuine_id": "passed", "freshness": "failed", "validity": "passed"}
    assert res.result["attestation"]["token_timestamp"] < 3600       # seconds since power-up
    # what the message asks for: a check-in, then the same task verifies
    checkin = runner("encedo.hem.encedo_checkin", {"backend_url": "{{ hem_backend_url }}"})
    assert not checkin.get("failed"), runner.output
    res = attest(runner, **args)
    assert not res.failed, res.msg
    assert res.result["attestation"]["verified"] is True
    assert unset_clock.state(0)["rtc_set"] is True


# ------------------------------------------------------------------ factory-fresh devices

def test_fresh_device_without_credentials(fresh):
    runner = ModuleRunner(fresh, 1)
    fresh.clear_log(1)
    res = attest(runner, trust_anchor_path=fresh.custody_ca_file, genuine_id=genuine_id(fresh, 1), fail_on_invalid=False)
    assert not res.failed and not res.changed
    att = res.result["attestation"]
    assert att["provisioned"] is False and att["verified"] is False
    assert statuses(res.result) == {"signature": "passed", "key_id": "not_run", "chain": "not_run",
                                    "genuine_id": "not_run", "freshness": "passed", "validity": "not_run"}
    assert "not provisioned" in att["checks"]["chain"]["reason"]
    assert isinstance(att["se_key"], str) and "BEGIN CERTIFICATE REQUEST" in att["csr"]
    assert all(e["auth"] == "none" for e in fresh.log(1))
    res = attest(runner, trust_anchor_path=fresh.custody_ca_file, genuine_id=genuine_id(fresh, 1))
    assert res.failed and "not provisioned" in res.msg
    assert fresh.state(1)["se_provisioned"] is False


def test_provisioned_with_another_certificate_fails(fresh):
    runner = ModuleRunner(fresh, 2)
    ca_key, ca_cert = make_ca()
    key = se_public_key(fresh, 2)
    first = issue(ca_key, ca_cert, key, genuine_id(fresh, 2))
    second = issue(ca_key, ca_cert, key, genuine_id(fresh, 2))     # same key, another serial
    res = attest(runner, state="provisioned", certificate=pem(first))
    assert res.changed and not res.failed
    assert res.result["attestation"]["provisioned"] is True
    # no trust anchor and no genuine_id: reported as not run, and state=provisioned does not fail on it
    assert res.result["attestation"]["verified"] is False
    fresh.clear_log(2)
    res = attest(runner, state="provisioned", certificate=base64.b64encode(first.public_bytes(serialization.Encoding.DER)).decode())
    assert not res.failed and not res.changed          # the same certificate as base64 DER: ok
    res = attest(runner, state="provisioned", certificate=pem(second))
    assert res.failed and "already provisioned with another certificate" in res.msg
    assert str(second.serial_number) in res.msg and str(first.serial_number) in res.msg
    assert [r for r in attestation_requests(fresh, 2) if r[0] == "POST"] == []


def test_provisioning_checks_the_certificate_before_writing(fresh):
    runner = ModuleRunner(fresh, 3)
    ca_key, ca_cert = make_ca()
    gid = genuine_id(fresh, 3)
    key = se_public_key(fresh, 3)
    fresh.clear_log(3)
    wrong_key = issue(ca_key, ca_cert, ec.generate_private_key(ec.SECP256R1()).public_key(), gid)
    res = attest(runner, state="provisioned", certificate=pem(wrong_key))
    assert res.failed and "does not hold the secure element's public key" in res.msg
    res = attest(runner, state="provisioned", certificate=pem(issue(ca_key, ca_cert, key, "0123000000000000ff")), genuine_id=gid)
    assert res.failed and "genuine_id:" in res.msg
    _other_key, other_ca = make_ca(_name("Another CA"))
    res = attest(runner, state="provisioned", certificate=pem(issue(ca_key, ca_cert, key, gid)), trust_anchor=pem(other_ca))
    assert res.failed and "chain:" in res.msg
    res = attest(runner, state="provisioned", certificate="garbage")
    assert res.failed and "option certificate" in res.msg
    res = attest(runner, state="provisioned")
    assert res.failed and "state is provisioned but all of the following are missing: certificate" in res.msg
    # nothing was written, and check mode of a good certificate writes nothing either
    good = pem(issue(ca_key, ca_cert, key, gid))
    res = attest(runner, check=True, state="provisioned", certificate=good, genuine_id=gid, trust_anchor=pem(ca_cert))
    assert res.changed and not res.failed
    assert [r for r in attestation_requests(fresh, 3) if r[0] == "POST"] == []
    assert fresh.state(3)["se_provisioned"] is False


# ------------------------------------------------------------------ requests: with a token, only what the checks need

LOGIN = [("GET", "/api/auth/token"), ("POST", "/api/auth/token")]
STATUS, VERSION = ("GET", "/api/system/status"), ("GET", "/api/system/version")


def attest_with_token(run, **args):
    """Log in (encedo_login), then encedo_attestation with its token alone (the role's shape); -> a TaskResult."""
    login = run("encedo.hem.encedo_login", {"passphrase": PW})
    assert not login.get("failed"), run.output
    return attest(run, token=login["token"], **args)


def sent(emu, i):
    return [(e["method"], e["path"]) for e in emu.log(i)]


def test_with_a_token_only_the_attestation_and_the_configuration_are_read(ppa, epa):
    """The role's case: a verified device costs GET attestation + GET config (genuine_id), no status, no version.
    The status is read only to explain a failed freshness check; an EPA answers 404, then the version says why,
    with the same message as without a token."""
    runner = ModuleRunner(ppa, 5)
    ppa.clear_log(5)
    res = attest_with_token(runner, trust_anchor_path=ppa.custody_ca_file)
    assert not res.failed and res.result["attestation"]["verified"] is True, res.msg
    assert sent(ppa, 5) == LOGIN + [("GET", ATTESTATION), ("GET", "/api/system/config")]
    assert res.result["attestation"]["genuine_id_sources"] == ["device"]

    # a token an hour old: the status is read after the checks, and shows the clock set (so no check-in is asked for)
    ppa.clock(5, -3600)
    try:
        ppa.clear_log(5)
        res = attest_with_token(runner, trust_anchor_path=ppa.custody_ca_file, max_age=60, fail_on_invalid=False)
    finally:
        ppa.clock(5, 0)
    assert sent(ppa, 5) == LOGIN + [("GET", ATTESTATION), ("GET", "/api/system/config"), STATUS]
    reason = res.result["attestation"]["checks"]["freshness"]["reason"]
    assert statuses(res.result)["freshness"] == "failed" and "more than max_age 60" in reason
    assert "encedo_checkin" not in reason

    # an EPA: 404, then the version; the same result and message as without a token
    erunner = ModuleRunner(epa, 0)
    for fail_on_invalid in (True, False):
        epa.clear_log(0)
        with_token = attest_with_token(erunner, trust_anchor_path=epa.custody_ca_file, fail_on_invalid=fail_on_invalid)
        assert sent(epa, 0) == LOGIN + [("GET", ATTESTATION), VERSION]
        epa.clear_log(0)
        without = attest(erunner, passphrase=PW, trust_anchor_path=epa.custody_ca_file, fail_on_invalid=fail_on_invalid)
        assert sent(epa, 0) == [STATUS, VERSION]          # the status does not show a PPA: the version, then no login
        assert with_token.failed is without.failed is fail_on_invalid
        assert with_token.msg == without.msg
        assert with_token.result["supported"] is without.result["supported"] is False
        assert with_token.result.get("attestation") == without.result.get("attestation")
