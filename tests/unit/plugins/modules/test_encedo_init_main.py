# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""encedo_init main() against recorded device answers (conftest.py: the replay fixture)."""

from __future__ import annotations

import base64
import json

from tests.unit.plugins.modules.replay import SECRETS, warnings

PERSONALISE = ["GET /api/auth/init", "POST /api/auth/init", "GET /api/system/status"]


def claims(jws):
    part = jws.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_personalises_a_fresh_ppa(replay):
    result, failed, sent = replay.run("encedo_init_ok")
    assert not failed and result["changed"] is True and result["personalised"] is True and result["model"] == "ppa"
    answer = replay.fixture["exchanges"][2]["json"]
    assert result["instanceid"] == answer["instanceid"]
    assert result["reboot_required"] is bool(answer.get("reboot_required"))
    # one signed request, unauthenticated, answering the recorded challenge
    writes = [s for s in sent if s["method"] == "POST"]
    assert [(s["path"], s["auth"]) for s in writes] == [("/api/auth/init", False)]
    challenge = replay.fixture["exchanges"][1]["json"]
    payload = claims(writes[0]["body"]["init"])
    assert payload["jti"] == challenge["jti"] and payload["aud"] == challenge["spk"] and payload["exp"] == challenge["exp"]
    assert payload["iss"] == payload["cfg"]["masterkey"]
    cfg = payload["cfg"]
    assert cfg["user"] == "Recorded User" and cfg["hostname"] == "localhost" and cfg["ip"] == "127.0.0.1/8"
    # PPA options not given: the web manager's values
    assert (cfg["storage_mode"], cfg["storage_disk0size"], cfg["dnsd"]) == (0x51, 4 * 2097152, False)
    assert result["sent"] == sorted(cfg)


def test_no_diff_and_no_secret_in_the_result(replay):
    """encedo_init does not support diff mode (personalisation is one-shot): even asked for, no diff is returned,
    and neither the passphrases nor the keys derived from them appear in the result."""
    result, failed, sent = replay.run("encedo_init_ok", diff=True)
    assert not failed and "diff" not in result
    cfg = claims([s for s in sent if s["method"] == "POST"][0]["body"]["init"])["cfg"]
    text = json.dumps(result)
    for secret in (SECRETS["passphrase"], SECRETS["master_passphrase"], cfg["userkey"], cfg["masterkey"]):
        assert secret not in text


def test_check_mode_sends_nothing_and_predicts_the_reboot(replay):
    result, failed, sent = replay.run("encedo_init_check")
    assert not failed and result["changed"] is True and result["personalised"] is False
    assert [(s["method"], s["path"]) for s in sent] == [("GET", "/api/system/status")]
    assert result["reboot_required"] is True            # ip 127.0.0.1/8 differs from the factory 192.168.7.1/24


def test_check_mode_with_factory_values_predicts_no_reboot(replay):
    result, failed, dummy = replay.run("encedo_init_check", ip=None)
    assert not failed and result["reboot_required"] is False


def test_personalised_device_is_a_noop(replay):
    result, failed, sent = replay.run("encedo_init_noop")
    assert not failed and result["changed"] is False and result["personalised"] is True
    assert [s["path"] for s in sent if s["method"] == "POST"] == ["/api/auth/token"]    # the passphrase is proven, nothing written
    assert result["instanceid"] == replay.fixture["exchanges"][-1]["json"]["instanceid"]
    assert warnings(result) == []


def test_personalised_with_another_hostname_warns(replay):
    result, failed, dummy = replay.run("encedo_init_noop", hostname="other.example")
    assert not failed and result["changed"] is False
    assert any("hostname 'localhost', not 'other.example'" in w and "without a wipe" in w for w in warnings(result))


def test_personalised_check_mode_does_not_log_in(replay):
    result, failed, sent = replay.run("encedo_init_noop", check_mode=True,
                                      unused=["GET /api/auth/token", "POST /api/auth/token", "GET /api/system/config"])
    assert not failed and result["changed"] is False and len(sent) == 1


def test_fresh_device_without_master_passphrase_fails_before_writing(replay):
    result, failed, sent = replay.run("encedo_init_ok", master_passphrase=None, unused=PERSONALISE)
    assert failed and len(sent) == 1
    assert "needs master_passphrase or master_recovery_phrase" in result["msg"]


def test_rejected_personalisation_fails_clearly(replay):
    result, failed, dummy = replay.run("encedo_init_rejected")
    assert failed and result["status"] == 400 and result["endpoint"] == "POST /api/auth/init"
    assert "still factory-fresh, nothing was changed" in result["msg"]
    assert "userkey" not in result["msg"] and "masterkey" not in result["msg"]


def test_a_new_ip_returns_the_url_the_device_moves_to(replay):
    """Issue 25 item 1: personalised with another address, the device answers there from its next reboot on."""
    result, failed, sent = replay.run("encedo_init_ok", ip="127.0.0.9/8")
    url = sent[0]["url"]
    assert not failed and result["url"] == url.replace("127.0.0.1", "127.0.0.9")
    assert any(result["url"] in w and "encedo_reboot new_url" in w and "from its next reboot on" in w for w in warnings(result))
    assert claims([s for s in sent if s["method"] == "POST"][0]["body"]["init"])["cfg"]["ip"] == "127.0.0.9/8"


def test_the_recorded_ip_moves_nothing(replay):
    result, failed, _sent = replay.run("encedo_init_ok")
    assert not failed and "url" not in result
