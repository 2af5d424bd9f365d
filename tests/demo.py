# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""`make demo`: the whole life of a small fleet against the HEM emulator, in one command.

1. start the emulator: three factory-fresh PPA devices on the ports of
   playbooks/inventory/emulator.yml (8443-8445, check-in backend 8999), its CA files in build/demo/;
2. make a demo CA (at run time; no key is committed) and the trust bundle;
3. run playbooks/site.yml: the devices are checked in, personalised, attested, configured,
   get TLS certificates issued by the demo CA, and are rebooted;
4. run it again: every task ok, changed=0 on every host (the demo fails otherwise);
5. show one device's facts with encedo.hem.encedo_info;
6. stop the emulator (by its PID, also when a step failed).

Exit status 0 when every step worked.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from tests.emulator.util import write_ca


ROOT = Path(__file__).resolve().parents[1]
DEMO_DIR = ROOT / "build" / "demo"
INVENTORY = ROOT / "playbooks" / "inventory" / "emulator.yml"
SITE = ROOT / "playbooks" / "site.yml"
BIN = Path(sys.executable).parent
DEVICES = 3
PORT, HTTP_PORT, BACKEND_PORT = 8443, 8080, 8999         # as in playbooks/inventory/emulator.yml
RECAP_RE = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


class DemoError(Exception):
    pass


def step(text):
    print("\n==> %s" % text, flush=True)


def ports_in_use():
    ports = [PORT + i for i in range(DEVICES)] + [HTTP_PORT + i for i in range(DEVICES)] + [BACKEND_PORT]
    busy = []
    for port in ports:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                busy.append(port)
    return busy


def start_emulator():
    argv = [sys.executable, "-m", "tests.emulator", "--devices", str(DEVICES), "--port", str(PORT),
            "--http-port", str(HTTP_PORT), "--backend-port", str(BACKEND_PORT),
            "--ca-file", str(DEMO_DIR / "hem-emulator-ca.pem"), "--auth-delay", "0.2", "--reboot-seconds", "2"]
    print("    " + " ".join(argv[1:]), flush=True)
    with open(DEMO_DIR / "emulator.log", "w") as log:      # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(argv, cwd=str(ROOT), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True)
    box = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(60)
    line = box[0] if box else ""
    if not line.startswith("READY "):
        stop_emulator(proc)
        raise DemoError("the emulator did not start (see %s)" % (DEMO_DIR / "emulator.log"))
    threading.Thread(target=_drain, args=(proc.stdout,), daemon=True).start()
    return proc, json.loads(line[len("READY "):])


def _drain(stream):
    for _line in stream:
        pass


def stop_emulator(proc):
    if proc is None or proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)


def environment():
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env["ANSIBLE_NOCOLOR"] = env.get("ANSIBLE_NOCOLOR", "1")
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    return env


def run(argv):
    """Run a command, its output shown as it comes; return (rc, output)."""
    print("    $ " + " ".join(str(a) for a in argv), flush=True)
    proc = subprocess.Popen([str(a) for a in argv], cwd=str(ROOT), env=environment(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        sys.stdout.write(line)
        lines.append(line)
    sys.stdout.flush()
    return proc.wait(), "".join(lines)


def recap(output):
    found = {m.group(1): dict(ok=int(m.group(2)), changed=int(m.group(3)), unreachable=int(m.group(4)), failed=int(m.group(5)))
             for m in RECAP_RE.finditer(output)}
    if len(found) != DEVICES:
        raise DemoError("the play recap lists %d hosts, expected %d" % (len(found), DEVICES))
    return found


def site_playbook(label):
    rc, output = run([BIN / "ansible-playbook", "-i", INVENTORY, SITE])
    hosts = recap(output)
    bad = {h: s for h, s in hosts.items() if s["failed"] or s["unreachable"]}
    if rc != 0 or bad:
        raise DemoError("%s: ansible-playbook failed (rc=%d) on %s" % (label, rc, ", ".join(sorted(bad)) or "no host"))
    return hosts


def main():
    print("encedo.hem demo: a fleet of %d emulated Encedo HEM devices, from factory-fresh to configured" % DEVICES)
    busy = ports_in_use()
    if busy:
        print("demo: ports %s on 127.0.0.1 are in use (another demo or emulator running?); they are fixed in %s"
              % (", ".join(map(str, busy)), INVENTORY.relative_to(ROOT)), file=sys.stderr)
        return 2
    proc = None
    try:
        step("Preparing %s (emulator CA files, demo CA, trust bundle)" % DEMO_DIR.relative_to(ROOT))
        shutil.rmtree(DEMO_DIR, ignore_errors=True)
        DEMO_DIR.mkdir(parents=True)
        write_ca(DEMO_DIR, "encedo.hem demo CA", "encedo.hem demo", stem="demo-ca")
        print("    demo CA: %s (made now, key kept in %s)"
              % ((DEMO_DIR / "demo-ca.pem").relative_to(ROOT), (DEMO_DIR / "demo-ca.key").relative_to(ROOT)))

        step("Starting the HEM emulator: %d factory-fresh devices" % DEVICES)
        proc, ready = start_emulator()
        for dev in ready["devices"]:
            print("    hem%d  %s  devid %s" % (dev["index"], dev["url"], dev["devid"]))
        print("    check-in backend %s, emulator PID %d" % (ready["backend_url"], proc.pid))
        (DEMO_DIR / "trust.pem").write_text(Path(ready["ca_file"]).read_text() + (DEMO_DIR / "demo-ca.pem").read_text())

        step("First run of playbooks/site.yml: check in, personalise, attest, configure, issue TLS certificates, reboot")
        first = site_playbook("first run")
        print("    changed per host: %s" % ", ".join("%s=%d" % (h, s["changed"]) for h, s in sorted(first.items())))

        step("Second run of playbooks/site.yml: nothing left to change")
        second = site_playbook("second run")
        changed = {h: s["changed"] for h, s in second.items() if s["changed"]}
        if changed:
            raise DemoError("the second run changed something: %s" % changed)
        print("    changed=0 on every host: the fleet is in its declared state")

        step("Facts of hem0 (encedo.hem.encedo_info, logged in with the inventory passphrase)")
        rc, _out = run([BIN / "ansible", "hem0", "-i", INVENTORY, "-m", "encedo.hem.encedo_info", "-a",
                        "url={{ encedo_hem_url }} ca_path={{ encedo_hem_ca_path }} passphrase={{ encedo_hem_passphrase }}"])
        if rc != 0:
            raise DemoError("encedo_info failed (rc=%d)" % rc)
    except DemoError as exc:
        print("\ndemo FAILED: %s" % exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo interrupted", file=sys.stderr)
        return 130
    finally:
        if proc is not None:
            step("Stopping the emulator (PID %d)" % proc.pid)
            stop_emulator(proc)
    print("\ndemo OK: %d devices personalised, configured, with certificates from the demo CA; second run changed nothing"
          % DEVICES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
