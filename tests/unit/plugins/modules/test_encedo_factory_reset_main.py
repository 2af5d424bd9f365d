# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""encedo_factory_reset main() against recorded device answers (conftest.py: the replay fixture)."""

from __future__ import annotations

from tests.unit.plugins.modules import replay as R

WIPE_AND_POLLS = R.requests_from("encedo_factory_reset_ok", "POST /api/system/config")


def devid(replay):
    return [e for e in replay.fixture["exchanges"] if e["path"] == "/api/system/config"][0]["json"]["devid"]


def test_wipe_when_the_devid_matches(replay):
    result, failed, sent = replay.run("encedo_factory_reset_ok")
    assert not failed and result["changed"] is True and result["rebooted"] is True
    assert [s["body"] for s in sent if s["method"] == "POST" and s["path"] == "/api/system/config"] == [{"wipeout": True}]
    assert result["sent"] == ["wipeout"] and result["devid"] == devid(replay)
    assert result["diff"] == {"before": {"devid": devid(replay), "personalised": True},
                              "after": {"devid": devid(replay), "personalised": False}}
    assert "rebooted into factory state" in result["msg"]


def test_devid_is_compared_without_case(replay):
    result, failed, dummy = replay.run("encedo_factory_reset_ok", confirm_devid=" %s " % replay_devid().upper())
    assert not failed and result["changed"] is True


def replay_devid():
    return [e for e in R.load("encedo_factory_reset_ok")["exchanges"] if e["path"] == "/api/system/config"][0]["json"]["devid"]


def test_check_mode_wipes_nothing(replay):
    result, failed, sent = replay.run("encedo_factory_reset_ok", check_mode=True, unused=WIPE_AND_POLLS)
    assert not failed and result["changed"] is True and result["rebooted"] is False
    assert [s["path"] for s in sent if s["method"] == "POST"] == ["/api/auth/token"]
    assert "would be wiped" in result["msg"]


def test_without_waiting(replay):
    result, failed, sent = replay.run("encedo_factory_reset_ok", wait=False, unused=WIPE_AND_POLLS[1:])
    assert not failed and result["changed"] is True and result["rebooted"] is False
    assert "accepted the wipe" in result["msg"]


def test_wrong_devid_sends_nothing_and_hides_the_real_one(replay):
    result, failed, sent = replay.run("encedo_factory_reset_wrong_devid")
    assert failed and result["changed"] is False and result["sent"] == []
    assert [s["path"] for s in sent if s["method"] == "POST"] == ["/api/auth/token"]
    assert "does not match the devid" in result["msg"]
    assert devid(replay) not in str(result)


def test_device_in_factory_state_is_a_noop(replay):
    result, failed, sent = replay.run("encedo_factory_reset_fresh")
    assert not failed and result["changed"] is False and result["sent"] == []
    assert len(sent) == 1 and "already in factory state" in result["msg"]


def test_bad_devid_fails_before_any_request(replay):
    result, failed, sent = replay.run("encedo_factory_reset_fresh", confirm_devid="xyz", unused=["GET /api/system/status"])
    assert failed and sent == [] and "16 hex digits" in result["msg"]


def test_busy_device_fails_clearly(replay):
    result, failed, sent = replay.run("encedo_factory_reset_busy")
    assert failed and result["status"] == 409 and result["endpoint"] == "POST /api/system/config"
    assert "busy" in result["msg"]
    assert not result.get("changed")
    assert [s["body"] for s in sent if s["method"] == "POST" and s["path"] == "/api/system/config"] == [{"wipeout": True}]
