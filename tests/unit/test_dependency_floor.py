# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Python dependency floors are stated once (meta/ee-requirements.txt) and repeated
consistently where users read them (module `requirements`, README). `make floor` installs
exactly these floors and runs the attestation, certificate and TLS unit tests on them."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1].parent


def floors():
    text = (ROOT / "meta" / "ee-requirements.txt").read_text()
    return dict(re.findall(r"^([A-Za-z0-9_.-]+)>=([0-9][0-9.]*)\s*$", text, re.MULTILINE))


def short(version):
    """40.0.0 -> 40.0 (how the docs write it)."""
    parts = version.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 and parts[2] == "0" else version


def test_cryptography_has_a_floor():
    assert "cryptography" in floors(), "meta/ee-requirements.txt must give cryptography a floor (cryptography>=X)"


def test_every_requirement_is_floored_or_optional():
    text = (ROOT / "meta" / "ee-requirements.txt").read_text()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert not re.search(r"(==|<|~=|!=)", line), "%s: only floors, no upper bounds or exact pins" % line
    assert set(floors()) >= {"cryptography", "requests", "urllib3"}


def test_module_requirements_state_the_floor():
    """Every floored package is a requirement of the modules (the connection doc fragment all of them extend, or a
    module's own), stated with its floor."""
    wanted = floors()
    seen = set()
    for path in sorted((ROOT / "plugins" / "modules").glob("*.py")) + sorted((ROOT / "plugins" / "doc_fragments").glob("*.py")):
        source = path.read_text()
        doc = yaml.safe_load(re.search(r"DOCUMENTATION = r'''(.*?)'''", source, re.S).group(1))
        for line in doc.get("requirements", []):
            name = line.split()[0]
            if name in wanted:
                seen.add(name)
                assert line.startswith("%s >= %s " % (name, short(wanted[name]))), \
                    "%s: requirement %r does not state the floor %s" % (path.name, line, short(wanted[name]))
    assert seen == set(wanted), "floored but not a module requirement: %s" % sorted(set(wanted) - seen)


def test_readme_states_the_floors():
    readme = (ROOT / "README.md").read_text()
    for name, version in floors().items():
        assert "`%s` >= %s" % (name, short(version)) in readme, "README.md does not state %s >= %s" % (name, short(version))


def test_the_requirements_are_exactly_what_the_plugins_import():
    """meta/ee-requirements.txt (what ansible-builder introspects) names exactly the third-party packages that the
    collection's plugins import: not the standard library, ansible, or the collection itself."""
    import ast
    import sys

    imported = set()
    for path in (ROOT / "plugins").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {name for name in imported
                   if name not in sys.stdlib_module_names and name not in ("ansible", "ansible_collections", "__future__")}
    text = (ROOT / "meta" / "ee-requirements.txt").read_text()
    declared = {re.split(r"[<>=!~;\[ ]", line.strip())[0].lower() for line in text.splitlines()
                if line.strip() and not line.startswith("#")}
    assert third_party == declared, (sorted(third_party), sorted(declared))
