# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Command line of the HEM emulator (`python -m tests.emulator --help`)."""

from __future__ import annotations

import argparse
import datetime
import json
import signal
import sys
import threading

from .server import Fleet, Hub, Listener, advertised_address, backend_handler, bind_socket, control_handler


def utc_date(text):
    """YYYY-MM-DD -> that day 00:00:00 UTC (aware datetime)."""
    try:
        day = datetime.datetime.strptime(text, "%Y-%m-%d")
    except ValueError as exc:
        raise argparse.ArgumentTypeError("expected a date YYYY-MM-DD (UTC), got %r" % text) from exc
    return day.replace(tzinfo=datetime.timezone.utc)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        prog="python -m tests.emulator",
        description="Emulate Encedo HEM devices over real HTTPS (test support for encedo.hem). "
                    "Prints one line 'READY {json}' when every device accepts connections.")
    ap.add_argument("--devices", type=int, default=1, metavar="N", help="number of emulated devices (default 1)")
    ap.add_argument("--bind", default="127.0.0.1", metavar="ADDR",
                    help="bind address, IPv4 or IPv6 (e.g. ::1); the device certificates name it (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=8443, metavar="P", help="HTTPS port of device 0; device i uses P+i")
    ap.add_argument("--http-port", type=int, default=8080, metavar="P",
                    help="plain HTTP port of device 0; device i uses P+i")
    ap.add_argument("--ca-file", default="./hem-emulator-ca.pem", metavar="PATH",
                    help="where the emulator TLS CA certificate is written; the custody CA goes next to it "
                         "as <stem>-custody.pem")
    ap.add_argument("--model", choices=("ppa", "epa"), default="ppa",
                    help="ppa (MSC build: storage, DNS, attestation) or epa (default ppa)")
    ap.add_argument("--passphrase", default=None, metavar="P",
                    help="personalise every device at start with user passphrase P")
    master = ap.add_mutually_exclusive_group()
    master.add_argument("--master-passphrase", default=None, metavar="P",
                        help="master passphrase used with --passphrase (default: P + '-master')")
    master.add_argument("--master-recovery-phrase", default=None, metavar="WORDS",
                        help="with --passphrase: the master key comes from this BIP39 recovery phrase as the vendor's "
                             "web manager derives it (instead of a master passphrase)")
    ap.add_argument("--state-dir", default=None, metavar="DIR", help="persist each device's state there")
    ap.add_argument("--auth-delay", type=float, default=0.5, metavar="S",
                    help="minimum login answer time in seconds, 3x after 3 consecutive failures (default 0.5)")
    ap.add_argument("--rtc-set", action="store_true", help="devices start (first power-up) with the clock set")
    ap.add_argument("--reboot-seconds", type=float, default=3.0, metavar="S",
                    help="how long a rebooting device stays unreachable (default 3)")
    ap.add_argument("--format-seconds", type=float, default=3.0, metavar="S",
                    help="how long a disk format started by a new storage_disk0size runs (PPA; default 3)")
    ap.add_argument("--format-start-seconds", type=float, default=0.0, metavar="S",
                    help="how long after the request a disk format starts (PPA; the status shows what it showed before "
                         "until then; default 0: at once)")
    ap.add_argument("--upgrade-seconds", type=float, default=3.0, metavar="S",
                    help="how long a firmware/dashboard check runs (check_fw/check_ui answer 201, then 202, then "
                         "200/406) and how long the device keeps answering after install_fw before it reboots to "
                         "flash (PPA; default 3)")
    ap.add_argument("--backend-port", type=int, default=8999, metavar="P",
                    help="port of the stand-in check-in backend, plain HTTP on --bind (default 8999)")
    ap.add_argument("--control-port", type=int, default=None, metavar="P",
                    help="loopback-only control interface (test support; off unless given)")
    se = ap.add_mutually_exclusive_group()
    se.add_argument("--se-provisioned", dest="se_provisioned", action="store_true", default=True,
                    help="the secure element starts with its attestation certificate (default)")
    se.add_argument("--se-fresh", dest="se_provisioned", action="store_false",
                    help="the secure element starts without a certificate (factory provisioning possible)")
    ap.add_argument("--attestation-not-after", type=utc_date, default=None, metavar="YYYY-MM-DD",
                    help="attestation certificates issued at start end their validity at that date 00:00:00 UTC, "
                         "valid for three years before it (like the vendor's sample, 2020-10-05 to 2023-10-05); "
                         "default: valid from yesterday for three years")
    ap.add_argument("--no-tls-bundle", action="store_true",
                    help="devices start factory-fresh without a TLS bundle: HTTPS connections are reset and plain-HTTP "
                         "status says https false until an unauthenticated POST /api/system/config {tls} over plain HTTP "
                         "stores one; a wipe removes the bundle again (default: every device has a bundle)")
    ap.add_argument("--no-exp-default", action="store_true",
                    help="a login proof's exp 0 is not read as the 8-hour default (OA documents the default for 1.2.2 "
                         "only; no vendor client sends 0): it is an expiry in the past and answers 401")
    ap.add_argument("--status-https-false", action="store_true",
                    help="the status carries https: false over plain HTTP and over HTTPS although HTTPS works, as a real "
                         "PPA answered (community client, OPEN-QUESTIONS OQ-21)")
    ap.add_argument("--tls-bundle-at-boot", action="store_true",
                    help="a TLS bundle stored on a factory-fresh device over plain HTTP is served from the next boot: "
                         "HTTPS stays off until a reboot, as the vendor's rescue page expects (it reboots after storing "
                         "one, core-rescue-final.js); default: HTTPS starts at once (OpenAPI)")
    args = ap.parse_args(argv)
    if args.devices < 1:
        ap.error("--devices must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    fleet = Fleet(args)
    try:
        fleet.build_devices(args.devices)
        ca_file, custody_file, factory_file = fleet.write_ca_files(args.ca_file)
        address = advertised_address(args.bind)
        host = "[%s]" % address if ":" in address else address
        urls = [("https://%s:%d" % (host, args.port + i), "http://%s:%d" % (host, args.http_port + i))
                for i in range(args.devices)]
        hub = Hub(fleet, control_fn=control_handler(fleet, urls), backend_fn=backend_handler(fleet))
        # (what, option, address, port, kind, device) of every listener, in the order they are bound.
        wanted = []
        for dev in fleet.devices:
            wanted.append(("the HTTPS port of device %d" % dev.index, "--port", args.bind, args.port + dev.index, "https", dev))
            wanted.append(("the plain-HTTP port of device %d" % dev.index, "--http-port", args.bind, args.http_port + dev.index,
                           "http", dev))
        wanted.append(("the check-in backend port", "--backend-port", args.bind, args.backend_port, "backend", None))
        if args.control_port is not None:
            wanted.append(("the control port", "--control-port", "127.0.0.1", args.control_port, "control", None))
        for what, option, addr, port, kind, dev in wanted:
            try:
                sock = bind_socket(addr, port)
            except OSError as exc:
                print("hem-emulator: cannot bind %s, %s port %d: %s. Is another emulator (or another program) using it? "
                      "Choose free ports with %s (and the other port options)." % (what, addr, port, exc, option),
                      file=sys.stderr, flush=True)
                for lst in hub.listeners:
                    lst.sock.close()
                return 3
            hub.add(Listener(sock, kind, dev, addr))
        fleet.hub = hub
        for dev in fleet.devices:       # --state-dir: a device personalised with another address answers there
            if dev.address != fleet.factory_address():
                hub.listen_device(dev)
        stop = threading.Event()

        def _on_signal(_signum, _frame):
            stop.set()

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        hub.start()
        ready = {
            "devices": [{"index": d.index, "url": fleet.device_urls(d)[0], "http_url": fleet.device_urls(d)[1],
                         "devid": d.p["devid"], "genuine_id": d.p["genuine_id"] if d.model == "ppa" else None,
                         "model": d.model} for d in fleet.devices],
            "ca_file": ca_file,
            "custody_ca_file": custody_file,
            "factory_ca_file": factory_file,
            "backend_url": "http://%s:%d" % (host, args.backend_port),
            "control_url": ("http://127.0.0.1:%d" % args.control_port) if args.control_port is not None else None,
        }
        sys.stdout.write("READY " + json.dumps(ready) + "\n")
        sys.stdout.flush()
        stop.wait()
        hub.stop()
        return 0
    finally:
        fleet.cleanup()
