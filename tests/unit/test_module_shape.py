# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shape of the plugins: modules are declarations, errors reach Ansible one way.

- Only HemModule.run (plugins/module_utils/_module.py) calls fail_json: a module or a module_utils
  raises HemError (AnsibleModule's own argument-spec validation still fails by itself).
- A module file is its documentation, its argument spec and the steps truly its own: no function in
  it is longer than MAX_LINES; shared logic lives in plugins/module_utils.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(p for p in (ROOT / "plugins" / "modules").glob("*.py") if p.stem != "__init__")
MODULE_UTILS = sorted((ROOT / "plugins" / "module_utils").glob("*.py"))
MAX_LINES = 40


def fail_json_calls(path):
    """(function, line) of every call of ``<anything>.fail_json(`` in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    calls = []
    for func in ast.walk(tree):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "fail_json":
                calls.append((func.name, node.lineno))
    return calls


def long_functions(path):
    tree = ast.parse(path.read_text(), str(path))
    return [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > MAX_LINES]


def test_the_scan_sees_what_it_looks_for(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def main():\n    module.fail_json(msg='x')\n" + "def long():\n" + "    x = 1\n" * MAX_LINES)
    assert fail_json_calls(sample) == [("main", 2)]
    assert long_functions(sample) == [("long", MAX_LINES + 1)]
    assert "fail_json(" in (ROOT / "plugins" / "module_utils" / "_module.py").read_text()


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_module_calls_fail_json(path):
    assert "fail_json(" not in path.read_text(), "%s: raise HemError instead; HemModule.run turns it into the failure" % path.name


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_module_function_is_long(path):
    assert long_functions(path) == [], ("%s: functions over %d lines; move shared logic to plugins/module_utils"
                                        % (path.name, MAX_LINES))


def test_only_hem_module_run_calls_fail_json():
    calls = dict((p.name, fail_json_calls(p)) for p in MODULE_UTILS)
    assert dict((name, found) for name, found in calls.items() if found) == {"_module.py": [("run", calls["_module.py"][0][1])]}
