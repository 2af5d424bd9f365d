# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the emulator tests (the `emulator*` factories come from tests/conftest.py)."""

from __future__ import annotations

import pytest

from .hemclient import Hem

PASS = "correct horse battery staple"


def client(emu, i=0, http=False):
    return Hem(emu.http_url(i) if http else emu.url(i), emu.ca_file)


@pytest.fixture(scope="module")
def shared_emu(emulator_module):
    """One personalised PPA device, clock set, shared by a test module (tests must not break it).

    A new storage_disk0size formats at once (--format-seconds 0), so no test finds it busy (409).
    """
    return emulator_module(devices=1, passphrase=PASS, rtc_set=True, extra_args=["--format-seconds", "0"])


@pytest.fixture(scope="module")
def shared_token(shared_emu):
    hem = client(shared_emu)
    hem.login(PASS)
    return hem.token


@pytest.fixture
def hem(shared_emu, shared_token):
    """A logged-in client of the shared device."""
    h = client(shared_emu)
    h.token = shared_token
    return h
