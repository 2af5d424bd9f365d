# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Firmware and dashboard upgrade of an emulated HEM: `/api/system/upgrade/*` and check-in action `U`.

Sources (docs/fidelity.md, "Firmware upgrade"): the OpenAPI file (paths, status codes, the
16 MiB raw-upload and 3 MiB image limits, the two paths that close without an answer),
encedo-manager `assets/encedo.js` (upload as `firmware.bin` / `webroot.tar`, poll `check_fw`
while it answers 201/202, `install_fw`, wait for the device, check in) and hem-sdk-js
(`Content-Length` on uploads). Images are the emulator's own (tests/emulator/firmware.py).

The device keeps in `p["upgrade"]` (saved by Device.save, so kept with --state-dir):
`fw` {fwv, fws} and `uis` (installed; absent: factory), `staged` {fw|ui: {name, ok, fwv, fws}}
(the uploads; the image bytes are not kept, only what checking them gives), `pending`
(an image for check-in `U`, set through the control interface) and `flash` (an install
that the next boot completes). Per boot: the check tasks, `installing`, `fw_upgrade`.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time

from . import firmware
from .util import b64e

PREFIX = "/api/system/upgrade/"
RAW_UPLOAD_MAX = 16 * 1024 * 1024       # OA global conventions: raw uploads up to 16 MiB, then 413
FW_IMAGE_MAX = 3 * 1024 * 1024          # OA upload_fw: "max 3 MiB"; larger closes without an answer
UPLOADS = {PREFIX + "upload_fw": "fw", PREFIX + "upload_ui": "ui"}
STAGED_NAMES = {"fw": ("firmware.bin", "firmware.hex"), "ui": ("webroot.tar",)}
FW_EXTENSIONS = (".bin", ".hex")
ACCEPT = "accept"
CLOSE = 0                                # HttpError status: close the connection without an answer
FAULTS = ("flash_power_loss", "flash_never_back")
DEFAULT_SECONDS = 3.0
FACTORY_FWV = "nGINE 1.2.2 (HEM emulator)"
FACTORY_FWS = b64e(hashlib.sha512(hashlib.sha256(b"hem-emulator-fw").digest()).digest())
FACTORY_UIS = b64e(hashlib.sha256(b"ui").digest())
_FILENAME_RE = re.compile(r"""filename\s*=\s*(?:"([^"]*)"|([^;\s]+))""", re.I)


def filename(disposition):
    """The file name of a `Content-Disposition` header, or None."""
    match = _FILENAME_RE.search(disposition or "")
    name = (match.group(1) if match.group(1) is not None else match.group(2)) if match else None
    return name or None


def upload_verdict(method, path, headers, length, msc=True):
    """How the transport frames a request before reading its body (server.read_request).

    None: not an upload (the JSON body limit applies); ACCEPT: read up to 16 MiB; 413 (over
    16 MiB, or no file name: OA 413 "Missing Content-Disposition filename or body over 16 MiB");
    CLOSE for a firmware name that is not .bin/.hex or an image over 3 MiB (OA upload_fw: "two
    firmware error paths (oversize image, wrong extension) close the connection without sending
    any HTTP response"). On an EPA (`msc` false) the paths do not exist: the body is read, up to
    16 MiB, and the device answers 404.
    """
    kind = UPLOADS.get(path.rstrip("/")) if method == "POST" else None
    if kind is None:
        return None
    if length > RAW_UPLOAD_MAX:
        return 413
    if not msc:
        return ACCEPT
    name = filename(headers.get("content-disposition"))
    if name is None:
        return 413
    if kind == "fw" and (not name.lower().endswith(FW_EXTENSIONS) or length > FW_IMAGE_MAX):
        return CLOSE
    return ACCEPT


class Upgrade:
    """The upgrade state and endpoints of one device (its lock is held by Device.handle)."""

    def __init__(self, dev):
        self.dev = dev
        self.checks = {}            # kind -> {"start", "ok"}: the check task of this boot
        self.installing = False
        self.fw_upgrade = False     # status `fw_upgrade` (this boot only)
        self.armed = None           # a flash fault for the next install (control interface)

    @property
    def st(self) -> dict:
        return self.dev.p.setdefault("upgrade", {})

    @property
    def seconds(self) -> float:
        """--upgrade-seconds: how long a check runs, and how long install_fw's device answers before it flashes."""
        return max(0.0, float(getattr(self.dev.fleet.args, "upgrade_seconds", DEFAULT_SECONDS)))

    # ------------------------------------------------------------------ hooks of Device

    def on_boot(self):
        """Every boot: per-boot state anew; an install recorded before the reboot completes now."""
        self.checks, self.installing, self.fw_upgrade = {}, False, False
        flash = self.st.pop("flash", None)
        if flash is None:
            return
        if flash["outcome"] == "ok":
            if flash["kind"] == "fw":
                self.st["fw"] = {"fwv": flash["fwv"], "fws": flash["fws"]}
                self.fw_upgrade = True
            source = self.st if flash["source"] == "pending" else self.st.get("staged", {})
            key = "pending" if flash["source"] == "pending" else "fw"
            if (source.get(key) or {}).get("fws") == flash["fws"]:
                source.pop(key)               # the installed image is consumed (not one uploaded meanwhile)
        self.dev.save()

    def version(self) -> dict:
        """fwv, fwk, fws (and uis on a PPA) of /api/system/version."""
        fw = self.st.get("fw") or {}
        out = {"fwv": fw.get("fwv", FACTORY_FWV), "fwk": firmware.public_key_b64(), "fws": fw.get("fws", FACTORY_FWS)}
        if self.dev.msc:
            out["uis"] = self.st.get("uis", FACTORY_UIS)
        return out

    def view(self) -> dict:
        """Control-interface state: nothing secret, no image bytes."""
        staged = self.st.get("staged", {})
        return {"installing": self.installing, "fw_upgrade": self.fw_upgrade, "armed": self.armed,
                "staged": {k: {"name": v["name"], "ok": v["ok"]} for k, v in staged.items()},
                "checks": {k: self._check_state(k) for k in self.checks},
                "pending": None if "pending" not in self.st else {"fwv": self.st["pending"].get("fwv"),
                                                                  "ok": self.st["pending"]["ok"]}}

    def handle(self, req, claims, path):
        """-> (status, callable to run after the answer or None) for a path under PREFIX."""
        if not self.dev.msc:
            return 404, None                  # OA: every upgrade path is "MSC build only"
        name = path[len(PREFIX):]
        routes = {("POST", "upload_fw"): ("fw", self._upload), ("POST", "upload_ui"): ("ui", self._upload),
                  ("GET", "check_fw"): ("fw", self._check), ("GET", "check_ui"): ("ui", self._check),
                  ("GET", "install_fw"): ("fw", self._install), ("GET", "install_ui"): ("ui", self._install)}
        route = routes.get((req.method, name))
        if route is None:
            return 404, None                  # usbmode is not emulated
        scopes = ("system:upgrade",) if req.method == "POST" else ("system:upgrade", "system:config")
        denied = self.dev._auth(claims, scopes, fresh_ok=True)  # pylint: disable=protected-access
        if denied:
            return denied.status, None
        kind, fn = route
        return fn(kind, req)

    # ------------------------------------------------------------------ endpoints

    def _upload(self, kind, req):
        parsed = firmware.parse_image(req.body or b"", kind)
        staged = {"name": filename(req.header("content-disposition")), "ok": parsed is not None}
        if parsed is not None:
            footer, sig = parsed
            staged["fwv"] = footer["fwv"]
            staged["fws"] = sig if kind == "fw" else b64e(hashlib.sha256(req.body).digest())
        self.st.setdefault("staged", {})[kind] = staged
        self.checks.pop(kind, None)
        self.dev.save()
        return 200, None

    def _staged(self, kind):
        staged = self.st.get("staged", {}).get(kind)
        return staged if staged is not None and staged["name"] in STAGED_NAMES[kind] else None

    def _check_state(self, kind):
        task = self.checks.get(kind)
        if task is None:
            return None
        if time.monotonic() - task["start"] < self.seconds:
            return "running"
        return "verified" if task["ok"] else "failed"

    def _check(self, kind, _req):
        if kind == "ui" and self.installing:
            return 409, None                  # OA check_ui 409 "Unexpected task state"
        staged = self._staged(kind)
        if staged is None:
            # OA check_fw 404 "No firmware image staged"; check_ui has no 404: nothing to unpack fails (406)
            return (404 if kind == "fw" else 406), None
        state = self._check_state(kind)
        if state is None:
            self.checks[kind] = {"start": time.monotonic(), "ok": staged["ok"]}
            return 201, None
        return {"running": 202, "verified": 200, "failed": 406}[state], None

    def _install(self, kind, _req):
        if self.installing:
            return 409, None                  # OA install_fw / install_ui 409
        if self._check_state(kind) != "verified":
            return 406, None                  # OA: no verified image staged
        staged = self._staged(kind)
        if kind == "ui":
            # OA install_ui: "New dashboard activated" - at once, no reboot
            self.st["uis"] = staged["fws"]
            self.st["staged"].pop("ui", None)
            self.checks.pop("ui", None)
            self.dev.save()
            return 200, None
        self.installing = True
        image = {"kind": "fw", "source": "staged", "fwv": staged["fwv"], "fws": staged["fws"]}
        boot_id = self.dev.boot_id
        return 200, lambda: self._later(self.seconds, image, boot_id)

    # ------------------------------------------------------------------ the flash

    def _later(self, seconds, image, boot_id):
        timer = threading.Timer(seconds, self._flash, args=(image, boot_id))
        timer.daemon = True
        timer.start()

    def _flash(self, image, boot_id):
        """Reboot into the bootloader and flash: down for --reboot-seconds, then the new boot (on_boot)."""
        dev = self.dev
        with dev.lock:
            if dev.boot_id != boot_id or not dev.up:
                return                        # rebooted or powered off meanwhile: the install was lost
            fault, self.armed = self.armed, None
            image = dict(image, outcome="ok" if fault is None else fault)
            self.st["flash"] = image
            dev.save()
        if fault == "flash_never_back":
            dev._stop_web_servers()           # pylint: disable=protected-access  # until a power cycle
        else:
            dev.go_down(dev.fleet.reboot_seconds)

    def checkin_install(self):
        """Check-in action `U` (OA "force upgrade"): the callable run after the answer.

        Installs the pending image (control interface, both models) or, on a PPA, a staged firmware
        that passed its check; without one it only reboots (what the emulator did before images).
        """
        pending = self.st.get("pending")
        image = None
        if pending is not None and pending["ok"]:
            image = {"kind": "fw", "source": "pending", "fwv": pending["fwv"], "fws": pending["fws"]}
        elif pending is None and self.dev.msc and self._check_state("fw") == "verified":
            staged = self._staged("fw")
            image = {"kind": "fw", "source": "staged", "fwv": staged["fwv"], "fws": staged["fws"]}
        if image is None:
            self.st.pop("pending", None)      # a pending image that fails the check is dropped
            self.dev.save()
            return lambda: self.dev.go_down(self.dev.fleet.reboot_seconds)
        self.installing = True
        boot_id = self.dev.boot_id
        return lambda: self._flash(image, boot_id)

    # ------------------------------------------------------------------ control interface

    def arm(self, kind):
        """Fault for the next flash: `flash_power_loss` (back on the old firmware) or `flash_never_back`."""
        with self.dev.lock:
            self.armed = kind

    def set_pending(self, body):
        """POST /devices/<i>/firmware {"fwv", "corrupt"}: an image that check-in `U` installs. -> status."""
        if not isinstance(body, dict) or set(body) - {"fwv", "corrupt"}:
            return 400
        fwv, corrupt = body.get("fwv"), body.get("corrupt", False)
        if not isinstance(fwv, str) or not fwv.strip() or not isinstance(corrupt, bool):
            return 400
        parsed = firmware.parse_image(firmware.make_image(fwv, "fw", corrupt=corrupt), "fw")
        with self.dev.lock:
            self.st["pending"] = {"ok": parsed is not None, "fwv": fwv, "fws": parsed[1] if parsed else None}
            self.dev.save()
        return 200
