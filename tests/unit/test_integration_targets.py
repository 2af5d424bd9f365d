# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The integration targets stay runnable by `ansible-test integration` (make integration).

Every tests/integration/targets/encedo_* target must declare `aliases` that ansible-test
runs with --local (no `disabled`, `unsupported`, `destructive` or `unstable`, which would
skip it silently) and `needs/target/setup_emulator`, and depend on setup_emulator in
meta/main.yml; setup_emulator must export the variables the pytest harness
(tests/integration/helpers/playbook.py) puts in its inventory, under the same names.
The run itself is `make integration`, part of `make test`, and it is the only one: no
pytest test runs a target again (each target runs once per `make test`).
"""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest
import yaml

from tests.integration.helpers.playbook import REPO_ROOT, PlaybookRunner

TARGETS_DIR = REPO_ROOT / "tests" / "integration" / "targets"

SETUP = "setup_emulator"
TARGETS = sorted(p.name for p in TARGETS_DIR.iterdir() if p.is_dir() and not p.name.startswith(("setup_", "prepare_")))
SKIPPING_ALIASES = {"disabled", "unsupported", "unstable", "destructive", "hidden"}


def aliases(target):
    path = TARGETS_DIR / target / "aliases"
    assert path.is_file(), "%s has no aliases file" % target
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return {line for line in lines if line}


def test_there_are_targets():
    assert "encedo_info" in TARGETS and len(TARGETS) >= 9, TARGETS


@pytest.mark.parametrize("target", TARGETS)
def test_target_has_aliases_that_ansible_test_runs(target):
    found = aliases(target)
    assert "needs/target/%s" % SETUP in found
    assert "context/controller" in found
    assert not found & SKIPPING_ALIASES, "%s would be skipped by ansible-test --local: %s" % (target, found & SKIPPING_ALIASES)


@pytest.mark.parametrize("target", TARGETS)
def test_target_depends_on_the_setup_target(target):
    meta = yaml.safe_load((TARGETS_DIR / target / "meta" / "main.yml").read_text())
    roles = [dep["role"] if isinstance(dep, dict) else dep for dep in meta["dependencies"]]
    assert roles == [SETUP]
    assert (TARGETS_DIR / target / "tasks" / "main.yml").is_file()


def _exported_by_setup():
    tasks = yaml.safe_load((TARGETS_DIR / SETUP / "tasks" / "main.yml").read_text())
    names = set()
    for task in tasks:
        for sub in task.get("block", [task]):
            names |= set((sub.get("ansible.builtin.set_fact") or {}).keys())
    return {name for name in names if name.startswith("hem_")}


def test_setup_target_exports_the_harness_inventory_variables(tmp_path):
    device = {"devid": "0123456789abcdef"}
    emu = types.SimpleNamespace(devices=1, url=lambda i: "https://h", http_url=lambda i: "http://h", ca_file="ca",
                                custody_ca_file="cc", factory_ca_file="fc", backend_url="http://b", control_url="http://c",
                                device=lambda i: device, passphrase="pw")
    runner = PlaybookRunner(emu, tmp_path)
    inventory = yaml.safe_load(Path(runner.inventory).read_text())
    harness = {name for name in inventory["all"]["children"]["hem"]["hosts"]["hem0"] if name.startswith("hem_")}
    assert harness == _exported_by_setup()


def test_setup_target_always_starts_the_emulator():
    """The targets run only under ansible-test, where nothing else gives them a device."""
    text = (TARGETS_DIR / SETUP / "tasks" / "main.yml").read_text()
    assert "hem_url is not defined" not in text and "setup_emulator_needed" not in text


def _pytest_files():
    return sorted(path for path in (REPO_ROOT / "tests").rglob("*.py") if path.name.startswith("test_") or path.name == "conftest.py")


def test_no_pytest_test_runs_a_target():
    """Each target runs once per `make test`, under ansible-test: a pytest test that applied a target
    (the role tests/integration/targets/<name>, or a run_target helper) would run it a second time."""
    assert not hasattr(PlaybookRunner, "run_target")
    # code, not prose: the helper, the directory in a string literal or a path built from it
    pattern = re.compile(r"run_target|TARGETS_DIR|[\"'][^\"'\s]*integration/targets|[\"']targets[\"']")
    this = Path(__file__).resolve()
    offenders = []
    for path in _pytest_files():
        if path.resolve() == this:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                offenders.append("%s:%d: %s" % (path.relative_to(REPO_ROOT), number, line.strip()))
    assert offenders == []
