# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""encedo_config main() against recorded device answers (conftest.py: the replay fixture)."""

from __future__ import annotations

import json

from tests.unit.plugins.modules.replay import SECRETS

LOGIN_AND_READ = ["GET /api/auth/token", "POST /api/auth/token", "GET /api/system/config"]


def posts(sent, path="/api/system/config"):
    return [s["body"] for s in sent if s["method"] == "POST" and s["path"] == path]


def test_change_posts_only_the_differing_fields_once(replay):
    result, failed, sent = replay.run("encedo_config_change")
    assert not failed and result["changed"] is True
    assert posts(sent) == [{"origin": "https://app.example", "user": "Recorded User"}]
    assert result["sent"] == ["origin", "user"] and result["updated"] is True and result["reboot_required"] is False
    # the result shows the configuration read back after the write, the declared fields only
    assert result["config"] == {"user": "Recorded User", "origin": "https://app.example"}
    before = replay.fixture["exchanges"][2]["json"]
    assert result["diff"] == {"before": {"user": before["user"], "origin": before["origin"]},
                              "after": {"user": "Recorded User", "origin": "https://app.example"}}


def test_a_field_not_declared_is_not_sent(replay):
    """The recorded change with only user declared: origin is left as the device holds it."""
    result, failed, sent = replay.run("encedo_config_change", origin=None, unused=[])
    assert posts(sent) == [{"user": "Recorded User"}]
    assert result["sent"] == ["user"]


def test_noop_sends_no_write(replay):
    result, failed, sent = replay.run("encedo_config_noop")
    assert not failed and result["changed"] is False and result["sent"] == []
    assert posts(sent) == [] and "diff" not in result


def test_check_mode_sends_no_write(replay):
    result, failed, sent = replay.run("encedo_config_change", check_mode=True, unused=["POST /api/system/config", "GET /api/system/config"])
    assert not failed and result["changed"] is True
    assert posts(sent) == []
    assert result["config"] == {"user": "Recorded User", "origin": "https://app.example"}    # as it would be
    assert result["diff"]["after"] == {"user": "Recorded User", "origin": "https://app.example"}


def test_busy_device_fails_saying_nothing_changed(replay):
    result, failed, sent = replay.run("encedo_config_busy")
    assert failed and result["changed"] is False
    assert result["status"] == 409 and result["endpoint"] == "POST /api/system/config"
    assert "nothing was changed" in result["msg"] and "sent: user" in result["msg"]
    # the status was read to tell a storage format apart; the recorded one shows none
    assert "formatting its storage" not in result["msg"]
    assert (sent[-1]["method"], sent[-1]["path"], sent[-1]["auth"]) == ("GET", "/api/system/status", False)


def test_rotation_diff_masks_the_passphrase(replay):
    result, failed, sent = replay.run("encedo_config_rotate")
    assert not failed and result["changed"] is True
    assert result["sent"] == ["userkey", "userkey_hmac", "userkey_nonce"]
    assert result["diff"] == {"before": {"passphrase": "********"}, "after": {"passphrase": "******** (rotated)"}}
    body = posts(sent)[0]
    assert sorted(body) == ["userkey", "userkey_hmac", "userkey_nonce"]
    # the nonce proven is the one the device gave in the configuration read
    assert body["userkey_nonce"] == replay.fixture["exchanges"][4]["json"]["nonce"]
    text = json.dumps(result)
    assert SECRETS["passphrase"] not in text and SECRETS["new_passphrase"] not in text


def test_rotation_check_mode_sends_nothing(replay):
    result, failed, sent = replay.run("encedo_config_rotate", check_mode=True, unused=["POST /api/system/config", "GET /api/system/config"])
    assert not failed and result["changed"] is True and posts(sent) == []
    assert result["diff"]["after"] == {"passphrase": "******** (rotated)"}


def test_bad_value_fails_before_any_request(replay):
    result, failed, sent = replay.run("encedo_config_change", user="x" * 33,
                                      unused=LOGIN_AND_READ + ["POST /api/system/config", "GET /api/system/config"])
    assert failed and sent == []
    assert "option user: must be 1 to 32 characters" in result["msg"] and "nothing was sent" in result["msg"]


def test_lost_answer_is_not_repeated_and_the_reread_tells(replay):
    result, failed, sent = replay.run("encedo_config_lost_answer")
    assert failed and result["changed"] is True
    assert posts(sent) == [{"user": "Lost Answer User", "email": "lost@example.com"}]      # sent once, never repeated
    assert sent[-1]["method"] == "GET" and sent[-1]["path"] == "/api/system/config"       # the re-read
    assert result["msg"].startswith("outcome unknown:")
    assert result["applied"] == ["email", "user"] and result["not_applied"] == []
    assert "as requested now: email, user" in result["msg"]


def test_lost_answer_with_nothing_applied(replay, monkeypatch):
    """The same lost answer, with a re-read that shows the old values: nothing applied, not changed."""
    from tests.unit.plugins.modules import replay as R
    original = R.load

    def load(name):
        fixture = original(name)
        fixture["exchanges"][-1]["json"] = fixture["exchanges"][2]["json"]    # the re-read answers as the first read
        return fixture

    monkeypatch.setattr(R, "load", load)
    result, failed, dummy = replay.run("encedo_config_lost_answer")
    assert failed and result["changed"] is False
    assert result["applied"] == [] and result["not_applied"] == ["email", "user"]
    assert "none of the changed fields applied" in result["msg"]
