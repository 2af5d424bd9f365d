# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""meta/runtime.yml: the `hem` action group lists exactly the modules; requires_ansible is tested."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def runtime():
    return yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())


def test_action_group_lists_every_module_and_nothing_else():
    modules = sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("*.py") if p.stem != "__init__")
    assert modules, "no modules found"
    group = runtime()["action_groups"]["hem"]
    assert len(group) == len(set(group)), "duplicates in the hem action group"
    missing = sorted(set(modules) - set(group))
    extra = sorted(set(group) - set(modules))
    assert not missing, "modules missing from the hem action group in meta/runtime.yml: %s" % missing
    assert not extra, "hem action group names modules that do not exist: %s" % extra


def test_requires_ansible_is_the_oldest_tested_core():
    requirements = (ROOT / "tests" / "requirements.txt").read_text()
    match = re.search(r"^ansible-core\s*>=\s*(\d+\.\d+)", requirements, re.MULTILINE)
    assert match, "tests/requirements.txt does not pin a minimum ansible-core"
    oldest = match.group(1)
    assert runtime()["requires_ansible"] == ">=%s.0" % oldest
