# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""encedo_factory_reset main() against recorded device answers (conftest.py: the replay fixture)."""

from __future__ import annotations

import pytest

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


def test_the_wipe_waits_at_factory_url_and_says_what_verified_it(replay):
    """Issue 25 item 6: the polls after the wipe go to factory_url, verified with factory_ca_path, and the result says so."""
    result, failed, sent = replay.run("encedo_factory_reset_ok")
    args = replay.fixture["args"]
    assert not failed and result["url"] == args["factory_url"]
    assert result["verified_with"].startswith("factory_ca_path ")
    assert "verified with factory_ca_path" in result["msg"] and args["factory_url"] in result["msg"]
    polls = [s for s in sent if s["path"] == "/api/system/status"]
    assert polls and polls[-1]["url"] == args["factory_url"]


def test_factory_options_are_checked_before_any_request(tmp_path):
    from ansible_collections.encedo.hem.plugins.modules import encedo_factory_reset as mod
    base = dict(url="https://127.0.0.1:1", passphrase="not-in-any-message", confirm_devid="0123456789abcdef", timeout=1,
                factory_url="my.ence.do", factory_ca_path=None)
    result, failed = R.run_main(mod, base)
    assert failed and "option factory_url" in result["msg"] and "Nothing was sent" in result["msg"]
    result, failed = R.run_main(mod, dict(base, factory_url="https://my.ence.do", factory_ca_path=str(tmp_path / "missing.pem")))
    assert failed and "option factory_ca_path" in result["msg"] and result["sent"] == []


def test_factory_url_defaults_to_the_vendor_address_and_reads_the_environment(monkeypatch):
    from ansible_collections.encedo.hem.plugins.modules import encedo_factory_reset as mod
    base = dict(url="https://127.0.0.1:1", passphrase="not-in-any-message", confirm_devid="0123456789abcdef", timeout=1, factory_url="x")
    monkeypatch.setenv("ENCEDO_HEM_FACTORY_URL", "ftp://nowhere")
    result, failed = R.run_main(mod, dict((k, v) for k, v in base.items() if k != "factory_url"))
    assert failed and "'ftp://nowhere'" in result["msg"]
    spec = {}

    class Stop(Exception):
        pass

    def capture(argument_spec=None, **_kw):
        spec.update(argument_spec)
        raise Stop()
    monkeypatch.setattr(mod, "HemModule", capture)
    with pytest.raises(Stop):
        mod.main()
    assert spec["factory_url"]["default"] == "https://my.ence.do"
    assert spec["factory_ca_path"]["fallback"][1] == ["ENCEDO_HEM_FACTORY_CA_PATH"]
