# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small servers on 127.0.0.1 for the client tests: a base that hands each accepted
connection to ``handle``, and a minimal HTTP CONNECT proxy."""

from __future__ import annotations

import socket
import threading

from tests.emulator.proxy import CountingProxy


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


class ConnectProxy(CountingProxy):
    """The test proxy on 127.0.0.1 (tests.emulator.proxy), recording the tunnels it opened and
    the Proxy-Authorization headers it was given."""
