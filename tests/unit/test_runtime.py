# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""meta/runtime.yml: the `hem` action group lists exactly the modules; requires_ansible is the tested range."""

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


def test_requires_ansible_is_the_tested_range():
    """requires_ansible admits exactly the ansible-core minors that `make matrix` tests
    (Makefile MATRIX_VERSIONS), and `make test`'s own version (tests/requirements.txt) is one of them."""
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(r"^MATRIX_VERSIONS\s*:=\s*(.+)$", makefile, re.MULTILINE)
    assert match, "Makefile has no MATRIX_VERSIONS"
    versions = [tuple(int(n) for n in v.split(".")) for v in match.group(1).split()]
    assert versions == sorted(versions) and len(set(versions)) == len(versions), versions
    assert all(b == (a[0], a[1] + 1) for a, b in zip(versions, versions[1:])), "MATRIX_VERSIONS must be consecutive minors"
    oldest, newest = versions[0], versions[-1]
    assert runtime()["requires_ansible"] == ">=%d.%d.0,<%d.%d.0" % (oldest + (newest[0], newest[1] + 1))
    main = re.search(r"^MATRIX_MAIN\s*:=\s*(\S+)", makefile, re.MULTILINE).group(1)
    requirements = (ROOT / "tests" / "requirements.txt").read_text()
    pin = re.search(r"^ansible-core\s*>=\s*(\d+\.\d+)", requirements, re.MULTILINE)
    assert pin and pin.group(1) == main, "tests/requirements.txt must install MATRIX_MAIN (%s)" % main
    assert tuple(int(n) for n in main.split(".")) in versions
