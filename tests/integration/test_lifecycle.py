# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Integration tests of encedo_checkin, encedo_init and encedo_reboot: real ansible-playbook
runs against the emulator over HTTPS with CA verification, checked from the emulator's
request log and state, and (for the passphrases set by encedo_init) with an independent
login written from PROTOCOL.md (helpers/independent_login.py) rather than with the
collection's client. The four-step runs of these modules are the ansible-test targets
(tests/integration/targets/encedo_checkin, encedo_init, encedo_reboot)."""

from __future__ import annotations

import socket
import time

from tests.integration.helpers.independent_login import independent_login

PASS = "pw-lifecycle-1"
MASTER = "pw-lifecycle-master"


# ---------------------------------------------------------------------------- helpers

def closed_port():
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def requests_of(emu, i, method=None, path=None):
    return [e for e in emu.log(i) if (method is None or e["method"] == method) and (path is None or e["path"] == path)]


def module_play(module, args, check=False):
    """A one-task play on the group 'hem' (connection options from the inventory)."""
    task = {"name": "Run " + module, "encedo.hem." + module: args, "register": "out"}
    if check:
        task["check_mode"] = True
    return [{"name": "Run " + module, "hosts": "hem", "gather_facts": False, "tasks": [task]}]


CONNECTION = {"url": "{{ hem_url }}", "ca_path": "{{ hem_ca_path }}"}


# ---------------------------------------------------------------------------- encedo_checkin

def test_checkin_unreachable_backend_fails_naming_it(emulator, hem_playbook):
    emu = emulator()
    dead = "http://127.0.0.1:%d" % closed_port()
    run = hem_playbook(emu).run_playbook(module_play("encedo_checkin", dict(CONNECTION, backend_url=dead, timeout=3)))
    assert run.rc != 0
    msg = run.result("Run encedo_checkin", host="hem0")["msg"]
    assert "check-in backend %s" % dead in msg and "cannot reach it" in msg
    assert requests_of(emu, 0, method="POST") == []
    assert emu.state(0)["rtc_set"] is False


def test_checkin_backend_that_refuses_fails_clearly(emulator, hem_playbook):
    emu = emulator()
    # The device's own plain-HTTP port is a server, but not a check-in backend: it answers 404.
    run = hem_playbook(emu).run_playbook(module_play("encedo_checkin", dict(CONNECTION, backend_url=emu.http_url(0))))
    assert run.rc != 0
    msg = run.result("Run encedo_checkin", host="hem0")["msg"]
    assert "refused the device's check-in token (HTTP 404)" in msg
    assert emu.state(0)["rtc_set"] is False


# ---------------------------------------------------------------------------- encedo_init

def test_init_refuses_a_bad_option_before_any_request(emulator, hem_playbook):
    emu = emulator(rtc_set=True)
    emu.clear_log(0)
    args = dict(CONNECTION, passphrase=PASS, master_passphrase=MASTER, user="u", hostname="hem0.test", ip="192.168.7.1")
    run = hem_playbook(emu).run_playbook(module_play("encedo_init", args))
    assert run.rc != 0
    assert "option ip" in run.result("Run encedo_init", host="hem0")["msg"]
    assert emu.log(0) == []


def test_init_needs_the_clock_and_both_passphrases(emulator, hem_playbook):
    emu = emulator()                                     # fresh, clock unset
    runner = hem_playbook(emu)
    run = runner.run_playbook(module_play("encedo_init", dict(CONNECTION, passphrase=PASS, master_passphrase=MASTER,
                                                              user="u", hostname="hem0.test")))
    assert run.rc != 0
    assert "encedo.hem.encedo_checkin" in run.result("Run encedo_init", host="hem0")["msg"]
    run = runner.run_playbook(module_play("encedo_init", dict(CONNECTION, passphrase=PASS, user="u", hostname="hem0.test")))
    assert run.rc != 0
    assert "needs master_passphrase" in run.result("Run encedo_init", host="hem0")["msg"]
    assert requests_of(emu, 0, method="POST") == []
    assert emu.state(0)["personalised"] is False


def test_init_refused_by_the_device_says_what_to_check(emulator, hem_playbook):
    emu = emulator(rtc_set=True)
    emu.fault(0, "error400", path="/api/auth/init", method="POST")
    args = dict(CONNECTION, passphrase=PASS, master_passphrase=MASTER, user="u", hostname="hem0.test")
    run = hem_playbook(emu).run_playbook(module_play("encedo_init", args))
    assert run.rc != 0
    msg = run.result("Run encedo_init", host="hem0")["msg"]
    assert "HTTP 400" in msg and "still factory-fresh" in msg and "a PPA" in msg and "hostname" in msg
    assert "masterkey" not in msg and PASS not in run.output and MASTER not in run.output
    assert [p["status"] for p in requests_of(emu, 0, "POST", "/api/auth/init")] == [400]
    assert emu.state(0)["personalised"] is False


def test_init_on_a_personalised_device_checks_the_passphrase(emulator, hem_playbook):
    emu = emulator(passphrase=PASS, rtc_set=True)
    runner = hem_playbook(emu)
    args = dict(CONNECTION, user="u", hostname="hem0.emulator.test", master_passphrase=MASTER)
    run = runner.run_playbook(module_play("encedo_init", dict(args, passphrase="not-the-passphrase")))
    assert run.rc != 0
    msg = run.result("Run encedo_init", host="hem0")["msg"]
    assert "already personalised" in msg and "does not log in" in msg
    ok = runner.run_playbook(module_play("encedo_init", dict(args, passphrase=PASS, hostname="other.example.com")))
    ok.assert_ok()
    result = ok.result("Run encedo_init", host="hem0")
    assert result["changed"] is False and result["instanceid"]
    assert any("hostname" in w and "cannot be changed" in w for w in result["warnings"])
    assert [p["path"] for p in requests_of(emu, 0, method="POST")] == ["/api/auth/token", "/api/auth/token"]


def test_init_on_an_epa(emulator, hem_playbook):
    emu = emulator(model="epa", rtc_set=True)
    runner = hem_playbook(emu)
    args = dict(CONNECTION, passphrase=PASS, master_passphrase=MASTER, user="rack", hostname="epa0.example.com")
    # (an address the controller reaches the device at: one it could not is refused before the model is known)
    refused = runner.run_playbook(module_play("encedo_init", dict(args, ip="127.0.0.5/8")))
    assert refused.rc != 0
    assert "EPA" in refused.result("Run encedo_init", host="hem0")["msg"]
    assert requests_of(emu, 0, method="POST") == []
    run = runner.run_playbook(module_play("encedo_init", args))
    run.assert_ok()
    result = run.result("Run encedo_init", host="hem0")
    assert result["model"] == "epa" and result["changed"] is True and "ip" not in result["sent"]
    assert independent_login(emu.url(0), emu.ca_file, PASS)["sub"] == "U"


# ---------------------------------------------------------------------------- encedo_reboot

def test_reboot_of_a_fresh_device_without_checkin(emulator, hem_playbook):
    """A device that booted a moment ago and restarts in 1 s: its uptime alone could not prove
    the restart (CI once waited 300 s here), so the module waits until it has been up 3 s."""
    emu = emulator(reboot_seconds=1.0)
    play = module_play("encedo_reboot", dict(CONNECTION, checkin=False, delay=0, poll_interval=0.3))
    runner = hem_playbook(emu)
    emu.fault(0, "reboot")
    assert emu.wait_down(0) and emu.wait_up(0)
    emu.clear_log(0)
    boot_before = emu.state(0)["boot_id"]
    run = runner.run_playbook(play)
    run.assert_ok()
    result = run.result("Run encedo_reboot", host="hem0")
    assert result["rebooted"] is True and result["checkin"] is None
    state = emu.state(0)
    assert state["boot_id"] != boot_before and state["rtc_set"] is False
    [reboot] = requests_of(emu, 0, "GET", "/api/system/reboot")
    assert reboot["auth"] == "none" and reboot["uptime"] >= 3


def test_reboot_device_never_back_fails_with_time_and_last_error(emulator, hem_playbook):
    emu = emulator(passphrase=PASS, rtc_set=True, reboot_seconds=120.0)
    args = dict(CONNECTION, passphrase=PASS, backend_url="{{ hem_backend_url }}", delay=1, reboot_timeout=4, poll_interval=0.5)
    started = time.monotonic()
    run = hem_playbook(emu).run_playbook(module_play("encedo_reboot", args))
    took = time.monotonic() - started
    assert run.rc != 0
    msg = run.result("Run encedo_reboot", host="hem0")["msg"]
    assert "did not come back within" in msg and "timeout 4 s" in msg and "last error" in msg
    assert "cannot reach the device" in msg
    assert took < 30
    # The device accepted the reboot request and went away: that is a change, even though the task failed (issue 17, 2).
    result = run.result("Run encedo_reboot", host="hem0")
    assert result["changed"] is True and result["rebooted"] is False
    assert len(requests_of(emu, 0, "GET", "/api/system/reboot")) == 1


def test_reboot_with_the_clock_unset_checks_in_first(emulator, hem_playbook):
    """A personalised device after a power-up refuses logins until a check-in; the reboot request needs a login.
    With checkin enabled the module checks in first instead of advising itself (issue 17, defect 3)."""
    emu = emulator(passphrase=PASS, reboot_seconds=1.0)          # personalised, trusted_ts on, clock unset
    runner = hem_playbook(emu)
    args = dict(CONNECTION, passphrase=PASS, backend_url="{{ hem_backend_url }}", delay=0, poll_interval=0.3)
    check = runner.run_playbook(module_play("encedo_reboot", args, check=True))
    check.assert_ok()
    assert check.result("Run encedo_reboot", host="hem0")["checkin_before"] == {"changed": True, "clock_was_set": False}
    assert requests_of(emu, 0, method="POST") == []
    boot_before = emu.state(0)["boot_id"]
    run = runner.run_playbook(module_play("encedo_reboot", args))
    run.assert_ok()
    result = run.result("Run encedo_reboot", host="hem0")
    assert result["changed"] is True and result["rebooted"] is True
    assert result["checkin_before"]["status"] == "OK" and result["checkin"]["status"] == "OK"
    order = [(e["method"], e["path"]) for e in emu.log(0) if e["path"] in ("/api/system/checkin", "/api/system/reboot")
             and e["method"] in ("POST", "GET") and not (e["method"] == "GET" and e["path"] == "/api/system/checkin")]
    assert order == [("POST", "/api/system/checkin"), ("GET", "/api/system/reboot"), ("POST", "/api/system/checkin")]
    assert emu.state(0)["boot_id"] != boot_before and emu.state(0)["rtc_set"] is True
    assert PASS not in run.output


def test_reboot_with_the_clock_unset_and_checkin_off_says_what_to_change(emulator, hem_playbook):
    emu = emulator(passphrase=PASS)                              # personalised, trusted_ts on, clock unset
    boot_before = emu.state(0)["boot_id"]
    run = hem_playbook(emu).run_playbook(module_play("encedo_reboot", dict(CONNECTION, passphrase=PASS, checkin=False)))
    assert run.rc != 0
    result = run.result("Run encedo_reboot", host="hem0")
    assert "clock is unset" in result["msg"] and "checkin=false" in result["msg"] and "set checkin to true" in result["msg"]
    assert "encedo_reboot with checkin enabled" not in result["msg"]
    assert result["changed"] is False
    assert requests_of(emu, 0, "GET", "/api/system/reboot") == [] and emu.state(0)["boot_id"] == boot_before


def test_reboot_with_the_clock_unset_and_a_failing_checkin_says_why(emulator, hem_playbook):
    emu = emulator(passphrase=PASS)
    dead = "http://127.0.0.1:%d" % closed_port()
    args = dict(CONNECTION, passphrase=PASS, backend_url=dead, timeout=3)
    run = hem_playbook(emu).run_playbook(module_play("encedo_reboot", args))
    assert run.rc != 0
    msg = run.result("Run encedo_reboot", host="hem0")["msg"]
    assert "checked it in before rebooting it, and that check-in failed" in msg and dead in msg and "cannot reach it" in msg
    assert "run a check-in first" not in msg
    assert requests_of(emu, 0, "GET", "/api/system/reboot") == []


def test_reboot_that_does_not_happen_fails_saying_so(emulator, hem_playbook):
    emu = emulator(rtc_set=True)
    # The reboot request is lost (connection dropped, not applied): the device keeps running.
    emu.fault(0, "drop", path="/api/system/reboot")
    boot_before = emu.state(0)["boot_id"]
    args = dict(CONNECTION, checkin=False, delay=0, reboot_timeout=6, poll_interval=0.5)
    run = hem_playbook(emu).run_playbook(module_play("encedo_reboot", args))
    assert run.rc != 0
    msg = run.result("Run encedo_reboot", host="hem0")["msg"]
    assert "did not reboot" in msg and "uptime never went back" in msg and "got no answer" in msg
    assert emu.state(0)["boot_id"] == boot_before
    # Nothing was accepted and nothing happened: no change.
    assert run.result("Run encedo_reboot", host="hem0")["changed"] is False


def test_reboot_refused_by_the_device(emulator, hem_playbook):
    emu = emulator(passphrase=PASS, rtc_set=True)
    emu.fault(0, "busy", path="/api/system/reboot")
    run = hem_playbook(emu).run_playbook(module_play("encedo_reboot", dict(CONNECTION, passphrase=PASS, reboot_timeout=5)))
    assert run.rc != 0
    result = run.result("Run encedo_reboot", host="hem0")
    assert result["status"] == 409 and "refused to reboot" in result["msg"]
