# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The control interface: request log, fault injection, state, clock."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest
import requests

from .conftest import PASS, client


@pytest.fixture
def emu(emulator):
    return emulator(devices=2, passphrase=PASS, rtc_set=True)


def test_devices_and_state(emu):
    devs = emu.devices_info()
    assert [d["index"] for d in devs] == [0, 1]
    assert devs[1]["url"] == emu.url(1) and devs[1]["http_url"] == emu.http_url(1)
    assert {"index", "url", "http_url", "devid", "model", "personalised", "rtc_set", "boot_id"} <= set(devs[0])
    st = emu.state(1)
    assert {"personalised", "rtc_set", "boot_id", "uptime", "config", "se_provisioned", "pending_tls",
            "tls_cert_pem"} <= set(st)
    assert st["config"]["devid"] == devs[1]["devid"] != devs[0]["devid"]
    assert "userkey" not in json.dumps(st) and PASS not in json.dumps(st)


def test_log_keys_never_values(emu):
    hem = client(emu)
    emu.clear_log(0)
    assert emu.log(0) == []
    hem.login(PASS)
    hem.post("/api/system/config", {"user": "secret-user-name", "tls": {"crt": "QUJD"}})
    client(emu, http=True).get("/api/system/status")
    log = emu.log(0)
    assert [(e["method"], e["path"], e["status"]) for e in log] == [
        ("GET", "/api/auth/token", 200), ("POST", "/api/auth/token", 200), ("POST", "/api/system/config", 400),
        ("GET", "/api/system/status", 200)]
    assert log[1]["keys"] == ["auth"] and log[1]["auth"] == "none"
    assert log[2]["keys"] == ["tls", "user"] and log[2]["tls_keys"] == ["crt"] and log[2]["auth"] == "bearer"
    assert [e["scheme"] for e in log] == ["https", "https", "https", "http"]
    assert [e["scope"] for e in log] == [None, None, "system:config", None]     # the scope of a valid bearer token
    assert all(isinstance(e["t"], float) for e in log)
    text = json.dumps(log)
    assert "secret-user-name" not in text and "QUJD" not in text and hem.token not in text
    assert emu.posts(0) == [log[1], log[2]]
    assert emu.log(1) == []


def test_log_read_and_clear_in_one_step(emu):
    emu.clear_log(0)
    plain = client(emu, http=True)
    plain.get("/api/system/status")
    plain.get("/api/system/version")
    client(emu, 1, http=True).get("/api/system/status")
    assert len(emu.log(0, clear=False)) == 2                          # a plain read leaves the log
    assert len(emu.log(0)) == 2
    taken = emu.log(0, clear=True)
    assert [(e["method"], e["path"]) for e in taken] == [("GET", "/api/system/status"), ("GET", "/api/system/version")]
    assert emu.log(0) == []                                           # cleared by that read
    assert [e["path"] for e in emu.log(1)] == ["/api/system/status"]  # another device's log is left alone
    plain.get("/api/system/status")
    assert [e["path"] for e in emu.log(0)] == ["/api/system/status"]  # an entry recorded after stays
    assert len(emu.log(0, clear=True)) == 1 and emu.log(0) == []


def test_log_read_and_clear_loses_nothing_under_load(emu):
    """Requests recorded while the log is read and cleared again and again: every entry is
    returned by exactly one read-and-clear (or is still in the log), none is lost in between."""
    emu.clear_log(0)
    sent = 60
    done = threading.Event()

    def traffic():
        plain = client(emu, http=True)
        for _request in range(sent):
            plain.get("/api/system/status")
        done.set()

    worker = threading.Thread(target=traffic)
    worker.start()
    taken = []
    while not done.is_set():
        taken += emu.log(0, clear=True)
    worker.join()
    taken += emu.log(0, clear=True)
    assert len(taken) == sent
    assert [e["t"] for e in taken] == sorted(e["t"] for e in taken)


def test_busy_and_500_match_path_method_count(emu):
    hem = client(emu)
    hem.login(PASS)
    emu.fault(0, "busy", count=2, path="/api/system/config", method="GET")
    assert hem.get("/api/system/status").status == 200               # other path: untouched
    assert hem.post("/api/system/config", {"ctx": 1}).status == 200  # other method: untouched
    assert hem.get("/api/system/config").status == 409
    assert hem.get("/api/system/config").status == 409
    assert hem.get("/api/system/config").status == 200
    emu.fault(0, "error500")
    ans = hem.get("/api/system/status")
    assert ans.status == 500 and ans.raw == b""
    emu.fault(0, "error400", path="/api/system/config", method="POST")
    ans = hem.post("/api/system/config", {"ctx": 7})
    assert ans.status == 400 and ans.raw == b""
    assert emu.state(0)["config"]["ctx"] != 7                         # refused: nothing applied
    emu.fault(0, "busy", count=5)
    emu.clear_faults(0)
    assert hem.get("/api/system/status").status == 200
    statuses = [e["status"] for e in emu.log(0) if e["path"] == "/api/system/config" and e["method"] == "GET"]
    assert statuses == [409, 409, 200]


def test_latency(emu):
    hem = client(emu)
    emu.fault(0, "latency", seconds=1.5, path="/api/system/status")
    t0 = time.monotonic()
    assert hem.get("/api/system/status").status == 200
    assert time.monotonic() - t0 >= 1.5
    t0 = time.monotonic()
    hem.get("/api/system/status")                                # the fault was used up
    assert time.monotonic() - t0 < 1.4


@pytest.mark.parametrize("after_apply", [False, True])
def test_drop(emu, after_apply):
    hem = client(emu)
    hem.login(PASS)
    emu.fault(0, "drop", path="/api/system/config", method="POST", after_apply=after_apply)
    with pytest.raises(requests.ConnectionError):
        hem.post("/api/system/config", {"user": "dropped"})
    assert (emu.state(0)["config"]["user"] == "dropped") is after_apply
    assert emu.posts(0)[-1]["status"] is None
    assert hem.get("/api/system/status").status == 200


def test_clock_and_bad_control_requests(emu):
    assert emu.clock(0, 3600)["offset"] == 3600
    st = client(emu).get("/api/system/status").json
    assert abs(st["time"] - (time.time() + 3600)) < 5
    for method, path, body in (("POST", "/devices/0/faults", {"kind": "nope"}),
                               ("POST", "/devices/0/faults", {"kind": "busy", "count": 0}),
                               ("POST", "/devices/0/clock", {"offset": "x"}),
                               ("GET", "/devices/9/state", None), ("GET", "/nothing", None)):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(emu.control_url + path, data=data, method=method)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=5)
        assert err.value.code in (400, 404)
        err.value.close()


def test_control_is_not_on_device_ports(emu):
    assert client(emu).get("/devices").status == 404
    assert client(emu, http=True).get("/devices/0/state").status == 404
