# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run real ``ansible-playbook`` against a running HEM emulator.

API (the pytest fixture ``hem_playbook`` in tests/integration/conftest.py builds these)::

    runner = PlaybookRunner(emu, workdir, devices=None, host_vars=None, group="hem")
    runner.inventory                      # path of the generated YAML inventory
    runner.hosts                          # ["hem0", "hem1", ...]
    run = runner.run_playbook(path_or_yaml_text_or_list, extra_vars=..., check=False, diff=False, verbosity=0)
    run.rc, run.stdout, run.stderr, run.output (stdout + stderr), run.command
    run.tasks                             # [TaskResult] in execution order
    run.results(task=None, host=None, action=None, status=None) -> [TaskResult]
    run.result(task, host=None) -> dict   # the one result of that task (on that host)
    run.stats                             # {host: {"ok", "changed", "failures", ...}}
    run.assert_ok()                       # AssertionError with the output tail unless rc == 0

Options of run_playbook (keyword only): ``extra_vars`` (dict, passed as JSON),
``check``, ``diff``, ``verbosity`` (0-4, i.e. -v..-vvvv), ``limit``, ``tags``, ``env``
(extra environment variables; value None removes one), ``timeout`` (seconds, default
600), ``cwd``.

Each host of the inventory is one emulated device (all devices by default) with the
variables ``hem_index``, ``hem_url``, ``hem_http_url``, ``hem_ca_path``,
``hem_custody_ca_path``, ``hem_factory_ca_path``, ``hem_backend_url``, ``hem_control_url`` (the emulator's
control base URL: add ``/devices/{{ hem_index }}/...``), ``hem_devid``,
``hem_passphrase`` (only when the emulator was started with one), ``ansible_connection:
local`` and ``ansible_python_interpreter: "{{ ansible_playbook_python }}"``; ``host_vars``
adds or overrides variables for every host.

The integration targets (tests/integration/targets/) are not run from here: each runs
once, under ``ansible-test integration`` (``make integration``). Results come from the callback plugin
helpers/callback_plugins/hem_recorder.py (JSON lines, already censored for no_log tasks)
while stdout keeps the configured stdout callback, so ``run.stdout`` is exactly what a
user would read. The environment is isolated: ``ANSIBLE_*`` and ``ENCEDO_HEM_*``
variables of the calling process are not inherited (pass them in ``env``),
``ANSIBLE_CONFIG`` is the repository's ansible.cfg (``encedo.hem`` resolves through
build/collections; ``make link`` is run once if the link is missing), and every run has
its own ``ANSIBLE_HOME`` and temporary directories under ``workdir``.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
CALLBACK_DIR = Path(__file__).resolve().parent / "callback_plugins"
COLLECTION_LINK = REPO_ROOT / "build" / "collections" / "ansible_collections" / "encedo" / "hem"
VENV_BIN = REPO_ROOT / ".venv" / "bin"
_LINK_LOCK = threading.Lock()


def ensure_collection_link():
    """Make ``encedo.hem`` resolvable through build/collections (``make link``) once."""
    with _LINK_LOCK:
        if not (COLLECTION_LINK / "galaxy.yml").exists():
            subprocess.run(["make", "--no-print-directory", "link"], cwd=str(REPO_ROOT), check=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def ansible_playbook_bin():
    """The ansible-playbook next to this Python (so `make matrix` runs each venv's own
    ansible-core), else the project venv's."""
    for candidate in (Path(sys.executable).parent / "ansible-playbook", VENV_BIN / "ansible-playbook"):
        if candidate.exists():
            return str(candidate)
    raise RuntimeError("ansible-playbook not found: run `make venv`")


def device_vars(emu, index):
    """The variables of the device's host (hem<index>) that tasks may name: its URLs, CA files, devid and,
    when the emulator was started with one, its passphrase (PlaybookRunner's inventory, ModuleRunner's
    arguments, the reliability suite's FleetRunner)."""
    values = {
        "hem_index": index,
        "hem_url": emu.url(index),
        "hem_http_url": emu.http_url(index),
        "hem_ca_path": emu.ca_file,
        "hem_custody_ca_path": emu.custody_ca_file,
        "hem_factory_ca_path": emu.factory_ca_file,
        "hem_backend_url": emu.backend_url,
        "hem_control_url": emu.control_url,
        "hem_devid": emu.device(index).get("devid"),
    }
    if getattr(emu, "passphrase", None):
        values["hem_passphrase"] = emu.passphrase
    return values


@dataclass
class TaskResult:
    host: str
    task: str
    action: str
    status: str                      # ok | failed | skipped | unreachable
    changed: bool
    result: dict
    role: str | None = None
    censored: bool = False
    ignored: bool = False

    @property
    def failed(self):
        return self.status == "failed"

    @property
    def msg(self):
        return self.result.get("msg", "")


@dataclass
class PlaybookRun:
    rc: int
    stdout: str
    stderr: str
    command: list
    tasks: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    @property
    def output(self):
        return self.stdout + self.stderr

    def results(self, task=None, host=None, action=None, status=None):
        """Task results filtered by task name, host, action (short or FQCN) and status."""
        out = []
        for item in self.tasks:
            if task is not None and item.task != task:
                continue
            if host is not None and item.host != host:
                continue
            if action is not None and action not in (item.action, item.action.rsplit(".", 1)[-1]):
                continue
            if status is not None and item.status != status:
                continue
            out.append(item)
        return out

    def result(self, task, host=None):
        """The result dict of the one run of ``task`` (on ``host``); AssertionError otherwise."""
        found = self.results(task=task, host=host)
        assert len(found) == 1, "task %r ran %d times on %s\n%s" % (task, len(found), host or "any host", self.tail())
        return found[0].result

    def failed(self):
        return [item for item in self.tasks if item.failed and not item.ignored]

    def tail(self, lines=60):
        text = ("rc=%s\n--- stdout\n%s\n--- stderr\n%s" % (self.rc, self.stdout, self.stderr)).splitlines()
        return "\n".join(text[-lines:])

    def assert_ok(self):
        assert self.rc == 0, "ansible-playbook failed:\n%s" % self.tail()
        return self


class PlaybookRunner:
    """Inventory of an emulator's devices + ansible-playbook runs against it."""

    def __init__(self, emulator, workdir, devices=None, host_vars=None, group="hem"):
        ensure_collection_link()
        self.emulator = emulator
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.group = group
        indexes = list(range(emulator.devices)) if devices is None else list(devices)
        self.hosts = ["hem%d" % i for i in indexes]
        self.inventory = str(self.workdir / "inventory.yml")
        self._counter = itertools.count(1)
        hosts = {}
        for i in indexes:
            hostvars = dict(device_vars(emulator, i), ansible_connection="local",
                            ansible_python_interpreter="{{ ansible_playbook_python }}")
            hostvars.update(host_vars or {})
            hosts["hem%d" % i] = hostvars
        Path(self.inventory).write_text(yaml.safe_dump({"all": {"children": {group: {"hosts": hosts}}}}, sort_keys=True))

    # ------------------------------------------------------------------ public

    def write_playbook(self, content, name=None):
        """Write a playbook (YAML text, or a list of plays) into workdir; return its path."""
        path = self.workdir / (name or "playbook-%d.yml" % next(self._counter))
        text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
        path.write_text(text)
        return str(path)

    def run_playbook(self, playbook, *, extra_vars=None, check=False, diff=False, verbosity=0, limit=None, tags=None,
                     env=None, timeout=600, cwd=None):
        """Run ``playbook`` (a path, a collection playbook name such as ``encedo.hem.tls``, YAML text, or a list
        of plays) from ``cwd`` (default the repository); return a PlaybookRun."""
        is_path = isinstance(playbook, os.PathLike)
        is_path = is_path or (isinstance(playbook, str) and "\n" not in playbook and playbook.endswith((".yml", ".yaml")))
        if isinstance(playbook, str) and re.fullmatch(r"\w+\.\w+\.\w+", playbook):
            path = playbook
        elif is_path:
            path = str(playbook)
            if not Path(path).is_file():
                raise FileNotFoundError("no playbook %s" % path)
        else:
            path = self.write_playbook(playbook)
        n = next(self._counter)
        record = self.workdir / ("results-%d.jsonl" % n)
        cmd = [ansible_playbook_bin(), "-i", self.inventory, path]
        if extra_vars:
            vars_file = self.workdir / ("extra-vars-%d.json" % n)
            vars_file.write_text(json.dumps(extra_vars))
            cmd += ["-e", "@%s" % vars_file]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        if verbosity:
            cmd.append("-" + "v" * int(verbosity))
        if limit:
            cmd += ["--limit", limit]
        if tags:
            cmd += ["--tags", tags if isinstance(tags, str) else ",".join(tags)]
        proc_env = self._environment(record, n, env)
        rc, stdout, stderr = _run(cmd, proc_env, timeout, cwd)
        tasks, stats = [], {}
        if record.exists():
            for line in record.read_text(encoding="utf-8").splitlines():
                item = json.loads(line)
                if item["event"] == "stats":
                    stats[item["host"]] = item["summary"]
                else:
                    tasks.append(TaskResult(host=item["host"], task=item["task"], action=item["action"],
                                            status=item["status"], changed=item["changed"], result=item["result"],
                                            role=item.get("role"), censored=item.get("censored", False),
                                            ignored=item.get("ignored", False)))
        return PlaybookRun(rc=rc, stdout=stdout, stderr=stderr, command=cmd, tasks=tasks, stats=stats)

    # ------------------------------------------------------------------ internals

    def _environment(self, record, n, extra):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "ENCEDO_HEM_"))}
        home = self.workdir / "ansible-home"
        env.update({
            "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
            "ANSIBLE_HOME": str(home),
            "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
            "ANSIBLE_REMOTE_TEMP": str(home / "remote-tmp"),
            "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACK_DIR),
            "ANSIBLE_CALLBACKS_ENABLED": "hem_recorder",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "HEM_RECORDER_FILE": str(record),
            "PYTHONUNBUFFERED": "1",
            "PATH": os.pathsep.join([str(VENV_BIN), env.get("PATH", "")]),
        })
        for key, value in (extra or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = str(value)
        return env


def _run(cmd, env, timeout, cwd=None):
    """Run cmd in its own process group; on timeout stop that group (by the child's PID)."""
    proc = subprocess.Popen(cmd, cwd=str(cwd or REPO_ROOT), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            stdout, stderr = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
        stderr += "\n[harness] ansible-playbook timed out after %s s and was stopped" % timeout
        return -1, stdout, stderr
    return proc.returncode, stdout, stderr
