# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""encedo_info main() against recorded device answers (conftest.py: the replay fixture)."""

from __future__ import annotations

ALL_BUT_STATUS = ["GET /api/system/version", "GET /api/auth/token", "POST /api/auth/token", "GET /api/system/config"]
R_ALL = ["GET /api/system/status"] + ALL_BUT_STATUS


def test_reads_everything_with_credentials(replay):
    result, failed, sent = replay.run("encedo_info_all")
    assert not failed and result["changed"] is False
    version = replay.fixture["exchanges"][1]["json"]
    assert result["model"] == "ppa" and result["firmware"] == version["fwv"] and result["version"] == version
    assert result["personalised"] is True and result["rtc_set"] is True and result["https"] is True
    # one-time handshake values of the configuration are not returned
    config = replay.fixture["exchanges"][-1]["json"]
    assert "nonce" in config and "spk" in config
    assert result["config"] == dict((k, v) for k, v in config.items() if k not in ("nonce", "spk"))
    # the certificate comes from the TLS handshake of the status request: no request of its own
    assert result["certificate"]["pem"].startswith("-----BEGIN CERTIFICATE-----")
    assert result["certificate"]["subject_alt_names"]
    assert [(s["method"], s["path"]) for s in sent if s["method"] == "POST"] == [("POST", "/api/auth/token")]
    assert [s["auth"] for s in sent] == [False, False, False, False, True]


def test_certificate_costs_no_request(replay):
    result, failed, sent = replay.run("encedo_info_all", gather_subset=["!all", "certificate"], unused=ALL_BUT_STATUS)
    assert not failed
    assert len(sent) == 1
    assert result["certificate"]["pem"].startswith("-----BEGIN CERTIFICATE-----")
    assert "config" not in result and "version" not in result


def test_status_only_without_credentials(replay):
    result, failed, sent = replay.run("encedo_info_status")
    assert not failed and result["changed"] is False
    assert [(s["method"], s["path"]) for s in sent] == [("GET", "/api/system/status")]
    assert "config" not in result and "certificate" not in result and "firmware" not in result
    # the status alone decides the model (it reports the PPA's storage)
    assert result["model"] == "ppa"


def test_no_config_without_credentials(replay):
    result, failed, sent = replay.run("encedo_info_all", passphrase=None, unused=ALL_BUT_STATUS[1:])
    assert not failed and "config" not in result
    assert not any(s["auth"] for s in sent) and len(sent) == 2


def test_check_mode_reads_the_same(replay):
    result, failed, sent = replay.run("encedo_info_all", check_mode=True)
    assert not failed and result["changed"] is False and "config" in result
    assert [s["path"] for s in sent if s["method"] == "POST"] == ["/api/auth/token"]


def test_refused_passphrase_fails_clearly(replay):
    result, failed, sent = replay.run("encedo_info_bad_passphrase")
    assert failed
    assert result["status"] == 401 and result["endpoint"] == "POST /api/auth/token"
    assert "passphrase is wrong" in result["msg"]
    assert "config" not in result


def test_return_token_logs_in_and_returns_the_token(replay):
    result, failed, sent = replay.run("encedo_info_all", gather_subset=["status", "version"], return_token=True,
                                      unused=["GET /api/system/config"])
    assert not failed and result["changed"] is False
    login = replay.fixture["exchanges"][3]["json"]
    assert result["token"] == login["token"]
    assert [(s["method"], s["path"]) for s in sent] == [("GET", "/api/system/status"), ("GET", "/api/system/version"),
                                                        ("GET", "/api/auth/token"), ("POST", "/api/auth/token")]
    assert "config" not in result


def test_return_token_without_passphrase_sends_nothing(replay):
    result, failed, sent = replay.run("encedo_info_all", passphrase=None, return_token=True, unused=R_ALL)
    assert failed and "option return_token" in result["msg"] and sent == []
