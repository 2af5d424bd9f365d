# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fleet benchmark of the encedo.hem.device role (a benchmark, not a test: `make test` skips it).

    .venv/bin/python tests/perf/fleet.py                          # N = 1, 10, 100 devices, forks 50
    .venv/bin/python tests/perf/fleet.py --large                  # adds N = 300
    .venv/bin/python tests/perf/fleet.py --devices 10 --forks 10  # one size

For each size N it starts N factory-fresh emulated devices (`--auth-delay 0.5`, the real
device's login cost; a control port for the request logs) and runs, through
ansible-runner (the executor AWX uses) at forks F:

1. converge: playbooks/site.yml takes every device from factory-fresh to the declared state
   (personalise, check in, log in, attestation, configuration, TLS certificate from a CA
   made for the run, reboot);
2. no-op: the same playbook again (nothing to change);
3. floor (alternating with the no-op run, `--repeat` times, default 2; the fastest run of
   each counts): a fixed yardstick play of 12 tasks per host, the task shape of the role's
   no-op run when issue 15 ("One core") was filed: 5 tasks run `ansible.builtin.ping`
   (module execution is part of the cost of Ansible), 4 run `ansible.builtin.debug` (tasks
   on the controller: set_fact, include, assert...), 3 are skipped. All with
   `connection: local`, like the role. The yardstick stays fixed, so a no-op that needs
   fewer module runs per host counts as the gain it is; the no-op's own task shape (module
   runs per host) is reported beside the ratio. A second floor with `ansible.builtin.debug`
   only (no module process at all) is shown in the table for reference.

Reported per size: wall times, ratio no-op/floor, HTTP requests and logins per host and
POSTs other than logins during the no-op run (from the emulator's request logs), and the
controller's peak memory: the sum over the ansible-runner process tree (runner,
ansible-playbook, its forks and the module processes) of each process's proportional set
size (PSS: RSS with pages shared between forks counted once), sampled every 0.25 s; the
emulator is not part of it. The target is a no-op within 1.5 x floor plus one login delay
(0.5 s) per fork batch. The table is printed, then one JSON object per size; the last line
is the JSON object of the last size.

The emulator runs on the same machine and competes for its CPUs: its CPU time per run is
shown in the table, with the machine's 1-minute load average at the end of the no-op and
floor runs (wall times taken while other work loads the machine are not comparable). The
controller CPU time (all processes of the run, user + system) of the no-op and floor runs
and their ratio are shown too: unlike wall time, they hardly depend on the machine's load.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import psutil
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from tests.emulator.harness import Emulator  # noqa: E402  pylint: disable=wrong-import-position
from tests.emulator.util import write_ca  # noqa: E402  pylint: disable=wrong-import-position

BIN = os.path.dirname(sys.executable)
SITE = os.path.join(REPO, "playbooks", "site.yml")
AUTH_DELAY = 0.5
REBOOT_SECONDS = 3.0          # the emulator CLI's default
FORMAT_SECONDS = 3.0          # the emulator CLI's default (--format-seconds): a PPA formats after personalisation
SIZES = [1, 10, 100]
LARGE = 300
# Tasks that run on the controller only (no module process): mirrored by ansible.builtin.debug.
CONTROLLER_ACTIONS = {
    "ansible.builtin." + name for name in (
        "set_fact", "debug", "assert", "fail", "include_tasks", "import_tasks", "include_role", "import_role", "meta",
        "validate_argument_spec", "include_vars", "add_host", "group_by", "pause", "set_stats")}
RESULT_EVENTS = ("runner_on_ok", "runner_on_skipped", "runner_on_failed", "runner_on_unreachable")


def log(msg):
    print("[fleet] " + msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- set-up

def write_inventory(path, emu, workdir):
    """Every device with the full role: personalisation, attestation, configuration, TLS."""
    _cert, cert_path, key_path = write_ca(workdir, "Fleet benchmark CA", "encedo.hem benchmark")
    bundle = os.path.join(workdir, "trust.pem")
    with open(bundle, "w") as out, open(emu.ca_file) as emu_ca, open(cert_path) as our_ca:
        out.write(emu_ca.read() + our_ca.read())
    group_vars = {
        "ansible_connection": "local",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "encedo_hem_passphrase": "bench-" + secrets.token_urlsafe(12),
        "encedo_hem_master_passphrase": "bench-master-" + secrets.token_urlsafe(12),
        "encedo_hem_ca_path": bundle,
        "encedo_hem_backend_url": emu.backend_url,
        "encedo_hem_reboot_timeout": 300,
        "encedo_hem_attestation_trust_anchor_path": emu.custody_ca_file,
        # 127.0.0.1 in the device's CSR makes its new certificate valid for the emulator URL.
        "encedo_hem_init": {"ip": "127.0.0.1/8", "hostname": "{{ inventory_hostname }}.emulator.test"},
        "encedo_hem_config": {"user": "Fleet benchmark", "http_option_hsts": True, "allow_keysearch": False},
        "encedo_hem_tls_issuer_cert_path": cert_path,
        "encedo_hem_tls_issuer_key_path": key_path,
    }
    hosts = {"hem%d" % i: {"encedo_hem_url": emu.url(i)} for i in range(emu.devices)}
    with open(path, "w") as handle:
        yaml.safe_dump({"all": {"vars": group_vars, "children": {"hem": {"hosts": hosts}}}}, handle, sort_keys=True)
    return path


def collections_root(workdir):
    """ansible_collections/encedo/hem -> this checkout (no `make link` needed)."""
    root = os.path.join(workdir, "collections")
    os.makedirs(os.path.join(root, "ansible_collections", "encedo"), exist_ok=True)
    link = os.path.join(root, "ansible_collections", "encedo", "hem")
    if not os.path.islink(link):
        os.symlink(REPO, link)
    return root


# ---------------------------------------------------------------------------------------------- measuring

class TreeMemory(threading.Thread):
    """Peak of the summed PSS (RSS where PSS is unavailable) of a process and its descendants."""

    def __init__(self, pid, interval=0.25):
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._halt = threading.Event()

    @staticmethod
    def _size(proc):
        try:
            info = proc.memory_full_info()
            return getattr(info, "pss", info.rss)
        except (psutil.AccessDenied, AttributeError):
            return proc.memory_info().rss

    def run(self):
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._halt.is_set():
            total = 0
            try:
                procs = [root] + root.children(recursive=True)
            except psutil.NoSuchProcess:
                break
            for proc in procs:
                try:
                    total += self._size(proc)
                except (psutil.NoSuchProcess, psutil.ZombieProcess):
                    pass
            self.peak = max(self.peak, total)
            self._halt.wait(self.interval)

    def stop(self):
        self._halt.set()
        self.join(5)
        return self.peak


class Job:
    """One ansible-runner run; its events, and the emulator's request logs during it."""

    def __init__(self, name, playbook, inventory, forks, workdir, coll_root, emu):
        self.name, self.playbook, self.inventory, self.forks = name, playbook, inventory, forks
        self.pdd = os.path.join(workdir, "jobs", name)
        self.coll_root = coll_root
        self.emu = emu
        self.events = []
        self.logs = {}
        self.wall = self.peak_bytes = self.controller_cpu = self.emulator_cpu = self.load = None
        self.rc = None

    def run(self, record_requests=True):
        os.makedirs(os.path.join(self.pdd, "env"), exist_ok=True)
        with open(os.path.join(self.pdd, "env", "envvars"), "w") as handle:
            yaml.safe_dump({"ANSIBLE_COLLECTIONS_PATH": self.coll_root}, handle)
        home = os.path.join(self.pdd, "home")
        os.makedirs(home, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "ENCEDO_HEM_"))}
        env.update(PATH=BIN + os.pathsep + env.get("PATH", "/usr/bin:/bin"), HOME=home)
        argv = [os.path.join(BIN, "ansible-runner"), "run", self.pdd, "--ident", "run", "-p", self.playbook,
                "--project-dir", REPO, "--inventory", self.inventory, "--forks", str(self.forks), "-q"]
        if record_requests:
            for i in range(self.emu.devices):
                self.emu.clear_log(i)
        emulator = psutil.Process(self.emu.proc.pid)
        emu_cpu0 = sum(emulator.cpu_times()[:2])
        usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        sampler = TreeMemory(proc.pid)
        sampler.start()
        output = proc.communicate()[0]
        self.wall = time.monotonic() - start
        self.peak_bytes = sampler.stop()
        usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.controller_cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
        self.emulator_cpu = sum(emulator.cpu_times()[:2]) - emu_cpu0
        self.load = os.getloadavg()[0]      # the machine's 1-minute load average at the end of the run
        self.rc = proc.returncode
        self.runner_output = output
        events_dir = os.path.join(self.pdd, "artifacts", "run", "job_events")
        for name in sorted(os.listdir(events_dir), key=lambda n: int(n.split("-", 1)[0])):
            with open(os.path.join(events_dir, name)) as handle:
                self.events.append(json.load(handle))
        if record_requests:
            self.logs = {i: self.emu.log(i) for i in range(self.emu.devices)}
        return self

    @property
    def stdout(self):
        with open(os.path.join(self.pdd, "artifacts", "run", "stdout")) as handle:
            return handle.read()

    def stats(self):
        found = [e["event_data"] for e in self.events if e.get("event") == "playbook_on_stats"]
        return found[0] if found else {}

    def check(self, hosts, expect_changed=None):
        """Exit with the output tail unless every host finished without failure."""
        stats = self.stats()
        problems = []
        if self.rc != 0:
            problems.append("rc=%s" % self.rc)
        if set(stats.get("processed", {})) != set(hosts):
            problems.append("ran on %d hosts, expected %d" % (len(stats.get("processed", {})), len(hosts)))
        bad = sorted(set(stats.get("failures", {})) | set(stats.get("dark", {})))
        if bad:
            problems.append("failed or unreachable: %s" % ", ".join(bad[:10]))
        if expect_changed is False and stats.get("changed"):
            problems.append("changed on %s" % ", ".join(sorted(stats["changed"])[:10]))
        if problems:
            log("%s run: %s\n%s" % (self.name, "; ".join(problems), self.stdout[-5000:]))
            sys.exit(1)

    def task_kinds(self):
        """{host: [kind, ...]} in execution order: 'module', 'controller' or 'skipped'."""
        kinds = {}
        for event in self.events:
            if event.get("event") not in RESULT_EVENTS:
                continue
            data = event["event_data"]
            if event["event"] == "runner_on_skipped":
                kind = "skipped"
            elif data.get("resolved_action") in CONTROLLER_ACTIONS:
                kind = "controller"
            else:
                kind = "module"
            kinds.setdefault(data["host"], []).append(kind)
        return kinds

    def task_spans(self, top=8):
        """Where the run's wall time went: per task name, the span from its first host's start to its last host's end
        (seconds), and the summed per-host durations; the ``top`` longest spans, longest first."""
        spans = {}
        for event in self.events:
            data = event.get("event_data", {})
            if event.get("event") not in RESULT_EVENTS or not data.get("start") or not data.get("end"):
                continue
            start, end = (datetime.datetime.fromisoformat(data[k]).timestamp() for k in ("start", "end"))
            entry = spans.setdefault(data.get("task", "?"), [start, end, 0.0])
            entry[0], entry[1], entry[2] = min(entry[0], start), max(entry[1], end), entry[2] + (end - start)
        rows = sorted(((name, round(e[1] - e[0], 1), round(e[2], 1)) for name, e in spans.items()), key=lambda r: -r[1])
        return rows[:top]

    def reboots(self):
        return sum(1 for entries in self.logs.values() for e in entries if e["path"] == "/api/system/reboot")

    def requests(self):
        return sum(len(entries) for entries in self.logs.values())

    def logins(self):
        return sum(1 for entries in self.logs.values() for e in entries
                   if e["method"] == "POST" and e["path"].startswith("/api/auth/token"))

    def writes(self):
        return sum(1 for entries in self.logs.values() for e in entries
                   if e["method"] == "POST" and not e["path"].startswith("/api/auth/token"))


#: The floor's tasks per host: the role's no-op task shape when issue 15 was filed (12 tasks: status, 2 skipped
#: includes, login, attestation, configuration, the TLS include, its run_once check and CSR check, a skipped include,
#: the token fact and the skipped reboot notice). Fixed on purpose: it is the yardstick the no-op is measured against.
FLOOR_SHAPE = ("module", "skipped", "skipped", "module", "module", "module", "controller", "controller", "module", "skipped",
               "controller", "controller")


def floor_playbook(path, debug_only=False):
    """The yardstick play: FLOOR_SHAPE per host, each task a no-op of its kind."""
    tasks = []
    for number, kind in enumerate(FLOOR_SHAPE, 1):
        if kind == "module" and not debug_only:
            tasks.append({"name": "Floor task %d (module)" % number, "ansible.builtin.ping": None})
        else:
            task = {"name": "Floor task %d (%s)" % (number, kind), "ansible.builtin.debug": {"msg": "floor"}}
            if kind == "skipped":
                task["when"] = False
            tasks.append(task)
    play = [{"name": "Floor: the cost of Ansible itself", "hosts": "all", "gather_facts": False, "connection": "local",
             "tasks": tasks}]
    with open(path, "w") as handle:
        yaml.safe_dump(play, handle, sort_keys=False)
    return path


def shape(kinds):
    """(longest task sequence of the no-op run, number of distinct sequences among the hosts)."""
    sequences = {tuple(seq) for seq in kinds.values()}
    return max(sequences, key=len), len(sequences)


# ---------------------------------------------------------------------------------------------- one size

def run_size(devices, forks, repeat=2, keep=False):
    workdir = tempfile.mkdtemp(prefix="hem-fleet-%d-" % devices)
    hosts = ["hem%d" % i for i in range(devices)]
    log("N=%d forks=%d: starting %d emulated devices (auth delay %.1f s) in %s" % (devices, forks, devices, AUTH_DELAY, workdir))
    emu = Emulator(devices=devices, auth_delay=AUTH_DELAY, control=True, reboot_seconds=REBOOT_SECONDS,
                   tmp_path=os.path.join(workdir, "emulator"), start_timeout=max(30.0, devices * 0.5))
    os.makedirs(emu.tmp_path, exist_ok=True)
    emu.start()
    try:
        inventory = write_inventory(os.path.join(workdir, "inventory.yml"), emu, workdir)
        coll = collections_root(workdir)

        def job(name, playbook, record=True):
            log("N=%d: %s run..." % (devices, name))
            done = Job(name, playbook, inventory, forks, workdir, coll, emu).run(record_requests=record)
            log("N=%d: %s run took %.1f s" % (devices, name, done.wall))
            return done

        converge = job("converge", SITE)
        converge.check(hosts)
        # No-op and floor alternate `repeat` times; the fastest of each counts (the usual
        # estimator when other work on the machine can only slow a run down).
        noops, floors = [], []
        for attempt in range(1, repeat + 1):
            noop = job("no-op-%d" % attempt, SITE)
            noop.check(hosts, expect_changed=False)
            noops.append(noop)
            if attempt == 1:
                kinds = noop.task_kinds()
                floor_path = floor_playbook(os.path.join(workdir, "floor.yml"))
            floor = job("floor-%d" % attempt, floor_path, record=False)
            floor.check(hosts)
            floors.append(floor)
        debug_path = floor_playbook(os.path.join(workdir, "floor-debug.yml"), debug_only=True)
        floor_debug = job("floor-debug-only", debug_path, record=False)
        floor_debug.check(hosts)
    finally:
        emu.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    noop = min(noops, key=lambda j: j.wall)
    floor = min(floors, key=lambda j: j.wall)
    # Request accounting: the worst of the no-op runs.
    requests = max(j.requests() for j in noops)
    logins = max(j.logins() for j in noops)
    writes = max(j.writes() for j in noops)
    batches = math.ceil(devices / min(forks, devices))
    target = 1.5 * floor.wall + batches * AUTH_DELAY
    # Converging: what the device imposes on each batch of forks (its login delay per login, the reboot and the
    # storage format after personalisation, from the emulator's options) against the rest (the controller's work).
    per_host_logins = converge.logins() / devices
    imposed = batches * (per_host_logins * AUTH_DELAY + (converge.reboots() / devices) * REBOOT_SECONDS + FORMAT_SECONDS)
    seq, variants = shape(kinds)
    return {
        "result": {
            "devices": devices,
            "forks": forks,
            "converge_s": round(converge.wall, 1),
            "noop_s": round(noop.wall, 1),
            "floor_s": round(floor.wall, 1),
            "ratio": round(noop.wall / floor.wall, 2),
            "module_runs_per_host": seq.count("module"),
            "requests_per_host": round(requests / devices, 2),
            "logins_per_host": round(logins / devices, 2),
            "noop_posts": writes,
            "peak_rss_mb": round(max(j.peak_bytes for j in [converge] + noops) / 2 ** 20, 1),
        },
        "extra": {
            "target_s": round(target, 1),
            "met": noop.wall <= target and logins == devices and writes == 0,
            "runs": "no-op %s, floor %s" % (" ".join("%.1f" % j.wall for j in noops), " ".join("%.1f" % j.wall for j in floors)),
            "floor_debug_s": round(floor_debug.wall, 1),
            "tasks_per_host": len(seq),
            "floor_task_mix": "%d module, %d controller, %d skipped" % (FLOOR_SHAPE.count("module"), FLOOR_SHAPE.count("controller"),
                                                                        FLOOR_SHAPE.count("skipped")),
            "task_mix": "%d module, %d controller, %d skipped" % (seq.count("module"), seq.count("controller"),
                                                                  seq.count("skipped")),
            "task_variants": variants,
            "converge_requests_per_host": round(converge.requests() / devices, 2),
            "converge_breakdown": {"device_imposed_s": round(imposed, 1), "controller_s": round(converge.wall - imposed, 1),
                                   "logins_per_host": round(per_host_logins, 2),
                                   "reboots_per_host": round(converge.reboots() / devices, 2),
                                   "longest_tasks": converge.task_spans()},
            "converge_logins_per_host": round(converge.logins() / devices, 2),
            "noop_controller_cpu_s": round(noop.controller_cpu, 1),
            "floor_controller_cpu_s": round(floor.controller_cpu, 1),
            "cpu_ratio": round(noop.controller_cpu / floor.controller_cpu, 2) if floor.controller_cpu else None,
            "noop_emulator_cpu_s": round(noop.emulator_cpu, 1),
            "floor_peak_mb": round(floor.peak_bytes / 2 ** 20, 1),
            "load": "%.1f / %.1f" % (noop.load, floor.load),
            "workdir": workdir if keep else None,
        },
    }


# ---------------------------------------------------------------------------------------------- output

COLUMNS = [
    ("devices", "N", lambda r, x: r["devices"]),
    ("forks", "forks", lambda r, x: r["forks"]),
    ("converge", "converge s", lambda r, x: r["converge_s"]),
    ("noop", "no-op s", lambda r, x: r["noop_s"]),
    ("floor", "floor s", lambda r, x: r["floor_s"]),
    ("ratio", "no-op/floor", lambda r, x: r["ratio"]),
    ("modules", "module runs/host", lambda r, x: r["module_runs_per_host"]),
    ("target", "target s", lambda r, x: "%s %s" % (x["target_s"], "met" if x["met"] else "MISSED")),
    ("req", "requests/host", lambda r, x: r["requests_per_host"]),
    ("logins", "logins/host", lambda r, x: r["logins_per_host"]),
    ("posts", "no-op POSTs", lambda r, x: r["noop_posts"]),
    ("rss", "peak MB", lambda r, x: r["peak_rss_mb"]),
    ("debug", "floor debug-only s", lambda r, x: x["floor_debug_s"]),
    ("cpu", "controller CPU s no-op/floor (ratio)", lambda r, x: "%s / %s (%s)" % (
        x["noop_controller_cpu_s"], x["floor_controller_cpu_s"], x["cpu_ratio"])),
    ("emucpu", "emulator CPU s no-op", lambda r, x: x["noop_emulator_cpu_s"]),
    ("load", "load no-op/floor", lambda r, x: x["load"]),
    ("runs", "all runs s", lambda r, x: x["runs"]),
]


def table(rows):
    head = "| " + " | ".join(title for _k, title, _f in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _c in COLUMNS) + "|"
    lines = [head, rule]
    for row in rows:
        lines.append("| " + " | ".join(str(fn(row["result"], row["extra"])) for _k, _t, fn in COLUMNS) + " |")
    return "\n".join(lines)


def machine():
    return "%d CPUs, %s, Python %s" % (os.cpu_count() or 0, sys.platform, sys.version.split()[0])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--devices", type=int, help="run one fleet size only")
    parser.add_argument("--forks", type=int, default=50, help="Ansible forks (default 50)")
    parser.add_argument("--large", action="store_true", help="add a fleet of %d devices" % LARGE)
    parser.add_argument("--repeat", type=int, default=2, help="no-op and floor runs per size, the fastest counts (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the work directories (events, inventories)")
    args = parser.parse_args(argv)
    if (args.devices is not None and args.devices < 1) or args.forks < 1 or args.repeat < 1:
        parser.error("--devices, --forks and --repeat must be positive")
    sizes = [args.devices] if args.devices else SIZES + ([LARGE] if args.large else [])
    rows = []
    for size in sizes:
        rows.append(run_size(size, args.forks, repeat=args.repeat, keep=args.keep))
    tasks = rows[-1]["extra"]
    print("encedo.hem fleet benchmark: ansible-runner, emulator auth delay %.1f s, reboot %.0f s; %s" % (
        AUTH_DELAY, REBOOT_SECONDS, machine()))
    print("per host: no-op %d tasks (%s); floor %d tasks (%s); no-op target = 1.5 x floor + %.1f s per fork batch" % (
        tasks["tasks_per_host"], tasks["task_mix"], len(FLOOR_SHAPE), tasks["floor_task_mix"], AUTH_DELAY))
    print(table(rows))
    for row in rows:
        b = row["extra"]["converge_breakdown"]
        print("converge N=%d: %.1f s = %.1f s the device imposes (login delay x %.2f logins, %.2f reboots of %.0f s, a %.0f s "
              "storage format, per fork batch) + %.1f s of controller work; longest tasks (span s, host-seconds): %s" % (
                  row["result"]["devices"], row["result"]["converge_s"], b["device_imposed_s"], b["logins_per_host"],
                  b["reboots_per_host"], REBOOT_SECONDS, FORMAT_SECONDS, b["controller_s"],
                  "; ".join("%s %.1f/%.1f" % task for task in b["longest_tasks"])))
    for row in rows:
        print(json.dumps(row["result"], sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
