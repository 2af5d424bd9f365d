# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small proxies for tests. ``CountingProxy``: a forward proxy (HTTP CONNECT tunnels and
absolute-form plain-HTTP requests, on 127.0.0.1 or ::1, optionally TLS-wrapped: an
``https://`` proxy), counting what it carries. ``CountingForwarder``: a TCP forwarder in front
of one device, counting the connections made to it.

Not part of the emulated firmware: it stands between a client and the emulator, so a test
can prove that traffic went through a proxy (IPv6 targets, HTTPS proxies, ``no_proxy``) or
count the TCP connections a run opens to a device (``connections``).

    with CountingProxy() as proxy:                 # http://127.0.0.1:<port>
        os.environ["https_proxy"] = proxy.url
        ...
        proxy.tunnels      # ["127.0.0.1:4443", ...] CONNECT targets, in order
        proxy.connections  # TCP connections accepted
        proxy.auth         # Proxy-Authorization header lines received

``CountingProxy(host="::1")`` listens on IPv6 loopback; ``CountingProxy(tls=(cert_file,
key_file))`` speaks TLS to its clients (``proxy.url`` is then ``https://...``).
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
from urllib.parse import urlsplit


def read_head(conn):
    """Read up to the end of an HTTP head: (the head's lines, the bytes read after it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    head, rest = (data.split(b"\r\n\r\n", 1) + [b""])[:2]
    return head.decode("latin-1").split("\r\n"), rest


def _split_hostport(text, default_port):
    """'[::1]:443' / 'host:443' / 'host' -> (host, port)."""
    if text.startswith("["):
        host, dummy, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if text.count(":") == 1:
        host, port = text.rsplit(":", 1)
        return host, int(port)
    return text, default_port


class CountingProxy:
    """A threaded forward proxy (see the module docstring). Use as a context manager or call close()."""

    def __init__(self, host="127.0.0.1", tls=None):
        self.host = host
        self.connections = 0
        self.tunnels = []        # CONNECT targets as sent by the client
        self.requests = []       # request lines of plain-HTTP (absolute-form) requests
        self.auth = []           # Proxy-Authorization header lines
        self.errors = []         # what went wrong inside the proxy (a test may assert it is empty)
        self._lock = threading.Lock()
        self._ctx = None
        if tls:
            self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ctx.load_cert_chain(tls[0], tls[1])
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        netloc = "[%s]:%d" % (host, self.port) if ":" in host else "%s:%d" % (host, self.port)
        self.url = ("https://" if tls else "http://") + netloc
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def url_with(self, user, password):
        """The proxy URL with credentials (percent-encode them first if needed)."""
        scheme, rest = self.url.split("://", 1)
        return "%s://%s:%s@%s" % (scheme, user, password, rest)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn = self.sock.accept()[0]
            except OSError:
                continue
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    @staticmethod
    def _relay(a, b):
        """Copy bytes both ways until one side closes (one thread: TLS sockets are not shared between threads)."""
        socks = [a, b]
        try:
            while True:
                ready = [s for s in socks if isinstance(s, ssl.SSLSocket) and s.pending()]
                if not ready:
                    ready = select.select(socks, [], [], 10)[0]
                    if not ready:
                        return
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (b if sock is a else a).sendall(data)
        except OSError:
            pass
        finally:
            for sock in socks:
                try:
                    sock.close()
                except OSError:
                    pass

    def _handle(self, conn):
        try:
            conn.settimeout(10)
            if self._ctx is not None:
                conn = self._ctx.wrap_socket(conn, server_side=True)
            lines, rest = read_head(conn)
            if not lines or not lines[0]:
                conn.close()
                return
            method, target = lines[0].split()[:2]
            with self._lock:
                self.auth.extend(line for line in lines if line.lower().startswith("proxy-authorization"))
            if method == "CONNECT":
                with self._lock:
                    self.tunnels.append(target)
                upstream = socket.create_connection(_split_hostport(target, 443), timeout=10)
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                if rest:
                    upstream.sendall(rest)
            else:
                # absolute-form: METHOD http://host:port/path HTTP/1.1 -> origin-form to the target
                with self._lock:
                    self.requests.append(lines[0])
                scheme_rest = target.split("://", 1)[1]
                hostport, dummy, path = scheme_rest.partition("/")
                upstream = socket.create_connection(_split_hostport(hostport, 80), timeout=10)
                head = [" ".join([method, "/" + path, lines[0].split()[2]])]
                head += [line for line in lines[1:] if not line.lower().startswith("proxy-")]
                upstream.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + rest)
            self._relay(conn, upstream)
        except (OSError, ValueError, IndexError) as exc:
            with self._lock:
                self.errors.append(repr(exc))
            try:
                conn.close()
            except OSError:
                pass


class CountingForwarder(CountingProxy):
    """A TCP forwarder on 127.0.0.1 in front of ONE device (``target_url``): a client that uses
    ``forwarder.url`` as its device url reaches the device through it, TLS end to end (the emulated
    devices' certificates name 127.0.0.1, whatever the port), and ``connections`` counts the TCP
    connections it made. The device closes the connection after every answer (PROTOCOL.md
    "Transport"), so that is its requests plus any connection made only for a TLS handshake.

        with CountingForwarder(emu.url(0)) as forwarder:
            ... run a task with url: forwarder.url ...
        forwarder.connections
    """

    def __init__(self, target_url):
        parts = urlsplit(target_url)
        self.target = (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        super().__init__()
        self.url = "%s://127.0.0.1:%d" % (parts.scheme, self.port)

    def _handle(self, conn):
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError as exc:
            with self._lock:
                self.errors.append(repr(exc))
            conn.close()
            return
        self._relay(conn, upstream)
