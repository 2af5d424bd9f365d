# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The recorded fixtures of the main() tests: each replays in full to the result it was recorded with,
none holds a secret, and the player refuses a request that was not recorded."""

from __future__ import annotations

import json

import pytest

from tests.unit.plugins.modules import replay as R

NAMES = sorted(p.stem for p in R.FIXTURES.glob("*.json"))
#: The passphrases record_fixtures.py gives the tasks (kept here so that this test does not import the recorder).
RECORDER_SECRETS = ("recorded-user-passphrase", "recorded-new-passphrase", "recorded-master-passphrase", "not-the-passphrase")


def test_every_module_has_fixtures():
    modules = {R.load(name)["module"] for name in NAMES}
    assert modules == {"encedo_info", "encedo_login", "encedo_config", "encedo_tls", "encedo_attestation", "encedo_init",
                       "encedo_checkin", "encedo_reboot", "encedo_factory_reset"}


@pytest.mark.parametrize("name", NAMES)
def test_fixture_replays_to_its_recorded_result(replay, name):
    """A fixture older than the module it drives fails here first (re-record it, docs/development.md)."""
    result, failed, sent = replay.run(name)
    recorded = replay.fixture["result"]
    assert failed == bool(recorded.get("failed"))
    assert result.get("changed") == recorded.get("changed")
    assert len(sent) == len(replay.fixture["exchanges"])


@pytest.mark.parametrize("name", NAMES)
def test_fixture_holds_no_secret(name):
    text = R.fixture_path(name).read_text()
    for secret in RECORDER_SECRETS:
        assert secret not in text
    assert "Bearer" not in text
    fixture = json.loads(text)
    for option in fixture["secret_options"]:
        assert option not in fixture["args"]
    for exchange in fixture["exchanges"]:
        body = exchange.get("request") or {}
        for field in ("auth", "init", "userkey_hmac"):
            assert body.get(field, "<").startswith("<"), (name, field)


def test_a_request_not_recorded_fails_naming_both(replay):
    with pytest.raises(AssertionError, match=r"the module sent GET https://\S+/api/system/version after all 1 recorded exchanges"):
        replay.run("encedo_info_status", gather_subset=["status", "version"])


def test_a_request_out_of_order_fails_naming_both(replay):
    with pytest.raises(AssertionError, match=r"exchange 1: expected GET \S+/api/system/version \(recorded\), the module sent GET "
                                             r"\S+/api/auth/token"):
        replay.run("encedo_info_all", gather_subset=["config"])
