# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""HemClient over real sockets: the wire format (a local capture server) and the
emulator's faults (busy, 500, dropped connections, latency, expired tokens)."""

from __future__ import annotations

import json
import threading
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.emulator.proxy import read_head
from tests.unit.loopback import ConnectProxy, LoopbackServer

try:
    from ansible_collections.encedo.hem.plugins.module_utils import _client as C
except ImportError:  # run without the collection link on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "build" / "collections"))
    from ansible_collections.encedo.hem.plugins.module_utils import _client as C
from ansible_collections.encedo.hem.plugins.module_utils import _errors as E
from ansible_collections.encedo.hem.plugins.module_utils import _login as L

PASSPHRASE = "live-client-passphrase-99"


class CaptureServer(LoopbackServer):
    """Plain-HTTP server on 127.0.0.1 that records each connection's raw request and answers {}."""

    def __init__(self):
        self.requests = []          # one entry per accepted connection
        super().__init__()
        self.url = "http://127.0.0.1:%d" % self.port

    def handle(self, conn):
        with conn:      # the answer closes the connection: a client must open one per request
            lines, body = read_head(conn)
            headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
            length = int(headers.get("content-length", "0"))
            while len(body) < length:
                body += conn.recv(65536)
            self.requests.append({"line": lines[0], "headers": headers, "body": body})
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")


@pytest.fixture
def capture():
    server = CaptureServer()
    yield server
    server.close()


def test_wire_format_and_one_connection_per_request(capture):
    client = C.HemClient(capture.url, token="aaa.bbb.ccc", allow_plain_http=True)
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


def test_a_path_in_the_url_prefixes_every_request(capture):
    C.HemClient(capture.url + "/hem/7/", token="aaa.bbb.ccc", allow_plain_http=True).get("/api/system/config")
    assert capture.requests[0]["line"] == "GET /hem/7/api/system/config HTTP/1.1"


def test_plain_http_goes_through_the_proxy_in_absolute_form(capture, monkeypatch):
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", "http://u:p%%40ss@127.0.0.1:%d" % capture.port)   # the capture server plays the proxy
    assert C.HemClient("http://backend.invalid:8080/base", token="aaa.bbb.ccc", allow_plain_http=True).get("/checkin") == {}
    request = capture.requests[0]
    assert request["line"] == "GET http://backend.invalid:8080/base/checkin HTTP/1.1"
    assert request["headers"]["host"] == "backend.invalid:8080"
    assert request["headers"]["proxy-authorization"] == "Basic " + L.b64(b"u:p@ss")


def test_netrc_does_not_replace_the_bearer(capture, tmp_path, monkeypatch):
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login someone password other\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    C.HemClient(capture.url, token="aaa.bbb.ccc", allow_plain_http=True).get("/api/system/config")
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


def test_bad_ca_path_is_a_clear_error(device, tmp_path):
    not_pem = tmp_path / "not-a-ca.pem"
    not_pem.write_text("hello\n")
    for path in (str(not_pem), str(tmp_path / "missing.pem")):
        with pytest.raises(E.HemError, match="ca_path %s cannot be read as a PEM CA bundle" % path):
            client_for(device, ca_path=path).status()
    assert device.log(0) == []      # nothing was sent


def test_api_requests_go_through_the_environment_proxy(device, monkeypatch):
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    proxy = ConnectProxy()
    try:
        monkeypatch.setenv("https_proxy", "http://user:s%%40cret@127.0.0.1:%d" % proxy.port)
        client = client_for(device)
        assert "uptime" in client.status()
        assert client.get("/api/system/config")       # challenge, login, config: one tunnel each
        target = urlsplit(device.url(0)).netloc
        assert proxy.tunnels == [target] * 4
        assert proxy.auth == ["Proxy-Authorization: Basic " + L.b64(b"user:s@cret")] * 4
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        assert "uptime" in client.status()
        assert len(proxy.tunnels) == 4                 # bypassed
    finally:
        proxy.close()


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
    with pytest.raises(E.HemError) as err:
        client.post("/api/system/config", {"user": "x"})
    assert err.value.status == 500
    assert entries(device, "/api/system/config") == [("POST", 500)]


def test_dropped_write_is_outcome_unknown(device):
    client = client_for(device)
    client.login()
    device.fault(0, "drop", count=1, path="/api/system/config", method="POST", after_apply=True)
    with pytest.raises(E.HemOutcomeUnknown):
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
    with pytest.raises(E.HemOutcomeUnknown):
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
    with pytest.raises(E.HemError, match="7300"):
        client.post("/api/system/config", {"tls": {"crt": "A" * 8000}})
    assert device.log(0) == []


class LingeringServer(LoopbackServer):
    """Answers one request per connection without ``Connection: close``, then closes it a moment later
    without reading more (as a device that closes every connection may)."""

    def __init__(self):
        self.count = 0
        super().__init__()
        self.url = "http://127.0.0.1:%d" % self.port

    def handle(self, conn):
        read_head(conn)
        self.count += 1
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
        threading.Timer(0.5, conn.close).start()


def test_a_connection_is_never_reused_even_without_connection_close():
    """A pooled connection would be dead by the next request: a POST on it would be "outcome unknown"."""
    server = LingeringServer()
    try:
        client = C.HemClient(server.url, token="aaa.bbb.ccc", allow_plain_http=True)
        for dummy in range(3):
            assert client.post("/api/system/config", {"user": "x"}) == {}
        assert server.count == 3
    finally:
        server.close()


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_refused_connection_has_sent_nothing(scheme):
    """A POST to a port where nothing listens never reached anybody: not "outcome unknown"."""
    import socket
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(E.HemError) as err:
        C.HemClient("%s://127.0.0.1:%d" % (scheme, port), token="aaa.bbb.ccc", allow_plain_http=True, timeout=2).post("/checkin", {"check": "x"})
    assert not isinstance(err.value, E.HemOutcomeUnknown)
    assert "cannot reach the device" in str(err.value) and "Connection refused" in str(err.value)


def test_login_asks_for_an_explicit_expiry(emulator):
    # No vendor client sends exp 0 (OA's 8-hour default is documented for 1.2.2 only): a device that
    # does not read 0 as the default refuses such a proof. The collection asks for 8 hours explicitly.
    emu = emulator(passphrase=PASSPHRASE, rtc_set=True, no_exp_default=True, control=True)
    emu.clock(0, 5000)                  # the device's clock is not this machine's: the expiry must follow the device's
    client = client_for(emu)
    challenges = []                     # what the device answered to each GET of the challenge (the real answers)
    fetch = client._challenge

    def recording_challenge():
        challenges.append(fetch())
        return challenges[-1]

    client._challenge = recording_challenge
    token = client.login()
    claims = L.jwt_claims(token)
    # The expiry counts from the device's time at the challenge (its exp less the challenge's 60 s); the token's iat
    # is the device's time at the POST, which comes after the key derivation: how long after depends on the machine's
    # load, so the test pins the expiry to the challenge, not to iat.
    assert L.TOKEN_LIFETIME == 8 * 3600
    challenge_time = challenges[-1]["exp"] - L.CHALLENGE_LIFETIME
    assert claims["exp"] == challenge_time + L.TOKEN_LIFETIME
    assert claims["iat"] >= challenge_time and claims["exp"] - claims["iat"] <= L.TOKEN_LIFETIME
    assert client.token_expires == claims["exp"]
    short = L.jwt_claims(client.login(scope="logger:get", lifetime=600))
    challenge_time = challenges[-1]["exp"] - L.CHALLENGE_LIFETIME
    assert short["exp"] == challenge_time + 600
    assert short["iat"] >= challenge_time and short["exp"] - short["iat"] <= 600
    assert entries(emu, "/api/auth/token") == [("GET", 200), ("POST", 200)] * 2


def test_emulator_without_the_exp_default_refuses_exp_zero(emulator):
    # The emulator option is a real refusal, not a no-op: a proof with exp 0 answers 401 there.
    emu = emulator(passphrase=PASSPHRASE, rtc_set=True, no_exp_default=True)
    client = client_for(emu)
    challenge = client.get(C.TOKEN_PATH, auth=False)
    private_bytes, public_b64 = L.derive_keypair(PASSPHRASE, challenge["eid"])
    proof = L.build_auth_jwt(challenge, private_bytes, public_b64, "system:config", challenge["exp"] - 60, 0)
    with pytest.raises(E.HemError) as failure:
        client.post(C.TOKEN_PATH, {"auth": proof}, auth=False)
    assert failure.value.status == 401


def test_serves_tls_tells_an_https_server_from_none(emulator, tmp_path):
    # a handshake alone, without verification: an untrusted certificate still means an HTTPS server runs
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_text(Path(emulator(passphrase=PASSPHRASE).ca_file).read_text())   # another emulator's CA
    served = emulator(passphrase=PASSPHRASE)
    assert C.HemClient(served.url(0), ca_path=str(other_ca), timeout=5).serves_tls() is True
    fresh = emulator(no_tls_bundle=True)
    assert C.HemClient(fresh.url(0), ca_path=fresh.ca_file, timeout=5).serves_tls() is False
    assert C.HemClient(fresh.http_url(0), allow_plain_http=True, timeout=5).serves_tls() is False
