# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check-in actions and pushed certificates (OpenAPI POST /api/system/checkin): encedo_checkin and
encedo_reboot, their main() run in this process (helpers/inprocess.py, test_lifecycle.Task) against the
emulator over real HTTPS, whose backend is told through the control interface what to answer each
device. Checked from the task results, the emulator's request log and state, and with an independent
login (tests/integration/test_lifecycle.py).

One emulator and ONE round of check-ins serve every action: each device gets its own order, the
fixture checks each of them in once, and each test reads its device's outcome. What only a playbook
shows (a check-in in a play and its output at -vvvv, the role's check-in) is proven by the ansible-test
target encedo_checkin, tests/reliability/test_secrets.py and tests/integration/test_role.py."""

from __future__ import annotations

import pytest
import requests
from cryptography import x509

from tests.emulator_tests.hemclient import Hem
from tests.integration.helpers.independent_login import independent_login
from tests.integration.test_lifecycle import CONNECTION, Task, requests_of
from tests.unit.plugins.modules import replay

PASS = "pw-checkin-actions"
MASTER = PASS + "-master"          # the emulator's default master passphrase for --passphrase

# device index -> what the backend is told to answer it
OK, REPORT, LOCK, WIPE, BRICK, UPGRADE, CRT_OK, CRT_ERROR, SUPPRESSED, REBOOT = range(10)


@pytest.fixture(scope="module")
def emu(emulator_module):
    return emulator_module(devices=10, passphrase=PASS, rtc_set=True, reboot_seconds=0.5)


@pytest.fixture(scope="module")
def checked_in(emu):
    """Order each device's answer, then run encedo_checkin once on each of devices 0-8; -> ({i: result}, boots)."""
    # trusted_backend off on one device (set with an independent client, not the collection).
    hem = Hem(emu.url(SUPPRESSED), emu.ca_file)
    hem.login(PASS)
    assert hem.post("/api/system/config", {"trusted_backend": False}).status == 200
    for i, action in ((REPORT, "R"), (LOCK, "L"), (WIPE, "W"), (BRICK, "B"), (UPGRADE, "U"), (SUPPRESSED, "L")):
        emu.checkin_order(i, action=action, count=1)
    emu.checkin_order(CRT_OK, newcrt=emu.pushed_cert(CRT_OK), count=1)
    emu.checkin_order(CRT_ERROR, newcrt=emu.pushed_cert(CRT_ERROR, matching=False), count=1)
    # The user key of LOCK is derived before the check-in, so that erasing it is what makes the login fail.
    independent_login(emu.url(LOCK), emu.ca_file, PASS)
    boots = {i: emu.state(i)["boot_id"] for i in range(10)}
    for i in range(10):
        emu.clear_log(i)
    results = dict((i, Task(emu, i)("encedo_checkin", dict(CONNECTION, backend_url="{{ hem_backend_url }}"))) for i in range(9))
    return results, boots


def result_of(results, i):
    """The result of device i, with "failed" (True or False)."""
    return dict(results[i], failed=bool(results[i].get("failed")))


def checkin_posts(emu, i):
    return [e["status"] for e in requests_of(emu, i, "POST", "/api/system/checkin")]


@pytest.mark.parametrize("i,action,words", [(OK, "OK", "none"), (REPORT, "R", "report (nothing changed on the device)")])
def test_ok_and_report_are_ok_and_no_change(emu, checked_in, i, action, words):
    results, _boots = checked_in
    result = result_of(results, i)
    assert not result["failed"] and result["changed"] is False
    assert (result["status"], result["action"]) == (action, words)
    assert "warnings" not in result
    assert checkin_posts(emu, i) == [200]
    assert emu.state(i)["personalised"] and emu.state(i)["up"]


def test_lock_fails_saying_the_user_key_is_gone_and_the_master_key_still_logs_in(emu, checked_in):
    results, _boots = checked_in
    result = result_of(results, LOCK)
    assert result["failed"] and result["changed"] is True
    assert (result["status"], result["action"]) == ("L", "user key erased")
    assert "ordered action L" in result["msg"] and "erased its user key" in result["msg"] and "master" in result["msg"]
    assert checkin_posts(emu, LOCK) == [200]
    with pytest.raises(requests.HTTPError) as info:
        independent_login(emu.url(LOCK), emu.ca_file, PASS)
    assert info.value.response.status_code == 401
    assert independent_login(emu.url(LOCK), emu.ca_file, MASTER)["sub"] == "M"


def test_wipe_fails_and_the_device_comes_back_factory_fresh(emu, checked_in):
    results, boots = checked_in
    result = result_of(results, WIPE)
    assert result["failed"] and result["changed"] is True and result["status"] == "W"
    assert "wiped itself" in result["msg"] and "personalise it again" in result["msg"]
    # The module did not read the status of a device that was going down: the check-in POST is its last request.
    assert emu.log(WIPE)[-1]["path"] == "/api/system/checkin" and emu.log(WIPE)[-1]["status"] == 200
    assert emu.wait_new_boot(WIPE, boots[WIPE])
    assert emu.state(WIPE)["personalised"] is False


def test_soft_brick_fails_and_the_device_stays_away_until_power_cycled(emu, checked_in):
    results, _boots = checked_in
    result = result_of(results, BRICK)
    assert result["failed"] and result["changed"] is True and result["status"] == "B"
    assert "stopped its web servers" in result["msg"] and "power-cycled" in result["msg"]
    assert emu.log(BRICK)[-1]["path"] == "/api/system/checkin"
    assert emu.state(BRICK)["up"] is False and not emu._reachable(BRICK)
    emu.fault(BRICK, "reboot")
    assert emu.wait_up(BRICK, timeout=10) and emu.state(BRICK)["personalised"] is True


def test_forced_upgrade_fails_and_the_device_reboots(emu, checked_in):
    results, boots = checked_in
    result = result_of(results, UPGRADE)
    assert result["failed"] and result["changed"] is True and result["status"] == "U"
    assert "upgrade its firmware" in result["msg"] and "check its firmware" in result["msg"]
    assert emu.wait_new_boot(UPGRADE, boots[UPGRADE])
    assert emu.state(UPGRADE)["rtc_set"] is False


def test_pushed_certificate_installed_is_a_change_with_a_warning(emu, checked_in):
    results, _boots = checked_in
    result = result_of(results, CRT_OK)
    assert not result["failed"] and result["changed"] is True
    assert (result["status"], result["newcrt"]) == ("OK", "OK")
    assert any("newcrt: OK" in w and "ca_path" in w for w in replay.warnings(result))
    state = emu.state(CRT_OK)
    assert state["pending_tls"] is True
    # Served from the next reboot on (the power cycle here is the emulator's).
    emu.fault(CRT_OK, "reboot")
    assert emu.wait_new_boot(CRT_OK, state["boot_id"])
    served = x509.load_pem_x509_certificate(emu.state(CRT_OK)["tls_cert_pem"].encode())
    assert "CN=Backend test CA" in served.issuer.rfc4514_string()


def test_pushed_certificate_refused_is_a_warning_only(emu, checked_in):
    results, _boots = checked_in
    result = result_of(results, CRT_ERROR)
    assert not result["failed"] and result["changed"] is False
    assert (result["status"], result["newcrt"]) == ("OK", "ERROR")
    assert any("newcrt: ERROR" in w for w in replay.warnings(result))
    assert emu.state(CRT_ERROR)["pending_tls"] is False


def test_trusted_backend_off_suppresses_the_action(emu, checked_in):
    results, _boots = checked_in
    result = result_of(results, SUPPRESSED)
    assert not result["failed"] and result["changed"] is False and result["status"] == "OK"
    assert independent_login(emu.url(SUPPRESSED), emu.ca_file, PASS)["sub"] == "U"


def test_only_the_failing_actions_failed(checked_in):
    results, _boots = checked_in
    assert sorted(i for i, result in results.items() if result.get("failed")) == [LOCK, WIPE, BRICK, UPGRADE]


def test_reboot_then_check_in_that_locks_fails_with_the_action(emu, checked_in):
    emu.checkin_order(REBOOT, action="L", count=1)
    args = dict(CONNECTION, passphrase=PASS, backend_url="{{ hem_backend_url }}", delay=0, poll_interval=0.3)
    task = Task(emu, REBOOT)
    result = task("encedo_reboot", args)
    assert result["failed"]
    assert result["changed"] is True and result["rebooted"] is True
    assert (result["checkin"]["status"], result["checkin"]["action"]) == ("L", "user key erased")
    assert result["msg"].startswith("the device rebooted (back after") and "erased its user key" in result["msg"]
    assert len(requests_of(emu, REBOOT, "GET", "/api/system/reboot")) == 1
    assert PASS not in task.output
