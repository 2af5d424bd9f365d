# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""encedo_audit_log against the emulator over HTTPS: the module in this process, the role in ansible-playbook.

The module's rules (what is fetched, verified, quarantined, refused) run its main() in this process
(helpers/inprocess.py ModuleRunner) on each device, writing under dest/<host> on this machine as the
module does on the controller. The logs come from real activity (module runs: logins, a configuration
change), closed by a reboot; the emulator's request log proves what was fetched. Tampering uses the
emulator's control hooks (tests/emulator/logger.py ``control``). The role's audit step (encedo_hem_audit_dir,
also behind a server) stays in real ansible-playbook runs here; ``audit`` (the playbook form) serves
tests/integration/test_report.py. Secrets in every output level are proven by tests/reliability/test_secrets.py.
"""

from __future__ import annotations

import json
import os

from tests.emulator_tests.conftest import client
from tests.integration.helpers.inprocess import ModuleRunner

PASS = "pw-audit-log-1"

LOGGER_FILE = "/api/logger/"


def reboot(emu, i, passphrase=PASS):
    """Reboot device i (its current log file is closed), wait for the new boot and check in (clock set)."""
    hem = client(emu, i)
    hem.login(passphrase)
    boot = emu.state(i)["boot_id"]
    assert hem.get("/api/system/reboot").status == 200
    assert emu.wait_new_boot(i, boot)
    hem.checkin(emu.backend_url)


def audit(runner, dest, check=False, diff=False, hosts=None):
    """Run encedo_audit_log on the runner's hosts with dest/<host>; -> (run, {host: result})."""
    task = {"name": "audit", "encedo.hem.encedo_audit_log": {
        "url": "{{ hem_url }}", "ca_path": "{{ hem_ca_path }}", "passphrase": PASS,
        "dest": str(dest) + "/{{ inventory_hostname }}"}, "check_mode": check, "diff": diff}
    run = runner.run_playbook([{"hosts": hosts or runner.group, "gather_facts": False, "tasks": [task]}])
    results = {}
    for item in run.results(task="audit"):
        results[item.host] = dict(item.result, failed=item.failed)
    return run, results


def audit_here(emu, dest, check=False, diff=False, devices=None, outputs=None):
    """Run encedo_audit_log in this process on each device (all by default) with dest/hem<i>;
    -> {host: result, with failed}; ``outputs`` (a dict) receives {host: the result as JSON text}."""
    results = {}
    outputs = {} if outputs is None else outputs
    for i in (range(emu.devices) if devices is None else devices):
        host = "hem%d" % i
        runner = ModuleRunner(emu, i)
        result = runner("encedo.hem.encedo_audit_log", {"passphrase": PASS, "dest": str(dest / host)}, check=check, diff=diff)
        results[host] = dict(result, failed=bool(result.get("failed")))
        outputs[host] = runner.output
    return results


def ok(results):
    """Every run succeeded (what run.assert_ok() said of the playbook)."""
    assert not [r for r in results.values() if r["failed"]], results
    return results


def file_reads(emu, i):
    return [e["path"] for e in emu.log(i) if e["method"] == "GET" and e["path"].startswith(LOGGER_FILE)
            and e["path"] not in ("/api/logger/key",) and not e["path"].startswith("/api/logger/list")]


def test_logs_of_module_runs_on_three_devices_verify_and_are_fetched_once(emulator, tmp_path):
    n = 3
    emu = emulator(devices=n, passphrase=PASS, rtc_set=True, reboot_seconds=0.3)
    for i in range(n):
        run = ModuleRunner(emu, i)
        for module, args in (("encedo.hem.encedo_config", {"passphrase": PASS, "user": "Audit hem%d" % i}),
                             ("encedo.hem.encedo_info", {"passphrase": PASS, "gather_subset": ["config"]})):
            result = run(module, args)
            assert not result.get("failed"), (module, result)
    for i in range(n):
        reboot(emu, i)
    dest = tmp_path / "audit"
    closed = {i: [f["id"] for f in emu.logger(i)["files"] if not f["locked"]] for i in range(n)}
    locked = {i: [f["id"] for f in emu.logger(i)["files"] if f["locked"]] for i in range(n)}
    assert all(len(ids) >= 1 for ids in closed.values())

    for i in range(n):
        emu.clear_log(i)
    check = audit_here(emu, dest, check=True, diff=True)
    ok(check)
    for i in range(n):
        host = "hem%d" % i
        assert check[host]["changed"] and check[host]["files"] == closed[i] and check[host]["locked"] == locked[i]
        assert check[host]["verified"] == [] and check[host]["sent"] == []
        assert check[host]["diff"]["after"]["files"] == sorted(closed[i])
        assert file_reads(emu, i) == []                     # check mode fetches nothing
    assert not dest.exists()

    first = audit_here(emu, dest)
    ok(first)
    for i in range(n):
        host = "hem%d" % i
        result = first[host]
        assert result["changed"] and result["files"] == closed[i] and result["verified"] == closed[i]
        assert result["quarantined"] == [] and result["verified_total"] == len(closed[i])
        assert result["logger_key"] == emu.logger(i)["key"]
        # the module runs are in the log: the logins, the configuration change, the reboot
        assert result["events"]["token_password"] >= 2 and result["events"]["reboot"] == 1
        assert result["events"]["config_updated"] >= 1 and result["events"]["seed"] == len(closed[i])
        assert sorted(os.listdir(dest / host)) == sorted(["encedo-hem-audit.json"] + [f + ".log" for f in closed[i]])
        assert file_reads(emu, i) == [LOGGER_FILE + f for f in closed[i]]      # the locked file is not asked for
        record = json.loads((dest / host / "encedo-hem-audit.json").read_text())
        assert record["logger_key"] == result["logger_key"]

    for i in range(n):
        emu.clear_log(i)
    second = audit_here(emu, dest)
    ok(second)
    outputs = {}
    check_again = audit_here(emu, dest, check=True, outputs=outputs)
    ok(check_again)
    for i in range(n):
        host = "hem%d" % i
        for result in (second[host], check_again[host]):
            assert not result["changed"] and result["files"] == [] and result["verified_total"] == len(closed[i])
        assert file_reads(emu, i) == []                     # nothing downloaded twice
        assert all(e["method"] == "GET" or e["path"] == "/api/auth/token" for e in emu.log(i))
        assert PASS not in outputs[host]

    reboot(emu, 0)                                          # a new boot closes one more file: only that one is fetched
    emu.clear_log(0)
    third = audit_here(emu, dest, devices=[0])
    ok(third)
    assert third["hem0"]["files"] == locked[0] and third["hem0"]["verified_total"] == len(closed[0]) + 1
    assert file_reads(emu, 0) == [LOGGER_FILE + locked[0][0]]


def test_a_changed_byte_a_removed_line_and_a_swapped_key_each_fail(emulator, tmp_path):
    emu = emulator(devices=4, passphrase=PASS, rtc_set=True, reboot_seconds=0.3)
    for i in range(4):
        client(emu, i).login(PASS)
        reboot(emu, i)
    first = {i: emu.logger(i)["files"][0]["id"] for i in range(4)}
    dest = tmp_path / "audit"
    before = audit_here(emu, dest, devices=[3])          # hem3: fetched once, its key recorded
    ok(before)
    assert before["hem3"]["verified"] == [first[3]]

    emu.logger(0, "flip", file=first[0], line=2)
    emu.logger(1, "remove", file=first[1], line=2)
    emu.logger(2, "swap_key")
    emu.logger(3, "swap_key")
    reboot(emu, 3)
    results = audit_here(emu, dest)
    problems = {0: "the mac does not match", 1: "counter", 2: "not signed by the logger key"}
    for i, problem in problems.items():
        host = "hem%d" % i
        result = results[host]
        assert result["failed"] and result["quarantined"] == [first[i]] and result["verified"] == []
        assert problem in result["problems"][first[i]] and problem in result["msg"]
        assert os.listdir(dest / host / "quarantine") == [first[i] + ".log"]
        assert not (dest / host / (first[i] + ".log")).exists()
    result = results["hem3"]
    assert result["failed"] and "not the one recorded" in result["msg"]
    assert sorted(os.listdir(dest / "hem3")) == sorted(["encedo-hem-audit.json", first[3] + ".log"])   # nothing fetched

    for i in range(3):
        emu.clear_log(i)
    again = audit_here(emu, dest, devices=[0, 1, 2])     # still failing, nothing fetched again
    for i in range(3):
        assert again["hem%d" % i]["failed"] and again["hem%d" % i]["files"] == [] and file_reads(emu, i) == []


def test_epa_has_no_log_files(emulator, tmp_path):
    emu = emulator(devices=1, passphrase=PASS, rtc_set=True, model="epa")
    results = audit_here(emu, tmp_path / "audit")
    result = ok(results)["hem0"]
    assert result["supported"] is False and not result["changed"] and result["files"] == []
    assert result["logger_key"] == emu.logger(0)["key"]


# ------------------------------------------------------------------ the role (encedo_hem_audit_dir)

def role_audit_vars(emu, tmp_path, audit_dir, **over):
    from tests.integration.test_role import role_vars
    return role_vars(emu, tmp_path, tls=False, attestation=False, encedo_hem_audit_dir=str(audit_dir), **over)


def test_the_role_keeps_the_log_on_the_controller(emulator, hem_playbook, tmp_path):
    from tests.integration.test_role import PASS as ROLE_PASS, SITE
    emu = emulator(devices=1, passphrase=ROLE_PASS, rtc_set=True, reboot_seconds=0.3)
    reboot(emu, 0, ROLE_PASS)
    closed = [f["id"] for f in emu.logger(0)["files"] if not f["locked"]]
    audit_dir = tmp_path / "audit"
    runner = hem_playbook(emu, host_vars=role_audit_vars(emu, tmp_path, audit_dir))
    runner.run_playbook(SITE).assert_ok()
    assert sorted(os.listdir(audit_dir / "hem0")) == sorted(["encedo-hem-audit.json"] + [f + ".log" for f in closed])
    emu.clear_log(0)
    again = runner.run_playbook(SITE)
    again.assert_ok()
    assert again.results(task="Fetch and verify the audit log files", host="hem0")[0].changed is False
    assert file_reads(emu, 0) == []


def test_the_role_brings_the_log_of_a_ppa_behind_a_server_to_the_controller(server_testbed, hem_playbook, tmp_path):
    from tests.integration.test_remote import MASTER, SITE, write_inventory
    from tests.integration.test_remote import PASS as REMOTE_PASS
    from tests.integration.helpers.netns import DEVICE_IP, DEVICE_NAME
    srv = server_testbed.server()
    emu = srv.emulator(devices=1, reboot_seconds=1.0)
    trust = tmp_path / "trust.pem"
    trust.write_text(open(emu.ca_file).read())
    audit_dir = tmp_path / "audit"
    host = dict(srv.inventory_vars(), encedo_hem_url=emu.name_url(0), encedo_hem_ca_path=str(trust),
                encedo_hem_passphrase=REMOTE_PASS, encedo_hem_master_passphrase=MASTER, encedo_hem_backend_url=emu.backend_url,
                encedo_hem_reboot_timeout=60, encedo_hem_audit_dir=str(audit_dir),
                encedo_hem_init={"ip": DEVICE_IP + "/24", "hostname": DEVICE_NAME, "email": "ops@example.com"},
                encedo_hem_config={"user": "Remote audit"})
    runner = hem_playbook(emu)
    write_inventory(runner, {"ppa0": host})
    runner.run_playbook(SITE).assert_ok()                   # personalised and configured
    srv.call(reboot, emu, 0, REMOTE_PASS)                   # from inside the server's namespace: the first file is closed
    closed = [f["id"] for f in emu.logger(0)["files"] if not f["locked"]]
    assert closed
    emu.clear_log(0)
    second = runner.run_playbook(SITE)
    second.assert_ok()
    assert sorted(os.listdir(audit_dir / "ppa0")) == sorted(["encedo-hem-audit.json"] + [f + ".log" for f in closed])
    assert file_reads(emu, 0) == [LOGGER_FILE + f for f in closed]
    record = json.loads((audit_dir / "ppa0" / "encedo-hem-audit.json").read_text())
    assert sorted(record["files"]) == sorted(closed) and record["logger_key"] == emu.logger(0)["key"]
    emu.clear_log(0)
    runner.run_playbook(SITE).assert_ok()                   # the record went to the server: nothing fetched twice
    assert file_reads(emu, 0) == []
    staged = [p for p in srv.tmp.iterdir() if p.name.startswith("encedo_hem.")]
    assert staged == []                                      # the role's directory on the server is gone
