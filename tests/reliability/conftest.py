# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the reliability suite: the collection must resolve through build/collections."""

from __future__ import annotations

import pytest

from tests.integration.helpers import ensure_collection_link


@pytest.fixture(scope="session", autouse=True)
def _collection_link():
    ensure_collection_link()
