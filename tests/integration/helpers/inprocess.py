# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run one module's ``main()`` in this process against an emulated device, over real HTTPS.

The middle layer of the test pyramid (docs/development.md, "Tests"): a rule of one module
(what it sends, what it refuses, what it reports) is proven by the module's own code talking
to the emulator over HTTPS, with the emulator's request log as the proof of what reached the
device, without paying for an ``ansible-playbook`` process (about 1.8 s of CPU a run on this
project's machine, against about 0.2 s here). What only a playbook shows stays in playbook
tests: the token guard (the action plugin), templating, ``register`` between tasks, handlers,
the role, callbacks' output and ``-v`` levels.

API::

    run = ModuleRunner(emu, index)                       # one device of a running Emulator
    result = run("encedo.hem.encedo_config", {"user": "x"}, check=False, diff=False)
    result["failed"]                                     # present (True) only when the module failed
    run.output                                           # the last result as JSON text (secrets checks)
    run("encedo.hem.encedo_info", {}, env={"REQUESTS_CA_BUNDLE": path})   # extra environment for this run
    ModuleRunner(emu, 0, add_passphrase=False)           # arguments as given: no passphrase unless named
    ChildJobs({"a": job_a, "b": job_b}, workdir).results()   # jobs (e.g. of execute(run.prepare(...))) side by side

Arguments are those of a task; the strings ``{{ hem_url }}``, ``{{ hem_ca_path }}``,
``{{ hem_passphrase }}`` ... (the host variables PlaybookRunner writes into its inventory) are
replaced by the device's values, and ``url``, ``ca_path`` and ``passphrase`` (when the emulator
has one, and unless ``add_passphrase=False``) are given unless the arguments name them (None leaves
one out). ``ENCEDO_HEM_*``
variables of this process are not seen by the module (as PlaybookRunner does not pass them).
``env`` (a dict) sets environment variables for that one run (a value None removes one), as
PlaybookRunner's ``env`` does for the module's process: e.g. ``REQUESTS_CA_BUNDLE``, or an
``ENCEDO_HEM_*`` fallback. Each run starts with no warnings or deprecations of earlier runs (a
module process starts with none; the module library keeps them in process-wide collections).
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import os
import re
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from ansible.module_utils.common import warnings as _warnings

from tests.integration.helpers.playbook import REPO_ROOT, device_vars, ensure_collection_link
from tests.unit.plugins.modules import replay

_VAR = re.compile(r"\{\{\s*(hem_\w+)\s*\}\}")


def _substitute(value, variables):
    if isinstance(value, str):
        whole = _VAR.fullmatch(value.strip())
        if whole:
            return variables[whole.group(1)]
        return _VAR.sub(lambda m: str(variables[m.group(1)]), value)
    if isinstance(value, dict):
        return dict((k, _substitute(v, variables)) for k, v in value.items())
    if isinstance(value, list):
        return [_substitute(v, variables) for v in value]
    return value


def load_module(name):
    """``encedo.hem.encedo_config`` or ``encedo_config`` -> the module object."""
    short = name.rsplit(".", 1)[-1]
    try:
        return importlib.import_module("ansible_collections.encedo.hem.plugins.modules.%s" % short)
    except ImportError:
        ensure_collection_link()
        sys.path.insert(0, str(REPO_ROOT / "build" / "collections"))
        return importlib.import_module("ansible_collections.encedo.hem.plugins.modules.%s" % short)


class ModuleRunner:
    """Runs single module tasks in-process against device ``index`` of emulator ``emu``."""

    def __init__(self, emu, index=0, add_passphrase=True, **extra_vars):
        self.emu = emu
        self.index = index
        self.add_passphrase = add_passphrase
        self.vars = dict(device_vars(emu, index), **extra_vars)
        self.output = ""

    def prepare(self, module, args=None, check=False, diff=False, env=None):
        """The run of one task as plain data (module, parameters, check, diff, environment): what
        ``execute`` runs, here or in a child process (``ChildJobs``)."""
        params = {"url": "{{ hem_url }}", "ca_path": "{{ hem_ca_path }}"}
        if self.add_passphrase and "hem_passphrase" in self.vars:
            params["passphrase"] = "{{ hem_passphrase }}"
        params.update(args or {})
        params = _substitute(dict((k, v) for k, v in params.items() if v is not None), self.vars)
        clean = dict((k, v) for k, v in os.environ.items() if not k.startswith("ENCEDO_HEM_"))
        for key, value in (env or {}).items():
            if value is None:
                clean.pop(key, None)
            else:
                clean[key] = str(value)
        return Prepared(module, params, check, diff, clean)

    def __call__(self, module, args=None, check=False, diff=False, env=None):
        result = execute(self.prepare(module, args, check=check, diff=diff, env=env))
        self.output = json.dumps(result, sort_keys=True, default=str)
        return result


@dataclass
class Prepared:
    module: str
    params: dict
    check: bool
    diff: bool
    environ: dict


def execute(run):
    """Run a Prepared task in this process; -> its result (``failed`` only when it failed)."""
    fresh = dict((name, type(getattr(_warnings, name))()) for name in ("_global_warnings", "_global_deprecations")
                 if hasattr(_warnings, name))
    with mock.patch.dict(os.environ, run.environ, clear=True), mock.patch.multiple(_warnings, **fresh):
        result, failed = replay.run_main(load_module(run.module), run.params, check_mode=run.check, diff=run.diff)
    result = dict(result)
    if failed:
        result["failed"] = True
    else:
        result.pop("failed", None)
    return result


class ChildJobs:
    """Jobs run side by side, each in a child process forked from this one (a module run in-process
    keeps process-wide state, so concurrent runs cannot share a process). ``jobs`` maps a key to a
    callable returning a JSON-able value; the children start at once. ``results()`` waits for them:
    -> {key: that value}. A job that raises, or has not ended by the deadline (it is killed then),
    fails the call naming its key. Start them before this process starts threads of its own."""

    def __init__(self, jobs, workdir):
        context = multiprocessing.get_context("fork")
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.children = {}
        for n, (key, job) in enumerate(jobs.items()):
            out = workdir / ("child-%d.json" % n)
            child = context.Process(target=_child, args=(job, str(out)), daemon=True)
            child.start()
            self.children[key] = (child, out)

    def results(self, timeout=600):
        deadline = time.monotonic() + timeout
        results, broken = {}, []
        for key, (child, out) in self.children.items():
            child.join(max(0.0, deadline - time.monotonic()))
            if child.is_alive():
                child.kill()
                child.join()
                broken.append("%s: still running after %d s (killed)" % (key, timeout))
                continue
            answer = json.loads(out.read_text()) if out.exists() else {"error": "exit code %s, no answer" % child.exitcode}
            if "error" in answer:
                broken.append("%s: %s" % (key, answer["error"]))
            else:
                results[key] = answer["value"]
        assert not broken, "jobs in child processes broke:\n" + "\n".join(broken)
        return results


def _child(job, out):
    try:
        answer = {"value": job()}
    except BaseException:  # pylint: disable=broad-exception-caught
        answer = {"error": traceback.format_exc()}
    Path(out).write_text(json.dumps(answer, default=str))
