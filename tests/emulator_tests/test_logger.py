# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit logger, `/api/logger/*`, over real HTTPS, checked by a verifier of its own.

`verify_log` is written from the vendor web manager's description of a log file (encedo-manager
assets/core2.js `check_log_integrity` and `parse_logger`), not from the emulator's code, which it
does not import: a seed line (type 0, result 0) carries the line key and its Ed25519 signature by
the key of `GET /api/logger/key`; every line's last field is the first 16 bytes of HMAC-SHA256 over
the line up to its last `|`, keyed with the seed's key; counters (hex) go up by one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import struct
import time
import urllib.error

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tests.emulator.harness import Emulator

from .conftest import PASS, client

# core2.js `logger_types` indices
POWER_UP, REBOOT, LOGS_LISTED, LOG_READ, TOKEN_PASSWORD, CONFIG_UPDATED, RTC_SET, PERSONALISED = 1, 2, 9, 11, 13, 18, 19, 29
OK, ERROR = 0, 1


class LogError(Exception):
    """A log file that does not verify."""


def _b64(text: str) -> bytes:
    """As the manager decodes: `_` -> `/`, `-` -> `+`, then base64 with the padding optional."""
    text = text.replace("_", "/").replace("-", "+")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def verify_log(text: str, logger_key_b64: str) -> list:
    """-> the events of a log file, each {counter, time, type, result, subject, data}; LogError when it does not verify."""
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(logger_key_b64))
    line_key, previous, events = None, None, []
    for number, line in enumerate(text.split("\n")):
        if not line or line.startswith("#") or len(line) < 3:
            continue
        fields = line.split("|")
        if len(fields) != 7:
            raise LogError("line %d: %d fields, not 7" % (number, len(fields)))
        counter, kind, result = int(fields[0], 16), int(fields[2], 16), int(fields[3], 16)
        if kind == 0 and result == 0:
            key = _b64(fields[4])
            try:
                public.verify(_b64(fields[5]), key)
            except InvalidSignature as exc:
                raise LogError("line %d: the seed signature does not verify with the logger key" % number) from exc
            line_key = key
        elif line_key is None:
            raise LogError("line %d: no seed line before it" % number)
        if previous is not None and counter != previous + 1:
            raise LogError("line %d: counter %d follows %s" % (number, counter, previous))
        previous = counter
        body = line[:line.rindex("|") + 1]
        if not hmac.compare_digest(hmac.new(line_key, body.encode("utf-8"), hashlib.sha256).digest()[:16], _b64(fields[6])):
            raise LogError("line %d: the mac does not match" % number)
        events.append({"counter": counter, "time": int(fields[1], 16), "type": kind, "result": result,
                       "subject": fields[4], "data": _b64(fields[5]) if fields[5] and kind else b""})
    if line_key is None:
        raise LogError("no seed line")
    return events


def _reboot(emu, hem):
    """Reboot through GET /api/system/reboot, wait for the new boot, check in (the clock comes back unset)."""
    boot = emu.state(0)["boot_id"]
    assert hem.get("/api/system/reboot").status == 200
    assert emu.wait_new_boot(0, boot)
    hem.checkin(emu.backend_url)


def _fetch(hem, file_id):
    """-> (file text, logger key) with a logger:get token already in `hem`."""
    ans = hem.get("/api/logger/" + file_id)
    assert ans.status == 200, ans
    assert ans.headers["Content-Type"].startswith("text/plain")
    key = hem.get("/api/logger/key")
    assert key.status == 200, key
    return ans.raw.decode("utf-8"), key.json["key"]


@pytest.fixture(scope="module")
def log_emu(emulator_module):
    return emulator_module(devices=1, passphrase=PASS, rtc_set=True)


@pytest.fixture(scope="module")
def log_hem(log_emu):
    hem = client(log_emu)
    hem.login(PASS, scope="logger:get")
    return hem


def test_list_key_and_the_locked_current_file(log_emu, log_hem):
    listing = log_hem.get("/api/logger/list")
    assert listing.status == 200 and listing.json["total"] == 1 and len(listing.json["id"]) == 1
    current = listing.json["id"][0]
    assert re.match(r"^[0-9a-f]{8}$", current)
    assert abs(int(current, 16) - time.time()) < 600          # the power-up time (--rtc-set)
    assert log_hem.get("/api/logger/" + current).status == 406
    assert log_hem.get("/api/logger/list/0").json == listing.json
    assert log_hem.get("/api/logger/list/1").json == {"total": 1, "id": []}
    assert log_hem.get("/api/logger/list/x1").status == 406
    for bad in ("0000000g", "123", "0123456789", "%08x" % ((int(current, 16) + 1) & 0xFFFFFFFF)):
        assert log_hem.get("/api/logger/" + bad).status == 404, bad
    key = log_hem.get("/api/logger/key").json
    nonce = base64.b64decode(key["nonce"])
    assert len(nonce) == 32
    Ed25519PublicKey.from_public_bytes(base64.b64decode(key["key"])).verify(base64.b64decode(key["nonce_signed"]), nonce)
    assert key["key"] == log_hem.get("/api/system/config").json["eid_sign"]   # the audit-log signing key
    assert log_hem.get("/api/logger/key").json["nonce"] != key["nonce"]


def test_scope_logger_get_is_required(log_emu, log_hem):
    hem = client(log_emu)
    hem.login(PASS, scope="system:config")
    current = log_hem.get("/api/logger/list").json["id"][0]
    for path in ("/api/logger/key", "/api/logger/list", "/api/logger/list/0", "/api/logger/" + current):
        assert hem.get(path).status == 403, path
        assert hem.get(path, auth=False).status == 401, path
        assert hem.get(path, token="x.y.z").status == 401, path
    assert log_hem.request("DELETE", "/api/logger/" + current).status == 404


def test_previous_boot_file_verifies_and_holds_the_events(emulator):
    emu = emulator(devices=1, rtc_set=True, reboot_seconds=0.3)
    hem = client(emu)
    hem.personalise(PASS)
    hem.login("not the passphrase", expect=401)
    hem.login(PASS)
    assert hem.post("/api/system/config", {"user": "auditor"}).json["updated"] is True
    hem.checkin(emu.backend_url)
    _reboot(emu, hem)
    hem.login(PASS, scope="logger:get")
    listing = hem.get("/api/logger/list").json
    assert listing["total"] == 2
    previous, current = listing["id"]
    assert hem.get("/api/logger/" + current).status == 406
    text, key = _fetch(hem, previous)
    events = verify_log(text, key)
    assert [e["counter"] for e in events] == list(range(len(events)))
    kinds = [(e["type"], e["result"], e["subject"]) for e in events]
    assert kinds == [(0, OK, kinds[0][2]), (POWER_UP, OK, "-"), (PERSONALISED, OK, "M"), (TOKEN_PASSWORD, ERROR, "-"),
                     (TOKEN_PASSWORD, OK, "U"), (CONFIG_UPDATED, OK, "U"), (RTC_SET, OK, "-"), (REBOOT, OK, "U")]
    assert events[4]["data"] == b"system:config"                       # RAW: the scope of the token
    (clock,) = struct.unpack("<I", events[6]["data"])                   # TIME: 4 bytes little-endian
    assert abs(clock - time.time()) < 600 and abs(events[6]["time"] - clock) <= 1
    # the current boot: its clock started unset (id and power-up line count from 0), then the check-in
    assert int(current, 16) < 600
    hem.login(PASS)                                 # the current file is not readable: look at it from a later boot
    _reboot(emu, hem)
    hem.login(PASS, scope="logger:get")
    events = verify_log(_fetch(hem, current)[0], key)
    assert [e["type"] for e in events] == [0, POWER_UP, RTC_SET, TOKEN_PASSWORD, LOGS_LISTED, LOG_READ, TOKEN_PASSWORD, REBOOT]
    assert events[1]["time"] < 600 and events[3]["data"] == b"logger:get"
    assert events[5]["data"] == previous.encode()                       # LOG: the id of the file read


@pytest.mark.parametrize("action,problem", [("flip", "mac"), ("remove", "counter"), ("swap_key", "seed signature")])
def test_the_verifier_catches_tampering(emulator, action, problem):
    emu = emulator(devices=1, passphrase=PASS, rtc_set=True, reboot_seconds=0.3)
    hem = client(emu)
    hem.login(PASS)
    _reboot(emu, hem)
    hem.login(PASS, scope="logger:get")
    previous = hem.get("/api/logger/list").json["id"][0]
    text, key = _fetch(hem, previous)
    assert len(verify_log(text, key)) == 4      # seed, power-up, login, reboot (the check-in is in the new boot's file)
    fields = {} if action == "swap_key" else {"file": previous, "line": 2}
    view = emu.logger(0, action, **fields)
    assert [f["locked"] for f in view["files"]] == [False, True]
    tampered, new_key = _fetch(hem, previous)
    assert (tampered != text) == (action != "swap_key") and (new_key != key) == (action == "swap_key")
    with pytest.raises(LogError, match=problem):
        verify_log(tampered, new_key)


def test_epa_offers_only_the_key(emulator):
    emu = emulator(devices=1, passphrase=PASS, rtc_set=True, model="epa")
    hem = client(emu)
    hem.login(PASS, scope="logger:get")
    key = hem.get("/api/logger/key")
    assert key.status == 200 and key.json["key"] == emu.logger(0)["key"]
    current = emu.logger(0)["files"][0]["id"]
    for path in ("/api/logger/list", "/api/logger/list/0", "/api/logger/" + current):
        assert hem.get(path).status == 404, path


def test_state_dir_keeps_the_log(tmp_path):
    state = tmp_path / "state"
    with Emulator(devices=1, passphrase=PASS, rtc_set=True, state_dir=str(state), tmp_path=tmp_path) as emu:
        client(emu).login(PASS)
        first = emu.logger(0)["files"][0]["id"]
        emu.restart()                               # a power cycle: the first boot's file is closed
        hem = client(emu)
        hem.login(PASS, scope="logger:get")
        listing = hem.get("/api/logger/list").json
        assert listing["total"] == 2 and listing["id"][0] == first
        events = verify_log(*_fetch(hem, first))
        assert (TOKEN_PASSWORD, OK, "U") in [(e["type"], e["result"], e["subject"]) for e in events]


def test_factory_reset_erases_the_log_and_its_key(emulator):
    emu = emulator(devices=1, passphrase=PASS, rtc_set=True, reboot_seconds=0.3)
    hem = client(emu)
    hem.login(PASS)
    _reboot(emu, hem)
    before = emu.logger(0)
    assert len(before["files"]) == 2
    hem.login(PASS)
    boot = emu.state(0)["boot_id"]
    assert hem.post("/api/system/config", {"wipeout": True}).status == 200
    assert emu.wait_new_boot(0, boot)
    after = emu.logger(0)
    assert len(after["files"]) == 1 and after["files"][0]["locked"] and after["key"] != before["key"]


def test_busy_while_a_format_runs_and_control_refuses_bad_bodies(emulator):
    emu = emulator(devices=1, passphrase=PASS, rtc_set=True, extra_args=["--format-seconds", "30"])
    hem = client(emu)
    hem.login(PASS, scope="logger:get")
    assert hem.get("/api/logger/key").status == 200
    current = emu.logger(0)["files"][0]["id"]
    for body in ({"action": "flip", "file": current, "line": 99}, {"action": "remove", "file": current, "line": "1"},
                 {"action": "swap_key", "file": current}, {"action": "burn"}, {"file": current}):
        with pytest.raises(urllib.error.HTTPError, match="400"):
            emu._control("POST", "/devices/0/logger", body)  # pylint: disable=protected-access
    with pytest.raises(urllib.error.HTTPError, match="404"):
        emu.logger(0, "flip", file="0badf00d")
    admin = client(emu)
    admin.login(PASS)
    assert admin.post("/api/system/config", {"storage_disk0size": 4194304}).status == 200   # a format starts
    for path in ("/api/logger/key", "/api/logger/list", "/api/logger/" + current):
        assert hem.get(path).status == 409, path
