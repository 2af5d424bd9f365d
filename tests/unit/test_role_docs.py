# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The role's documentation says what its code does (issue 17, defect 6)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "device"
DOCS = [ROLE / "README.md", ROLE / "meta" / "argument_specs.yml", ROOT / "docs" / "awx.md", ROOT / "README.md"]


def tasks_with(keyword):
    """Names of the role's tasks and blocks (at any depth) that use ``keyword``."""
    found = []

    def walk(items):
        for item in items or []:
            if not isinstance(item, dict):
                continue
            if keyword in item:
                found.append(item.get("name"))
            for key in ("block", "rescue", "always"):
                walk(item.get(key))

    for path in sorted((ROLE / "tasks").glob("*.yml")) + sorted((ROLE / "handlers").glob("*.yml")):
        walk(yaml.safe_load(path.read_text()))
    return found


def test_run_once_and_delegate_to_are_what_the_docs_say():
    # Issue 30: no run_once (a run_once check failed the first host only; the others showed failed=0).
    assert tasks_with("run_once") == []
    # delegate_to localhost only for what belongs on the controller (the README says which): the CSR
    # signing (the CA key never leaves the controller) and the record of a reboot left to the operator.
    delegated = tasks_with("delegate_to")
    assert [name for name in delegated if "reboot left to you" not in name and "reboots left to you" not in name] == [
        "Sign the CSR with the CA"], delegated
    for path in DOCS:
        text = path.read_text()
        assert "One `run_once` task" not in text and "checked once per play" not in text, path
    readme = (ROLE / "README.md").read_text()
    assert "No `run_once` task" in readme
    assert "`delegate_to: localhost` only for what belongs on the controller, the CSR signing" in readme


def test_the_attestation_anchor_is_the_vendors_ca_and_says_where_to_get_it():
    readme = (ROLE / "README.md").read_text()
    spec = (ROLE / "meta" / "argument_specs.yml").read_text()
    for text in (readme, spec):
        assert "your custody CA" not in text
        assert "Encedo Custody CA" in text and "ask Encedo" in text.replace("Ask Encedo", "ask Encedo")
