# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""encedo_firmware: bad input is refused before any request (main() with a transport that records
what would be sent), the downgrade rule, and HemClient.post_raw / get(with_status) on a scripted
transport. The flows run against the emulator in tests/integration/test_firmware.py."""

from __future__ import annotations

import os

import pytest

from tests.unit.plugins.modules import replay as R

from ansible_collections.encedo.hem.plugins.module_utils import _client as C
from ansible_collections.encedo.hem.plugins.module_utils import _errors as E
from ansible_collections.encedo.hem.plugins.module_utils import _firmware as F
from ansible_collections.encedo.hem.plugins.module_utils import _transport as T
from ansible_collections.encedo.hem.plugins.modules import encedo_firmware


@pytest.fixture
def sent(monkeypatch):
    """Every request main() hands to the transport (none may be, for bad input)."""
    calls = []

    def send(transport, method, path, data, headers, timeout):
        calls.append((method, path))
        raise AssertionError("a request was sent: %s %s" % (method, path))

    monkeypatch.setattr(T.Transport, "send", send)
    for var in list(os.environ):
        if var.startswith("ENCEDO_HEM_"):
            monkeypatch.delenv(var)
    return calls


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "firmware.bin"
    path.write_bytes(b"\x01" * 1024)
    return str(path)


def run(image, **args):
    task = dict(url="https://hem.example", passphrase="a-passphrase", src=image, version="nGINE 1.2.3")
    task.update(args)
    task = dict((k, v) for k, v in task.items() if v is not None)
    return R.run_main(encedo_firmware, task)


BAD = [
    (dict(src="/nonexistent/fw.bin"), "option src: /nonexistent/fw.bin is not a readable file"),
    (dict(version=""), "option version: must be the version the image carries"),
    (dict(version="   "), "option version: must be the version the image carries"),
    (dict(upload_timeout=0), "option upload_timeout: must be at least 1 second, got 0"),
    (dict(check_timeout=-5), "option check_timeout: must be at least 1 second, got -5"),
    (dict(reboot_timeout=0), "option reboot_timeout: must be at least 1 second, got 0"),
    (dict(poll_interval=0), "option poll_interval: must be a positive number of seconds, got 0.0"),
    (dict(backend_url="ftp://x"), "option backend_url: must be an http:// or https:// URL, got 'ftp://x'"),
    (dict(url="hem.example"), "option url: 'hem.example' is not a device address"),
    (dict(component="bootloader"), "value of component must be one of: firmware, dashboard"),
]


@pytest.mark.parametrize("args, msg", BAD)
def test_bad_input_is_refused_before_any_request(sent, image, args, msg):
    result, failed = run(image, **args)
    assert failed and msg in result["msg"], result["msg"]
    assert sent == []


@pytest.mark.parametrize("size, component, ok", [
    (0, "firmware", False), (3 * 1024 * 1024, "firmware", True), (3 * 1024 * 1024 + 1, "firmware", False),
    (3 * 1024 * 1024 + 1, "dashboard", True),
])
def test_image_size_limits(sent, tmp_path, size, component, ok):
    path = tmp_path / "image.bin"
    with open(str(path), "wb") as handle:
        handle.truncate(size)
    params = dict(component=component, src=str(path), version="v 1.0", upload_timeout=1, check_timeout=1, reboot_timeout=1,
                  poll_interval=1.0, backend_url="https://api.encedo.com", backend_ca_path=None)
    if ok:
        F.check_options(params)
    else:
        with pytest.raises(E.HemError, match="option src: .* has %d bytes" % size):
            F.check_options(params)
    assert sent == []


@pytest.mark.parametrize("text, numbers", [
    ("nGINE 1.2.3 (HEM emulator)", (1, 2, 3)), ("1.10", (1, 10)), ("v2.0.1-rc1", (2, 0, 1)), ("nGINE", None), ("7", None),
])
def test_version_numbers(text, numbers):
    assert F.version_numbers(text) == numbers


def test_1_10_is_newer_than_1_9():
    assert F.version_numbers("nGINE 1.10.0") > F.version_numbers("nGINE 1.9.9")


# ------------------------------------------------------------------ HemClient: raw uploads and statuses

class Scripted(object):
    """HemClient._send replaced: records each request and answers from a list."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests = []

    def __call__(self, method, path, data, headers, timeout, limit=None):
        self.requests.append(dict(method=method, path=path, data=data, headers=dict(headers), timeout=timeout))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def client(answers, **kwargs):
    hem = C.HemClient("https://hem.example", token="t", **kwargs)
    hem._send = Scripted(answers)
    hem._sleep = lambda seconds: None
    return hem


def test_post_raw_sends_the_bytes_with_their_length_over_the_json_limit():
    hem = client([T.Answer(200, b"", {})], timeout=30)
    data = b"\x00\xff" * (E.MAX_JSON_BODY + 10)
    assert hem.post_raw("/api/system/upgrade/upload_fw", data, headers={"Content-Disposition": 'attachment; filename="firmware.bin"'},
                        timeout=900) == {}
    request = hem._send.requests[0]
    assert request["method"] == "POST" and request["data"] == data
    assert request["headers"]["Content-Type"] == "application/octet-stream"
    assert request["headers"]["Content-Length"] == str(len(data))
    assert request["headers"]["Content-Disposition"] == 'attachment; filename="firmware.bin"'
    assert request["timeout"] > 30           # the upload's own timeout, not the client's


def test_post_raw_is_never_repeated_once_sent():
    hem = client([T.TransportError("reset", sent=True)], retries=3)
    with pytest.raises(E.HemOutcomeUnknown):
        hem.post_raw("/api/system/upgrade/upload_fw", b"image")
    assert len(hem._send.requests) == 1


def test_get_with_status_tells_201_202_and_200_apart():
    hem = client([T.Answer(201, b"", {}), T.Answer(202, b"", {}), T.Answer(200, b'{"a":1}', {})])
    assert [hem.get("/x", with_status=True) for dummy in range(3)] == [(201, {}), (202, {}), (200, {"a": 1})]
    assert hem.get.__doc__ and "with_status" in hem.get.__doc__


# ------------------------------------------------------------------ the checks before any upload (the plan)

class FakeModule(object):
    def __init__(self, **params):
        self.params = dict(component="firmware", allow_downgrade=False, **params)


PPA_STATUS = {"uptime": 100, "time": 1767225600, "storage": ["disk0"]}
PPA_VERSION = {"hwv": "PPA rev 2.2", "fwv": "nGINE 1.2.2"}


@pytest.mark.parametrize("status, version, words", [
    ({"uptime": 100, "time": 1767225600}, {"hwv": "EPA rev 1.0", "fwv": "nGINE 1.2.2"}, "it is not a PPA"),
    (dict(PPA_STATUS, inited=False), PPA_VERSION, "it is not personalised"),
    ({"uptime": 100, "storage": []}, PPA_VERSION, "its clock is unset"),
    (dict(PPA_STATUS, format="status42"), PPA_VERSION, "it is formatting its storage"),
])
def test_a_device_that_cannot_take_an_image_is_refused_in_the_plan(status, version, words):
    resource = F.FirmwareResource(FakeModule())
    current = dict(status=status, version=version, running=version["fwv"])
    with pytest.raises(E.HemError, match=words) as err:
        resource.plan(current, dict(version="nGINE 1.2.3", allow_downgrade=False))
    assert "Nothing was sent" in str(err.value) and err.value.result["changed"] is False


@pytest.mark.parametrize("want, allow, refused", [
    ("nGINE 1.2.1", False, "older than"), ("nGINE 1.2.1", True, None), ("custom build", False, "cannot tell"),
    ("custom build", True, None), ("nGINE 1.3", False, None),
])
def test_downgrades_need_allow_downgrade(want, allow, refused):
    resource = F.FirmwareResource(FakeModule())
    current = dict(status=PPA_STATUS, version=PPA_VERSION, running="nGINE 1.2.2")
    if refused:
        with pytest.raises(E.HemError, match=refused):
            resource.plan(current, dict(version=want, allow_downgrade=allow))
    else:
        plan = resource.plan(current, dict(version=want, allow_downgrade=allow))
        assert plan.after == {"version": want} and plan.sent == ["firmware"]


def test_the_running_version_needs_no_checks():
    resource = F.FirmwareResource(FakeModule())
    current = dict(status={"uptime": 1}, version={"hwv": "EPA", "fwv": "nGINE 1.2.3"}, running="nGINE 1.2.3")
    assert not resource.plan(current, dict(version="nGINE 1.2.3", allow_downgrade=False))
