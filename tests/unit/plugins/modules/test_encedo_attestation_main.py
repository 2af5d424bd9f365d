# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""encedo_attestation main() against recorded device answers (conftest.py: the replay fixture)."""

from __future__ import annotations


def statuses(result):
    return dict((name, check["status"]) for name, check in result["attestation"]["checks"].items())


def test_genuine_device_is_verified(replay):
    result, failed, sent = replay.run("encedo_attestation_verified")
    assert not failed and result["changed"] is False and result["supported"] is True
    assert result["attestation"]["verified"] is True
    assert set(statuses(result).values()) == {"passed"}
    # the genuine_id expected is the device's own (from its configuration), none was given
    assert result["attestation"]["genuine_id_sources"] == ["device"]
    assert [s["path"] for s in sent if s["method"] == "POST"] == ["/api/auth/token"]     # reads only


def test_check_mode_reads_the_same(replay):
    result, failed, sent = replay.run("encedo_attestation_verified", check_mode=True)
    assert not failed and result["attestation"]["verified"] is True
    assert [s["path"] for s in sent if s["method"] == "POST"] == ["/api/auth/token"]


def test_genuine_id_option_that_differs_fails(replay):
    result, failed, dummy = replay.run("encedo_attestation_verified", genuine_id="0123ffffffffffffff")
    assert failed and "not verified as genuine" in result["msg"]
    assert statuses(result)["genuine_id"] == "failed" and statuses(result)["signature"] == "passed"


def test_stale_token_fails_freshness(replay):
    """The same answers read an hour after they were recorded: the token is older than max_age."""
    result, failed, dummy = replay.run("encedo_attestation_verified", shift=3600)
    assert failed and "freshness" in result["msg"]
    assert statuses(result)["freshness"] == "failed" and statuses(result)["signature"] == "passed"


def test_stale_token_reported_without_failing(replay):
    result, failed, dummy = replay.run("encedo_attestation_verified", shift=3600, fail_on_invalid=False)
    assert not failed and result["attestation"]["verified"] is False


def test_skipped_freshness_is_not_run(replay):
    result, failed, dummy = replay.run("encedo_attestation_verified", shift=3600, skip_checks=["freshness"])
    assert not failed and statuses(result)["freshness"] == "not_run"


def test_bad_signature_fails_clearly(replay):
    result, failed, dummy = replay.run("encedo_attestation_tampered")
    assert failed and "is not verified as genuine" in result["msg"] and "signature" in result["msg"]
    assert statuses(result)["signature"] == "failed"
    assert result["attestation"]["verified"] is False


def test_personalised_device_needs_credentials(replay):
    result, failed, sent = replay.run("encedo_attestation_verified", passphrase=None,
                                      unused=["GET /api/auth/token", "POST /api/auth/token", "GET /api/system/config/attestation",
                                              "GET /api/system/config"])
    assert failed and len(sent) == 1 and "needs credentials" in result["msg"]


def test_epa_fails_before_any_login(replay):
    result, failed, sent = replay.run("encedo_attestation_epa")
    assert failed and "is an EPA" in result["msg"] and result["supported"] is False
    assert [s["path"] for s in sent] == ["/api/system/status", "/api/system/version"]


def test_epa_reported_unsupported_without_failing(replay):
    result, failed, dummy = replay.run("encedo_attestation_epa", fail_on_invalid=False)
    assert not failed and result["supported"] is False and result["attestation"]["verified"] is False
