# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The emulator's side of bad input: garbage on any of its ports never stops it.

tests/emulator_tests already fuzzes the HTTP parser, the plain-HTTP port and the JSON
bodies of POST /api/system/config, and checks 411/413 and truncated requests. What is
added here: garbage and broken TLS handshakes on the HTTPS port, oversize and truncated
bodies on the stand-in backend and the control interface, and a crowd of idle
connections that must not starve a normal request. After each, the emulator process is
alive, logged no internal error, and every device still answers over HTTPS.
"""

from __future__ import annotations

import errno
import json
import random
import socket
import ssl
import struct
import time
from urllib.parse import urlsplit

import pytest
import requests

from tests.reliability.support import start_emu

PW = "robustness-pass-1"


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    e = start_emu(tmp_path_factory, "robustness", devices=1, passphrase=PW, rtc_set=True)
    yield e
    e.stop()


def _addr(url):
    parts = urlsplit(url)
    return parts.hostname, parts.port


def _send(addr, data, tls_ca=None, rst=False, timeout=3.0):
    """Send data (over TLS when tls_ca is given), read until close; return what came back (bytes)."""
    sock = socket.create_connection(addr, timeout=timeout)
    try:
        if tls_ca:
            sock = ssl.create_default_context(cafile=tls_ca).wrap_socket(sock, server_hostname="localhost")
        try:
            if data:
                sock.sendall(data)
            if rst:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return b""
            if not tls_ca:
                sock.shutdown(socket.SHUT_WR)       # end of our bytes: the peer need not wait for more
        except OSError as exc:
            # The emulator may refuse garbage and close (or reset) before it has read all of it, and on a loaded machine
            # that happens before our send or shutdown ends: the connection is gone, which is an answer, not a failure.
            # Whether the emulator survived is what the test checks afterwards (_assert_healthy).
            if exc.errno not in (errno.ENOTCONN, errno.ECONNRESET, errno.EPIPE):
                raise
            return b""
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (OSError, ssl.SSLError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        sock.close()


def _status(blob):
    return int(blob.split(b" ", 2)[1]) if blob.startswith(b"HTTP/1.1 ") else None


def _assert_healthy(emu):
    assert emu.returncode is None, "the emulator process stopped"
    answer = requests.get(emu.url(0) + "/api/system/status", verify=emu.ca_file, timeout=10)
    assert answer.status_code == 200
    assert not [ln for ln in emu.stderr_lines if "internal error" in ln], emu.stderr_lines[-5:]


CLIENT_HELLO_START = bytes.fromhex("160301020001000200fc03") + b"\x00" * 20


def test_https_port_survives_garbage_and_broken_handshakes(emu):
    addr = _addr(emu.url(0))
    rng = random.Random(9)
    for size in (1, 7, 512, 70000):
        _send(addr, bytes(rng.getrandbits(8) for _n in range(size)))          # not TLS at all
    _send(addr, b"GET /api/system/status HTTP/1.1\r\nHost: x\r\n\r\n")        # plain HTTP on the TLS port
    _send(addr, CLIENT_HELLO_START)                                            # a handshake that stops half-way
    _send(addr, CLIENT_HELLO_START, rst=True)                                  # ... and is reset
    _send(addr, b"", rst=True)                                                 # connect, reset
    _send(addr, b"\x00" * 40, tls_ca=emu.ca_file)                              # TLS, then garbage instead of HTTP
    big = b"POST /api/system/config HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n{"
    assert _status(_send(addr, big, tls_ca=emu.ca_file)) == 413              # oversize: refused unread
    short = b"POST /api/auth/token HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{\"auth\": \"abc"
    _send(addr, short, tls_ca=emu.ca_file, rst=True)                           # truncated JSON, then reset
    _assert_healthy(emu)


def test_backend_and_control_ports_survive_garbage(emu):
    for url in (emu.backend_url, emu.control_url):
        addr = _addr(url)
        _send(addr, b"\x16\x03\x01\xff\xff" + b"\x00" * 300)                   # a TLS hello on a plain port
        _send(addr, b"\r\n\r\n\r\n")
        big = b"POST /checkin HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n{"
        assert _status(_send(addr, big)) in (400, 413)
        _send(addr, b"POST /checkin HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n{\"check\": ", rst=True)
    backend = emu.backend_url + "/checkin"
    for body in (b"{\"check\": ", b"[]", b"\"x\"", b"{\"check\": 5}", b"{\"check\": \"a.b.c\"}", b"\xff\xfe"):
        answer = requests.post(backend, data=body, headers={"Content-Type": "application/json"}, timeout=10)
        assert answer.status_code == 400, (body, answer.status_code)
    faults = emu.control_url + "/devices/0/faults"
    for body in (b"{\"kind\": ", b"[]", b"{\"kind\": \"busy\", \"count\": true}", b"{\"kind\": \"latency\", \"seconds\": -1}",
                 b"{\"kind\": \"busy\", \"path\": 5}"):
        answer = requests.post(faults, data=body, timeout=10)
        assert answer.status_code == 400, (body, answer.status_code)
    assert requests.get(emu.control_url + "/devices", timeout=10).status_code == 200
    assert json.loads(requests.get(emu.control_url + "/devices/0/state", timeout=10).content)["personalised"] is True
    _assert_healthy(emu)


def test_a_crowd_of_idle_connections_does_not_starve_a_request(emu):
    idle = []
    try:
        for url in [emu.url(0)] * 60 + [emu.http_url(0)] * 20 + [emu.backend_url] * 10:
            idle.append(socket.create_connection(_addr(url), timeout=5))
        started = time.monotonic()
        _assert_healthy(emu)
        assert time.monotonic() - started < 5, "a request waited behind idle connections"
    finally:
        for sock in idle:
            sock.close()
    _assert_healthy(emu)
