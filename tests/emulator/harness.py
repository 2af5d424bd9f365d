# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Start and stop the HEM emulator from tests, and talk to its control interface.

```python
from tests.emulator.harness import Emulator
with Emulator(devices=2, passphrase="pw", rtc_set=True, auth_delay=0.0, tmp_path=p) as emu:
    emu.url(0); emu.http_url(0); emu.ca_file; emu.custody_ca_file; emu.backend_url
    emu.log(0); emu.log(0, clear=True); emu.clear_log(0); emu.fault(0, "busy", count=2, path="/api/system/config")
    emu.state(0); emu.posts(0); emu.checkin_order(0, action="L", count=1)
    emu.pending_firmware(0, "nGINE 1.2.3")      # an image check-in U installs (upgrade_seconds=S: --upgrade-seconds)
```

The emulator runs as a subprocess (`python -m tests.emulator`) on free ports: a random
base is chosen, every port is probed, and the start is retried on collision. It is
stopped by PID (SIGTERM, then SIGKILL). Only the standard library is used.

Harness defaults differ from the CLI's where tests want speed: `auth_delay=0.0`,
`reboot_seconds=1.0`, `control=True`.
"""

from __future__ import annotations

import atexit
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PORT_LOW, PORT_HIGH = 10000, 30000        # below the Linux ephemeral range


_LIVE = set()          # processes started by this harness and not stopped yet


class EmulatorError(RuntimeError):
    pass


@atexit.register
def _stop_leftovers():
    """Never leave an emulator behind when a test run ends without stopping it."""
    for proc in list(_LIVE):
        _terminate(proc)


def _port_free(port, addr="127.0.0.1"):
    sock = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((addr, port))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def pick_ports(devices, control=True, rng=random, addr="127.0.0.1"):
    """-> dict of base ports whose whole ranges are currently free (on addr; the control port on 127.0.0.1)."""
    need = 2 * devices + 2
    for _attempt in range(200):
        base = rng.randrange(PORT_LOW, PORT_HIGH - need)
        ports = list(range(base, base + need))
        if all(_port_free(p, addr) for p in ports[:-1]) and _port_free(ports[-1]):
            return {"port": base, "http_port": base + devices, "backend_port": base + 2 * devices,
                    "control_port": base + 2 * devices + 1 if control else None}
    raise EmulatorError("no free port range found")


class Emulator:
    """A running emulator process (context manager)."""

    def __init__(self, devices=1, passphrase=None, master_passphrase=None, rtc_set=False, auth_delay=0.0,
                 control=True, tmp_path=None, model="ppa", state_dir=None, reboot_seconds=1.0,
                 se_fresh=False, extra_args=None, start_timeout=30.0, python=None, attestation_not_after=None,
                 bind=None, no_tls_bundle=False, upgrade_seconds=None, no_exp_default=False,
                 status_https_false=False):
        self.devices = devices
        self.passphrase = passphrase
        self.master_passphrase = master_passphrase
        self.rtc_set = rtc_set
        self.auth_delay = auth_delay
        self.control = control
        self.model = model
        self.state_dir = str(state_dir) if state_dir is not None else None
        self.reboot_seconds = reboot_seconds
        self.se_fresh = se_fresh
        self.attestation_not_after = attestation_not_after   # "YYYY-MM-DD" -> --attestation-not-after
        self.bind = bind                                     # --bind (default: the CLI's 127.0.0.1)
        self.no_tls_bundle = no_tls_bundle
        self.upgrade_seconds = upgrade_seconds               # --upgrade-seconds (default: the CLI's 3)
        self.no_exp_default = no_exp_default                 # --no-exp-default: a login proof's exp 0 answers 401
        self.status_https_false = status_https_false         # --status-https-false: status https false over working HTTPS
        self.extra_args = list(extra_args or [])
        self.start_timeout = start_timeout
        self.python = python or sys.executable
        self._own_tmp = None
        if tmp_path is None:
            self._own_tmp = tempfile.mkdtemp(prefix="hem-emu-harness-")
            tmp_path = self._own_tmp
        self.tmp_path = str(tmp_path)
        self.proc = None
        self.ready = None
        self.stderr_lines = []
        self.command = None

    # ------------------------------------------------------------------ life cycle

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def _argv(self, ports):
        argv = [self.python, "-m", "tests.emulator", "--devices", str(self.devices),
                "--port", str(ports["port"]), "--http-port", str(ports["http_port"]),
                "--backend-port", str(ports["backend_port"]),
                "--ca-file", os.path.join(self.tmp_path, "hem-emulator-ca.pem"),
                "--model", self.model, "--auth-delay", str(self.auth_delay),
                "--reboot-seconds", str(self.reboot_seconds)]
        if ports["control_port"] is not None:
            argv += ["--control-port", str(ports["control_port"])]
        if self.passphrase is not None:
            argv += ["--passphrase", self.passphrase]
        if self.master_passphrase is not None:
            argv += ["--master-passphrase", self.master_passphrase]
        if self.rtc_set:
            argv.append("--rtc-set")
        if self.state_dir:
            argv += ["--state-dir", self.state_dir]
        if self.se_fresh:
            argv.append("--se-fresh")
        if self.attestation_not_after:
            argv += ["--attestation-not-after", str(self.attestation_not_after)]
        if self.bind:
            argv += ["--bind", self.bind]
        if self.no_tls_bundle:
            argv.append("--no-tls-bundle")
        if self.upgrade_seconds is not None:
            argv += ["--upgrade-seconds", str(self.upgrade_seconds)]
        if self.no_exp_default:
            argv.append("--no-exp-default")
        if self.status_https_false:
            argv.append("--status-https-false")
        return argv + self.extra_args

    def start(self, attempts=6):
        if self.proc is not None:
            raise EmulatorError("already started")
        last = None
        for _attempt in range(attempts):
            ports = pick_ports(self.devices, self.control, addr=self.bind or "127.0.0.1")
            argv = self._argv(ports)
            try:
                self._launch(argv)
                return self
            except _BindCollision as exc:
                last = exc
                continue
        raise EmulatorError("emulator could not bind after %d attempts: %s" % (attempts, last))

    def _launch(self, argv):
        self.command = argv
        self.stderr_lines = []
        proc = subprocess.Popen(argv, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, bufsize=1)
        threading.Thread(target=self._drain_stderr, args=(proc,), daemon=True).start()
        line_box = []
        reader = threading.Thread(target=lambda: line_box.append(proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(self.start_timeout)
        line = line_box[0] if line_box else ""
        if not line.startswith("READY "):
            _terminate(proc)
            rc = proc.returncode
            reader.join(5)
            proc.stdout.close()
            time.sleep(0.05)
            err = "".join(self.stderr_lines)
            if rc == 3 or "cannot bind" in err:
                raise _BindCollision(err.strip())
            raise EmulatorError("emulator did not become ready (rc=%s): %s %s" % (rc, line.strip(), err.strip()))
        self.proc = proc
        _LIVE.add(proc)
        self.ready = json.loads(line[len("READY "):])
        threading.Thread(target=self._drain_stdout, args=(proc,), daemon=True).start()

    def _drain_stderr(self, proc):
        with proc.stderr:
            for line in proc.stderr:
                self.stderr_lines.append(line)

    @staticmethod
    def _drain_stdout(proc):
        with proc.stdout:
            for _line in proc.stdout:
                pass

    def stop(self):
        proc, self.proc = self.proc, None
        if proc is not None:
            _terminate(proc)
        if self._own_tmp:
            import shutil
            shutil.rmtree(self._own_tmp, ignore_errors=True)
            self._own_tmp = None

    def restart(self):
        """Stop and start again (new ports). With `state_dir` the fleet comes back the same."""
        self.stop_keep_tmp()
        self.start()
        return self

    def stop_keep_tmp(self):
        proc, self.proc = self.proc, None
        if proc is not None:
            _terminate(proc)

    @property
    def returncode(self):
        return None if self.proc is None else self.proc.poll()

    # ------------------------------------------------------------------ addresses

    def url(self, i=0):
        return self.ready["devices"][i]["url"]

    def http_url(self, i=0):
        return self.ready["devices"][i]["http_url"]

    def device(self, i=0):
        return self.ready["devices"][i]

    @property
    def urls(self):
        return [d["url"] for d in self.ready["devices"]]

    @property
    def ca_file(self):
        return self.ready["ca_file"]

    @property
    def custody_ca_file(self):
        return self.ready["custody_ca_file"]

    @property
    def factory_ca_file(self):
        """The CA of the factory certificate a wiped device comes back with (not ca_file's CA)."""
        return self.ready["factory_ca_file"]

    @property
    def backend_url(self):
        return self.ready["backend_url"]

    @property
    def control_url(self):
        return self.ready["control_url"]

    # ------------------------------------------------------------------ control interface

    def _control(self, method, path, body=None):
        if not self.control_url:
            raise EmulatorError("the control interface is off (control=False)")
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(self.control_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def devices_info(self):
        return self._control("GET", "/devices")

    def log(self, i=0, clear=False):
        """Device i's request log; with clear=True it is cleared in the same step (GET ...?clear=1)."""
        return self._control("GET", "/devices/%d/log%s" % (i, "?clear=1" if clear else ""))

    def clear_log(self, i=0):
        return self._control("DELETE", "/devices/%d/log" % i)

    def posts(self, i=0):
        return [e for e in self.log(i) if e["method"] == "POST"]

    def fault(self, i, kind, count=1, path=None, method=None, seconds=None, after_apply=None):
        body = {"kind": kind, "count": count}
        if path is not None:
            body["path"] = path
        if method is not None:
            body["method"] = method
        if seconds is not None:
            body["seconds"] = seconds
        if after_apply is not None:
            body["after_apply"] = after_apply
        return self._control("POST", "/devices/%d/faults" % i, body)

    def clear_faults(self, i=0):
        return self._control("DELETE", "/devices/%d/faults" % i)

    def state(self, i=0):
        return self._control("GET", "/devices/%d/state" % i)

    def checkin_order(self, i, action=None, newcrt=None, count=None):
        """What the stand-in backend answers device i's next check-ins: an `action` (OK, L, W, R, B, U)
        and/or a pushed certificate `newcrt` (base64 DER, any string), for `count` check-ins (None: until cleared)."""
        body = {k: v for k, v in (("action", action), ("newcrt", newcrt), ("count", count)) if v is not None}
        return self._control("POST", "/devices/%d/checkin" % i, body)

    def pushed_cert(self, i, matching=True):
        """A certificate for the backend to push to device i (base64 DER, from a throw-away "Backend test CA"):
        for the device's current TLS key, or (matching=False) for another key, which the device refuses."""
        from cryptography import x509  # pylint: disable=import-outside-toplevel
        from tests.emulator import util  # pylint: disable=import-outside-toplevel
        if matching:
            pub = x509.load_pem_x509_certificate(self.state(i)["tls_cert_pem"].encode()).public_key()
        else:
            pub = util.new_p256().public_key()
        ca_key, ca_cert = util.make_ca("Backend test CA", "encedo.hem tests")
        return util.b64e(util.cert_der(util.issue_tls_cert(ca_key, ca_cert, pub, ["localhost"], ["127.0.0.1"])))

    def pending_firmware(self, i, fwv, corrupt=False):
        """Give device i an image that check-in action `U` installs (how an EPA gets firmware; a PPA too)."""
        return self._control("POST", "/devices/%d/firmware" % i, {"fwv": fwv, "corrupt": corrupt})

    def clear_checkin_order(self, i=0):
        return self._control("DELETE", "/devices/%d/checkin" % i)

    def logger(self, i=0, action=None, **fields):
        """Device i's audit log files and logger key (GET), or a tamper: action "flip" / "remove" with
        file=<id>, line=<n> (0 is the seed line), or "swap_key" (POST /devices/<i>/logger)."""
        if action is None:
            return self._control("GET", "/devices/%d/logger" % i)
        return self._control("POST", "/devices/%d/logger" % i, dict(fields, action=action))

    def clock(self, i, offset):
        return self._control("POST", "/devices/%d/clock" % i, {"offset": offset})

    # ------------------------------------------------------------------ waiting

    def wait_down(self, i=0, timeout=10.0):
        """Wait until device i refuses connections (after a reboot request)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._reachable(i):
                return True
            time.sleep(0.05)
        return False

    def wait_up(self, i=0, timeout=30.0):
        """Wait until device i answers GET /api/system/status over plain HTTP."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._reachable(i):
                return True
            time.sleep(0.05)
        return False

    def wait_new_boot(self, i, boot_id, timeout=15.0):
        """Wait until device i is up again in a boot other than ``boot_id`` (after a reboot or wipe it was told to do)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state(i)
            if state["boot_id"] != boot_id and state["up"]:
                return True
            time.sleep(0.05)
        return False

    def _reachable(self, i):
        try:
            with urllib.request.urlopen(self.http_url(i) + "/api/system/status", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False


class _BindCollision(EmulatorError):
    pass


def _terminate(proc, timeout=10.0):
    _LIVE.discard(proc)
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
