# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sockets of the HEM emulator: the fleet, one acceptor thread, a thread per connection.

Every listening socket (device HTTPS + HTTP, the stand-in backend, the control
interface) is watched by a single selector thread; each accepted connection gets its own
thread, which does the TLS handshake, parses exactly one HTTP/1.1 request, answers with
`Connection: close` and closes. A failure inside one connection never reaches the others.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
import secrets
import selectors
import shutil
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519

from . import upgrade, util
from .device import BACKEND_ISSUER, MAX_BODY, Device, Request, Response
from .util import b64d, b64e

REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
           404: "Not Found", 406: "Not Acceptable", 409: "Conflict", 411: "Length Required",
           412: "Precondition Failed", 413: "Payload Too Large", 418: "", 500: "Internal Server Error"}
IO_TIMEOUT = 10.0
MAX_LINE = 8192
MAX_HEADERS = 64
VENDOR_DEFAULT_NAME = "my.ence.do"   # the vendor's default device name (PROTOCOL.md, "Certificates on the device's name")
FAULT_KINDS = ("latency", "drop", "busy", "error400", "error500", "reboot", "reboot_after", "tamper_attestation",
               "expire_tokens") + upgrade.FAULTS


class Fleet:
    """Everything shared by the devices of one emulator process: CAs, backend keys, options."""

    def __init__(self, args):
        self.args = args
        self.model = args.model
        self.rtc_set = args.rtc_set
        self.auth_delay = max(0.0, args.auth_delay)
        self.reboot_seconds = max(0.0, args.reboot_seconds)
        self.format_seconds = max(0.0, getattr(args, "format_seconds", 3.0))
        self.format_start_seconds = max(0.0, getattr(args, "format_start_seconds", 0.0))
        self.se_provisioned = args.se_provisioned
        # --bind: the address the devices are reached on goes into their TLS certificates
        self.address = advertised_address(getattr(args, "bind", "127.0.0.1"))
        # --attestation-not-after: end of validity of the attestation certificates issued at start (None: now + 3 years)
        self.attestation_not_after = getattr(args, "attestation_not_after", None)
        self.tls_bundle = not getattr(args, "no_tls_bundle", False)   # factory state has a TLS bundle (--no-tls-bundle: not)
        self.exp_default = not getattr(args, "no_exp_default", False)  # login exp 0 = now + 8 h (--no-exp-default: 401)
        self.status_https_false = getattr(args, "status_https_false", False)   # status says https false on both schemes
        self.tls_bundle_at_boot = getattr(args, "tls_bundle_at_boot", False)   # a fresh-mode bundle is served from the next boot
        self.state_dir = args.state_dir
        self.tmpdir = tempfile.mkdtemp(prefix="hem-emulator-")
        self._ctx_counter = 0
        self._ctx_lock = threading.Lock()
        if self.state_dir:
            os.makedirs(self.state_dir, exist_ok=True)
        self._load_or_create_keys()
        self.devices = []
        self.hub = None              # set by cli: a device that moves to its personalised address gets listeners there
        self.port_base = getattr(args, "port", 0)
        self.http_port_base = getattr(args, "http_port", 0)

    # ------------------------------------------------------------------ keys shared by the fleet

    def _load_or_create_keys(self):
        path = os.path.join(self.state_dir, "fleet.json") if self.state_dir else None
        data = None
        if path and os.path.exists(path):
            with open(path, "rb") as fh:
                data = json.loads(fh.read().decode("utf-8"))
        if data is None:
            ca_key, ca_cert = util.make_ca("HEM Emulator TLS CA", "HEM Emulator")
            # the custody CA stays valid now, and since before the attestation certificates it issues
            att_not_before, _att_not_after = util.attestation_validity(self.attestation_not_after)
            cu_key, cu_cert = util.make_ca("Encedo Custody CA (emulator)", "HEM Emulator",
                                           not_before=att_not_before - datetime.timedelta(days=1))
            data = {"ca_key": util.key_pem(ca_key), "ca_crt": util.cert_pem(ca_cert),
                    "custody_key": util.key_pem(cu_key), "custody_crt": util.cert_pem(cu_cert),
                    "backend_x25519": b64e(util.new_x25519()), "backend_ed25519": b64e(util.new_ed25519())}
            if path:
                util.atomic_write(path, json.dumps(data, indent=1).encode("utf-8"))
        self.ca_key = util.load_key_pem(data["ca_key"])
        self.ca_cert = x509.load_pem_x509_certificate(data["ca_crt"].encode("ascii"))
        self.custody_key = util.load_key_pem(data["custody_key"])
        self.custody_cert = x509.load_pem_x509_certificate(data["custody_crt"].encode("ascii"))
        self.backend_x25519 = b64d(data["backend_x25519"])
        self.backend_x25519_public = util.x25519_public(self.backend_x25519)
        self.backend_sign = ed25519.Ed25519PrivateKey.from_private_bytes(b64d(data["backend_ed25519"]))
        self.backend_sign_public = self.backend_sign.public_key().public_bytes_raw()
        if "factory_key" not in data:
            # The vendor's factory certificates stand-in (a wiped device serves one): not the tests' CA. Added to an
            # older --state-dir fleet.json too.
            f_key, f_cert = util.make_ca("Encedo Factory CA (emulator)", "HEM Emulator")
            data.update(factory_key=util.key_pem(f_key), factory_crt=util.cert_pem(f_cert))
            if path:
                util.atomic_write(path, json.dumps(data, indent=1).encode("utf-8"))
        self.factory_key = util.load_key_pem(data["factory_key"])
        self.factory_cert = x509.load_pem_x509_certificate(data["factory_crt"].encode("ascii"))

    def write_ca_files(self, ca_file):
        ca_file = os.path.abspath(ca_file)
        stem, ext = os.path.splitext(ca_file)
        custody_file = stem + "-custody" + (ext or ".pem")
        os.makedirs(os.path.dirname(ca_file), exist_ok=True)
        util.atomic_write(ca_file, util.cert_pem(self.ca_cert).encode("ascii"), mode=0o644)
        util.atomic_write(custody_file, util.cert_pem(self.custody_cert).encode("ascii"), mode=0o644)
        factory_file = stem + "-factory" + (ext or ".pem")
        util.atomic_write(factory_file, util.cert_pem(self.factory_cert).encode("ascii"), mode=0o644)
        return ca_file, custody_file, factory_file

    def device_names(self, index):
        """(DNS names, IP addresses) of device index's emulator-issued TLS certificates.

        localhost, hem<i>.emulator.test and 127.0.0.1 (what tests use), the vendor's default
        device name my.ence.do, and the address the device is bound to (--bind; a DNS name
        when it is not an IP address).
        """
        names = ["localhost", "hem%d.emulator.test" % index, VENDOR_DEFAULT_NAME]
        ips = ["127.0.0.1"]
        try:
            ip = str(ipaddress.ip_address(self.address))
            if ip not in ips:
                ips.append(ip)
        except ValueError:
            if self.address.lower() not in names:
                names.append(self.address.lower())
        return names, ips

    def issue_device_cert(self, index, public_key, address=None, hostname=None):
        """A certificate of the tests' CA for device index; ``address`` and ``hostname``: the personalised address it
        answers at and its personalised hostname, named too."""
        names, ips = self.device_names(index)
        if address is not None and address not in ips:
            ips.append(address)
        if hostname is not None and hostname not in names:
            names.append(hostname)
        return util.issue_tls_cert(self.ca_key, self.ca_cert, public_key, names, ips)

    def issue_factory_cert(self, index, public_key):
        """The certificate a wiped device comes back with: the same names, issued by the factory CA (not the tests')."""
        names, ips = self.device_names(index)
        return util.issue_tls_cert(self.factory_key, self.factory_cert, public_key, names, ips)

    def issued_by_test_ca(self, crt_pem):
        """Whether a device certificate (PEM) is one the emulator issued with the tests' CA (not an imported one)."""
        cert = x509.load_pem_x509_certificate(crt_pem.encode("ascii"))
        return cert.issuer == self.ca_cert.subject

    # ------------------------------------------------------------------ where a device answers

    def factory_address(self):
        """Where a device with the factory `ip` answers: the --bind address (stands in for 192.168.7.1 on its USB link)."""
        return self.address

    def device_urls(self, dev):
        """(https URL, http URL) of device dev at the address it answers at now."""
        addr = dev.address
        host = "[%s]" % addr if ":" in addr else addr
        return ("https://%s:%d" % (host, self.port_base + dev.index), "http://%s:%d" % (host, self.http_port_base + dev.index))

    def moved(self, dev):
        """Device dev booted at a personalised address other than the factory one: listen there too (same ports)."""
        if self.hub is not None:
            self.hub.listen_device(dev)

    def make_ssl_context(self, index, key_pem, crt_pem):
        with self._ctx_lock:
            self._ctx_counter += 1
            path = os.path.join(self.tmpdir, "dev%d-%d.pem" % (index, self._ctx_counter))
        util.atomic_write(path, (key_pem + crt_pem).encode("ascii"))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3       # OA: "TLS 1.3 via wolfSSL"
        ctx.load_cert_chain(path)
        os.unlink(path)
        return ctx

    # ------------------------------------------------------------------ devices

    def build_devices(self, count):
        passphrase = self.args.passphrase
        master = self.args.master_passphrase
        master_phrase = getattr(self.args, "master_recovery_phrase", None)
        if passphrase is not None and master is None and master_phrase is None:
            master = passphrase + "-master"
        for i in range(count):
            state = None
            path = os.path.join(self.state_dir, "device-%d.json" % i) if self.state_dir else None
            if path and os.path.exists(path):
                with open(path, "rb") as fh:
                    state = json.loads(fh.read().decode("utf-8"))
            dev = Device(self, i, state)
            if state is None:
                if passphrase is not None:
                    dev.personalise_at_start(passphrase, master, master_phrase)
                else:
                    dev.save()
            else:
                dev.resume_lazy(passphrase, master, master_phrase)
            self.devices.append(dev)

    def cleanup(self):
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def advertised_address(bind):
    """The address clients use for a device bound to `bind` (no brackets): the loopback for a wildcard."""
    if bind in ("0.0.0.0", ""):
        return "127.0.0.1"
    if bind == "::":
        return "::1"
    return bind


# ---------------------------------------------------------------------------- HTTP plumbing

class Listener:
    def __init__(self, sock, kind, device=None, addr=None):
        self.sock = sock
        self.kind = kind           # "https" | "http" | "backend" | "control"
        self.device = device
        self.addr = addr           # the address it is bound to (device listeners)

    def serves(self, dev, conn):
        """Whether a connection accepted here reaches device dev at the address it answers at now (package
        docstring, "Addressing"): a listener bound to another address resets it; a wildcard one compares the
        connection's local address, except for a device at the factory address (it answers on every address)."""
        if self.addr in ("0.0.0.0", "::", ""):
            if dev.address == dev.fleet.factory_address():
                return True
            try:
                local = conn.getsockname()[0]
            except OSError:
                return False
            return local.split("%", 1)[0] == dev.address
        return self.addr == dev.address


class HttpError(Exception):
    def __init__(self, status):
        super().__init__(status)
        self.status = status


def bind_socket(addr, port):
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((addr, port))
    sock.listen(256)
    sock.setblocking(False)
    return sock


def _reset(conn):
    """Close with RST: what a client sees while the device is rebooting."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    conn.close()


def write_response(conn, resp: Response):
    body = resp.payload()
    lines = ["HTTP/1.1 %d %s" % (resp.status, REASONS.get(resp.status, "")),
             "Content-Type: " + ("text/plain" if isinstance(resp.body, bytes) else "application/json"),
             "Content-Length: %d" % len(body),
             "Connection: close"]
    lines += ["%s: %s" % (k, v) for k, v in resp.headers.items()]
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


def read_request(conn, rfile, scheme, max_body=MAX_BODY, msc=None):
    """Parse one request. Raises HttpError(status) for answers the parser decides itself
    (status 0: close without an answer). `msc`: a device's build (True PPA, False EPA), whose
    upload paths take raw bodies (upgrade.upload_verdict); None for the backend and control."""
    line = rfile.readline(MAX_LINE + 1)
    if not line:
        raise ConnectionAbortedError("no request")
    if len(line) > MAX_LINE or not line.endswith(b"\n"):
        raise HttpError(400)
    parts = line.decode("latin-1").rstrip("\r\n").split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not re.fullmatch(r"[A-Z]{1,16}", parts[0]):
        raise HttpError(400)
    method, target = parts[0], parts[1]
    headers = {}
    for _line_no in range(MAX_HEADERS + 1):
        hline = rfile.readline(MAX_LINE + 1)
        if not hline or len(hline) > MAX_LINE or not hline.endswith(b"\n"):
            raise HttpError(400)
        if hline in (b"\r\n", b"\n"):
            break
        text = hline.decode("latin-1").rstrip("\r\n")
        if ":" not in text or text[0] in " \t":
            raise HttpError(400)
        name, value = text.split(":", 1)
        headers[name.strip().lower()] = value.strip()
    else:
        raise HttpError(400)
    if target.startswith(("http://", "https://")):
        target = urlsplit(target).path or "/"
    if not target.startswith("/"):
        raise HttpError(400)
    path, _sep, query = target.split("#", 1)[0].partition("?")
    req = Request(method=method, path=path, headers=headers, body=None, scheme=scheme, query=query)
    length = headers.get("content-length")
    if "transfer-encoding" in headers:
        raise HttpError(411)
    if length is None:
        if method == "POST":
            raise HttpError(411)
        return req
    if not re.fullmatch(r"[0-9]{1,9}", length):
        raise HttpError(400)
    length = int(length)
    if method == "POST" and length == 0:
        raise HttpError(411)
    verdict = None if msc is None else upgrade.upload_verdict(method, path, headers, length, msc)
    if verdict not in (None, upgrade.ACCEPT):
        raise HttpError(verdict)
    if verdict is None and length > max_body:
        raise HttpError(413)
    if headers.get("expect", "").lower() == "100-continue":
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = rfile.read(length) if length else b""
    if len(body) != length:
        raise HttpError(400 if verdict is None else 406)     # OA upload_fw/upload_ui 406 "Body stream ended early"
    req.body = body
    return req


def _json_body(req):
    try:
        return json.loads(req.body.decode("utf-8")) if req.body else None
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


class Hub:
    """The acceptor thread and the per-connection workers."""

    def __init__(self, fleet: Fleet, control_fn=None, backend_fn=None):
        self.fleet = fleet
        self.control_fn = control_fn
        self.backend_fn = backend_fn
        self.selector = selectors.DefaultSelector()
        self.listeners = []
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)
        self.thread = threading.Thread(target=self._run, name="hem-acceptor", daemon=True)

    def add(self, listener: Listener):
        self.listeners.append(listener)
        self.selector.register(listener.sock, selectors.EVENT_READ, listener)

    def start(self):
        self.thread.start()

    def listen_device(self, dev):
        """Bind device dev's HTTPS and HTTP ports at the address it answers at now, unless bound there already (or
        the fleet listens on a wildcard address). An address this host cannot bind (not on one of its interfaces)
        leaves the device unreachable, as a real device that moved where the controller has no route."""
        addr = dev.address
        bound = {(lst.addr, lst.kind) for lst in self.listeners if lst.device is dev}
        if any(a in ("0.0.0.0", "::", "") for a, _kind in bound):
            return
        for kind, port in (("https", self.fleet.port_base + dev.index), ("http", self.fleet.http_port_base + dev.index)):
            if (addr, kind) in bound:
                continue
            try:
                sock = bind_socket(addr, port)
            except OSError as exc:
                print("hem-emulator: device %d moved to %s but that address cannot be bound here (%s): it is unreachable "
                      "until it is wiped" % (dev.index, addr, exc), file=sys.stderr, flush=True)
                return
            self.add(Listener(sock, kind, dev, addr))
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def stop(self):
        self._stop.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self.thread.join(timeout=5)
        for lst in self.listeners:
            try:
                lst.sock.close()
            except OSError:
                pass

    def _run(self):
        while not self._stop.is_set():
            for key, _mask in self.selector.select(timeout=1.0):
                listener = key.data
                if listener is None:
                    try:
                        self._wake_r.recv(64)
                    except OSError:
                        pass
                    continue
                while True:
                    try:
                        conn, _addr = listener.sock.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    threading.Thread(target=self._serve, args=(conn, listener), daemon=True).start()

    # ------------------------------------------------------------------ one connection

    def _serve(self, conn, listener):
        after = None
        try:
            conn.setblocking(True)
            dev = listener.device
            if dev is not None:
                if not dev.up or not listener.serves(dev, conn):
                    _reset(conn)
                    return
                if listener.kind == "https" and not dev.has_tls_bundle:
                    # No TLS bundle, no HTTPS server (OpenAPI POST /api/system/config). The port stays bound,
                    # so the client sees a reset instead of "connection refused" (package docstring).
                    _reset(conn)
                    return
                mode = dev.cfg.get("http_option_dosprot_mode", 0)
                conn.settimeout(mode * 0.5 if mode else IO_TIMEOUT)
                if listener.kind == "https":
                    conn = dev.ssl_context.wrap_socket(conn, server_side=True)
            else:
                conn.settimeout(IO_TIMEOUT)
            scheme = "https" if listener.kind == "https" else "http"
            rfile = conn.makefile("rb")
            try:
                req = read_request(conn, rfile, scheme, msc=None if dev is None else dev.msc)
            except HttpError as exc:
                if dev is not None:
                    dev.record(Request("?", "?", {}, None, scheme), exc.status or None, None)
                if exc.status == upgrade.CLOSE:
                    _reset(conn)
                    return
                write_response(conn, Response(exc.status))
                return
            if dev is not None:
                resp = self._device_request(dev, req)
            elif listener.kind == "control":
                resp = self.control_fn(req)
            else:
                resp = self.backend_fn(req)
            if resp.drop:
                after = resp.after
                _reset(conn)
                return
            wait = req.started + resp.min_time - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            write_response(conn, resp)
            after = resp.after
        except (OSError, ssl.SSLError, ValueError, ConnectionAbortedError):
            pass
        except Exception as exc:  # pylint: disable=broad-except  # never let one request stop the server
            try:
                write_response(conn, Response(500))
            except Exception:  # pylint: disable=broad-except
                pass
            print("hem-emulator: internal error: %r" % (exc,), flush=True, file=sys.stderr)
        finally:
            try:
                conn.close()
            except OSError:
                pass
            if after is not None:
                after()

    def _device_request(self, dev: Device, req: Request) -> Response:
        body_obj = _json_body(req)
        fault = take_fault(dev, req)
        resp = None
        if fault is not None:
            kind = fault["kind"]
            if kind == "latency":
                time.sleep(fault.get("seconds", 1.0))
            elif kind == "busy":
                resp = Response(409)
            elif kind == "error400":
                resp = Response(400)       # the body is refused, nothing applied
            elif kind == "error500":
                resp = Response(500)
            elif kind == "drop":
                applied = dev.handle(req) if (req.method == "POST" and fault.get("after_apply")) else None
                dev.record(req, None, body_obj)
                return Response(0, drop=True, after=applied.after if applied else None)
        if resp is None:
            resp = dev.handle(req)
        if fault is not None and fault["kind"] == "reboot_after" and resp.after is None:
            # answered as usual, then a power blip: the device goes down as after a reboot (tokens and clock lost)
            resp.after = lambda: dev.go_down(dev.fleet.reboot_seconds)
        dev.record(req, resp.status, body_obj)
        return resp


def take_fault(dev: Device, req: Request):
    with dev.lock:
        for fault in dev.faults:
            if fault.get("path") and not req.path.startswith(fault["path"]):
                continue
            if fault.get("method") and fault["method"].upper() != req.method:
                continue
            fault["count"] -= 1
            if fault["count"] <= 0:
                dev.faults.remove(fault)
            return fault
    return None


# ---------------------------------------------------------------------------- stand-in backend

def backend_handler(fleet: Fleet):
    def handle(req: Request) -> Response:
        if (req.method, req.path.rstrip("/")) != ("POST", "/checkin"):
            return Response(404)
        body = _json_body(req)
        if not isinstance(body, dict) or not isinstance(body.get("check"), str):
            return Response(400)
        try:
            header, payload, signing_input, sig = util.jwt_split(body["check"])
            if header != util.LOGIN_HEADER:
                raise ValueError("header")
            shared = util.x25519_shared(fleet.backend_x25519, b64d(payload.get("spk")))
        except (ValueError, UnicodeDecodeError):
            return Response(400)
        if not util.hs256_ok(signing_input, sig, shared):
            return Response(401)
        reply = {"jti": payload.get("jti"), "aud": payload.get("did"), "iss": BACKEND_ISSUER,
                 "iat": int(time.time()), "action": "OK"}
        reply.update(_take_checkin_order(fleet, payload.get("did")))
        signing = util.b64url(util.json_bytes({"alg": "EdDSA", "typ": "JWT"})) + "." + util.b64url(util.json_bytes(reply))
        checked = signing + "." + util.b64url(fleet.backend_sign.sign(signing.encode("ascii")))
        return Response(200, {"checked": checked})
    return handle


def _take_checkin_order(fleet, devid):
    """The action / pushed certificate the control interface ordered for this device's next check-in."""
    for dev in fleet.devices:
        if dev.p["devid"] != devid:
            continue
        with dev.lock:
            order = dev.checkin_order
            if order is None:
                return {}
            if order["count"] is not None:
                order["count"] -= 1
                if order["count"] <= 0:
                    dev.checkin_order = None
            return {k: order[k] for k in ("action", "newcrt") if order.get(k) is not None}
    return {}


def _set_checkin_order(dev, body):
    """POST /devices/<i>/checkin {"action", "newcrt", "count"}: what the backend answers this device."""
    if not isinstance(body, dict) or not body or set(body) - {"action", "newcrt", "count"}:
        return Response(400)
    action, newcrt, count = body.get("action"), body.get("newcrt"), body.get("count")
    if action is not None and (not isinstance(action, str) or not 1 <= len(action) <= 8):
        return Response(400)        # any short string: one outside CHECKIN_ACTIONS tests the device's "???"
    if newcrt is not None and not isinstance(newcrt, str):
        return Response(400)
    if action is None and newcrt is None:
        return Response(400)
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
        return Response(400)
    with dev.lock:
        dev.checkin_order = {"action": action, "newcrt": newcrt, "count": count}
    return Response(200, {"order": _checkin_order_view(dev)})


def _checkin_order_view(dev):
    with dev.lock:
        order = dev.checkin_order
        return None if order is None else {"action": order["action"] or "OK", "newcrt": order["newcrt"] is not None,
                                           "count": order["count"]}


# ---------------------------------------------------------------------------- control interface

def control_handler(fleet: Fleet, urls):
    def handle(req: Request) -> Response:
        parts = [p for p in req.path.split("/") if p]
        if parts == ["devices"] and req.method == "GET":
            out = []
            for dev in fleet.devices:
                url, http_url = fleet.device_urls(dev) if fleet.port_base else urls[dev.index]
                out.append({"index": dev.index, "url": url, "http_url": http_url, "address": dev.address,
                            "devid": dev.p["devid"], "model": dev.model, "personalised": dev.p["personalised"],
                            "rtc_set": dev.rtc_set, "boot_id": dev.boot_id, "up": dev.up})
            return Response(200, out)
        if len(parts) != 3 or parts[0] != "devices" or not parts[1].isdigit() or int(parts[1]) >= len(fleet.devices):
            return Response(404)
        dev = fleet.devices[int(parts[1])]
        what = parts[2]
        body = _json_body(req) if req.method == "POST" else None
        if what == "log" and req.method == "GET":
            # ?clear=1 (test tooling): read and clear in one step under the lock, so no entry is
            # lost between the read and the clear.
            clear = parse_qs(req.query).get("clear") == ["1"]
            with dev.lock:
                entries = list(dev.log)
                if clear:
                    dev.log.clear()
            return Response(200, entries)
        if what == "log" and req.method == "DELETE":
            with dev.lock:
                dev.log.clear()
            return Response(200, {})
        if what == "state" and req.method == "GET":
            return Response(200, dev.state_view())
        if what == "faults" and req.method == "DELETE":
            with dev.lock:
                dev.faults.clear()
                dev.tamper = 0
            return Response(200, {})
        if what == "faults" and req.method == "POST":
            return _add_fault(fleet, dev, body)
        if what == "checkin" and req.method == "POST":
            return _set_checkin_order(dev, body)
        if what == "firmware" and req.method == "POST":
            status = dev.upgrade.set_pending(body)
            return Response(status, dev.upgrade.view() if status == 200 else None)
        if what == "checkin" and req.method == "GET":
            return Response(200, {"order": _checkin_order_view(dev)})
        if what == "checkin" and req.method == "DELETE":
            with dev.lock:
                dev.checkin_order = None
            return Response(200, {})
        if what == "logger" and req.method in ("GET", "POST"):
            with dev.lock:
                return Response(*dev.logger.control(req.method, body))
        if what == "clock" and req.method == "POST":
            if not isinstance(body, dict) or not isinstance(body.get("offset"), (int, float)) or isinstance(body.get("offset"), bool):
                return Response(400)
            with dev.lock:
                dev.clock_offset = float(body["offset"])
            return Response(200, {"offset": dev.clock_offset})
        return Response(404)
    return handle


def _add_fault(fleet, dev, body):
    if not isinstance(body, dict) or body.get("kind") not in FAULT_KINDS:
        return Response(400)
    count = body.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        return Response(400)
    seconds = body.get("seconds", 1.0)
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
        return Response(400)
    for key in ("path", "method"):
        if body.get(key) is not None and not isinstance(body[key], str):
            return Response(400)
    kind = body["kind"]
    if kind == "reboot":
        dev.go_down(fleet.reboot_seconds)
    elif kind == "tamper_attestation":
        with dev.lock:
            dev.tamper += count
    elif kind == "expire_tokens":
        with dev.lock:
            dev.bearer_key = secrets.token_bytes(32)
    elif kind in upgrade.FAULTS:
        dev.upgrade.arm(kind)
    else:
        fault = {"kind": kind, "count": count, "path": body.get("path"), "method": body.get("method"),
                 "seconds": float(seconds), "after_apply": bool(body.get("after_apply", False))}
        with dev.lock:
            dev.faults.append(fault)
    return Response(200, {})
