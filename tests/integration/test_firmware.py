# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""encedo_firmware and the playbook encedo.hem.upgrade against the emulator, over real HTTPS.

The module's rules (four steps, a corrupt image, power lost, a device not back, pre-flight, the dashboard)
run its main() in this process (helpers/inprocess.py ModuleRunner); the playbook encedo.hem.upgrade
(batches, the summary, stopping at the first failure, check mode, files staged on a server) runs in real
ansible-playbook. Secrets in every output level are proven by tests/reliability/test_secrets.py, the token
guard by tests/integration/test_info_login.py.

The images are the emulator's own (tests/emulator/firmware.py); the emulator flashes them for
--upgrade-seconds and reboots for --reboot-seconds. What reached each device is proven from the
emulator's request log: one upload per outdated device, none for a current one.
"""

from __future__ import annotations

import base64
import hashlib
import re
import sys
from pathlib import Path

import pytest
import yaml

from tests.emulator import firmware
from tests.emulator.harness import Emulator
from tests.integration.helpers import ensure_collection_link
from tests.integration.helpers.inprocess import ModuleRunner
from tests.integration.helpers.playbook import REPO_ROOT

try:
    from ansible_collections.encedo.hem.plugins.module_utils._client import HemClient
except ImportError:  # the collection resolves through build/collections (make link)
    ensure_collection_link()
    sys.path.insert(0, str(REPO_ROOT / "build" / "collections"))
    from ansible_collections.encedo.hem.plugins.module_utils._client import HemClient
from tests.emulator.upgrade import FACTORY_FWV

PW = "integration-pass-1"
NEW = "nGINE 1.2.3 (HEM emulator)"
UPLOAD = "/api/system/upgrade/upload_fw"
FAST = {"poll_interval": 0.3, "reboot_timeout": 30, "check_timeout": 20}


def uploads(emu, i):
    return [e for e in emu.log(i) if e["method"] == "POST" and e["path"] == UPLOAD]


def requests_of(emu, i):
    return [(e["method"], e["path"]) for e in emu.log(i)]


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "firmware.bin"
    path.write_bytes(firmware.make_image(NEW))
    return str(path)


@pytest.fixture
def corrupt(tmp_path):
    path = tmp_path / "bad.bin"
    path.write_bytes(firmware.make_image(NEW, corrupt=True))
    return str(path)


def start(tmp_path_factory, devices=1, **options):
    emu = Emulator(devices=devices, passphrase=PW, rtc_set=True, auth_delay=0.0, control=True, reboot_seconds=0.5,
                   upgrade_seconds=0.5, tmp_path=tmp_path_factory.mktemp("firmware"), **options)
    emu.start()
    return emu


@pytest.fixture
def ppa(tmp_path_factory):
    emu = start(tmp_path_factory)
    yield emu
    emu.stop()


class Task:
    """Runs one encedo_firmware task against device 0 in this process (ModuleRunner); -> its result."""

    def __init__(self, emu):
        self.runner = ModuleRunner(emu, 0)

    @property
    def output(self):
        return self.runner.output

    def __call__(self, args, check=False, diff=False):
        params = {"backend_url": "{{ hem_backend_url }}"}
        params.update(FAST)
        params.update(args)
        result = self.runner("encedo.hem.encedo_firmware", params, check=check, diff=diff)
        return dict(result, failed=bool(result.get("failed")))


@pytest.fixture
def task(ppa):
    return Task(ppa)


# ------------------------------------------------------------------ the module: four steps

def test_check_apply_again_check(ppa, task, image):
    args = {"src": image, "version": NEW}
    ppa.clear_log(0)
    check = task(args, check=True, diff=True)
    assert not check["failed"] and check["changed"] is True and check["sent"] == ["firmware"]
    assert check["previous_version"] == FACTORY_FWV and check["current_version"] == NEW
    assert check["phases"] == ["upload", "check", "install", "reboot", "checkin", "verify"]
    assert check["diff"] == {"before": {"version": FACTORY_FWV}, "after": {"version": NEW}}
    assert requests_of(ppa, 0) == [("GET", "/api/system/status"), ("GET", "/api/system/version")]
    boot = ppa.state(0)["boot_id"]

    ppa.clear_log(0)
    apply = task(args, diff=True)
    assert not apply["failed"], task.output
    assert apply["changed"] is True and apply["previous_version"] == FACTORY_FWV and apply["current_version"] == NEW
    assert set(apply["durations"]) == {"upload", "check", "install", "reboot", "checkin", "verify"}
    assert apply["attested"] is True and apply["checkin"]["status"] == "OK"
    assert len(uploads(ppa, 0)) == 1 and ppa.state(0)["boot_id"] != boot and version_of(ppa, 0) == NEW
    assert ("GET", "/api/system/upgrade/install_fw") in requests_of(ppa, 0)
    assert PW not in task.output

    ppa.clear_log(0)
    again = task(args)
    assert not again["failed"] and again["changed"] is False and again["sent"] == [] and again["durations"] == {}
    assert again["previous_version"] == again["current_version"] == NEW
    assert [e for e in ppa.log(0) if e["method"] == "POST"] == []

    ppa.clear_log(0)
    check_again = task(args, check=True)
    assert not check_again["failed"] and check_again["changed"] is False and check_again["phases"] == []
    assert [e for e in ppa.log(0) if e["method"] == "POST"] == []


def test_a_corrupt_image_fails_at_the_check_and_installs_nothing(ppa, task, corrupt):
    ppa.clear_log(0)
    boot = ppa.state(0)["boot_id"]
    result = task({"src": corrupt, "version": NEW})
    assert result["failed"] and result["changed"] is False
    assert "check failed" in result["msg"] and "Nothing was installed" in result["msg"], result["msg"]
    assert result["status"] == 406 and set(result["durations"]) == {"upload"}
    assert len(uploads(ppa, 0)) == 1
    assert ("GET", "/api/system/upgrade/install_fw") not in requests_of(ppa, 0)
    assert ppa.state(0)["boot_id"] == boot and version_of(ppa, 0) == FACTORY_FWV


def test_power_lost_during_the_flash_fails_on_the_old_firmware(ppa, task, image):
    ppa.fault(0, "flash_power_loss")
    result = task({"src": image, "version": NEW})
    assert result["failed"] and result["changed"] is True
    assert "still runs its old firmware" in result["msg"], result["msg"]
    assert result["current_version"] == FACTORY_FWV and "reboot" in result["durations"]
    assert version_of(ppa, 0) == FACTORY_FWV


def test_a_device_that_never_comes_back_fails_with_what_to_do(ppa, task, image):
    ppa.fault(0, "flash_never_back")
    result = task({"src": image, "version": NEW, "reboot_timeout": 4})
    assert result["failed"] and result["changed"] is True
    assert "did not come back within reboot_timeout (4 s)" in result["msg"] and "do not power it off" in result["msg"]
    assert set(result["durations"]) == {"upload", "check", "install"}


def test_preflight_refuses_an_unset_clock_and_a_downgrade_before_any_upload(ppa, task, image, tmp_path):
    old = tmp_path / "old.bin"
    old.write_bytes(firmware.make_image("nGINE 1.0.0"))
    ppa.clear_log(0)
    result = task({"src": str(old), "version": "nGINE 1.0.0"})
    assert result["failed"] and "older than the firmware the device runs" in result["msg"]
    boot = ppa.state(0)["boot_id"]
    ppa.fault(0, "reboot")                      # back with the clock unset
    assert ppa.wait_new_boot(0, boot)
    ppa.clear_log(0)
    result = task({"src": image, "version": NEW})
    assert result["failed"] and "clock is unset" in result["msg"] and "Nothing was sent" in result["msg"]
    assert uploads(ppa, 0) == [] and [e for e in ppa.log(0) if e["method"] == "POST"] == []


def test_the_dashboard_is_installed_without_a_reboot(ppa, task, tmp_path):
    archive = firmware.make_image("dashboard 2.0", "ui")
    path = tmp_path / "webroot.tar"
    path.write_bytes(archive)
    uis = base64.b64encode(hashlib.sha256(archive).digest()).decode()   # the emulator's uis: SHA-256 of the archive
    args = {"component": "dashboard", "src": str(path), "version": uis}
    ppa.clear_log(0)
    boot = ppa.state(0)["boot_id"]
    check = task(args, check=True)
    assert check["changed"] is True and check["phases"] == ["upload", "check", "install", "verify"]
    assert check["sent"] == ["dashboard"] and check["current_version"] == uis
    apply = task(args)
    assert not apply["failed"] and apply["changed"] is True and apply["current_version"] == uis, task.output
    assert set(apply["durations"]) == {"upload", "check", "install", "verify"} and "checkin" not in apply
    assert ppa.state(0)["boot_id"] == boot
    ui_uploads = [e for e in ppa.log(0) if e["method"] == "POST" and e["path"] == "/api/system/upgrade/upload_ui"]
    assert len(ui_uploads) == 1
    ppa.clear_log(0)
    again = task(args)
    assert again["changed"] is False and [e for e in ppa.log(0) if e["method"] == "POST"] == []


# ------------------------------------------------------------------ the playbook encedo.hem.upgrade

PLAYBOOK = str(REPO_ROOT / "playbooks" / "upgrade.yml")
SUMMARY = "Firmware versions before and after, per device (so far)"


@pytest.fixture
def fleet(tmp_path_factory):
    emu = start(tmp_path_factory, devices=4)
    yield emu
    emu.stop()


def rollout(hem_playbook, emu, src, check=False, **extra):
    host_vars = {"encedo_hem_url": "{{ hem_url }}", "encedo_hem_ca_path": "{{ hem_ca_path }}", "encedo_hem_passphrase": PW,
                 "encedo_hem_backend_url": "{{ hem_backend_url }}",
                 "encedo_hem_attestation_trust_anchor_path": "{{ hem_custody_ca_path }}"}
    extra_vars = {"encedo_hem_firmware_src": src, "encedo_hem_firmware_version": NEW, "encedo_hem_firmware_poll_interval": 0.3,
                  "encedo_hem_firmware_reboot_timeout": 30, "encedo_hem_upgrade_batch": "50%"}
    extra_vars.update(extra)
    return hem_playbook(emu, host_vars=host_vars).run_playbook(PLAYBOOK, extra_vars=extra_vars, check=check)


def summary(run):
    """{host: line} of the last summary printed."""
    found = run.results(task=SUMMARY)
    assert found, run.tail()
    return dict(line.split(": ", 1) for line in (item["msg"] for item in found[-1].result["results"]))


def version_of(emu, i):
    """The fwv device i reports (GET /api/system/version over HTTPS)."""
    return HemClient(emu.url(i), ca_path=emu.ca_file, timeout=10).get("/api/system/version", auth=False)["fwv"]


def test_the_fleet_is_upgraded_one_upload_per_outdated_device(fleet, hem_playbook, image):
    # hem2 runs the new firmware already
    current = ModuleRunner(fleet, 2)("encedo.hem.encedo_firmware", dict(FAST, backend_url="{{ hem_backend_url }}", src=image, version=NEW))
    assert not current.get("failed") and current["changed"] is True, current
    for i in range(4):
        fleet.clear_log(i)
    run = rollout(hem_playbook, fleet, image)
    run.assert_ok()
    assert [len(uploads(fleet, i)) for i in range(4)] == [1, 1, 0, 1]
    assert [version_of(fleet, i) for i in range(4)] == [NEW] * 4
    assert [e for e in fleet.log(2) if e["method"] == "POST" and e["path"] != "/api/auth/token"] == []
    lines = summary(run)
    assert lines["hem0"] == "%s -> %s (upgraded)" % (FACTORY_FWV, NEW)
    assert lines["hem2"] == "%s -> %s (already current)" % (NEW, NEW)
    # batches: one device first, then half of the fleet
    installs = [r.host for r in run.results(action="encedo_firmware")]
    assert installs[0] == "hem0" and set(installs[1:3]) == {"hem1", "hem2"} and installs[3] == "hem3", installs
    assert PW not in run.output


def test_check_mode_says_what_would_happen_and_sends_nothing(fleet, hem_playbook, image):
    for i in range(4):
        fleet.clear_log(i)
    run = rollout(hem_playbook, fleet, image, check=True)
    run.assert_ok()
    for i in range(4):
        assert uploads(fleet, i) == [] and not [e for e in fleet.log(i) if e["path"].startswith("/api/system/upgrade/")]
    assert summary(run)["hem3"] == "%s -> %s (would be upgraded)" % (FACTORY_FWV, NEW)


def test_a_corrupt_image_stops_the_rollout_at_the_first_device(fleet, hem_playbook, corrupt):
    run = rollout(hem_playbook, fleet, corrupt)
    assert run.rc != 0
    assert len(uploads(fleet, 0)) == 1 and version_of(fleet, 0) == FACTORY_FWV
    for i in (1, 2, 3):
        assert fleet.log(i) == [], "hem%d was touched" % i
    lines = summary(run)
    assert lines["hem0"] == "%s (failed; it runs %s)" % (FACTORY_FWV, FACTORY_FWV) and lines["hem3"] == "not reached"
    stopped = run.results(task="Stop the rollout at the first failure", status="failed")
    assert [r.host for r in stopped] == ["hem0"] and "check failed" in stopped[0].msg, stopped


def test_a_failure_in_a_batch_leaves_the_later_batches_untouched(fleet, hem_playbook, image):
    fleet.fault(1, "flash_power_loss")
    run = rollout(hem_playbook, fleet, image)
    assert run.rc != 0
    assert version_of(fleet, 0) == NEW and version_of(fleet, 1) == FACTORY_FWV
    assert fleet.log(3) == []
    lines = summary(run)
    assert lines["hem1"] == "%s (failed; it runs %s)" % (FACTORY_FWV, FACTORY_FWV)
    assert lines["hem2"] == "%s -> %s (upgraded)" % (FACTORY_FWV, NEW) and version_of(fleet, 2) == NEW   # its batch finished
    assert lines["hem3"] == "not reached"
    stopped = run.results(task="Stop the rollout at the first failure", status="failed")
    assert [r.host for r in stopped] == ["hem1"]
    assert stopped[0].msg.startswith("The firmware upgrade stopped at hem1: GET /api/system/version"), stopped[0].msg


def test_the_preflight_of_a_batch_stops_before_any_upload_to_it(fleet, hem_playbook, image):
    boot = fleet.state(2)["boot_id"]
    fleet.fault(2, "reboot")                    # hem2 back with its clock unset
    assert fleet.wait_new_boot(2, boot)
    for i in range(4):
        fleet.clear_log(i)
    run = rollout(hem_playbook, fleet, image)
    assert run.rc != 0
    refused = run.results(task="Pre-flight - the device can take a firmware and has no reboot pending", status="failed")
    assert [r.host for r in refused] == ["hem2"] and "hem2 is not ready for a firmware upgrade" in refused[0].msg
    assert len(uploads(fleet, 0)) == 1
    assert [len(uploads(fleet, i)) for i in (1, 2, 3)] == [0, 0, 0]
    assert fleet.log(3) == []


# ------------------------------------------------------------------ a PPA behind a server (network namespaces, root)

def test_a_ppa_behind_a_server_is_upgraded_with_the_files_copied_there(server_testbed, hem_playbook, image):
    srv = server_testbed.server()
    emu = srv.emulator(passphrase=PW, rtc_set=True, reboot_seconds=0.5, upgrade_seconds=0.5)
    emu.clear_log(0)
    runner = hem_playbook(emu)
    hostvars = dict(srv.inventory_vars(), encedo_hem_url=emu.name_url(0), encedo_hem_ca_path=emu.ca_file,
                    encedo_hem_passphrase=PW, encedo_hem_backend_url=emu.backend_url,
                    encedo_hem_attestation_trust_anchor_path=emu.custody_ca_file)
    Path(runner.inventory).write_text(yaml.safe_dump({"all": {"children": {"hem": {"hosts": {"ppa0": hostvars}}}}}))
    run = runner.run_playbook(PLAYBOOK, extra_vars={"encedo_hem_firmware_src": image, "encedo_hem_firmware_version": NEW,
                                                    "encedo_hem_firmware_poll_interval": 0.3}, verbosity=3)
    run.assert_ok()
    assert emu.state(0)["upgrade"]["fw_upgrade"] is True and len(uploads(emu, 0)) == 1
    assert run.result("Install the firmware (upload, check, flash, reboot, check-in, verify; minutes per device)",
                      host="ppa0")["changed"] is True
    staged = [p for p in srv.tmp.iterdir() if p.name.startswith("encedo_hem_fw.")]
    assert staged == [], "the staged files were not removed: %s" % staged
    assert srv.leftovers({"passphrase": PW}) == [] and PW not in run.output
    assert not re.search(r"eyJ[\w-]{10,}\.eyJ[\w-]{10,}\.[\w-]{20,}", run.output), "a bearer token was printed (-vvv)"
