# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""HemClient over real sockets: the wire format (a local capture server) and the
emulator's faults (busy, 500, dropped connections, latency, expired tokens)."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

try:
    from ansible_collections.encedo.hem.plugins.module_utils import _client as C
except ImportError:  # run without the collection link on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "build" / "collections"))
    from ansible_collections.encedo.hem.plugins.module_utils import _client as C

PASSPHRASE = "live-client-passphrase-99"


class CaptureServer:
    """Plain-HTTP server on 127.0.0.1 that records each connection's raw request and answers {}."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.requests = []          # one entry per accepted connection
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn = self.sock.accept()[0]
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, body = (data.split(b"\r\n\r\n", 1) + [b""])[:2]
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
                length = int(headers.get("content-length", "0"))
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests.append({"line": lines[0], "headers": headers, "body": body})
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
                # keep the connection open: a client that reuses connections would send its next request here

    def close(self):
        self.sock.close()


@pytest.fixture
def capture():
    server = CaptureServer()
    yield server
    server.close()


def test_wire_format_and_one_connection_per_request(capture):
    client = C.HemClient(capture.url, token="aaa.bbb.ccc")
    client.get("/api/system/status", auth=False)
    client.post("/api/system/config", {"user": "Zoë", "allow_keysearch": True})
    client.post("/api/system/checkin", None, auth=False)
    client.get("/api/system/config")
    assert len(capture.requests) == 4  # four requests, four connections
    get, post, empty_post, auth_get = capture.requests
    assert get["line"] == "GET /api/system/status HTTP/1.1"
    assert get["headers"]["connection"] == "close"
    assert "content-type" not in get["headers"] and "authorization" not in get["headers"] and get["body"] == b""
    assert post["headers"]["content-type"] == "application/json"
    assert int(post["headers"]["content-length"]) == len(post["body"])
    assert json.loads(post["body"]) == {"user": "Zoë", "allow_keysearch": True}
    assert post["headers"]["authorization"] == "Bearer aaa.bbb.ccc"
    assert empty_post["body"] == b"{}" and empty_post["headers"]["content-length"] == "2"
    assert auth_get["headers"]["authorization"] == "Bearer aaa.bbb.ccc"


def test_netrc_does_not_replace_the_bearer(capture, tmp_path, monkeypatch):
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login someone password other\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    C.HemClient(capture.url, token="aaa.bbb.ccc").get("/api/system/config")
    assert capture.requests[0]["headers"]["authorization"] == "Bearer aaa.bbb.ccc"


@pytest.fixture
def device(emulator):
    return emulator(passphrase=PASSPHRASE, rtc_set=True)


def client_for(emu, **kwargs):
    kwargs.setdefault("passphrase", PASSPHRASE)
    kwargs.setdefault("ca_path", emu.ca_file)
    return C.HemClient(emu.url(0), **kwargs)


def entries(emu, path):
    return [(e["method"], e["status"]) for e in emu.log(0) if e["path"] == path]


def test_ca_path_is_honoured_and_environment_bundles_are_ignored(device, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", device.ca_file)
    monkeypatch.setenv("CURL_CA_BUNDLE", device.ca_file)
    with pytest.raises(C.HemError) as err:
        client_for(device, ca_path=None).status()
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", device.custody_ca_file)
    assert "uptime" in client_for(device).status()
    assert "uptime" in client_for(device, ca_path=None, validate_certs=False).status()


def test_busy_reads_are_retried(device):
    client = client_for(device)
    client.login()
    device.fault(0, "busy", count=2, path="/api/system/config", method="GET")
    assert "hostname" in client.get("/api/system/config")
    assert entries(device, "/api/system/config") == [("GET", 409), ("GET", 409), ("GET", 200)]


def test_failed_writes_are_not_retried(device):
    client = client_for(device)
    client.login()
    device.fault(0, "error500", count=1, path="/api/system/config", method="POST")
    with pytest.raises(C.HemError) as err:
        client.post("/api/system/config", {"user": "x"})
    assert err.value.status == 500
    assert entries(device, "/api/system/config") == [("POST", 500)]


def test_dropped_write_is_outcome_unknown(device):
    client = client_for(device)
    client.login()
    device.fault(0, "drop", count=1, path="/api/system/config", method="POST", after_apply=True)
    with pytest.raises(C.HemOutcomeUnknown):
        client.post("/api/system/config", {"user": "dropped-but-applied"})
    sent = entries(device, "/api/system/config")
    assert len(sent) == 1 and sent[0][0] == "POST"  # sent once, not retried
    assert device.state(0)["config"]["user"] == "dropped-but-applied"


def test_dropped_and_slow_reads_are_retried(device):
    client = client_for(device, timeout=6)
    device.fault(0, "drop", count=1, path="/api/system/status", method="GET")
    assert "uptime" in client.status()
    # a hung answer takes half the budget (3 s of 6), the second try answers at once
    device.fault(0, "latency", count=1, path="/api/system/status", method="GET", seconds=4.5)
    started = time.monotonic()
    assert "uptime" in client.status()
    assert 2.9 < time.monotonic() - started < 5.5


def test_slow_write_is_outcome_unknown(device):
    # timeout 3 s leaves the TLS handshake room on a loaded machine (a connect timeout is not
    # "outcome unknown"); the answer comes 8 s late, long after the read timeout.
    client = client_for(device, timeout=3)
    client.login()
    device.fault(0, "latency", count=1, path="/api/system/config", method="POST", seconds=8)
    with pytest.raises(C.HemOutcomeUnknown):
        client.post("/api/system/config", {"user": "slow"})


def test_expired_token_means_one_new_login(device):
    client = client_for(device)
    client.get("/api/system/config")
    device.fault(0, "expire_tokens")
    client.get("/api/system/config")
    assert entries(device, "/api/auth/token") == [("GET", 200), ("POST", 200)] * 2
    assert entries(device, "/api/system/config") == [("GET", 200), ("GET", 401), ("GET", 200)]


def test_body_limit_is_checked_before_sending(device):
    client = client_for(device)
    client.login()
    device.clear_log(0)
    with pytest.raises(C.HemError, match="7300"):
        client.post("/api/system/config", {"tls": {"crt": "A" * 8000}})
    assert device.log(0) == []
