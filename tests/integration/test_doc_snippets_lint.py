# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every YAML snippet of the docs that is a play or a task list passes ansible-lint (production profile) as a user
would run it in a project of their own, with the collection installed (issue 30, item 3): not in this
repository, so none of its lint configuration applies."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.integration.helpers.playbook import COLLECTION_LINK, ensure_collection_link

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "roles" / "device" / "README.md"]
FENCE = re.compile(r"^```ya?ml\n(.*?)^```", re.M | re.S)


def snippets():
    """(name, kind, text) of every YAML block of the docs that is a list of plays or of tasks."""
    found = []
    for doc in DOCS:
        for index, match in enumerate(FENCE.finditer(doc.read_text(encoding="utf-8"))):
            data = yaml.safe_load(match.group(1))
            if not (isinstance(data, list) and data and all(isinstance(item, dict) for item in data)):
                continue
            play = all(set(item) & {"hosts", "import_playbook", "ansible.builtin.import_playbook"} for item in data)
            name = "%s_%d.yml" % (str(doc.relative_to(ROOT).with_suffix("")).replace("/", "_"), index)
            found.append((name, "play" if play else "tasks", match.group(1)))
    return found


def test_the_docs_have_snippets_to_lint():
    kinds = [kind for _name, kind, _text in snippets()]
    assert len(kinds) >= 5 and "play" in kinds


def test_every_doc_snippet_passes_ansible_lint_production(tmp_path):
    ensure_collection_link()
    project = tmp_path / "project"
    for name, kind, text in snippets():
        folder = project / ("playbooks" if kind == "play" else "tasks")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("---\n" + text, encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ANSIBLE_", "ENCEDO_HEM_"))}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(COLLECTION_LINK.parents[2]), ANSIBLE_HOME=str(tmp_path / "home"), NO_COLOR="1")
    lint = Path(sys.executable).parent / "ansible-lint"
    proc = subprocess.run([str(lint), "--offline", "--profile", "production", "--nocolor", "--project-dir", str(project),
                           str(project)], cwd=str(project), env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Passed" in proc.stdout + proc.stderr
