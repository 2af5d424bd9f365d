# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The token guard (plugins/plugin_utils/token_guard.py), the action plugin of every module: which results it hides,
and that every module's action plugin is it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
try:
    from ansible_collections.encedo.hem.plugins.plugin_utils import token_guard as A
except ImportError:  # run without the collection link on sys.path
    sys.path.insert(0, str(ROOT / "build" / "collections"))
    from ansible_collections.encedo.hem.plugins.plugin_utils import token_guard as A

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzY29wZSI6InN5c3RlbTpjb25maWcifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


def test_every_module_runs_through_the_token_guard():
    """Each module has an action plugin of its name (Ansible finds it so; action-plugin-docs is satisfied) that is the
    token guard itself, and there is no other action plugin; no module is routed elsewhere, and no sanity test ignored."""
    import importlib
    modules = sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("*.py") if p.stem != "__init__")
    actions = sorted(p.stem for p in (ROOT / "plugins" / "action").glob("*.py") if p.stem != "__init__")
    assert actions == modules
    for name in actions:
        plugin = importlib.import_module("ansible_collections.encedo.hem.plugins.action." + name)
        assert plugin.ActionModule is A.ActionModule, name
    assert "plugin_routing" not in yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())
    assert list((ROOT / "tests" / "sanity").glob("ignore-*.txt")) == []


class _Task:
    def __init__(self, action, args=None):
        self.action = action
        self.args = args or {}


class _Context:
    def __init__(self, no_log=False):
        self.no_log = no_log


class _Connection:
    def __init__(self, no_log=False):
        self._play_context = _Context(no_log)


def run_plugin(monkeypatch, module_result, action="encedo.hem.encedo_config", args=None, seen=None, no_log=False):
    """ActionModule.run with the module's result given (the module itself is not run); ``seen`` gets the no_log of
    the play context and of the connection's play context while the module runs."""
    def module_run(self, tmp=None, task_vars=None):
        if seen is not None:
            seen.extend([self._play_context.no_log, self._connection._play_context.no_log])
        return dict(module_result)

    monkeypatch.setattr(A.NormalAction, "run", module_run)
    plugin = A.ActionModule.__new__(A.ActionModule)  # run() uses the task, the play context and the connection only
    plugin._task = _Task(action, args)
    plugin._play_context = _Context(no_log)
    plugin._connection = _Connection(no_log)
    result = plugin.run(task_vars={})
    assert (plugin._play_context.no_log, plugin._connection._play_context.no_log) == (no_log, no_log), "no_log not restored"
    return result


@pytest.mark.parametrize("no_log", [False, True])
def test_the_raw_module_output_is_never_printed_by_the_connection(monkeypatch, no_log):
    """ssh prints a module's raw output at -vvv unless its play context says no_log: it does while the module runs
    (both play contexts: the task's and the connection's copy), and is restored afterwards."""
    seen = []
    result = run_plugin(monkeypatch, {"changed": False, "token": TOKEN}, "encedo.hem.encedo_login", seen=seen, no_log=no_log)
    assert seen == [True, True] and result["_ansible_no_log"] is True


def test_a_token_asked_for_with_return_token_is_hidden_without_a_renewal_warning(monkeypatch):
    result = run_plugin(monkeypatch, {"changed": False, "personalised": True, "token": TOKEN}, "encedo.hem.encedo_info",
                        args={"return_token": True})
    assert result["_ansible_no_log"] is True and "warnings" not in result
    result = run_plugin(monkeypatch, {"changed": False, "personalised": True, "token": TOKEN}, "encedo.hem.encedo_info")
    assert result["_ansible_no_log"] is True and "refused the token" in result["warnings"][0]


@pytest.mark.parametrize("action,module_result,hidden", [
    ("encedo.hem.encedo_login", {"changed": False, "token": TOKEN, "expires": 1, "scope": "system:config"}, True),
    ("encedo_login", {"changed": False, "token": TOKEN, "expires": 1, "scope": "system:config"}, True),
    ("encedo.hem.encedo_config", {"changed": True, "config": {"user": "u"}, "token": TOKEN}, True),     # logged in again
    ("encedo.hem.encedo_config", {"changed": True, "config": {"user": "u"}}, False),                    # the usual result
    ("encedo.hem.encedo_info", {"changed": False, "token": None}, False),
    ("encedo.hem.encedo_info", {"failed": True, "msg": "GET /api/system/config answered HTTP 401: ..."}, False),   # failures stay visible
])
def test_a_result_holding_a_token_is_hidden(monkeypatch, action, module_result, hidden):
    result = run_plugin(monkeypatch, module_result, action)
    assert bool(result.get("_ansible_no_log")) is hidden
    renewed = hidden and not action.endswith("encedo_login")
    assert bool(result.get("warnings")) is renewed          # a renewal says so; encedo_login's own result does not
    assert {k: v for k, v in result.items() if k not in ("_ansible_no_log", "warnings")} == module_result


def test_a_renewal_tells_what_changed_but_never_the_token(monkeypatch):
    diff = {"before": {"user": "old", "hostname": "a", "token": "x"}, "after": {"user": "new", "hostname": "a", "token": TOKEN}}
    result = run_plugin(monkeypatch, {"changed": True, "token": TOKEN, "diff": diff, "sent": ["user"]})
    warning = result["warnings"][-1]
    assert "logged in again" in warning and 'It changed the device: user: "old" -> "new"' in warning
    assert TOKEN not in warning and "hostname" not in warning
    result = run_plugin(monkeypatch, {"changed": True, "token": TOKEN, "sent": ["user", "origin"]})
    assert result["warnings"][-1].endswith("It changed the device: sent: user, origin")
    result = run_plugin(monkeypatch, {"changed": False, "token": TOKEN, "config": {}})
    assert "It changed" not in result["warnings"][-1]
