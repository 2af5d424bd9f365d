# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: sustained HTTPS requests/s of the HEM emulator for GET /api/system/status.

Every request opens a new TCP + TLS connection (the device closes it after each answer),
verifies the emulator CA, sends the request and reads the whole answer. By default the
emulator process is pinned to one CPU and the load generator to the others, so the figure
is the emulator's throughput on one core.

    .venv/bin/python tests/perf/emulator_rps.py [--seconds 10] [--clients 4] [--no-pin]
"""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import ssl
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tests.emulator.harness import Emulator  # noqa: E402  pylint: disable=wrong-import-position

REQUEST = b"GET /api/system/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


def one_request(host, port, ctx):
    with socket.create_connection((host, port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(REQUEST)
            data = b""
            while True:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                data += chunk
    if not data.startswith(b"HTTP/1.1 200 "):
        raise RuntimeError("unexpected answer: %r" % data[:60])


def run(seconds, clients, pin):
    with tempfile.TemporaryDirectory() as tmp:
        with Emulator(devices=1, tmp_path=tmp, control=False) as emu:
            cpus = sorted(os.sched_getaffinity(0))
            if pin and len(cpus) > 1:
                os.sched_setaffinity(emu.proc.pid, {cpus[0]})
                os.sched_setaffinity(0, set(cpus[1:]))
            host, port = emu.url(0).split("//")[1].split(":")
            port = int(port)
            ctx = ssl.create_default_context(cafile=emu.ca_file)
            for _warm in range(20):                                  # warm-up
                one_request(host, port, ctx)
            counts = [0] * clients
            errors = [0] * clients
            stop = time.monotonic() + seconds

            def worker(i):
                while time.monotonic() < stop:
                    try:
                        one_request(host, port, ctx)
                        counts[i] += 1
                    except (OSError, RuntimeError):
                        errors[i] += 1

            threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
            t0 = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.monotonic() - t0
            return sum(counts) / elapsed, sum(counts), sum(errors), elapsed, emu.command


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=4, help="concurrent client threads (default 4)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin the emulator to one CPU")
    ap.add_argument("--min-rps", type=float, default=100.0, help="exit 1 below this figure (default 100)")
    args = ap.parse_args()
    rps, total, errors, elapsed, command = run(args.seconds, args.clients, not args.no_pin)
    print("benchmark: %s" % " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))
    print("emulator:  %s" % " ".join(shlex.quote(a) for a in command))
    print("GET /api/system/status over HTTPS, new connection per request, emulator on %s: "
          "%d requests in %.1f s, %d errors -> %.0f requests/s"
          % ("one core" if not args.no_pin else "unpinned CPUs", total, elapsed, errors, rps))
    return 0 if rps >= args.min_rps and errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
