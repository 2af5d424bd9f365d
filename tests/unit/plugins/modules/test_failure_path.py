# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One failure path: a bad option, a missing library or a bad connection option fails the task through
HemModule.run (a HemError), with the message as before, and before the first request (replayed main())."""

from __future__ import annotations

import pytest

from tests.unit.plugins.modules import replay as R

from ansible_collections.encedo.hem.plugins.module_utils import _attestation


def everything(name):
    """Every recorded exchange of fixture ``name``: none may be used."""
    return ["%s %s" % (e["method"], e["path"]) for e in R.load(name)["exchanges"]]


@pytest.mark.parametrize("fixture, args, msg", [
    # connection options (were checked in HemModule.__init__)
    ("encedo_login_ok", dict(url="my.ence.do"), "option url: 'my.ence.do' is not a device address"),
    ("encedo_factory_reset_ok", dict(timeout=0), "option timeout: must be a positive number of seconds, got 0"),
    ("encedo_info_status", dict(proxy_url="socks5://p:1080"), "option proxy_url: not a proxy address"),
    ("encedo_info_status", dict(ca_path="/nonexistent/ca.pem"), "option ca_path: /nonexistent/ca.pem does not exist"),
    # the modules' own checks (were fail_json in main() or in _lifecycle, or a caught ValueError)
    ("encedo_reboot_ok", dict(delay=-1), "option delay: must be at least 0, got -1"),
    ("encedo_reboot_ok", dict(reboot_timeout=0), "option reboot_timeout: must be at least 1, got 0"),
    ("encedo_reboot_ok", dict(poll_interval=0), "option poll_interval: must be positive, got 0.0"),
    ("encedo_reboot_ok", dict(checkin=True, backend_url="ftp://x"), "option backend_url: must be an http:// or https:// URL, got 'ftp://x'"),
    ("encedo_checkin_set", dict(backend_url="ftp://x"), "option backend_url: must be an http:// or https:// URL, got 'ftp://x'"),
    ("encedo_checkin_set", dict(backend_ca_path="/nonexistent/b.pem"), "option backend_ca_path: /nonexistent/b.pem does not exist"),
    ("encedo_attestation_verified", dict(max_age=0), "option max_age: must be a positive number of seconds, got 0"),
    ("encedo_init_ok", dict(format_timeout=0), "option format_timeout: must be a positive number of seconds, got 0"),
    ("encedo_init_ok", dict(hostname="bad_name"), "option hostname: character 4 is '_'"),
    ("encedo_info_status", dict(gather_subset=["facts"]), "option gather_subset: 'facts' is not a subset"),
    ("encedo_factory_reset_ok", dict(confirm_devid="xyz"), "option 'confirm_devid' is 'xyz'; allowed: the devid"),
])
def test_a_bad_option_fails_through_run_before_any_request(replay, fixture, args, msg):
    result, failed, sent = replay.run(fixture, unused=everything(fixture), **args)
    assert failed and result["msg"].startswith(msg), result["msg"]
    assert sent == []


def test_a_missing_library_fails_through_run(replay, monkeypatch):
    monkeypatch.setattr(_attestation, "HAS_CRYPTOGRAPHY", False)
    result, failed, sent = replay.run("encedo_attestation_verified", unused=everything("encedo_attestation_verified"))
    assert failed and "cryptography" in result["msg"] and sent == []


def test_the_connection_options_are_checked_before_the_modules_own(replay):
    result, failed, sent = replay.run("encedo_reboot_ok", unused=everything("encedo_reboot_ok"), timeout=0, delay=-1)
    assert failed and result["msg"] == "option timeout: must be a positive number of seconds, got 0" and sent == []
