# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared pytest fixtures of encedo.hem.

`emulator` is a factory: each call starts one HEM emulator process (tests/emulator) on
free ports and returns the running `tests.emulator.harness.Emulator`; every emulator a
test started is stopped (by PID) at teardown. Keyword arguments are the harness's:

    def test_x(emulator):
        emu = emulator(devices=2, passphrase="pw", rtc_set=True)
        emu.url(0), emu.ca_file, emu.log(0), emu.fault(0, "busy") ...

`emulator_module` / `emulator_session` are the same factory, module- / session-scoped, for
tests that share one fleet.
"""

from __future__ import annotations

import os
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from tests.emulator.harness import Emulator  # noqa: E402  pylint: disable=wrong-import-position


def _factory(tmp_dir_fn):
    started = []

    def make(**kwargs):
        kwargs.setdefault("tmp_path", tmp_dir_fn())
        emu = Emulator(**kwargs)
        emu.start()
        started.append(emu)
        return emu

    return make, started


@pytest.fixture
def emulator(tmp_path_factory):
    """Factory fixture: `emulator(**Emulator kwargs)` -> a started Emulator, stopped at teardown."""
    make, started = _factory(lambda: tmp_path_factory.mktemp("emulator"))
    yield make
    for emu in reversed(started):
        emu.stop()


@pytest.fixture(scope="module")
def emulator_module(tmp_path_factory):
    """Module-scoped variant of `emulator`."""
    make, started = _factory(lambda: tmp_path_factory.mktemp("emulator-module"))
    yield make
    for emu in reversed(started):
        emu.stop()


@pytest.fixture(scope="session")
def emulator_session(tmp_path_factory):
    """Session-scoped variant of `emulator` (emulators live until the end of the session)."""
    make, started = _factory(lambda: tmp_path_factory.mktemp("emulator-session"))
    yield make
    for emu in reversed(started):
        emu.stop()
