# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The resource engine (_engine.converge): pure logic, with a stand-in device (no network).

The resources that use it (_config.ConfigResource, _tls.CsrResource/CertificateResource) are tested
against the emulator in tests/integration and by replaying recorded answers in
tests/unit/plugins/modules; here the cycle itself: nothing is sent without a change or in check
mode, one write, a lost answer leads to one re-read and never a second write, secrets are masked
in the diff, and a confirming read that disagrees with what was written is reported."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

try:
    from ansible_collections.encedo.hem.plugins.module_utils import _engine
except ImportError:  # run without the collection link on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "build" / "collections"))
    from ansible_collections.encedo.hem.plugins.module_utils import _engine
from ansible_collections.encedo.hem.plugins.module_utils._errors import HemError, HemOutcomeUnknown


class Module(object):
    def __init__(self, check_mode=False, diff=False):
        self.check_mode = check_mode
        self._diff = diff
        self.warnings = []

    def warn(self, text):
        self.warnings.append(text)


class Device(object):
    """A device holding ``{"user": ...}``: counts reads and writes.

    ``lose``: the write's answer gets lost (after applying it when ``applied``); ``reread_fails``: every
    read after the first fails; ``other_writer``: another writer sets user to that value right after ours.
    """

    def __init__(self, lose=False, applied=False, reread_fails=False, other_writer=None, refuse=None):
        self.lose, self.applied, self.reread_fails, self.other_writer, self.refuse = lose, applied, reread_fails, other_writer, refuse
        self.user, self.writes, self.reads = "old", [], 0

    def get(self, path):
        self.reads += 1
        if self.reread_fails and self.reads > 1:
            raise HemError("connection refused", "GET " + path)
        return {"user": self.user}

    def post(self, path, body):
        self.writes.append(body)
        if self.refuse:
            raise HemError("refused", "POST " + path, self.refuse)
        if self.lose:
            if self.applied:
                self.user = body["user"]
            raise HemOutcomeUnknown("no answer", "POST " + path)
        self.user = self.other_writer or body["user"]
        return {"updated": True}


class User(_engine.Resource):
    name = "config"
    path = "/api/system/config"

    def plan(self, current, want):
        if current["user"] == want["user"]:
            return _engine.Plan()
        return _engine.Plan({"user": current["user"]}, {"user": want["user"]})

    def outcome_unknown(self, exc, plan, now, want):
        return HemError("lost; the device now holds %s" % now["user"], result=dict(changed=now["user"] == want["user"]))

    def refused(self, client, exc, plan):
        return HemError("advice for HTTP %d" % exc.status)


def test_changed_fields_compares_normalised_values():
    assert _engine.changed_fields({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 0}) == ["b", "c"]
    assert _engine.changed_fields({"a": "X"}, {"a": "x"}, same=lambda n, a, b: a.lower() == b.lower()) == []


@pytest.mark.parametrize("check_mode,want", [(True, "new"), (False, "old")])
def test_nothing_is_sent_in_check_mode_or_without_a_change(check_mode, want):
    device = Device()
    result = _engine.converge(Module(check_mode, diff=True), device, User(), {"user": want})
    assert device.writes == [] and device.reads == 1
    assert result["changed"] is (want != "old")
    assert result["config"] == {"user": want}       # check mode: what the device would hold
    assert result["sent"] == (["user"] if want != "old" else [])
    assert ("diff" in result) is (want != "old")


def test_one_write_then_one_confirming_read():
    device, module = Device(), Module(diff=True)
    result = _engine.converge(module, device, User(), {"user": "new"})
    assert device.writes == [{"user": "new"}] and device.reads == 2
    assert result["changed"] and result["sent"] == ["user"] and result["config"] == {"user": "new"}
    assert result["diff"] == {"before": {"user": "old"}, "after": {"user": "new"}}
    assert module.warnings == []


def test_a_confirming_read_that_disagrees_is_reported_with_both_values():
    device, module = Device(other_writer="theirs"), Module(diff=True)
    result = _engine.converge(module, device, User(), {"user": "new"})
    assert result["config"] == {"user": "theirs"} and result["diff"]["after"] == {"user": "theirs"}
    assert len(module.warnings) == 1
    assert "user='new'" in module.warnings[0] and "'theirs'" in module.warnings[0] and "throttle: 1" in module.warnings[0]


@pytest.mark.parametrize("applied", [True, False])
def test_a_lost_answer_is_resolved_by_one_reread_never_a_second_write(applied):
    device = Device(lose=True, applied=applied)
    with pytest.raises(HemError) as err:
        _engine.converge(Module(), device, User(), {"user": "new"})
    assert str(err.value) == "lost; the device now holds %s" % ("new" if applied else "old")
    assert err.value.result["changed"] is applied
    assert len(device.writes) == 1 and device.reads == 2


def test_a_failed_reread_says_the_outcome_is_unknown():
    device = Device(lose=True, reread_fails=True)
    with pytest.raises(HemError) as err:
        _engine.converge(Module(), device, User(), {"user": "new"})
    assert "outcome unknown" in str(err.value) and "(user)" in str(err.value) and "connection refused" in str(err.value)
    assert "Check the device before running the task again" in str(err.value)
    assert err.value.result == {"changed": True, "sent": ["user"]}
    assert len(device.writes) == 1


def test_a_refused_write_becomes_the_resources_advice():
    device = Device(refuse=409)
    with pytest.raises(HemError) as err:
        _engine.converge(Module(), device, User(), {"user": "new"})
    assert str(err.value) == "advice for HTTP 409" and len(device.writes) == 1 and device.reads == 1


def test_the_diff_masks_secrets_and_rotations():
    plan = _engine.Plan({"user": "a", "userkey": "old-key"}, {"user": "b", "userkey": "new-key"}, secret=("userkey",),
                        rotated=("passphrase",))
    diff = plan.diff()
    assert diff["before"] == {"user": "a", "userkey": _engine.MASK, "passphrase": _engine.MASK}
    assert diff["after"] == {"user": "b", "userkey": _engine.MASK, "passphrase": _engine.MASK + " (rotated)"}
    assert "old-key" not in repr(diff) and "new-key" not in repr(diff)
    assert plan.fields == ["passphrase", "user", "userkey"] and bool(plan)
    assert plan.diff({"user": "read back"})["after"]["user"] == "read back"
    assert not _engine.Plan()
