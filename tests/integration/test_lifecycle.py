# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""encedo_checkin, encedo_init and encedo_reboot: the modules' rules against the emulator, over real HTTPS.

Each test runs the module's main() in this process (helpers/inprocess.py, the ``Task`` runner here),
over HTTPS with CA verification, checked from the emulator's request log and state, and (for the
passphrases set by encedo_init) with an independent login written from PROTOCOL.md
(helpers/independent_login.py) rather than with the collection's client. What only a playbook shows
is proven by playbook runs elsewhere: the four-step runs of these modules are the ansible-test targets
(tests/integration/targets/encedo_checkin, encedo_init, encedo_reboot), the secrets at -vvvv
tests/integration/test_init.py and tests/reliability/test_secrets.py, the role tests/integration/test_role.py.
``module_play`` (a one-task play) is kept for the playbook tests of test_init.py."""

from __future__ import annotations

import socket
import time

from tests.integration.helpers.independent_login import independent_login
from tests.integration.helpers.inprocess import ModuleRunner
from tests.unit.plugins.modules import replay

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


class Task(ModuleRunner):
    """Single tasks of encedo.hem modules on device ``index``, in-process (helpers/inprocess.py), with the
    arguments exactly as given (as in module_play): no passphrase unless they name one.
    ``Task(emu)("encedo_reboot", args, check=False)`` -> the result (``failed`` only when it failed)."""

    def __call__(self, module, args=None, check=False, diff=False, env=None):
        args = dict({"passphrase": None}, **(args or {}))
        return super().__call__("encedo.hem." + module, args, check=check, diff=diff, env=env)


# ---------------------------------------------------------------------------- encedo_checkin

def test_checkin_unreachable_backend_fails_naming_it(emulator):
    emu = emulator()
    dead = "http://127.0.0.1:%d" % closed_port()
    result = Task(emu)("encedo_checkin", dict(CONNECTION, backend_url=dead, timeout=3))
    assert result["failed"]
    msg = result["msg"]
    assert "check-in backend %s" % dead in msg and "cannot reach it" in msg
    assert requests_of(emu, 0, method="POST") == []
    assert emu.state(0)["rtc_set"] is False


def test_checkin_backend_that_refuses_fails_clearly(emulator):
    emu = emulator()
    # The device's own plain-HTTP port is a server, but not a check-in backend: it answers 404.
    result = Task(emu)("encedo_checkin", dict(CONNECTION, backend_url=emu.http_url(0)))
    assert result["failed"]
    msg = result["msg"]
    assert "refused the device's check-in token (HTTP 404)" in msg
    assert emu.state(0)["rtc_set"] is False


# ---------------------------------------------------------------------------- encedo_init

def test_init_refuses_a_bad_option_before_any_request(emulator):
    emu = emulator(rtc_set=True)
    emu.clear_log(0)
    args = dict(CONNECTION, passphrase=PASS, master_passphrase=MASTER, user="u", hostname="hem0.test", ip="192.168.7.1")
    result = Task(emu)("encedo_init", args)
    assert result["failed"]
    assert "option ip" in result["msg"]
    assert emu.log(0) == []


def test_init_needs_the_clock_and_both_passphrases(emulator):
    emu = emulator()                                     # fresh, clock unset
    task = Task(emu)
    result = task("encedo_init", dict(CONNECTION, passphrase=PASS, master_passphrase=MASTER, user="u", hostname="hem0.test"))
    assert result["failed"]
    assert "encedo.hem.encedo_checkin" in result["msg"]
    result = task("encedo_init", dict(CONNECTION, passphrase=PASS, user="u", hostname="hem0.test"))
    assert result["failed"]
    assert "needs master_passphrase" in result["msg"]
    assert requests_of(emu, 0, method="POST") == []
    assert emu.state(0)["personalised"] is False


def test_init_refused_by_the_device_says_what_to_check(emulator):
    emu = emulator(rtc_set=True)
    emu.fault(0, "error400", path="/api/auth/init", method="POST")
    args = dict(CONNECTION, passphrase=PASS, master_passphrase=MASTER, user="u", hostname="hem0.test")
    task = Task(emu)
    result = task("encedo_init", args)
    assert result["failed"]
    msg = result["msg"]
    assert "HTTP 400" in msg and "still factory-fresh" in msg and "a PPA" in msg and "hostname" in msg
    assert "masterkey" not in msg and PASS not in task.output and MASTER not in task.output
    assert [p["status"] for p in requests_of(emu, 0, "POST", "/api/auth/init")] == [400]
    assert emu.state(0)["personalised"] is False


def test_init_on_a_personalised_device_checks_the_passphrase(emulator):
    emu = emulator(passphrase=PASS, rtc_set=True)
    task = Task(emu)
    args = dict(CONNECTION, user="u", hostname="hem0.emulator.test", master_passphrase=MASTER)
    result = task("encedo_init", dict(args, passphrase="not-the-passphrase"))
    assert result["failed"]
    msg = result["msg"]
    assert "already personalised" in msg and "does not log in" in msg
    result = task("encedo_init", dict(args, passphrase=PASS, hostname="other.example.com"))
    assert "failed" not in result, result["msg"]
    assert result["changed"] is False and result["instanceid"]
    assert any("hostname" in w and "cannot be changed" in w for w in replay.warnings(result))
    assert [p["path"] for p in requests_of(emu, 0, method="POST")] == ["/api/auth/token", "/api/auth/token"]


def test_init_on_an_epa(emulator):
    emu = emulator(model="epa", rtc_set=True)
    task = Task(emu)
    args = dict(CONNECTION, passphrase=PASS, master_passphrase=MASTER, user="rack", hostname="epa0.example.com")
    # (an address the controller reaches the device at: one it could not is refused before the model is known)
    refused = task("encedo_init", dict(args, ip="127.0.0.5/8"))
    assert refused["failed"]
    assert "EPA" in refused["msg"]
    assert requests_of(emu, 0, method="POST") == []
    result = task("encedo_init", args)
    assert "failed" not in result, result["msg"]
    assert result["model"] == "epa" and result["changed"] is True and "ip" not in result["sent"]
    assert independent_login(emu.url(0), emu.ca_file, PASS)["sub"] == "U"


# ---------------------------------------------------------------------------- encedo_reboot

def test_reboot_of_a_fresh_device_without_checkin(emulator):
    """A device that booted a moment ago and restarts in 1 s: its uptime alone could not prove
    the restart (CI once waited 300 s here), so the module waits until it has been up 3 s."""
    emu = emulator(reboot_seconds=1.0)
    args = dict(CONNECTION, checkin=False, delay=0, poll_interval=0.3)
    task = Task(emu)
    emu.fault(0, "reboot")
    assert emu.wait_down(0) and emu.wait_up(0)
    emu.clear_log(0)
    boot_before = emu.state(0)["boot_id"]
    result = task("encedo_reboot", args)
    assert "failed" not in result, result["msg"]
    assert result["rebooted"] is True and result["checkin"] is None
    state = emu.state(0)
    assert state["boot_id"] != boot_before and state["rtc_set"] is False
    [reboot] = requests_of(emu, 0, "GET", "/api/system/reboot")
    assert reboot["auth"] == "none" and reboot["uptime"] >= 3


def test_reboot_device_never_back_fails_with_time_and_last_error(emulator):
    emu = emulator(passphrase=PASS, rtc_set=True, reboot_seconds=120.0)
    args = dict(CONNECTION, passphrase=PASS, backend_url="{{ hem_backend_url }}", delay=1, reboot_timeout=4, poll_interval=0.5)
    started = time.monotonic()
    result = Task(emu)("encedo_reboot", args)
    took = time.monotonic() - started
    assert result["failed"]
    msg = result["msg"]
    assert "did not come back within" in msg and "timeout 4 s" in msg and "last error" in msg
    assert "cannot reach the device" in msg
    assert took < 30
    # The device accepted the reboot request and went away: that is a change, even though the task failed (issue 17, 2).
    assert result["changed"] is True and result["rebooted"] is False
    assert len(requests_of(emu, 0, "GET", "/api/system/reboot")) == 1


def test_reboot_with_the_clock_unset_checks_in_first(emulator):
    """A personalised device after a power-up refuses logins until a check-in; the reboot request needs a login.
    With checkin enabled the module checks in first instead of advising itself (issue 17, defect 3)."""
    emu = emulator(passphrase=PASS, reboot_seconds=1.0)          # personalised, trusted_ts on, clock unset
    task = Task(emu)
    args = dict(CONNECTION, passphrase=PASS, backend_url="{{ hem_backend_url }}", delay=0, poll_interval=0.3)
    check = task("encedo_reboot", args, check=True)
    assert "failed" not in check, check["msg"]
    assert check["checkin_before"] == {"changed": True, "clock_was_set": False}
    assert requests_of(emu, 0, method="POST") == []
    boot_before = emu.state(0)["boot_id"]
    result = task("encedo_reboot", args)
    assert "failed" not in result, result["msg"]
    assert result["changed"] is True and result["rebooted"] is True
    assert result["checkin_before"]["status"] == "OK" and result["checkin"]["status"] == "OK"
    order = [(e["method"], e["path"]) for e in emu.log(0) if e["path"] in ("/api/system/checkin", "/api/system/reboot")
             and e["method"] in ("POST", "GET") and not (e["method"] == "GET" and e["path"] == "/api/system/checkin")]
    assert order == [("POST", "/api/system/checkin"), ("GET", "/api/system/reboot"), ("POST", "/api/system/checkin")]
    assert emu.state(0)["boot_id"] != boot_before and emu.state(0)["rtc_set"] is True
    assert PASS not in task.output


def test_reboot_with_the_clock_unset_and_checkin_off_says_what_to_change(emulator):
    emu = emulator(passphrase=PASS)                              # personalised, trusted_ts on, clock unset
    boot_before = emu.state(0)["boot_id"]
    result = Task(emu)("encedo_reboot", dict(CONNECTION, passphrase=PASS, checkin=False))
    assert result["failed"]
    assert "clock is unset" in result["msg"] and "checkin=false" in result["msg"] and "set checkin to true" in result["msg"]
    assert "encedo_reboot with checkin enabled" not in result["msg"]
    assert result.get("changed", False) is False        # (ansible-playbook reports a result without "changed" as unchanged)
    assert requests_of(emu, 0, "GET", "/api/system/reboot") == [] and emu.state(0)["boot_id"] == boot_before


def test_reboot_with_the_clock_unset_and_a_failing_checkin_says_why(emulator):
    emu = emulator(passphrase=PASS)
    dead = "http://127.0.0.1:%d" % closed_port()
    args = dict(CONNECTION, passphrase=PASS, backend_url=dead, timeout=3)
    result = Task(emu)("encedo_reboot", args)
    assert result["failed"]
    msg = result["msg"]
    assert "checked it in before rebooting it, and that check-in failed" in msg and dead in msg and "cannot reach it" in msg
    assert "run a check-in first" not in msg
    assert requests_of(emu, 0, "GET", "/api/system/reboot") == []


def test_reboot_that_does_not_happen_fails_saying_so(emulator):
    emu = emulator(rtc_set=True)
    # The reboot request is lost (connection dropped, not applied): the device keeps running.
    emu.fault(0, "drop", path="/api/system/reboot")
    boot_before = emu.state(0)["boot_id"]
    args = dict(CONNECTION, checkin=False, delay=0, reboot_timeout=6, poll_interval=0.5)
    result = Task(emu)("encedo_reboot", args)
    assert result["failed"]
    msg = result["msg"]
    assert "did not reboot" in msg and "uptime never went back" in msg and "got no answer" in msg
    assert emu.state(0)["boot_id"] == boot_before
    # Nothing was accepted and nothing happened: no change.
    assert result["changed"] is False


def test_reboot_refused_by_the_device(emulator):
    emu = emulator(passphrase=PASS, rtc_set=True)
    emu.fault(0, "busy", path="/api/system/reboot")
    result = Task(emu)("encedo_reboot", dict(CONNECTION, passphrase=PASS, reboot_timeout=5))
    assert result["failed"]
    assert result["status"] == 409 and "refused to reboot" in result["msg"]
