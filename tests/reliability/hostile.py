# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A hostile "device" on 127.0.0.1: a real socket server (HTTPS with a throw-away CA, or plain
HTTP) that answers every request the way its ``mode`` says, to show what the collection does
when a device, or anybody in the path, sends answers of the wrong size, pace or shape.

Modes (each answer is HTTP 200 unless said otherwise):

- ``ok``: a well-formed status object (the idle baseline).
- ``huge``: a JSON status object of ``size`` bytes (default 200 MB), sent with its Content-Length.
- ``huge_chunked``: the same without a Content-Length (chunked), so only counting can stop it.
- ``gzip``: a gzip bomb: ``Content-Encoding: gzip``, a few hundred KB inflating to ``size`` bytes.
- ``drip``: headers, then the body one byte every ``interval`` seconds (``size`` bytes at most).
- ``drip_headers``: the status line and headers themselves one byte every ``interval`` seconds.
- ``list``: a JSON list where an object is expected.
- ``deep``: 100,000 nested brackets (200 KB, within the size limit: the nesting itself is the attack).
- ``missing``: a JSON object without the fields a status or login challenge has.
- ``wrong_types``: a status and challenge whose fields have the wrong JSON types.

Every request is logged (``requests``: method, path, headers with their values) before it is
answered, so a test can prove what was, or was not, sent. The server stops itself (``close``)
and never sends more than its mode says; the drip modes stop when the client goes away.
"""

from __future__ import annotations

import gzip
import io
import json
import socket
import ssl
import threading
import time

from tests.reliability.support import issue, make_ca, pem

STATUS = {"hostname": "hostile.local", "inited": True, "https": True, "fls_state": 0, "uptime": 5}
MB = 1024 * 1024


def gzip_bomb(size):
    """gzip data that inflates to ``size`` zero bytes (made once, in 1 MB steps)."""
    out = io.BytesIO()
    block = b"0" * MB
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as gz:
        for dummy in range(size // MB):
            gz.write(block)
    return out.getvalue()


class HostileDevice:
    """``HostileDevice(mode, tls=True, size=..., interval=...)``: ``url``, ``requests`` (the log), ``first_connection``
    (time.monotonic() when the first connection was accepted, None before), ``close()``."""

    def __init__(self, mode, tls=True, size=200 * MB, interval=0.5, tmp_path=None):
        self.mode = mode
        self.size = size
        self.interval = interval
        self.requests = []
        self.first_connection = None
        self.stop = threading.Event()
        self._bomb = gzip_bomb(size) if mode == "gzip" else None
        self.ca_file = None
        self._ctx = None
        if tls:
            key, cert, cert_pem, dummy = make_ca(cn="Hostile test CA")
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import ec
            leaf_key = ec.generate_private_key(ec.SECP256R1())
            leaf = issue(key, cert, leaf_key.public_key(), "127.0.0.1", ips=["127.0.0.1"])
            directory = tmp_path
            self.ca_file = str(directory / "hostile-ca.pem")
            (directory / "hostile-ca.pem").write_text(cert_pem)
            (directory / "hostile.pem").write_text(pem(leaf))
            (directory / "hostile.key").write_bytes(leaf_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
            self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ctx.load_cert_chain(str(directory / "hostile.pem"), str(directory / "hostile.key"))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.url = "%s://127.0.0.1:%d" % ("https" if tls else "http", self.port)
        self._threads = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    # -- server ------------------------------------------------------------------------

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn = self.sock.accept()[0]
            except OSError:
                continue
            if self.first_connection is None:
                self.first_connection = time.monotonic()
            worker = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self._threads.append(worker)
            worker.start()

    def _handle(self, conn):
        try:
            conn.settimeout(10)
            if self._ctx is not None:
                conn = self._ctx.wrap_socket(conn, server_side=True)
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                data = conn.recv(4096)
                if not data:
                    return
                head += data
                if head[:1] == b"\x16":
                    # a TLS handshake on the plain-HTTP port: answer in HTTP, as a web server does
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                    return
            lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            method, path = lines[0].split(" ")[:2]
            headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            self.requests.append({"method": method, "path": path, "headers": headers})
            self._answer(conn, path)
        except (OSError, ValueError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _send(self, conn, body, extra=(), length=True):
        head = ["HTTP/1.1 200 OK", "Content-Type: application/json", "Connection: close"] + list(extra)
        if length:
            head.append("Content-Length: %d" % len(body))
        conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body)

    def _answer(self, conn, path):
        mode = self.mode
        if mode == "ok":
            return self._send(conn, json.dumps(STATUS).encode())
        if mode in ("huge", "huge_chunked"):
            return self._huge(conn, chunked=(mode == "huge_chunked"))
        if mode == "gzip":
            return self._send(conn, self._bomb, extra=["Content-Encoding: gzip"])
        if mode == "drip":
            head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % self.size
            conn.sendall(head.encode("ascii"))
            return self._drip(conn, (b'{"hostname": "' + b"d" * self.size)[:self.size])
        if mode == "drip_headers":
            head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + "X-Slow: %s\r\n" % ("s" * self.size)
            return self._drip(conn, head.encode("ascii"))
        if mode == "list":
            return self._send(conn, json.dumps([STATUS]).encode())
        if mode == "deep":
            return self._send(conn, b"[" * 100000 + b"]" * 100000)
        if mode == "missing":
            return self._send(conn, b'{"unexpected": true}')
        if mode == "wrong_types":
            body = dict(STATUS, inited="yes", eid=["e"], spk=7, jti={"j": 1}, exp="soon", hostname=["x"], https="no")
            return self._send(conn, json.dumps(body).encode())
        raise ValueError("unknown mode %r" % mode)

    def _huge(self, conn, chunked):
        prefix = b'{"hostname": "'
        suffix = b'"}'
        filler = b"x" * MB
        total = self.size
        if chunked:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n")
        else:
            conn.sendall(("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
                          % total).encode("ascii"))
        parts = [prefix] + [filler] * ((total - len(prefix) - len(suffix)) // MB)
        sent = sum(len(p) for p in parts)
        parts.append(b"x" * (total - len(suffix) - sent))
        parts.append(suffix)
        for part in parts:
            if self.stop.is_set():
                return
            conn.sendall(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
        if chunked:
            conn.sendall(b"0\r\n\r\n")

    def _drip(self, conn, data):
        for i in range(len(data)):
            if self.stop.wait(self.interval):
                return
            conn.sendall(data[i:i + 1])

    # -- control -------------------------------------------------------------------------

    def close(self):
        self.stop.set()
        self._thread.join(5)
        self.sock.close()
        for worker in self._threads:
            worker.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
