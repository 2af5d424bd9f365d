# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the integration tests: real ansible-playbook runs against the emulator.

``hem_playbook(emu, devices=None, host_vars=None)`` -> a PlaybookRunner (see
tests/integration/helpers/playbook.py for its API) whose inventory holds one host per
emulated device (``hem0``, ``hem1``, ...)::

    def test_x(emulator, hem_playbook):
        emu = emulator(passphrase="pw-1234", rtc_set=True)
        play = {"hosts": "hem", "gather_facts": False, "tasks": [{"name": "Read facts",
                "encedo.hem.encedo_info": {"url": "{{ hem_url }}", "ca_path": "{{ hem_ca_path }}"}}]}
        run = hem_playbook(emu).run_playbook([play])
        run.assert_ok()
        assert run.result("Read facts", host="hem0")["model"] == "ppa"

Each runner writes its inventory, playbooks and results under a fresh tmp directory.

``server_testbed`` -> a TestBed of tests/integration/helpers/netns.py (PPAs behind servers:
network namespaces with an SSH server and emulated PPAs on 192.168.7.1), cleaned up at
teardown. It needs root: elsewhere the test is skipped with the reason, and FAILS when the
environment variable CI is true (CI must run it).
"""

from __future__ import annotations

import os
import warnings

import pytest

from tests.integration.helpers import PlaybookRunner, ensure_collection_link
from tests.integration.helpers.netns import TestBed


@pytest.fixture(scope="session", autouse=True)
def _collection_link():
    """``encedo.hem`` must resolve through build/collections (``make link``)."""
    ensure_collection_link()


@pytest.fixture
def hem_playbook(tmp_path_factory):
    """Factory: ``hem_playbook(emu, devices=None, host_vars=None, group="hem")`` -> PlaybookRunner."""

    def make(emu, devices=None, host_vars=None, group="hem"):
        return PlaybookRunner(emu, tmp_path_factory.mktemp("playbook"), devices=devices, host_vars=host_vars, group=group)

    return make


@pytest.fixture
def server_testbed(tmp_path_factory):
    """A TestBed (see tests/integration/helpers/netns.py): ``bed.server()``, ``srv.emulator()``, ..."""
    problem = TestBed.problem()
    if problem:
        message = "the test bed of PPAs behind servers (network namespaces) cannot run here: %s" % problem
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(message + " (CI is set: this test must run in CI)")
        # Said in the default output too (warnings summary), not only with -rs.
        warnings.warn(pytest.PytestWarning(message + " (skipped)"))
        pytest.skip(message)
    with TestBed(tmp_path_factory.mktemp("testbed")) as bed:
        yield bed
