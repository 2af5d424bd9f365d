# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Faults: every module that writes, and the role, against a device that misbehaves.

One table (ROWS) of writers, one list of scenarios (SCENARIOS). Each (row, scenario) pair
is one host backed by its own emulated device; the fault of its scenario is queued on that
device through the emulator's control interface. All pairs run at the same time, then a
second run ("converge") with no fault shows that every device reaches its declared state. A
module's pairs run the module in-process (tests/integration/helpers/inprocess.py: its main()
over real HTTPS, each host in a child process of its own, side by side); the role's pairs
run in one ansible-playbook run (strategy free) beside them, since templating, registered
results and the handlers are what the role adds. A module-scoped fixture makes those runs;
the parametrized tests then judge each pair from the task results and the request logs.

Adding a module is one row: its steps, the read it does before writing (faulted), its
write (dropped), the fields it may write, and what each scenario must end with.

The token scenarios (expire, reboot_mid, reboot_mid_clock) kill the token right after the first
login of the run: a task that has the passphrase too logs in again exactly once, and for the role
the tasks after it use the new token (no further login); with the clock unset after a reboot no
login is possible and the task says to check in.

Invariants checked for every pair: no write carries a field the task did not declare;
no field is applied twice in one run; for idempotent rows, no field is applied twice
over both runs (a lost answer and the re-run included).

Pairs left out because another test already proves them (see COVERED_ELSEWHERE; a
test here checks that those tests still exist).
"""

from __future__ import annotations

import functools
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.helpers.inprocess import ChildJobs, ModuleRunner
from tests.reliability.support import (
    CONFIG, TOKEN_PATH, Background, FleetRunner, Step, applied_writes, assert_no_field_twice, assert_writes_declared, device_vars,
    env_without_ca_overrides, host_failures, host_warnings, issue, logins, make_ca, merge_runs, on, pem, run_steps, served_certificate, start_emu,
    wait_for,
)

REPO = Path(__file__).resolve().parents[2]
PW = "reliability-user-pass-1"
MASTER = "reliability-master-pass-1"
ATTESTATION = "/api/system/config/attestation"
PROVISIONING = "/api/system/config/provisioning"
RETRIES = 3                      # HemClient default: 1 + 3 tries of a read
SLOW_TIMEOUT = 5                 # the `timeout` option of the slow-device scenario (room for a loaded CI machine)
HOLD = 120                       # seconds a write is held at the device in the restart scenario
CHECKIN_HINT = "run a check-in first"

CONN = {"url": "{{ hem_url }}", "ca_path": "{{ hem_ca_path }}", "timeout": "{{ hem_timeout }}"}
AUTH = dict(CONN, passphrase="{{ hem_passphrase }}")
REBOOT_ARGS = dict(AUTH, backend_url="{{ hem_backend_url }}", delay=0, poll_interval=0.2, reboot_timeout=30)


@dataclass
class Expect:
    ok: bool | None                     # None: either outcome is right (judged by the converge run)
    msg: tuple = ()                     # regexes the failure message must match
    warn: str | None = None             # regex one warning must match


@dataclass
class Row:
    name: str
    # fleet: "personalised": PPA personalised, clock set; "fresh": factory-fresh PPA, clock set, secure element not
    # provisioned; "blank": the same with the secure element provisioned
    fleet: str
    read: tuple                         # (method, path): the read before the write (faulted by read_fault, busy, slow)
    write: tuple                        # (method, path): the write (dropped by write_drop_*)
    declared: frozenset                 # fields the row may write (log keys; tls.<key>; 'reboot')
    marker: tuple                       # (method, path) answered 200 right before the write (restart scenario)
    auth_request: tuple | None          # first authenticated request after the login (expire scenario); None: no token used
    idempotent: bool                    # a second run writes nothing
    logins: int                         # logins of one run without any fault
    logins_after_reboot: int            # logins of a no-op run after a device reboot (reboot_between)
    expect: dict = field(default_factory=dict)
    steps: list = field(default_factory=list)          # a module's row: its tasks, run in-process (Step)
    tasks: list = field(default_factory=list)          # the role's row: the tasks of its ansible-playbook run
    hostvars: dict = field(default_factory=dict)
    scenario_fleet: dict = field(default_factory=dict)       # scenario -> fleet, where it differs from `fleet`
    scenario_hostvars: dict = field(default_factory=dict)    # scenario -> host vars added to `hostvars`

    def fleet_of(self, scen):
        return self.scenario_fleet.get(scen, self.fleet)


def _read_fault(path):
    return Expect(False, (r"GET %s answered HTTP 500" % re.escape(path), r"gave up after %d attempts" % (RETRIES + 1)))


def _slow(path):
    return Expect(False, (r"GET %s: no answer within the timeout of %d s" % (re.escape(path), SLOW_TIMEOUT),))


def _common(read, clock_sensitive):
    return {
        "read_fault": _read_fault(read[1]),
        "busy": Expect(True),
        "slow": _slow(read[1]),
        "reboot_between": Expect(True),
        "reboot_between_clock": Expect(False, (CHECKIN_HINT,)) if clock_sensitive else Expect(True),
        "restart": Expect(None),
    }


LOST = r"may or may not have been applied|outcome unknown"

ROWS = [
    Row("config", "personalised",
        steps=[Step("config under test", "encedo_config", dict(AUTH, user="Reliability", ctx=42, http_option_hsts=True))],
        read=("GET", CONFIG), write=("POST", CONFIG), declared=frozenset({"user", "ctx", "http_option_hsts"}),
        marker=("GET", CONFIG), auth_request=("GET", CONFIG), idempotent=True, logins=1, logins_after_reboot=1,
        expect=dict(_common(("GET", CONFIG), True), expire=Expect(True))),
    Row("tls", "personalised",
        steps=[Step("tls under test", "encedo_tls", dict(AUTH, certificate="{{ hem_tls_cert }}")),
               Step("tls reboot", "encedo_reboot", REBOOT_ARGS, when="reboot_required")],
        read=("GET", TOKEN_PATH), write=("POST", CONFIG), declared=frozenset({"tls.crt", "reboot", "checked"}),
        marker=("POST", TOKEN_PATH), auth_request=("POST", CONFIG), idempotent=True, logins=2, logins_after_reboot=0,
        expect=dict(_common(("GET", TOKEN_PATH), False), expire=Expect(True),
                    write_drop_applied=Expect(False, (LOST, "reboot it and run the task again")),
                    write_drop_lost=Expect(False, (LOST, "reboot it and run the task again")))),
    Row("init", "fresh",
        steps=[Step("init under test", "encedo_init", dict(
            CONN, passphrase="{{ hem_passphrase }}", master_passphrase="{{ hem_master }}", user="Reliability",
            hostname="hem{{ hem_index }}.emulator.test", trusted_ts="{{ hem_trusted_ts }}"))],
        read=("GET", "/api/auth/init"), write=("POST", "/api/auth/init"), declared=frozenset({"init"}),
        marker=("GET", "/api/auth/init"), auth_request=None, idempotent=True, logins=0, logins_after_reboot=1,
        expect=dict(_common(("GET", "/api/auth/init"), True),
                    write_drop_applied=Expect(True, warn="personalisation was lost, but the device is now personalised"),
                    write_drop_lost=Expect(False, ("POST /api/auth/init", LOST)))),
    Row("checkin", "personalised",
        steps=[Step("checkin under test", "encedo_checkin", dict(CONN, backend_url="{{ hem_backend_url }}"))],
        read=("GET", "/api/system/checkin"), write=("POST", "/api/system/checkin"), declared=frozenset({"checked"}),
        marker=("GET", "/api/system/checkin"), auth_request=None, idempotent=False, logins=0, logins_after_reboot=0,
        expect=dict(_common(("GET", "/api/system/checkin"), False),
                    write_drop_applied=Expect(True, warn="answer to the check-in was lost"),
                    write_drop_lost=Expect(False, ("answer to the check-in was lost and the device clock is still unset",)))),
    Row("reboot", "personalised",
        steps=[Step("reboot under test", "encedo_reboot", REBOOT_ARGS)],
        read=("GET", "/api/system/status"), write=("GET", "/api/system/reboot"), declared=frozenset({"reboot", "checked"}),
        marker=("POST", TOKEN_PATH), auth_request=("GET", "/api/system/reboot"), idempotent=False, logins=1, logins_after_reboot=1,
        # With checkin enabled it checks an unset clock in itself before it logs in (never advises the step it is).
        expect=dict(_common(("GET", "/api/system/status"), True), expire=Expect(True), reboot_between_clock=Expect(True))),
    Row("factory_reset", "personalised",
        steps=[Step("factory_reset under test", "encedo_factory_reset", dict(
            AUTH, confirm_devid="{{ hem_devid }}", wait_timeout="{{ hem_wait_timeout }}", factory_url="{{ hem_url }}",
            factory_ca_path="{{ hem_factory_ca_path }}",
            # run 2 meets the wiped device, whose factory certificate the tests' CA does not verify
            ca_path="{{ hem_both_ca_path }}"))],
        read=("GET", CONFIG), write=("POST", CONFIG), declared=frozenset({"wipeout"}),
        marker=("GET", CONFIG), auth_request=("GET", CONFIG), idempotent=True, logins=1, logins_after_reboot=0,
        expect=dict(_common(("GET", CONFIG), False), expire=Expect(True),
                    write_drop_lost=Expect(False, ("outcome unknown: the wipe was sent but its answer was lost",
                                                   "did not come back in factory state at", "within 4 seconds")))),
    Row("attestation", "fresh",
        steps=[Step("attestation under test", "encedo_attestation", dict(
            CONN, state="provisioned", certificate="{{ hem_att_cert }}", trust_anchor="{{ hem_att_anchor }}",
            genuine_id="{{ hem_genuine_id }}"))],
        read=("GET", ATTESTATION), write=("POST", PROVISIONING), declared=frozenset({"crt", "genuine"}),
        marker=("GET", ATTESTATION), auth_request=None, idempotent=True, logins=0, logins_after_reboot=0,
        expect=dict(_common(("GET", ATTESTATION), False),
                    write_drop_applied=Expect(True, warn="answer to the provisioning was lost, but a re-read"),
                    write_drop_lost=Expect(False, ("outcome unknown", "re-read shows the secure element is not provisioned")))),
    Row("role", "fresh",
        tasks=[{"name": "role under test", "ansible.builtin.include_role": {"name": "encedo.hem.device"}}],
        read=("GET", CONFIG), write=("POST", CONFIG), declared=frozenset({"init", "checked", "user", "http_option_hsts"}),
        marker=("GET", CONFIG), auth_request=("GET", CONFIG), idempotent=True, logins=1, logins_after_reboot=1,
        expect=dict(_common(("GET", CONFIG), False),
                    # The role logs in once (encedo_device); the token dies right after (expiry, or a reboot) and the
                    # configuration read (for the attestation's genuine_id and the configuration step) is the first to
                    # meet it. That task logs in again,
                    # once, with the passphrase it gets too; the configuration after it uses the new
                    # token (no third login). After a reboot with trusted_ts on, the clock is unset: no
                    # login is possible, the task fails saying to check in (run 2 does and converges).
                    expire=Expect(True),
                    # After the reboot the clock is unset (trusted_ts off: logins still work), so the device stamps its
                    # attestation token with an unset clock: the attestation fails asking for a check-in (run 2 checks
                    # in and converges). The token renewal itself is judged as for the other scenarios.
                    reboot_mid=Expect(False, ("a token time before 2000 comes from an unset device clock", "run a check-in")),
                    reboot_mid_clock=Expect(False, (CHECKIN_HINT, "logging in again because GET %s refused the bearer token"
                                                    % re.escape(CONFIG))),
                    write_drop_applied=Expect(False, ("outcome unknown", "as requested now: http_option_hsts, user")),
                    write_drop_lost=Expect(False, ("outcome unknown", "none of the changed fields applied"))),
        hostvars={
            "encedo_hem_url": "{{ hem_url }}", "encedo_hem_ca_path": "{{ hem_ca_path }}", "encedo_hem_timeout": "{{ hem_timeout }}",
            "encedo_hem_passphrase": PW, "encedo_hem_master_passphrase": MASTER, "encedo_hem_backend_url": "{{ hem_backend_url }}",
            "encedo_hem_init": {"hostname": "hem{{ hem_index }}.emulator.test", "trusted_ts": "{{ hem_trusted_ts }}"},
            "encedo_hem_config": {"user": "Role declared", "http_option_hsts": True},
        },
        # the token scenarios: two tasks use the token after the login (attestation, then configuration)
        scenario_fleet={scen: "blank" for scen in ("expire", "reboot_mid", "reboot_mid_clock")},
        scenario_hostvars={scen: {"encedo_hem_attestation_trust_anchor_path": "{{ hem_custody_ca_path }}"}
                           for scen in ("expire", "reboot_mid", "reboot_mid_clock")}),
]
ROW = {row.name: row for row in ROWS}

SCENARIOS = ["read_fault", "write_drop_applied", "write_drop_lost", "busy", "slow", "expire", "reboot_between",
             "reboot_between_clock", "reboot_mid", "reboot_mid_clock", "restart"]
# The device reboots right after the first login of the run (between tasks); with the clock then
# unset, "reboot_mid" personalises with trusted_ts off (logins work), "reboot_mid_clock" with it on.
MID_PLAY = ("expire", "reboot_mid", "reboot_mid_clock")

# (row, scenario) pairs proven by another test: that test's node id.
COVERED_ELSEWHERE = {
    ("config", "write_drop_applied"): "tests/integration/test_config.py::test_outcome_unknown_rereads_the_config",
    ("config", "write_drop_lost"): "tests/integration/test_config.py::test_outcome_unknown_rereads_the_config",
    ("factory_reset", "write_drop_applied"): "tests/integration/test_config.py::test_factory_reset_lost_answer_is_resolved_by_the_device_state",
    ("reboot", "write_drop_lost"): "tests/integration/test_lifecycle.py::test_reboot_that_does_not_happen_fails_saying_so",
}
# (row, scenario) pairs that cannot happen: why.
NOT_APPLICABLE = {
    ("reboot", "write_drop_applied"): "the reboot request is a GET: the emulator never applies a dropped GET",
    ("init", "expire"): "personalisation uses no token",
    ("checkin", "expire"): "the check-in uses no token",
    ("attestation", "expire"): "provisioning happens before personalisation, without a token",
}
for _row in ("config", "tls", "init", "checkin", "reboot", "factory_reset", "attestation"):
    for _scen in ("reboot_mid", "reboot_mid_clock"):
        NOT_APPLICABLE[(_row, _scen)] = ("one task, which logs in by itself: a reboot between tasks is reboot_between, "
                                         "a token refused inside the task is expire")

CASES = [(row.name, scen) for row in ROWS for scen in SCENARIOS if scen in row.expect]


def host(row, scen):
    return "%s__%s" % (row, scen)


# ---------------------------------------------------------------------------- the runs

class Batch:
    """Devices, runs and logs of every (row, scenario) pair."""

    def __init__(self, tmp_path_factory):
        self.tmp = tmp_path_factory.mktemp("faults")
        self.ca_key, self.ca_cert, self.ca_pem, _unused = make_ca("Reliability TLS CA")
        self.custody_key, self.custody_cert, self.custody_pem, _unused = make_ca("Reliability custody CA")
        self.place = {}          # host -> (emu, index)
        self.vars = {}           # host -> extra host vars
        self.log1, self.log2 = {}, {}
        self.boot0 = {}
        self.boot1 = {}          # boot ids after run 1
        self.run1 = self.run2 = None
        self.restart_run1 = self.restart_run2 = None
        self.restart_info = {}

    # -------------------------------------------------------------- devices

    def start(self):
        main = [c for c in CASES if c[1] != "restart"]
        again = [c for c in CASES if c[1] == "restart"]
        groups = {}
        for name, scen in CASES:
            key = (ROW[name].fleet_of(scen), scen == "restart")
            groups.setdefault(key, []).append(host(name, scen))
        self.emus = {}
        for (fleet, restart), hosts in sorted(groups.items()):
            kwargs = dict(devices=len(hosts), rtc_set=True, reboot_seconds=1.0)
            if fleet == "personalised":
                kwargs["passphrase"] = PW
            elif fleet == "fresh":
                kwargs["se_fresh"] = True
            if restart:
                kwargs["state_dir"] = str(self.tmp / ("state-%s" % fleet))
            emu = start_emu(_Factory(self.tmp), "emu-%s-%s" % (fleet, "restart" if restart else "main"), **kwargs)
            self.emus[(fleet, restart)] = emu
            for i, name in enumerate(sorted(hosts)):
                self.place[name] = (emu, i)
        self.main_hosts = sorted(host(*c) for c in main)
        self.restart_hosts = sorted(host(*c) for c in again)

    def stop(self):
        for emu in self.emus.values():
            emu.stop()

    def setup(self):
        """Bring every device to its starting point, then clear its log."""
        reboots = []
        for name in self.main_hosts + self.restart_hosts:
            row, scen = name.split("__")
            emu, i = self.place[name]
            extra = {"hem_row": row, "hem_scenario": scen, "hem_passphrase": PW, "hem_master": MASTER,
                     "hem_timeout": {"slow": SLOW_TIMEOUT, "restart": HOLD + 30}.get(scen, 30),
                     "hem_wait_timeout": 4 if scen in ("write_drop_lost", "restart") else 20,
                     "hem_trusted_ts": scen not in ("reboot_between", "reboot_mid")}
            extra.update(ROW[row].hostvars)
            extra.update(ROW[row].scenario_hostvars.get(scen, {}))
            fleet = ROW[row].fleet_of(scen)
            trusted_off = row == "tls" or (scen == "reboot_between" and fleet == "personalised")
            if trusted_off:
                hem = emu.hem(i)
                hem.login(PW)
                assert hem.post(CONFIG, {"trusted_ts": False}).status == 200
            if row == "tls":
                served = served_certificate(emu.url(i), emu.ca_file)
                cert = issue(self.ca_key, self.ca_cert, served.public_key(), "hem%d.emulator.test" % i,
                             dns=["localhost", "hem%d.emulator.test" % i], ips=["127.0.0.1"])
                bundle = self.tmp / ("trust-%s.pem" % name)
                bundle.write_text(Path(emu.ca_file).read_text() + self.ca_pem)
                extra.update(hem_tls_cert=pem(cert), hem_ca_path=str(bundle))
            if row == "attestation":
                import base64
                from cryptography.hazmat.primitives import serialization
                answer = emu.hem(i).get(ATTESTATION, auth=False)
                assert answer.status == 200 and "key" in answer.json, answer
                se_key = serialization.load_der_public_key(base64.b64decode(answer.json["key"]))
                gid = emu.device(i)["genuine_id"]
                cert = issue(self.custody_key, self.custody_cert, se_key, "#" + gid)
                extra.update(hem_att_cert=pem(cert), hem_att_anchor=self.custody_pem)
            if row == "checkin":
                reboots.append((emu, i))
            if fleet == "personalised" and not trusted_off:
                # the device derives its stored key at the first login (PBKDF2): not inside a timed scenario
                emu.hem(i).login(PW)
            self.vars[name] = extra
        self.reboot(reboots)
        for name, (emu, i) in self.place.items():
            self.boot0[name] = emu.state(i)["boot_id"]
            assert emu.state(i)["rtc_set"] is (not name.startswith("checkin__")), name
            emu.clear_log(i)

    @staticmethod
    def reboot(devices):
        for emu, i in devices:
            emu.fault(i, "reboot")
        for emu, i in devices:
            assert emu.wait_up(i, timeout=30), "device %d did not come back" % i

    def inject(self):
        """Queue the fault of each pair's scenario on its device."""
        for name in self.main_hosts + self.restart_hosts:
            row, scen = name.split("__")
            r = ROW[row]
            emu, i = self.place[name]
            read_method, read_path = r.read
            if scen == "read_fault":
                emu.fault(i, "drop", count=2, path=read_path, method=read_method)
                emu.fault(i, "error500", count=2, path=read_path, method=read_method)
            elif scen in ("write_drop_applied", "write_drop_lost"):
                emu.fault(i, "drop", path=r.write[1], method=r.write[0], after_apply=scen == "write_drop_applied")
            elif scen == "busy":
                emu.fault(i, "busy", count=2, path=read_path, method=read_method)
            elif scen == "slow":
                emu.fault(i, "latency", count=RETRIES + 1, seconds=SLOW_TIMEOUT + 4, path=read_path, method=read_method)
            elif scen in MID_PLAY:
                # Holds the first authenticated request until the watcher has expired every token (or
                # rebooted the device, which is back after 1 s).
                emu.fault(i, "latency", count=1, seconds=4, path=r.auth_request[1], method=r.auth_request[0])
            elif scen == "restart":
                # The write waits at the device until the emulator process is killed under it.
                emu.fault(i, "latency", count=1, seconds=HOLD, path=r.write[1], method=r.write[0])

    # -------------------------------------------------------------- runs

    def host_vars(self, name, run):
        emu, i = self.place[name]
        extra = dict(self.vars[name])
        if run == 2:
            extra.update(hem_timeout=30, hem_wait_timeout=20)
        return emu, i, extra

    def start_modules(self, hosts, run):
        """Start the module rows' hosts of ``hosts``, each in a child process: -> ChildJobs."""
        jobs = {}
        for name in hosts:
            steps = ROW[name.split("__")[0]].steps
            if steps:
                emu, i, extra = self.host_vars(name, run)
                runner = ModuleRunner(emu, i, add_passphrase=False, **dict(device_vars(emu, i), **extra))
                prepared = [(step, runner.prepare("encedo.hem." + step.module, step.args, env=env_without_ca_overrides()))
                            for step in steps]
                jobs[name] = functools.partial(run_steps, prepared)
        return ChildJobs(jobs, self.tmp / ("children-%d" % run))

    def run_role(self, hosts, run):
        """Run the role rows' hosts of ``hosts`` in one ansible-playbook run: -> PlaybookRun (None: no such host)."""
        spec = dict((name, self.host_vars(name, run)) for name in hosts if ROW[name.split("__")[0]].tasks)
        if not spec:
            return None
        runner = FleetRunner(self.tmp / ("runner-%s-%d" % ("restart" if hosts is self.restart_hosts else "main", run)), spec)
        for row in ROWS:           # one task file per row, included by name: a host runs only its row's tasks
            if row.tasks:
                runner.write_playbook(row.tasks, name="row-%s.yml" % row.name)
        play = [{"name": "Reliability: faults", "hosts": "hem", "gather_facts": False, "strategy": "free",
                 "tasks": [{"name": "row", "ansible.builtin.include_tasks": "row-{{ hem_row }}.yml"}]}]
        env = dict(env_without_ca_overrides(), ANSIBLE_FORKS="16")
        return runner.run_playbook(play, env=env, timeout=600)

    def run(self, run, during=None):
        """Run ``run`` (1 or 2) of every host, main and restart alike, with ``during`` (threads) started once the
        module hosts' children are: -> (main hosts' PlaybookRun, restart hosts' PlaybookRun), see merge_runs."""
        children = self.start_modules(self.main_hosts + self.restart_hosts, run)
        for thread in during or ():
            thread.start()
        restart_job = Background(self.run_role, self.restart_hosts, run)
        main_role = self.run_role(self.main_hosts, run)
        restart_role = restart_job.result()
        modules = children.results(timeout=600)
        return merge_runs(main_role, modules), merge_runs(restart_role, modules)

    def expire_watcher(self, stop):
        """Expire every token of a device (or reboot it) as soon as its first login succeeded (the next request
        is held by latency)."""
        pending = {name: self.place[name] for name in self.main_hosts if name.split("__")[1] in MID_PLAY}
        while pending and not stop.is_set():
            for name, (emu, i) in list(pending.items()):
                try:
                    if logins(emu.log(i)):
                        emu.fault(i, "expire_tokens" if name.endswith("__expire") else "reboot")
                        pending.pop(name)
                except OSError:
                    pass
            time.sleep(0.1)

    def restart_watcher(self, stop):
        """When every restart device of an emulator holds its write, keep their logs and restart that emulator
        (same ports, same state dir): a device process that dies in the middle of a write and comes back."""
        by_emu = {}
        for name in self.restart_hosts:
            emu, _i = self.place[name]
            by_emu.setdefault(id(emu), (emu, []))[1].append(name)
        threads = [threading.Thread(target=self._restart_one, args=(emu, names, stop), daemon=True) for emu, names in by_emu.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)

    def _restart_one(self, emu, names, stop):
        def reached():
            for name in names:
                method, path = ROW[name.split("__")[0]].marker
                try:
                    log = emu.log(self.place[name][1])
                except OSError:
                    return False
                if not [e for e in on(log, method, path) if e["status"] == 200]:
                    return False
            return True

        def held():
            # the write's latency fault (the only one queued on a restart device) taken: the write is held now
            return all(not emu.state(self.place[name][1])["faults"] for name in names)

        seen = wait_for(lambda: stop.is_set() or reached(), timeout=HOLD - 10, interval=0.2)
        seen = seen and wait_for(lambda: stop.is_set() or held(), timeout=HOLD - 10, interval=0.2)
        if stop.is_set():
            return
        for name in names:
            self.log1[name] = list(emu.log(self.place[name][1]))
        self.restart_info[id(emu)] = {"markers_reached": seen, "hosts": names}
        emu.restart_in_place()

    def go(self):
        self.start()
        self.setup()
        self.inject()
        stop = threading.Event()
        watchers = [threading.Thread(target=self.expire_watcher, args=(stop,), daemon=True),
                    threading.Thread(target=self.restart_watcher, args=(stop,), daemon=True)]
        try:
            self.run1, self.restart_run1 = self.run(1, during=watchers)
        finally:
            stop.set()
        for w in watchers:
            w.join(30)
        # between the runs: no fault left; follow the instructions of the failures; reboot between tasks
        for name, (emu, i) in self.place.items():
            emu.clear_faults(i)
            self.log1[name] = self.log1.get(name, []) + list(emu.log(i))
            self.boot1[name] = emu.state(i)["boot_id"]
        between = [self.place[n] for n in self.main_hosts
                   if n.split("__")[1] in ("reboot_between", "reboot_between_clock")
                   or n in ("tls__write_drop_applied", "tls__write_drop_lost")]
        self.reboot(between)
        for name, (emu, i) in self.place.items():
            emu.clear_log(i)
        self.run2, self.restart_run2 = self.run(2)
        for name, (emu, i) in self.place.items():
            self.log2[name] = list(emu.log(i))

    def runs(self, name):
        if name in self.restart_hosts:
            return self.restart_run1, self.restart_run2
        return self.run1, self.run2


class _Factory:
    """tmp_path_factory look-alike rooted in one directory."""

    def __init__(self, root):
        self.root = Path(root)
        self.n = 0

    def mktemp(self, name):
        self.n += 1
        path = self.root / ("%s-%d" % (name, self.n))
        path.mkdir()
        return path


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    b = Batch(tmp_path_factory)
    try:
        b.go()
        yield b
    finally:
        if getattr(b, "emus", None):
            b.stop()


# ---------------------------------------------------------------------------- what each pair must show

def outcome(run, name):
    """(ok, failure message, warnings) of a host in a run."""
    failed = host_failures(run, name)
    assert run.results(host=name), "host %s ran no task\n%s" % (name, run.tail())
    msg = failed[0].msg if failed else ""
    return not failed, msg, host_warnings(run, name)


def verify_state(batch, row, name):
    emu, i = batch.place[name]
    state = emu.state(i)
    cfg = state["config"]
    if row == "config":
        assert (cfg["user"], cfg["ctx"], cfg["http_option_hsts"]) == ("Reliability", 42, True), cfg
    elif row == "tls":
        served = served_certificate(emu.url(i), batch.vars[name]["hem_ca_path"])
        assert pem(served) == batch.vars[name]["hem_tls_cert"], "the device does not serve the declared certificate"
        assert state["pending_tls"] is False
    elif row == "init":
        assert state["personalised"] and cfg["user"] == "Reliability" and cfg["hostname"] == "hem%d.emulator.test" % i, state
    elif row == "checkin":
        assert state["rtc_set"] is True
    elif row == "reboot":
        assert state["boot_id"] != batch.boot0[name] and state["rtc_set"] is True, state
    elif row == "factory_reset":
        assert state["personalised"] is False
    elif row == "attestation":
        assert state["se_provisioned"] is True
    elif row == "role":
        assert state["personalised"] and cfg["user"] == "Role declared" and cfg["http_option_hsts"] is True, state
    else:
        raise AssertionError("no state check for row %s" % row)


def check_expectation(exp, ok, msg, warnings, where):
    if exp.ok is not None:
        assert ok is exp.ok, "%s: expected %s, got %s: %s" % (where, "success" if exp.ok else "failure", "success" if ok else "failure", msg)
    if not ok:
        for pattern in exp.msg:
            assert re.search(pattern, msg), "%s: message does not match %r: %s" % (where, pattern, msg)
    if exp.warn:
        assert any(re.search(exp.warn, w) for w in warnings), "%s: no warning matches %r: %s" % (where, exp.warn, warnings)


def brief(log):
    return " ".join("%s %s %s%s" % (e["method"], e["path"], e["status"], ("[%s]" % ",".join(e["keys"])) if e["keys"] else "")
                    for e in log)


@pytest.mark.parametrize("row,scen", CASES, ids=["%s-%s" % c for c in CASES])
def test_fault(batch, row, scen):
    name = host(row, scen)
    try:
        judge(batch, row, scen)
    except AssertionError as exc:
        raise AssertionError("%s\n--- run 1 requests: %s\n--- run 2 requests: %s"
                             % (exc, brief(batch.log1[name]), brief(batch.log2[name]))) from None


def judge(batch, row, scen):
    r = ROW[row]
    name = host(row, scen)
    run1, run2 = batch.runs(name)
    log1, log2 = batch.log1[name], batch.log2[name]
    exp = r.expect[scen]
    ok, msg, warnings = outcome(run1, name)
    between = scen in ("reboot_between", "reboot_between_clock")      # run 1 applies; the scenario is about run 2
    check_expectation(Expect(True) if between else exp, ok, msg, warnings, "%s run 1" % name)

    read = on(log1, *r.read)
    write = on(log1, *r.write)
    if scen == "read_fault":
        # bounded retries: exactly 1 + RETRIES tries of the read, then nothing written
        assert [e["status"] for e in read] == [None, None, 500, 500], read
        assert write == [], write
    elif scen == "busy":
        assert [e["status"] for e in read][:3] == [409, 409, 200], read
        assert len(logins(log1)) == r.logins, logins(log1)
    elif scen == "slow":
        # (a try that timed out in the TLS handshake of a loaded device never reaches its log)
        assert write == [], write
        assert len(read) <= RETRIES + 1, read
    elif scen in ("write_drop_applied", "write_drop_lost"):
        # no blind retry of the write
        assert [e["status"] for e in write] == [None], write
    elif scen in MID_PLAY:
        # one refusal of the dead token, then exactly one new login (none when the clock is unset)
        new_logins = 0 if scen == "reboot_mid_clock" else 1
        assert len(logins(log1)) == r.logins + new_logins, "exactly %d new login(s) after the fault: %s" % (new_logins, logins(log1))
        refused = [e for e in log1 if e["status"] == 401]
        assert [(e["method"], e["path"]) for e in refused] == [r.auth_request], refused
        first = log1.index(logins(log1)[0])
        after = log1[log1.index(refused[0]):]
        if scen == "reboot_mid_clock":
            assert logins(after, status=None) == [], logins(log1, status=None)
            assert [e["status"] for e in on(after, "GET", TOKEN_PATH)] == [403], after
        elif row == "role":   # the tasks after the one that logged in again use its token: no other login
            assert len(logins(after, status=None)) == 1, after
        # every authenticated request after the new login carried the new token (the device accepted them)
        assert all(e["status"] == 200 for e in log1[first:] if e["auth"] == "bearer" and e is not refused[0]), log1[first:]
        if scen != "expire":
            assert batch.boot1[name] != batch.boot0[name], "the device did not reboot mid-play"
    elif scen == "restart":
        info = batch.restart_info
        assert info and all(v["markers_reached"] for v in info.values()), "the restart did not hit every write in flight: %s" % info
        assert write == [], "the write held at the device was applied before the restart: %s" % write

    # the run after: every device converges (except where the clock must be set first)
    ok2, msg2, warnings2 = outcome(run2, name)
    if between:
        check_expectation(exp, ok2, msg2, warnings2, "%s run 2" % name)
    if scen == "reboot_between_clock" and not exp.ok:
        assert not ok2 and CHECKIN_HINT in msg2, "%s run 2: %s" % (name, msg2)
        assert logins(log2, status=None) == [] and [e for e in log2 if e["method"] == "POST"] == [], log2
    else:
        assert ok2, "%s run 2 (no fault) did not converge: %s" % (name, msg2)
        verify_state(batch, row, name)
        if scen == "reboot_between":
            assert len(logins(log2)) == r.logins_after_reboot, "%s: logins after the reboot: %s" % (name, logins(log2))

    # what was written: only declared fields; none applied twice
    dropped_applied = scen == "write_drop_applied"
    assert_writes_declared(log1 + log2, r.declared, name)
    assert_no_field_twice(applied_writes(log1, dropped_applied), name + " run 1")
    assert_no_field_twice(applied_writes(log2), name + " run 2")
    if r.idempotent:
        assert_no_field_twice(applied_writes(log1, dropped_applied) + applied_writes(log2), name + " runs 1+2")


def test_every_pair_is_tested_or_accounted_for():
    """Each (writer, scenario) pair is in the table, proven by a named test elsewhere, or impossible."""
    for row in ROWS:
        for scen in SCENARIOS:
            key = (row.name, scen)
            places = [scen in row.expect, key in COVERED_ELSEWHERE, key in NOT_APPLICABLE]
            assert places.count(True) == 1, "%s: in the table %s, covered elsewhere %s, not applicable %s" % ((key,) + tuple(places))
    for key, node in COVERED_ELSEWHERE.items():
        path, func = node.split("::")
        text = (REPO / path).read_text()
        assert re.search(r"^def %s\(" % re.escape(func), text, re.M), "%s names %s, which no longer exists" % (key, node)
