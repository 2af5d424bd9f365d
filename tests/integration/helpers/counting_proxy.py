# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""CountingProxy: a TCP forwarder in front of one emulated device that counts the connections made to it.

The device closes the connection after every answer (PROTOCOL.md "Transport"), so the count is the
requests plus any connection made only for a TLS handshake. Use it as a context manager, or close()::

    with CountingProxy(emu.url(0)) as proxy:
        ... run a task with url: proxy.url() ...
    proxy.connections
"""

from __future__ import annotations

import socket
import threading
from urllib.parse import urlsplit


class CountingProxy:
    """A TCP forwarder on 127.0.0.1 (a free port) in front of one device: it counts the connections it accepts
    and copies bytes both ways, so TLS runs end to end (the device certificates name 127.0.0.1, any port)."""

    def __init__(self, url):
        parts = urlsplit(url)
        self.target = (parts.hostname, parts.port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self):
        return "https://127.0.0.1:%d" % self.port

    def _accept(self):
        while True:
            try:
                client, dummy = self.listener.accept()
            except OSError:
                return      # closed
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _forward(self, client):
        try:
            upstream = socket.create_connection(self.target, timeout=30)
        except OSError:
            client.close()
            return
        pump = threading.Thread(target=self._copy, args=(upstream, client), daemon=True)
        pump.start()
        self._copy(client, upstream)
        pump.join(30)
        for sock in (client, upstream):
            sock.close()

    @staticmethod
    def _copy(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        self.listener.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
