# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small servers on 127.0.0.1 for the client tests: a base that hands each accepted
connection to ``handle``, and a minimal HTTP CONNECT proxy."""

from __future__ import annotations

import socket
import threading


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


class LoopbackServer:
    """A TCP server on 127.0.0.1 (free port ``port``) calling ``handle(conn)`` for each
    connection on its own thread. Subclasses set their attributes, then call __init__."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn = self.sock.accept()[0]
            except OSError:
                continue
            self.handle(conn)

    def handle(self, conn):
        raise NotImplementedError

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


class ConnectProxy(LoopbackServer):
    """A minimal HTTP CONNECT proxy that records the tunnels it opened and the
    Proxy-Authorization headers it was given."""

    def __init__(self):
        self.tunnels = []
        self.auth = []
        super().__init__()

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def handle(self, conn):
        conn.settimeout(5)
        lines = read_head(conn)[0]
        target = lines[0].split()[1]
        self.tunnels.append(target)
        self.auth.extend(line for line in lines if line.lower().startswith("proxy-authorization"))
        host, port = target.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)), timeout=5)
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        threading.Thread(target=self._pipe, args=(conn, upstream), daemon=True).start()
        threading.Thread(target=self._pipe, args=(upstream, conn), daemon=True).start()
