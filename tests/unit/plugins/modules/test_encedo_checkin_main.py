# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""encedo_checkin main() against recorded device and backend answers (conftest.py: the replay fixture)."""

from __future__ import annotations

CHECKIN = ["GET /api/system/checkin", "POST /checkin", "POST /api/system/checkin", "GET /api/system/status"]


def test_unset_clock_is_checked_in(replay):
    result, failed, sent = replay.run("encedo_checkin_unset")
    assert not failed and result["changed"] is True and result["clock_was_set"] is False
    assert result["status"] == "OK" and result["action"] == "none"
    assert result["time"] == replay.fixture["exchanges"][-1]["json"]["time"]
    # the blobs are forwarded untouched: device check -> backend, backend checked -> device; no credentials anywhere
    answers = [e.get("json") for e in replay.fixture["exchanges"]]
    assert sent[2]["url"] == replay.fixture["args"]["backend_url"] and sent[2]["body"] == {"check": answers[1]["check"]}
    assert sent[3]["body"] == {"checked": answers[2]["checked"]}
    assert not any(s["auth"] for s in sent)


def test_set_clock_reports_no_change(replay):
    result, failed, dummy = replay.run("encedo_checkin_set")
    assert not failed and result["changed"] is False and result["clock_was_set"] is True


def test_check_mode_posts_nothing(replay):
    result, failed, sent = replay.run("encedo_checkin_unset", check_mode=True, unused=CHECKIN)
    assert not failed and result["changed"] is True and result["clock_was_set"] is False
    assert [(s["method"], s["path"]) for s in sent] == [("GET", "/api/system/status")]


def test_backend_action_fails_with_what_to_do(replay):
    result, failed, dummy = replay.run("encedo_checkin_action_l")
    assert failed and result["changed"] is True and result["status"] == "L"
    assert "erased its user key" in result["msg"] and "master" in result["msg"]
    assert "check in again" not in result["msg"] and "encedo_checkin" not in result["msg"]


def test_bad_backend_url_fails_before_any_request(replay):
    result, failed, sent = replay.run("encedo_checkin_unset", backend_url="ftp://backend", unused=["GET /api/system/status"] + CHECKIN)
    assert failed and sent == [] and result["msg"].startswith("option backend_url:")
