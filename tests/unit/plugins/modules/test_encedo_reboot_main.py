# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""encedo_reboot main() against recorded device answers (conftest.py: the replay fixture).

Time is the replay's virtual clock: the polls come at the moments they came when recorded, so the
uptime proof of the restart is judged as it was against the emulator."""

from __future__ import annotations

from tests.unit.plugins.modules import replay as R

AFTER_STATUS = R.requests_from("encedo_reboot_ok", "GET /api/auth/token")


def test_reboot_is_requested_once_and_proven(replay):
    result, failed, sent = replay.run("encedo_reboot_ok")
    assert not failed and result["changed"] is True and result["rebooted"] is True
    reboots = [s for s in sent if s["path"] == "/api/system/reboot"]
    assert len(reboots) == 1 and reboots[0]["auth"] is True
    assert result["uptime"] == replay.fixture["exchanges"][-1]["json"]["uptime"]
    assert result["elapsed"] >= 1 and result["checkin"] is None
    # the polls that got no answer (the device was down) were waited out, not errors
    assert any("error" in e for e in replay.fixture["exchanges"])


def test_check_mode_requests_no_reboot(replay):
    result, failed, sent = replay.run("encedo_reboot_ok", check_mode=True, unused=AFTER_STATUS)
    assert not failed and result["changed"] is True and result["rebooted"] is False
    assert [s["path"] for s in sent] == ["/api/system/status"]


def test_clock_unset_and_checkin_false_says_what_to_do(replay):
    result, failed, sent = replay.run("encedo_reboot_clock_unset")
    assert failed and result["status"] == 403
    assert "set checkin to true" in result["msg"]
    assert not [s for s in sent if s["path"] == "/api/system/reboot"]


def test_a_bad_new_url_is_refused_before_any_request():
    from ansible_collections.encedo.hem.plugins.modules import encedo_reboot as mod
    result, failed = R.run_main(mod, dict(url="https://127.0.0.1:1", passphrase="not-in-any-message", timeout=1,
                                          checkin=False, new_url="192.168.7.5"))
    assert failed and result["msg"].startswith("option new_url: '192.168.7.5' is not a device address")
    assert "Nothing was sent" in result["msg"]
