# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check-in actions (OpenAPI POST /api/system/checkin): the control interface orders the stand-in
backend's answer, the emulated device executes it only with trusted_backend on."""

from __future__ import annotations

import time
import urllib.error

import pytest
from cryptography import x509

from tests.emulator import util

from .conftest import PASS, client

MASTER = PASS + "-master"        # the harness default master passphrase (`--passphrase` + "-master")
DEVICES = 9


@pytest.fixture(scope="module")
def emu(emulator_module):
    """One fleet for the module; each test uses its own device (actions change or stop it)."""
    return emulator_module(devices=DEVICES, passphrase=PASS, reboot_seconds=0.5)


def test_ok_and_report_change_nothing_and_count_runs_out(emu):
    hem = client(emu, 0)
    emu.checkin_order(0, action="R", count=1)
    assert emu._control("GET", "/devices/0/checkin") == {"order": {"action": "R", "newcrt": False, "count": 1}}
    assert hem.checkin(emu.backend_url).json == {"status": "R"}
    assert emu._control("GET", "/devices/0/checkin") == {"order": None}
    assert hem.checkin(emu.backend_url).json == {"status": "OK"}
    state = emu.state(0)
    assert state["rtc_set"] and state["personalised"] and state["up"]
    hem.login(PASS)


def test_an_order_without_count_lasts_until_cleared(emu):
    hem = client(emu, 1)
    emu.checkin_order(1, action="R")
    assert [hem.checkin(emu.backend_url).json["status"] for _attempt in range(3)] == ["R"] * 3
    emu.clear_checkin_order(1)
    assert hem.checkin(emu.backend_url).json == {"status": "OK"}


def test_lock_erases_the_user_key_the_master_key_still_logs_in(emu):
    hem = client(emu, 2)
    hem.checkin(emu.backend_url)
    hem.login(PASS)                                    # derive the stored key first: erasing must beat it
    emu.checkin_order(2, action="L", count=1)
    assert hem.checkin(emu.backend_url).json == {"status": "L"}
    hem.login(PASS, expect=401)
    hem.login(MASTER)
    assert emu.state(2)["personalised"] is True


def test_wipe_reboots_into_a_factory_fresh_device(emu):
    hem = client(emu, 3)
    boot = emu.state(3)["boot_id"]
    emu.checkin_order(3, action="W", count=1)
    assert hem.checkin(emu.backend_url).json == {"status": "W"}
    assert emu.wait_new_boot(3, boot)
    state = emu.state(3)
    assert state["personalised"] is False and state["rtc_set"] is False


def test_soft_brick_stops_the_web_servers_until_a_power_cycle(emu):
    hem = client(emu, 4)
    emu.checkin_order(4, action="B", count=1)
    assert hem.checkin(emu.backend_url).json == {"status": "B"}
    assert emu.wait_down(4, timeout=5)
    time.sleep(1.5)                                    # three reboot times: still not answering
    assert emu.state(4)["up"] is False and not emu._reachable(4)
    emu.fault(4, "reboot")                             # the power cycle
    assert emu.wait_up(4, timeout=10)
    assert emu.state(4)["personalised"] is True and emu.state(4)["rtc_set"] is False


def test_forced_upgrade_reboots_the_device(emu):
    hem = client(emu, 5)
    boot = emu.state(5)["boot_id"]
    emu.checkin_order(5, action="U", count=1)
    assert hem.checkin(emu.backend_url).json == {"status": "U"}
    assert emu.wait_new_boot(5, boot)
    assert emu.state(5)["personalised"] is True and emu.state(5)["rtc_set"] is False


def test_pushed_certificate_is_served_after_the_next_reboot_and_a_bad_one_is_refused(emu):
    hem = client(emu, 6)
    served = emu.state(6)["tls_cert_pem"]
    emu.checkin_order(6, newcrt=emu.pushed_cert(6, matching=False), count=1)
    assert hem.checkin(emu.backend_url).json == {"newcrt": "ERROR", "status": "OK"}
    emu.checkin_order(6, newcrt="bm90IGEgY2VydGlmaWNhdGU", count=1)
    assert hem.checkin(emu.backend_url).json == {"newcrt": "ERROR", "status": "OK"}
    assert emu.state(6)["pending_tls"] is False
    good = emu.pushed_cert(6)
    emu.checkin_order(6, action="R", newcrt=good, count=1)
    assert hem.checkin(emu.backend_url).json == {"newcrt": "OK", "status": "R"}
    state = emu.state(6)
    assert state["pending_tls"] is True and state["tls_cert_pem"] == served
    boot = state["boot_id"]
    emu.fault(6, "reboot")
    assert emu.wait_new_boot(6, boot)
    new = x509.load_pem_x509_certificate(emu.state(6)["tls_cert_pem"].encode())
    assert util.b64e(util.cert_der(new)) == good


def test_trusted_backend_off_suppresses_actions_and_certificates(emu):
    hem = client(emu, 7)
    hem.checkin(emu.backend_url)
    hem.login(PASS)
    assert hem.post("/api/system/config", {"trusted_backend": False}).status == 200
    emu.checkin_order(7, action="L", newcrt=emu.pushed_cert(7))
    assert hem.checkin(emu.backend_url).json == {"status": "OK"}
    assert emu.state(7)["pending_tls"] is False
    hem.login(PASS)


def test_unknown_action_answers_question_marks(emu):
    hem = client(emu, 8)
    emu.checkin_order(8, action="X", count=1)
    assert hem.checkin(emu.backend_url).json == {"status": "???"}
    assert emu.state(8)["rtc_set"] and emu.state(8)["up"]


@pytest.mark.parametrize("body", [{}, {"count": 2}, {"action": ""}, {"action": 1}, {"newcrt": 5},
                                  {"action": "L", "count": 0}, {"action": "L", "count": True}, {"action": "L", "x": 1}])
def test_bad_orders_are_refused(emu, body):
    with pytest.raises(urllib.error.HTTPError) as info:
        emu._control("POST", "/devices/0/checkin", body)
    assert info.value.code == 400
