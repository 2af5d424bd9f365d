# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""No broken markup in what ansible-doc renders (issue 17, defect 5).

Every string of every module's documentation (fragments merged, as real ``ansible-doc --json``
returns it) and of the role's argument spec is parsed with ansible-doc's own markup patterns
(``DocCLI``): the argument of each macro must be whole (a ``C(f(x))`` ends at the first ``)``
and renders as ``f(x')``), and the text rendering (real ``ansible-doc``) must have no macro left."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from ansible.cli.doc import DocCLI

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_docs import MODULES, ansible_doc  # noqa: E402

# Every macro ansible-doc knows, with the pattern it renders it by.
MACROS = {
    "I": DocCLI._ITALIC, "B": DocCLI._BOLD, "M": DocCLI._MODULE, "U": DocCLI._URL, "L": DocCLI._LINK,
    "P": DocCLI._PLUGIN, "R": DocCLI._REF, "C": DocCLI._CONST, "O": DocCLI._SEM_OPTION_NAME,
    "V": DocCLI._SEM_OPTION_VALUE, "E": DocCLI._SEM_ENV_VARIABLE, "RV": DocCLI._SEM_RET_VALUE,
}
LEFTOVER = re.compile(r"\b(?:RV|[IBMULPRCOVE])\(")


def strings(node, where=""):
    """(where, text) of every string in a doc tree."""
    if isinstance(node, str):
        yield where, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(value, "%s.%s" % (where, key) if where else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from strings(value, "%s[%d]" % (where, index))


def broken_markup(text):
    """The problems of the markup in one documentation string (an empty list when it is fine)."""
    problems = []
    for name, pattern in MACROS.items():
        for match in pattern.finditer(text):
            # Escaped characters (O(), V(), E(), RV() only) are text, not markup.
            argument = re.sub(r"\\.", "", match.group(0)[len(name) + 1:-1])
            if argument.count("(") != argument.count(")"):
                problems.append("%s(...) ends inside its own parentheses: %r" % (name, match.group(0)))
            quotes = argument.count('"')
            if quotes % 2:
                problems.append("%s(...) has an unbalanced quote: %r" % (name, match.group(0)))
    rendered = DocCLI.tty_ify(text)
    for leftover in LEFTOVER.finditer(rendered):
        problems.append("macro left unrendered: %r" % rendered[leftover.start():leftover.start() + 40])
    return problems


def test_the_checker_finds_the_token_bug_of_issue_17():
    assert broken_markup("the expression C(previous.token | default(login.token)), so that")
    assert broken_markup("see O(token")
    assert not broken_markup("the expression C(previous.token if previous.token is defined else login.token), O(a=b) and V(x\\)y)")


@pytest.fixture(scope="module")
def module_docs():
    return json.loads(ansible_doc("--json", *("encedo.hem." + m for m in MODULES)))


@pytest.mark.parametrize("module", MODULES)
def test_module_markup(module_docs, module):
    entry = module_docs["encedo.hem." + module]
    problems = []
    for part in ("doc", "return"):
        for where, text in strings(entry.get(part) or {}, part):
            problems.extend("%s: %s" % (where, problem) for problem in broken_markup(text))
    assert problems == []


@pytest.fixture(scope="module")
def module_texts():
    """Each module's text rendering, from one ``ansible-doc`` run over all of them (one section each, opened
    by ``> MODULE encedo.hem.<name> (<path>)``)."""
    sections = re.split(r"^> MODULE (encedo\.hem\.\w+) .*$", ansible_doc(*("encedo.hem." + m for m in MODULES)), flags=re.M)
    texts = dict(zip(sections[1::2], sections[2::2]))
    assert sorted(texts) == sorted("encedo.hem." + m for m in MODULES), sorted(texts)
    return texts


@pytest.mark.parametrize("module", MODULES)
def test_module_text_rendering(module_texts, module):
    text = module_texts["encedo.hem." + module]
    assert "OPTIONS" in text and "EXAMPLES" in text, text[:500]
    assert LEFTOVER.findall(text) == []
    assert "'))" not in text


def test_role_markup():
    docs = json.loads(ansible_doc("--json", "-t", "role", "encedo.hem.device"))
    problems = []
    for where, text in strings(docs):
        problems.extend("%s: %s" % (where, problem) for problem in broken_markup(text))
    assert problems == []
