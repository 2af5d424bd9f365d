# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Transport behaviour: framing errors, headers, CORS, TLS-only families, robustness (raw sockets)."""

from __future__ import annotations

import json
import socket
import ssl
import time

import pytest

from .conftest import PASS, client


def raw(emu, data: bytes, tls=True, i=0, shutdown=False, timeout=5.0):
    """Send raw bytes, return (status or None, headers dict, body bytes)."""
    url = emu.url(i) if tls else emu.http_url(i)
    host, port = url.split("//")[1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    if tls:
        ctx = ssl.create_default_context(cafile=emu.ca_file)
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
    try:
        sock.sendall(data)
        if shutdown and not tls:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError, socket.timeout):
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        sock.close()
    blob = b"".join(chunks)
    if not blob:
        return None, {}, b""
    head, _sep, body = blob.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    return status, headers, body


def request_bytes(method, path, body=b"", headers=None, length=True):
    hdrs = {"Host": "localhost", "Connection": "close"}
    if length:
        hdrs["Content-Length"] = str(len(body))
    hdrs.update(headers or {})
    head = "%s %s HTTP/1.1\r\n" % (method, path) + "".join("%s: %s\r\n" % kv for kv in hdrs.items()) + "\r\n"
    return head.encode() + body


def test_every_answer_is_json_and_closes(shared_emu):
    for path in ("/api/system/status", "/nope", "/api/system/config"):
        status, headers, body = raw(shared_emu, request_bytes("GET", path))
        assert headers["content-type"] == "application/json"
        assert headers["connection"] == "close"
        assert int(headers["content-length"]) == len(body)
        if status != 200:
            assert body == b""


def test_411_and_413(shared_emu):
    assert raw(shared_emu, request_bytes("POST", "/api/auth/token", length=False))[0] == 411
    assert raw(shared_emu, request_bytes("POST", "/api/auth/token", b""))[0] == 411
    assert raw(shared_emu, request_bytes("POST", "/api/auth/token", b"x", {"Transfer-Encoding": "chunked"},
                                         length=False))[0] == 411
    big = json.dumps({"auth": "a" * 7300}).encode()
    status, _h, body = raw(shared_emu, request_bytes("POST", "/api/auth/token", big))
    assert status == 413 and body == b""
    exactly = json.dumps({"user": "u" * (7300 - 12)}).encode()
    assert len(exactly) == 7300
    assert raw(shared_emu, request_bytes("POST", "/api/system/config", exactly))[0] == 401   # not 413: at the limit


def test_truncated_and_malformed_requests(shared_emu):
    status, _h, _b = raw(shared_emu, request_bytes("POST", "/api/auth/token", b'{"auth":"x"}')[:-4], tls=False,
                         shutdown=True)
    assert status == 400
    for junk in (b"GARBAGE\r\n\r\n", b"GET /x\r\n\r\n", b"GET / HTTP/1.1\r\nno-colon-header\r\n\r\n",
                 b"get /api/system/status HTTP/1.1\r\n\r\n", b"GET api/system/status HTTP/1.1\r\n\r\n",
                 b"GET / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"):
        status, headers, body = raw(shared_emu, junk, tls=False, shutdown=True, timeout=3)
        assert status in (400, None), junk
        if status:
            assert headers["content-type"] == "application/json" and body == b""
    # the device still answers
    assert client(shared_emu).get("/api/system/status").status == 200


def test_stalled_request_is_closed_by_dosprot_timeout(emulator):
    emu = emulator(passphrase=PASS, rtc_set=True)
    hem = client(emu)
    hem.login(PASS)
    hem.post("/api/system/config", {"http_option_dosprot_mode": 1})           # 0.5 s to finish a request
    t0 = time.monotonic()
    status, _h, _b = raw(emu, b"GET /api/system/status HTTP/1.1\r\n", tls=False, timeout=5)
    assert status is None and time.monotonic() - t0 < 3


def test_expect_100_continue(shared_emu):
    body = b'{"auth":"a.b.c"}'
    host, port = shared_emu.http_url(0).split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        head = {"Expect": "100-continue", "Content-Length": str(len(body))}
        sock.sendall(request_bytes("POST", "/api/auth/token", b"", head, length=False))
        interim = sock.recv(100)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        final = b""
        while chunk := sock.recv(4096):
            final += chunk
    assert final.startswith(b"HTTP/1.1 401 ")


def test_cors(emulator):
    emu = emulator(passphrase=PASS, rtc_set=True)
    hem = client(emu)
    hem.login(PASS)
    assert hem.get("/api/system/status", headers={"Origin": "https://any.example"}).status == 200     # origin "*"
    assert hem.post("/api/system/config", {"origin": "https://ops.example, *.corp.example"}).json == {"updated": True}
    assert hem.get("/api/system/status", headers={"Origin": "https://evil.example"}).status == 412
    ok = hem.get("/api/system/status", headers={"Origin": "https://ops.example"})
    assert ok.status == 200 and ok.headers["Access-Control-Allow-Origin"] == "https://ops.example"
    assert hem.get("/api/system/status", headers={"Origin": "https://a.corp.example"}).status == 200
    pre = hem.request("OPTIONS", "/api/system/config", headers={"Origin": "https://ops.example"}, auth=False)
    assert pre.status == 204 and pre.raw == b""
    assert pre.headers["Access-Control-Allow-Methods"] == "GET, POST, DELETE, OPTIONS"
    assert pre.headers["Access-Control-Allow-Headers"] == \
        "Content-Type, Cache-Control, Pragma, Expires, Authorization, Content-Disposition"
    assert pre.headers["Access-Control-Max-Age"] == "86400"
    assert pre.headers["Access-Control-Allow-Credentials"] == "true"
    assert pre.headers["Content-Type"] == "application/json"
    assert hem.request("OPTIONS", "/anything", auth=False).status == 204
    assert hem.request("OPTIONS", "/x", headers={"Origin": "https://evil.example"}, auth=False).status == 412


@pytest.mark.parametrize("path,http_status,https_status", [
    ("/api/keymgmt/list", 418, 401), ("/api/crypto/exdsa/sign", 418, 404), ("/api/crypto/hmac/hash", 409, 404),
    ("/api/keymgmt/delete/00112233445566778899aabbccddeeff", 409, 404), ("/api/storage/lock", 404, 404),
    ("/api/system/upgrade/usbmode", 404, 404), ("/api/auth/ext/init", 404, 404), ("/api/logger/list/0/x", 404, 404),
    ("/api/nothing", 404, 404), ("/", 404, 404), ("/api/system/statusx", 404, 404),
])
def test_unimplemented_and_unknown(shared_emu, path, http_status, https_status):
    assert client(shared_emu, http=True).get(path).status == http_status
    assert client(shared_emu).get(path).status == https_status


def test_plain_http_serves_the_api(shared_emu):
    hem = client(shared_emu, http=True)
    st = hem.get("/api/system/status")
    assert st.json["https"] is True
    assert "https" not in client(shared_emu).get("/api/system/status").json
    assert hem.get("/api/system/version").status == 200


def test_status_fields(emulator):
    emu = emulator(devices=1)
    st = client(emu).get("/api/system/status").json
    assert st["inited"] is False and "ts" not in st and "time" not in st and "tts" not in st
    assert st["hostname"] == "my.ence.do" and st["fls_state"] == 0
    hem = client(emu)
    hem.checkin(emu.backend_url)
    st = hem.get("/api/system/status").json
    assert abs(st["time"] - time.time()) < 5 and st["ts"].endswith("Z")
    status, _h, body = raw(emu, request_bytes("GET", "/api/system/status", headers={"Host": "my.ence.do"}))
    assert "hostname" not in json.loads(body)


def test_hsts_header(hem):
    assert "Strict-Transport-Security" not in hem.get("/api/system/status").headers
    hem.post("/api/system/config", {"http_option_hsts": True})
    try:
        assert "Strict-Transport-Security" in hem.get("/api/system/status").headers
    finally:
        hem.post("/api/system/config", {"http_option_hsts": False})


def test_version_and_selftest(emulator):
    emu = emulator(passphrase=PASS, rtc_set=True)
    hem = client(emu)
    ver = hem.get("/api/system/version").json
    assert {"hwv", "fwv", "fwk", "fws"} <= set(ver) and "sd_csd" not in ver
    assert hem.get("/api/system/selftest").status == 401
    hem.login(PASS)
    assert "sd_csd" in hem.get("/api/system/version").json
    st = hem.get("/api/system/selftest").json
    assert st["fls_state"] == 0 and set(st["repo_stats"]) == {"total", "deleted", "invalid", "fragmented", "freeslots"}
    fresh = emulator()
    assert client(fresh).get("/api/system/selftest").status == 200        # fresh device: no token needed


def test_many_parallel_connections(shared_emu):
    from concurrent.futures import ThreadPoolExecutor
    hem = client(shared_emu)
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda _: hem.get("/api/system/status").status, range(64)))
    assert statuses == [200] * 64


def test_tls_1_3_only(shared_emu):
    # OA: the device serves "TLS 1.3 via wolfSSL": a client limited to TLS 1.2 gets no handshake.
    host, port = shared_emu.url(0).split("//")[1].split(":")
    old = ssl.create_default_context(cafile=shared_emu.ca_file)
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection((host, int(port)), timeout=5.0) as sock:
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            old.wrap_socket(sock, server_hostname="localhost")
    current = ssl.create_default_context(cafile=shared_emu.ca_file)
    with socket.create_connection((host, int(port)), timeout=5.0) as sock:
        with current.wrap_socket(sock, server_hostname="localhost") as tls:
            assert tls.version() == "TLSv1.3"
