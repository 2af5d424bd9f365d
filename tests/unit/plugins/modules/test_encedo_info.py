# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of encedo_info's pure logic: which subsets gather_subset asks for (the requests are proven by
tests/integration/test_info_login.py against the emulator)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

try:
    from ansible_collections.encedo.hem.plugins.modules import encedo_info as M
except ImportError:  # run without the collection link on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "build" / "collections"))
    from ansible_collections.encedo.hem.plugins.modules import encedo_info as M

ALL = {"status", "version", "config", "certificate"}


@pytest.mark.parametrize("requested, chosen", [
    (["all"], ALL),
    (["status"], {"status"}),
    (["!all"], {"status"}),
    (["status", "certificate"], {"status", "certificate"}),
    (["version"], {"status", "version"}),
    (["!config"], ALL - {"config"}),                      # only exclusions: from all
    (["all", "!config", "!version"], {"status", "certificate"}),
    (["!all", "certificate"], {"status", "certificate"}),  # !all: only what is named, as with Ansible's setup module
    ([" config "], {"status", "config"}),
])
def test_chosen_subsets(requested, chosen):
    assert M.chosen_subsets(requested) == chosen


@pytest.mark.parametrize("requested, words", [
    (["facts"], ["option gather_subset", "'facts' is not a subset", "allowed: all, status, version, config, certificate"]),
    (["!status"], ["!status is not allowed", "!all"]),
    (["!!version"], ["'!!version' is not a subset"]),
])
def test_chosen_subsets_refuses(requested, words):
    with pytest.raises(ValueError) as err:
        M.chosen_subsets(requested)
    for word in words:
        assert word in str(err.value)
