# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers of the integration tests: see playbook.py for the harness API."""

from __future__ import annotations

from tests.integration.helpers.playbook import PlaybookRun, PlaybookRunner, TaskResult, ensure_collection_link

__all__ = ["PlaybookRun", "PlaybookRunner", "TaskResult", "ensure_collection_link"]
