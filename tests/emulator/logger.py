# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit logger of one emulated device: `/api/logger/*` and the log files behind it.

Sources (docs/fidelity.md, "Audit logger"): the OpenAPI file (paths, status codes, fields), the
vendor web manager encedo-manager `assets/core2.js` (`get_logger`, `check_log_integrity`,
`parse_logger`, `logger_types`), the vendor configuration page (`eid_sign` is the audit-log
signing key) and the community client's notes (KajtomatO/encedo-hem-python-api, OPEN-QUESTIONS OQ-8).

Files. One file per power-up, its id the device clock at power-up as 8 lowercase hex digits (the
clock counts from 0 while unset, so ids repeat across boots: the emulator takes the next free
value). The current boot's file is locked (406); files are listed in the order they were made.

Lines. `counter|time|type|result|subject|data|mac`, counter and time in hex (time: what the
device clock reads, seconds since power-up while it is unset), type and result in hex (results
0 OK, 1 ERROR, 2 FAIL). A file opens with a seed line, type 0 result 0, whose subject is a fresh
32-byte line key and whose data is the Ed25519 signature of the raw key by the device's logger
key (`eid_sign`, the key `GET /api/logger/key` serves). Every line's mac is the first 16 bytes
of HMAC-SHA256, keyed with the line key, over the line up to and including its last `|`.
Counters start at 0 in every file and go up by one. Subjects, data, keys, signatures and macs
are base64url without padding (the manager maps `-_` back before decoding).

State lives in the device's persistent dict (`p["logger"]`), so `--state-dir` keeps it and a
factory reset (which rebuilds that dict and makes a new `eid_sign`) erases it with the key that
signed it; the next power-up starts a new file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import struct

from cryptography.hazmat.primitives.asymmetric import ed25519

from .util import b64d, b64e, jwt_split, new_ed25519

# Event types: the index of each entry of encedo-manager core2.js `logger_types`.
EVENTS = {
    "seed": 0, "power_up": 1, "reboot": 2, "shutdown": 3, "firmware_upgraded": 4, "entropy_failed": 5,
    "tls_error": 6, "selftest_passed": 7, "not_secure": 8, "logs_listed": 9, "log_deleted": 10, "log_read": 11,
    "scope_failed": 12, "token_password": 13, "token_mobile": 14, "device_paired": 15, "config_updated": 18,
    "rtc_set": 19, "key_generated": 20, "key_deleted": 21, "key_imported": 22, "key_token": 23,
    "key_integrity_failed": 24, "key_attributes_changed": 25, "key_derived": 26, "personalised": 29,
    "hash": 30, "hash_verify": 31, "exdsa_sign": 32, "exdsa_verify": 33, "wrap": 34, "unwrap": 35,
    "encrypt": 36, "decrypt": 37, "ecdh": 38,
}
OK, ERROR, FAIL = 0, 1, 2                 # core2.js `logger_results_names`
LIST_PAGE = 128                           # OpenAPI: "Lists up to 128 log-file ids"
FILE_ID_RE = re.compile(r"^[0-9a-fA-F]{8}$")
SUBJECT_RE = re.compile(r"^(?:-|U|M|[A-Za-z0-9_-]{3,})$")


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _answer(status, body=None):
    from .device import Response  # pylint: disable=import-outside-toplevel  # device.py imports this module
    return Response(status, body)


def line_mac(key: bytes, body: str) -> str:
    """The mac field of a line whose text up to and including its last `|` is `body`."""
    return _b64u(hmac.new(key, body.encode("utf-8"), hashlib.sha256).digest()[:16])


class AuditLog:
    """The logger of one device. Every method runs under the device lock (the REST handlers hold it)."""

    def __init__(self, device):
        self.dev = device

    # ------------------------------------------------------------------ state

    @property
    def store(self):
        return self.dev.p.get("logger")

    def signing_key(self) -> ed25519.Ed25519PrivateKey:
        return ed25519.Ed25519PrivateKey.from_private_bytes(b64d(self.dev.p["eid_sign"]))

    def power_up(self):
        """A new boot: close the previous file, open a new one with a seed line and a power-up line."""
        store = self.dev.p.setdefault("logger", {"files": []})
        ids = {f["id"] for f in store["files"]}
        number = self.dev.rtc() & 0xFFFFFFFF
        while "%08x" % number in ids:
            number = (number + 1) & 0xFFFFFFFF
        key = secrets.token_bytes(32)
        store["files"].append({"id": "%08x" % number, "lines": []})
        store.update(key=_b64u(key), counter=0)
        self._append(EVENTS["seed"], OK, _b64u(key), _b64u(self.signing_key().sign(key)))
        self.write("power_up")

    def write(self, event, result=OK, subject="-", data: bytes = b""):
        """Append one event to the current file (see `Device.audit`) and persist it."""
        kind = EVENTS[event] if isinstance(event, str) else int(event)
        if kind <= 0 or result not in (OK, ERROR, FAIL) or not SUBJECT_RE.match(subject):
            raise ValueError("audit: bad event %r / result %r / subject %r" % (event, result, subject))
        if self.store and self.store["files"]:        # else wiped, not powered up again yet
            self._append(kind, result, subject, _b64u(data) if data else "")
        self.dev.save()

    def _append(self, kind, result, subject, data):
        store = self.store
        body = "%x|%08x|%x|%x|%s|%s|" % (store["counter"], self.dev.rtc() & 0xFFFFFFFF, kind, result, subject, data)
        store["files"][-1]["lines"].append(body + line_mac(b64d(store["key"]), body))
        store["counter"] += 1

    # ------------------------------------------------------------------ events with their own encoding

    def login(self, resp):
        """POST /api/auth/token answered: a password-auth token created (type 13) or refused (result ERROR)."""
        if resp.status == 200:
            claims = jwt_split(resp.body["token"])[1]
            self.write("token_password", OK, claims.get("sub", "-"), claims.get("scope", "").encode("utf-8"))
        elif resp.status == 401:
            self.write("token_password", ERROR)

    def rtc_set(self):
        """A check-in set the clock: data is the new time, 4 bytes little-endian (core2.js `parse_logger` TIME)."""
        self.write("rtc_set", data=struct.pack("<I", self.dev.now() & 0xFFFFFFFF))

    # ------------------------------------------------------------------ REST

    def route(self, req, claims, path):
        """GET /api/logger/key, /list, /list/{offset}, /{file} (list and file: MSC build only)."""
        if req.method != "GET":
            return _answer(404)
        parts = path.split("/")[3:]           # after "", "api", "logger"
        if parts == ["key"]:
            handler = self.get_key
        elif self.dev.msc and parts[0] == "list" and len(parts) <= 2:
            handler = self.get_list
        elif self.dev.msc and len(parts) == 1:
            handler = self.get_file
        else:
            return _answer(404)
        if self.dev.msc and self.dev.formatting():
            return _answer(409)                 # OpenAPI: the generic Conflict ("disk format in progress")
        denied = self.dev._auth(claims, ("logger:get",))  # pylint: disable=protected-access
        if denied:
            return denied
        return handler(parts)

    def get_key(self, _parts):
        key = self.signing_key()
        nonce = struct.pack(">I", self.dev.rtc() & 0xFFFFFFFF) + secrets.token_bytes(28)
        return _answer(200, {"key": b64e(key.public_key().public_bytes_raw()), "nonce": b64e(nonce),
                             "nonce_signed": b64e(key.sign(nonce))})

    def get_list(self, parts):
        offset = 0
        if len(parts) == 2:
            if not parts[1].isdigit() or not parts[1].isascii():
                return _answer(406)             # OpenAPI: "Offset contained a non-digit"
            offset = int(parts[1])
        ids = [f["id"] for f in self.store["files"]]
        self.write("logs_listed")
        return _answer(200, {"total": len(ids), "id": ids[offset:offset + LIST_PAGE]})

    def get_file(self, parts):
        if not FILE_ID_RE.match(parts[0]):
            return _answer(404)
        files = self.store["files"]
        found = [f for f in files if f["id"] == parts[0].lower()]
        if not found:
            return _answer(404)
        if found[0] is files[-1]:
            return _answer(406)                 # the current boot's file: locked by the logger task
        self.write("log_read", data=found[0]["id"].encode("ascii"))
        return _answer(200, ("\n".join(found[0]["lines"]) + "\n").encode("utf-8"))

    # ------------------------------------------------------------------ control interface (tests)

    def control(self, method, body):
        """GET: {"files": [{"id", "lines", "locked"}], "key": logger public key}.

        POST {"action": "flip", "file": id, "line": n}: one character of line n's time field changes
        (another hex digit), nothing else: the mac no longer matches.
        POST {"action": "remove", "file": id, "line": n}: line n is removed (the counters then jump).
        POST {"action": "swap_key"}: the device's logger key (`eid_sign`) is replaced: the seeds of the
        files written so far no longer verify with the key `GET /api/logger/key` serves.
        Line numbers count from 0 (the seed line); default 1. -> (status, answer)
        """
        store = self.store or {"files": []}
        if method == "GET":
            return 200, self._control_view()
        if method != "POST" or not isinstance(body, dict) or body.get("action") not in ("flip", "remove", "swap_key"):
            return 400, None
        if body["action"] == "swap_key":
            if set(body) != {"action"}:
                return 400, None
            self.dev.p["eid_sign"] = b64e(new_ed25519())
        else:
            line = body.get("line", 1)
            if set(body) - {"action", "file", "line"} or not isinstance(line, int) or isinstance(line, bool):
                return 400, None
            found = [f for f in store["files"] if f["id"] == body.get("file")]
            if not found:
                return 404, None
            lines = found[0]["lines"]
            if not 0 <= line < len(lines):
                return 400, None
            if body["action"] == "remove":
                del lines[line]
            else:
                fields = lines[line].split("|")
                fields[1] = ("1" if fields[1][0] != "1" else "2") + fields[1][1:]
                lines[line] = "|".join(fields)
        self.dev.save()
        return 200, self._control_view()

    def _control_view(self):
        files = (self.store or {"files": []})["files"]
        return {"files": [{"id": f["id"], "lines": len(f["lines"]), "locked": f is files[-1]} for f in files],
                "key": b64e(self.signing_key().public_key().public_bytes_raw())}
