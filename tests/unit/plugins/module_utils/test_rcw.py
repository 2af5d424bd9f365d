# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The read-compare-write engine (_rcw): pure logic, with a stand-in for the request it sends.

The modules that use it (encedo_config, encedo_tls, encedo_init) are tested against the emulator
in tests/integration; here: nothing is sent without a change or in check mode, secrets are masked
in the diff, and a lost answer leads to one re-read, never to a second write."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

try:
    from ansible_collections.encedo.hem.plugins.module_utils import _rcw
except ImportError:  # run without the collection link on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "build" / "collections"))
    from ansible_collections.encedo.hem.plugins.module_utils import _rcw
from ansible_collections.encedo.hem.plugins.module_utils._errors import HemError, HemOutcomeUnknown


class Module(object):
    def __init__(self, check_mode=False):
        self.check_mode = check_mode


class Device(object):
    """Counts writes and re-reads; ``lose`` makes the write's answer get lost (after applying it when ``applied``)."""

    def __init__(self, lose=False, applied=False, reread_fails=False):
        self.lose, self.applied, self.reread_fails = lose, applied, reread_fails
        self.value, self.writes, self.reads = "old", 0, 0

    def send(self):
        self.writes += 1
        if self.lose:
            if self.applied:
                self.value = "new"
            raise HemOutcomeUnknown("no answer", "POST /api/system/config")
        self.value = "new"
        return {"updated": True}

    def reread(self):
        self.reads += 1
        if self.reread_fails:
            raise HemError("connection refused", "GET /api/system/config")
        return {"user": self.value}


def test_changed_fields_compares_normalised_values():
    assert _rcw.changed_fields({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 0}) == ["b", "c"]
    assert _rcw.changed_fields({"a": "X"}, {"a": "x"}, same=lambda n, a, b: a.lower() == b.lower()) == []


@pytest.mark.parametrize("check_mode,change", [(True, {"user": "new"}), (False, {})])
def test_nothing_is_sent_in_check_mode_or_without_a_change(check_mode, change):
    device = Device()
    change = _rcw.Change(dict((k, "old") for k in change), change)
    assert _rcw.write(Module(check_mode), change, device.send, device.reread) is None
    assert (device.writes, device.reads) == (0, 0)


def test_one_write_of_the_change():
    device = Device()
    assert _rcw.write(Module(), _rcw.Change({"user": "old"}, {"user": "new"}), device.send, device.reread) == {"updated": True}
    assert (device.writes, device.reads) == (1, 0)


@pytest.mark.parametrize("applied", [True, False])
def test_a_lost_answer_is_resolved_by_one_reread_never_a_second_write(applied):
    device = Device(lose=True, applied=applied)
    seen = []
    answer = _rcw.write(Module(), _rcw.Change({"user": "old"}, {"user": "new"}), device.send, device.reread,
                        unknown=lambda exc, now: seen.append((str(exc), now)) or "resolved")
    assert answer == "resolved"
    assert (device.writes, device.reads) == (1, 1)
    assert seen == [("POST /api/system/config: no answer", {"user": "new" if applied else "old"})]


def test_a_lost_answer_without_a_handler_is_raised_again():
    device = Device(lose=True)
    with pytest.raises(HemOutcomeUnknown):
        _rcw.write(Module(), _rcw.Change({}, {"user": "new"}), device.send)
    assert device.writes == 1


def test_a_failed_reread_says_the_outcome_is_unknown():
    device = Device(lose=True, reread_fails=True)
    with pytest.raises(HemError) as err:
        _rcw.write(Module(), _rcw.Change({}, {"user": "new"}), device.send, device.reread, unknown=lambda exc, now: None)
    assert "outcome unknown" in str(err.value) and "(user)" in str(err.value) and "connection refused" in str(err.value)
    assert "Check the device before running the task again" in str(err.value)
    assert device.writes == 1


def test_the_diff_masks_secrets_and_rotations():
    change = _rcw.Change({"user": "a", "userkey": "old-key"}, {"user": "b", "userkey": "new-key"}, secret=("userkey",),
                         rotated=("passphrase",))
    diff = change.diff()
    assert diff["before"] == {"user": "a", "userkey": _rcw.MASK, "passphrase": _rcw.MASK}
    assert diff["after"] == {"user": "b", "userkey": _rcw.MASK, "passphrase": _rcw.MASK + " (rotated)"}
    assert "old-key" not in repr(diff) and "new-key" not in repr(diff)
    assert change.fields == ["passphrase", "user", "userkey"] and bool(change)
    assert change.diff({"user": "read back"})["after"]["user"] == "read back"
    assert not _rcw.Change({}, {})
