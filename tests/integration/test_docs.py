# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every module's documentation as ansible-doc renders it (fragments merged): full DOCUMENTATION,
EXAMPLES and RETURN, the connection options, and the same attributes on every module."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from helpers.playbook import COLLECTION_LINK, ensure_collection_link  # noqa: E402

MODULES = sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("encedo_*.py"))
CONNECTION_OPTIONS = {"url", "passphrase", "token", "validate_certs", "ca_path", "timeout"}


def ansible_doc(*args):
    ensure_collection_link()
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTION_LINK.parents[2]), ANSIBLE_NOCOLOR="1")
    exe = Path(sys.executable).parent / "ansible-doc"
    proc = subprocess.run([str(exe), *args], env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    # ansible-core 2.21 (make matrix) warns about its own internal collection ansible._protomatter,
    # which ships without MANIFEST.json: not about this collection, so that one line is left out.
    stderr = "\n".join(line for line in proc.stderr.splitlines()
                       if not re.search(r"/ansible/_internal/ansible_collections/ansible/_protomatter' does not have a MANIFEST", line))
    assert "WARNING" not in stderr and "ERROR" not in stderr, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def docs():
    return json.loads(ansible_doc("--json", *("encedo.hem." + m for m in MODULES)))


def test_every_module_is_documented(docs):
    group = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())["action_groups"]["hem"]
    assert sorted(MODULES) == sorted(group) and "encedo_config" in MODULES
    assert sorted(docs) == ["encedo.hem." + m for m in MODULES]


@pytest.mark.parametrize("module", MODULES)
def test_module_doc_is_complete(docs, module):
    entry = docs["encedo.hem." + module]
    doc = entry["doc"]
    assert doc["module"] == module and doc["short_description"] and doc["description"] and doc["author"]
    assert CONNECTION_OPTIONS <= set(doc["options"]), "the encedo.hem.connection fragment is not merged"
    for name, option in doc["options"].items():
        assert option.get("description"), "option %s has no description" % name
    examples = yaml.safe_load(entry["examples"])
    # EXAMPLES are all tasks or all plays (galaxy-importer warns about a mix); a play's tasks count.
    plays = [item for item in examples if "hosts" in item]
    assert not plays or len(plays) == len(examples), "EXAMPLES mix plays and bare tasks"
    tasks = [task for play in plays for task in play.get("tasks", [])] if plays else examples
    assert any("encedo.hem." + module in task for task in tasks), "no example uses the module"
    assert entry["return"], "RETURN is empty"
    for name, value in entry["return"].items():
        assert value.get("description") and value.get("returned") and value.get("type"), name


@pytest.mark.parametrize("module", MODULES)
def test_module_attributes(docs, module):
    attributes = docs["encedo.hem." + module]["doc"]["attributes"]
    assert attributes["action_group"]["membership"] == ["encedo.hem.hem"]
    assert attributes["platform"]["platforms"] == "encedo_hem" and attributes["platform"]["support"] == "full"
    for name in ("check_mode", "diff_mode", "idempotent"):
        assert attributes[name]["support"] in ("full", "partial", "none", "N/A"), name


def test_module_text_output_renders():
    text = ansible_doc("encedo.hem.encedo_config")
    assert "ENCEDO_HEM_URL" in text and "EXAMPLES:" in text and "RETURN VALUES:" in text


def test_role_argument_spec_renders():
    doc = json.loads(ansible_doc("--json", "-t", "role", "encedo.hem.device"))["encedo.hem.device"]
    # Not "main": Ansible would validate that entry point itself and print the whole spec on a bad variable
    # (issue 17, defect 10); the role's first task validates against "variables".
    # "renew" (tasks_from: renew, the TLS step alone; playbooks/tls.yml) has no options for the same reason: its first
    # tasks validate against "variables" too.
    assert sorted(doc["entry_points"]) == ["renew", "variables"]
    renew = doc["entry_points"]["renew"]
    assert not renew.get("options") and "tasks_from=renew" in " ".join(renew["description"])
    main = doc["entry_points"]["variables"]
    assert main["short_description"] and "encedo_hem_config" in main["options"]
