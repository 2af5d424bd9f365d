# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A reboot at the device's real pace (issue 25 item 8).

A rebooting PPA takes its USB link down for up to about a minute in the web manager's waits after a
reboot; the emulator models that with ``--reboot-seconds`` (3 s by default, so that the other tests
stay fast; docs/fidelity.md). Here a factory-fresh device stays away REAL_REBOOT_SECONDS after the
reboot its personalisation asks for: the role's reboot handler keeps polling through the down time
(connections refused, then a new boot), checks the device in, and the run converges; a second run
changes nothing. A file of its own, so that its minute of waiting overlaps other test files.
"""

from __future__ import annotations

import time

from tests.integration.test_role import SITE, role_vars

REAL_REBOOT_SECONDS = 60.0


def test_the_role_waits_out_a_reboot_at_the_devices_real_pace(emulator, hem_playbook, tmp_path):
    emu = emulator(rtc_set=True, reboot_seconds=REAL_REBOOT_SECONDS)
    runner = hem_playbook(emu, host_vars=role_vars(emu, tmp_path, tls=False, attestation=False, encedo_hem_reboot_timeout=300))
    boot = emu.state(0)["boot_id"]
    started = time.monotonic()
    run = runner.run_playbook(SITE)
    run.assert_ok()
    assert time.monotonic() - started >= REAL_REBOOT_SECONDS
    reboot = run.result("Reboot the device and wait until it is back", host="hem0")
    assert reboot["changed"] is True
    state = emu.state(0)
    assert state["boot_id"] != boot and state["personalised"] and state["rtc_set"]
    assert state["config"]["user"] == "Role test"
    # one reboot request: the handler waited for the device, it did not ask again
    assert len([e for e in emu.log(0) if e["path"] == "/api/system/reboot" and e["method"] == "GET"]) == 1
    emu.clear_log(0)
    runner.run_playbook(SITE).assert_ok()
    assert [e for e in emu.log(0) if e["method"] == "POST" and e["path"] != "/api/auth/token"] == []
    assert [e for e in emu.log(0) if e["path"] == "/api/system/reboot"] == []
