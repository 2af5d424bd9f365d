# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the lifecycle helpers (check-in flow, reboot proof and wait loop): pure logic with fake clients."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

try:
    from ansible_collections.encedo.hem.plugins.module_utils import _lifecycle as L
except ImportError:  # run without the collection link on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "build" / "collections"))
    from ansible_collections.encedo.hem.plugins.module_utils import _lifecycle as L

from ansible_collections.encedo.hem.plugins.module_utils._client import HemClient
from ansible_collections.encedo.hem.plugins.module_utils._errors import HemError, HemOutcomeUnknown


# ---------------------------------------------------------------------------- fakes

class FakeDevice:
    """Stands in for HemClient: records calls, answers from a script."""

    def __init__(self, clock_set=False, answer=None, lose_answer=False, set_clock=True):
        self.clock_set = clock_set
        self.answer = {"status": "OK"} if answer is None else answer
        self.lose_answer = lose_answer
        self.set_clock = set_clock
        self.calls = []
        self.url = "https://hem.test"

    def status(self):
        self.calls.append(("GET", "/api/system/status", None))
        out = {"uptime": 5, "ctx": 0}
        if self.clock_set:
            out.update(time=1700000000, ts="2023-11-14T22:13:20Z")
        return out

    def get(self, path, auth=True):
        self.calls.append(("GET", path, auth))
        assert path == "/api/system/checkin"
        return {"check": "device.check.blob"}

    def post(self, path, body, auth=True):
        self.calls.append(("POST", path, body, auth))
        if self.set_clock:
            self.clock_set = True
        if self.lose_answer:
            raise HemOutcomeUnknown("lost", "POST " + path)
        return dict(self.answer)


class FakeBackend:
    def __init__(self, reply=None, error=None):
        self.reply = {"checked": "backend.checked.blob"} if reply is None else reply
        self.error = error
        self.calls = []
        self.url = "http://backend.test"

    def post(self, path, body, auth=True):
        self.calls.append((path, body, auth))
        if self.error:
            raise self.error
        return self.reply


def posts(device):
    return [c for c in device.calls if c[0] == "POST"]


# ---------------------------------------------------------------------------- check-in

def test_clock_is_set_reads_time_or_ts():
    assert L.clock_is_set({"time": 1})
    assert L.clock_is_set({"ts": "2026-01-01T00:00:00Z"})
    assert not L.clock_is_set({"uptime": 3})
    assert not L.clock_is_set(None)


def test_checkin_forwards_both_blobs_untouched_and_unauthenticated():
    device, backend = FakeDevice(), FakeBackend()
    result = L.checkin(device, backend)
    assert backend.calls == [("/checkin", {"check": "device.check.blob"}, False)]
    assert posts(device) == [("POST", "/api/system/checkin", {"checked": "backend.checked.blob"}, False)]
    assert all(c[2] is False for c in device.calls if c[0] == "GET" and c[1] != "/api/system/status")
    assert result["changed"] is True and result["clock_was_set"] is False
    assert result["status"] == "OK" and result["time"] == 1700000000


def test_checkin_with_clock_already_set_is_not_a_change():
    result = L.checkin(FakeDevice(clock_set=True), FakeBackend())
    assert result["changed"] is False and result["clock_was_set"] is True


@pytest.mark.parametrize("action", ["L", "W", "B", "U", "???"])
def test_backend_actions_are_a_change_and_a_failure(action):
    result = L.checkin(FakeDevice(clock_set=True, answer={"status": action}), FakeBackend())
    assert result["changed"] is True and result["status"] == action
    assert L.checkin_failure(result) is not None


@pytest.mark.parametrize("action", ["OK", "R"])
def test_ok_and_report_are_no_change_and_no_failure(action):
    result = L.checkin(FakeDevice(clock_set=True, answer={"status": action}), FakeBackend())
    assert result["changed"] is False and result["status"] == action
    assert L.checkin_failure(result) is None and L.checkin_warnings(result) == []
    assert result["action"] == ("none" if action == "OK" else "report (nothing changed on the device)")


@pytest.mark.parametrize("action", ["W", "B", "U"])
def test_actions_that_take_the_device_away_do_not_read_its_status_again(action):
    device = FakeDevice(answer={"status": action})
    result = L.checkin(device, FakeBackend())
    assert [c[1] for c in device.calls] == ["/api/system/status", "/api/system/checkin", "/api/system/checkin"]
    assert "time" not in result and result["changed"] is True


@pytest.mark.parametrize("action,did,next_step,not_advised", [
    ("L", "erased its user key", "master", "check in"),
    ("W", "wiped itself", "personalise it again", "check in"),
    ("B", "stopped its web servers", "power-cycled", "check in again now"),
    ("U", "upgrade its firmware", "check its firmware", "check in"),
])
def test_failure_says_what_the_device_did_and_what_to_do(action, did, next_step, not_advised):
    msg = L.checkin_failure({"status": action, "action": L.CHECKIN_ACTIONS[action]})
    assert msg.startswith("the check-in backend ordered action %s and the device executed it: " % action)
    assert did in msg and next_step in msg
    assert not_advised not in msg.lower().replace("before the device checks in again", "")


def test_unrecognised_action_fails_naming_it():
    msg = L.checkin_failure({"status": "???"})
    assert "'???'" in msg and "did not recognise" in msg and "backend_url" in msg
    assert L.describe_action("???") == "not recognised by the device (???)"


def test_lost_answer_is_not_a_failure():
    assert L.checkin_failure({"status": "unknown"}) is None
    assert L.checkin_failure({"changed": True, "clock_was_set": False}) is None      # check mode


def test_pushed_certificate_installed_is_a_change_with_a_warning_about_ca_path():
    result = L.checkin(FakeDevice(clock_set=True, answer={"status": "OK", "newcrt": "OK"}), FakeBackend())
    assert result["changed"] is True and result["newcrt"] == "OK" and L.checkin_failure(result) is None
    [warning] = L.checkin_warnings(result)
    assert "newcrt: OK" in warning and "next reboot" in warning and "ca_path" in warning


def test_pushed_certificate_refused_is_a_warning_only():
    result = L.checkin(FakeDevice(clock_set=True, answer={"status": "OK", "newcrt": "ERROR"}), FakeBackend())
    assert result["changed"] is False and L.checkin_failure(result) is None
    [warning] = L.checkin_warnings(result)
    assert "newcrt: ERROR" in warning and "keeps serving its current certificate" in warning


def test_hints_are_reported():
    answer = {"status": "OK", "newfws": "FWS", "newuis": "UIS", "newcrt": "ERROR"}
    result = L.checkin(FakeDevice(answer=answer), FakeBackend())
    assert (result["newfws"], result["newuis"], result["newcrt"]) == ("FWS", "UIS", "ERROR")
    assert any("newcrt" in w for w in L.checkin_warnings(result))


def test_check_mode_posts_nothing():
    device, backend = FakeDevice(), FakeBackend()
    result = L.checkin(device, backend, check_mode=True)
    assert result == {"changed": True, "clock_was_set": False}
    assert backend.calls == [] and posts(device) == []
    assert [c[1] for c in device.calls] == ["/api/system/status"]


def test_lost_answer_with_clock_now_set_is_success_with_unknown_action():
    result = L.checkin(FakeDevice(lose_answer=True), FakeBackend())
    assert result["status"] == "unknown" and result["changed"] is True
    assert any("lost" in w for w in L.checkin_warnings(result))


def test_lost_answer_with_clock_still_unset_fails():
    with pytest.raises(HemError, match="still unset"):
        L.checkin(FakeDevice(lose_answer=True, set_clock=False), FakeBackend())


def test_accepted_but_clock_unset_fails():
    with pytest.raises(HemError, match="clock is still unset"):
        L.checkin(FakeDevice(set_clock=False), FakeBackend())


def test_backend_refusal_names_the_backend_not_the_device():
    backend = FakeBackend(error=HemError("whatever", "POST /checkin", 401))
    with pytest.raises(HemError) as info:
        L.checkin(FakeDevice(), backend)
    assert "check-in backend http://backend.test" in str(info.value) and "HTTP 401" in str(info.value)


def test_backend_unreachable_is_reworded():
    backend = FakeBackend(error=HemError("cannot reach the device at http://backend.test (refused)", "POST /checkin"))
    with pytest.raises(HemError) as info:
        L.checkin(FakeDevice(), backend)
    text = str(info.value)
    assert "cannot reach it (refused)" in text and "the device at" not in text


def test_backend_reply_without_checked_fails():
    with pytest.raises(HemError, match="without a reply token"):
        L.checkin(FakeDevice(), FakeBackend(reply={"nope": 1}))


# ---------------------------------------------------------------------------- reboot proof

@pytest.mark.parametrize("before,now,seen_now,expected", [
    (100, 1, 8.0, True),        # restarted after the request: uptime far below 100 + 8
    (100, 108, 8.0, False),     # kept running
    (100, 107, 8.0, False),     # rounding of whole seconds is tolerated
    (0, 1, 8.0, True),          # even a device that had just booted
    (100, None, 8.0, False),    # no uptime: no proof
    (100, 6, 8.0, True),        # booted 2 s after the request (0.5 s), within the slack
    (100, 30, 40.0, True),      # booted 10 s after the request
])
def test_rebooted(before, now, seen_now, expected):
    # The status before was seen at t=0, the reboot request sent at t=0.5.
    assert L.rebooted(before, 0.0, now, seen_now, requested_at=0.5) is expected


def test_a_slow_answer_does_not_pass_for_a_restart():
    """No reboot, up 30 s; a status answer computed at t=5 arrives at t=10 (uptime 35, where
    40 was expected): its uptime "went back" by more than the slack, but the device clearly
    did not boot after the request."""
    assert L.rebooted(30, 0.0, 35, 10.0, requested_at=0.5) is False
    # A real restart seen at the same time passes.
    assert L.rebooted(30, 0.0, 4, 10.0, requested_at=0.5) is True


class FakeTime:
    def __init__(self):
        self.now = 1000.0

    def clock(self):
        return self.now

    def sleep(self, seconds):
        assert seconds >= 0
        self.now += seconds


def poller(fake, script):
    """script: list of (uptime or exception); each poll consumes one entry and costs 0.1 s."""
    items = list(script)

    def poll():
        fake.now += 0.1
        item = items.pop(0) if len(items) > 1 else items[0]
        if isinstance(item, Exception):
            raise item
        return {"uptime": item}
    return poll


def test_wait_returns_when_the_device_is_back_with_a_lower_uptime():
    fake = FakeTime()
    down = HemError("cannot reach the device at x (refused)", "GET /api/system/status")
    status, waited = L.wait_for_reboot(poller(fake, [down, down, 0]), 500, fake.now, delay=2, timeout=60, interval=1,
                                       clock=fake.clock, sleep=fake.sleep)
    assert status == {"uptime": 0}
    assert 4 <= waited < 5


def test_wait_ignores_answers_before_the_device_went_down():
    fake = FakeTime()
    down = HemError("refused", "GET /api/system/status")
    # Still up right after the request (uptime keeps counting), then down, then back.
    status, _waited = L.wait_for_reboot(poller(fake, [501, 502, down, 1]), 500, fake.now, delay=0, timeout=60, interval=1,
                                        clock=fake.clock, sleep=fake.sleep)
    assert status == {"uptime": 1}


def test_never_back_fails_with_time_waited_and_last_error():
    fake = FakeTime()
    down = HemError("cannot reach the device at https://hem.test (Connection refused)", "GET /api/system/status")
    with pytest.raises(HemError) as info:
        L.wait_for_reboot(poller(fake, [down]), 500, fake.now, delay=1, timeout=5, interval=1, clock=fake.clock, sleep=fake.sleep)
    text = str(info.value)
    assert "did not come back within 5 s" in text and "timeout 5 s" in text and "Connection refused" in text
    assert fake.now - 1000.0 < 7      # bounded by the timeout (plus the last poll)


def test_kept_answering_fails_saying_it_did_not_reboot():
    fake = FakeTime()
    counter = iter(range(501, 10000))

    def poll():
        fake.now += 0.1
        return {"uptime": next(counter)}
    with pytest.raises(HemError, match="did not reboot"):
        L.wait_for_reboot(poll, 500, fake.now, delay=0, timeout=5, interval=1, clock=fake.clock, sleep=fake.sleep)


class SimulatedDevice:
    """A device whose whole-second uptime counts from its boot; ``reboot()`` takes it down
    for ``downtime`` seconds. Every status read costs 0.05 s."""

    def __init__(self, fake, up_for, downtime):
        self.fake, self.downtime = fake, downtime
        self.boot = fake.now - up_for
        self.down_until = None

    def reboot(self):
        self.down_until = self.fake.now + self.downtime
        self.boot = self.down_until

    def status(self):
        self.fake.now += 0.05
        if self.down_until is not None and self.fake.now < self.down_until:
            raise HemError("cannot reach the device at x (Connection refused)", "GET /api/system/status")
        return {"uptime": int(self.fake.now - self.boot)}


def reboot_and_wait(up_for, downtime, baseline=True):
    fake = FakeTime()
    device = SimulatedDevice(fake, up_for, downtime)
    before, seen = device.status(), fake.now
    if baseline:
        before, seen = L.uptime_baseline(device.status, before, seen, clock=fake.clock, sleep=fake.sleep)
    requested_at = fake.now
    device.reboot()
    status, _waited = L.wait_for_reboot(device.status, before["uptime"], seen, delay=0, timeout=30, interval=0.3,
                                        requested_at=requested_at, clock=fake.clock, sleep=fake.sleep)
    return before, status


@pytest.mark.parametrize("up_for", [0.0, 0.4, 0.99, 1.0, 1.7, 2.0, 2.6, 3.0, 3.5, 40.0])
@pytest.mark.parametrize("downtime", [0.5, 1.0, 1.9, 4.0])
def test_a_short_reboot_of_a_device_that_just_booted_is_proven(up_for, downtime):
    before, status = reboot_and_wait(up_for, downtime)
    assert before["uptime"] >= L.UPTIME_SLACK + 1
    assert status["uptime"] < before["uptime"]


def test_without_the_baseline_a_short_reboot_after_a_fresh_boot_is_not_proven():
    """Why the baseline exists: up for under a second, down for one second, the uptime never
    goes back far enough to prove the restart (CI once waited 300 s for this)."""
    with pytest.raises(HemError, match="did not reboot"):
        reboot_and_wait(0.5, 1.0, baseline=False)


def test_the_baseline_reads_again_only_when_the_uptime_is_too_low():
    fake = FakeTime()
    reads = []

    def read():
        reads.append(fake.now)
        return {"uptime": 3}
    assert L.uptime_baseline(read, {"uptime": 3}, 5.0, clock=fake.clock, sleep=fake.sleep) == ({"uptime": 3}, 5.0)
    assert L.uptime_baseline(read, {"ctx": "x"}, 5.0, clock=fake.clock, sleep=fake.sleep) == ({"ctx": "x"}, 5.0)
    assert reads == [] and fake.now == 1000.0
    status, seen = L.uptime_baseline(read, {"uptime": 1}, 5.0, clock=fake.clock, sleep=fake.sleep)
    assert status == {"uptime": 3} and seen == fake.now == 1002.0 and reads == [1002.0]


def _backend_params(**params):
    return dict({"backend_url": "https://api.example.test", "backend_validate_certs": True,
                 "backend_ca_path": None, "timeout": 5}, **params)


def test_backend_options_refuse_a_non_http_url():
    with pytest.raises(L.HemError, match="^option backend_url: must be an http:// or https:// URL, got 'ftp://x'$"):
        L.check_backend_options(_backend_params(backend_url="ftp://x"))


def test_backend_options_refuse_an_unreadable_ca_path(tmp_path):
    with pytest.raises(L.HemError, match="^option backend_ca_path: .* does not exist or cannot be read"):
        L.check_backend_options(_backend_params(backend_ca_path=str(tmp_path / "missing.pem")))
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert L.check_backend_options(_backend_params(backend_ca_path=str(ca))) is None


def test_backend_client_warns_when_not_verifying_https():
    warnings = []

    class M:
        params = {"backend_url": "https://api.example.test/", "backend_validate_certs": False, "backend_ca_path": None, "timeout": 5}

        def warn(self, msg):
            warnings.append(msg)

        def client(self, **overrides):     # HemModule.client with overrides: a new client
            return HemClient(**overrides)
    client = L.backend_client(M())
    assert client.url == "https://api.example.test" and client.retries == 0 and client.validate_certs is False
    assert warnings and "backend_validate_certs" in warnings[0]
    assert client.passphrase is None and client.token is None and client._transport.proxy_url is None
