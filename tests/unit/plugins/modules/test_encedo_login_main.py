# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""encedo_login main() against recorded device answers (conftest.py: the replay fixture)."""

from __future__ import annotations

import base64
import json

LOGIN = ["GET /api/auth/token", "POST /api/auth/token"]


def claims(jwt):
    part = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_login_returns_the_device_token(replay):
    result, failed, sent = replay.run("encedo_login_ok")
    assert not failed and result["changed"] is False
    token = replay.fixture["exchanges"][1]["json"]["token"]
    assert result["token"] == token
    assert result["scope"] == "system:config"
    assert result["expires"] == claims(token)["exp"]
    # the proof answers the recorded challenge, on the device's clock, for the lifetime asked
    challenge = replay.fixture["exchanges"][0]["json"]
    proof = claims(sent[1]["body"]["auth"])
    assert proof["jti"] == challenge["jti"] and proof["aud"] == challenge["spk"]
    assert proof["iat"] == challenge["exp"] - 60
    assert proof["exp"] == proof["iat"] + 600
    assert proof["scope"] == "system:config"


def test_scope_and_default_lifetime_in_the_proof(replay):
    result, failed, sent = replay.run("encedo_login_ok", scope="keymgmt:gen", lifetime=None)
    assert not failed and result["scope"] == "keymgmt:gen"
    proof = claims(sent[1]["body"]["auth"])
    # 8 hours asked for explicitly (never 0: OA's default for 0 is documented for 1.2.2 only; no vendor client sends it)
    assert proof["scope"] == "keymgmt:gen" and proof["exp"] == proof["iat"] + 8 * 3600


def test_check_mode_logs_in_too(replay):
    """A login changes nothing on the device: check mode returns a usable token."""
    result, failed, dummy = replay.run("encedo_login_ok", check_mode=True)
    assert not failed and result["changed"] is False and result["token"]


def test_refused_passphrase_fails_clearly(replay):
    result, failed, dummy = replay.run("encedo_login_bad_passphrase")
    assert failed and "token" not in result
    assert result["status"] == 401 and result["endpoint"] == "POST /api/auth/token"
    assert "passphrase is wrong" in result["msg"]


def test_bad_lifetime_fails_before_any_request(replay):
    result, failed, sent = replay.run("encedo_login_ok", lifetime=0, unused=LOGIN)
    assert failed and sent == []
    assert result["msg"].startswith("option lifetime: must be a positive number of seconds")


def test_token_alone_cannot_log_in(replay):
    result, failed, sent = replay.run("encedo_login_ok", passphrase=None, token="a.b.c", unused=LOGIN)
    assert failed and sent == [] and "needs passphrase" in result["msg"]
