# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""encedo.hem.module_available never fails: a missing collection or a malformed name is False, without a
warning (the role's community.crypto check, issue 30). Found modules: tests/integration/test_role.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

try:
    from ansible_collections.encedo.hem.plugins.filter import module_available
except ImportError:  # run without the collection link on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "build" / "collections"))
    from ansible_collections.encedo.hem.plugins.filter import module_available


@pytest.mark.parametrize("name", ["nosuchns.nosuchcoll.some_module", "community.nosuchcoll.x509_certificate_pipe",
                                  "x509_certificate_pipe", "community.crypto", "community..x", "", None, 3])
def test_a_module_that_cannot_be_loaded_is_false(name, capsys):
    assert module_available.module_available(name) is False
    captured = capsys.readouterr()
    assert "WARNING" not in captured.out + captured.err


def test_the_filter_is_registered():
    assert module_available.FilterModule().filters() == {"module_available": module_available.module_available}
