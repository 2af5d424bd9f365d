# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Start and stop the HEM emulator for an ansible-test integration target.

    hem_emulator_ctl.py start --root COLLECTION_ROOT --state DIR [--options JSON] [--lifetime S]
        Start a detached keeper process that runs the emulator through
        tests/emulator/harness.py (free loopback ports, its own CA files under DIR) and
        print the emulator's READY JSON once it answers. The keeper stops the emulator when
        `stop` asks, when the ansible-playbook process that ran `start` is gone (a failed
        target never leaves an emulator behind), or after --lifetime seconds.
    hem_emulator_ctl.py stop --state DIR
        Stop that emulator (by the keeper's PID) and remove DIR.

OPTIONS is a JSON object of keyword arguments of tests.emulator.harness.Emulator
(passphrase, rtc_set, model, se_fresh, reboot_seconds, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

READY = "ready.json"
ERROR = "error.txt"
PIDFILE = "keeper.pid"


def _ancestor_playbook_pid():
    """PID of the outermost ansible-playbook process above this one (Linux /proc), else None."""
    found, pid = None, os.getppid()
    for _depth in range(64):
        if pid <= 1:
            break
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as handle:
                cmdline = handle.read()
            with open("/proc/%d/stat" % pid, "rb") as handle:
                stat = handle.read()
        except OSError:
            break
        if b"ansible-playbook" in cmdline:
            found = pid
        pid = int(stat.rsplit(b")", 1)[1].split()[1])
    return found


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def keep(args):
    """The keeper: run the emulator until asked to stop, the playbook is gone, or the lifetime ends."""
    sys.path.insert(0, args.root)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    signal.signal(signal.SIGINT, lambda _signum, _frame: stop.set())
    try:
        from tests.emulator.harness import Emulator  # pylint: disable=import-outside-toplevel
        os.makedirs(os.path.join(args.state, "emulator"), exist_ok=True)
        emu = Emulator(tmp_path=os.path.join(args.state, "emulator"), **json.loads(args.options))
        emu.start()
    except Exception as exc:  # pylint: disable=broad-exception-caught
        _write(os.path.join(args.state, ERROR), "%s: %s" % (type(exc).__name__, exc))
        return 1
    try:
        ready = dict(emu.ready, keeper_pid=os.getpid())
        _write(os.path.join(args.state, READY), json.dumps(ready))
        deadline = time.monotonic() + args.lifetime
        while not stop.wait(0.5):
            if args.watch and not _alive(args.watch):
                break
            if time.monotonic() > deadline or emu.returncode is not None:
                break
    finally:
        emu.stop()
    return 0


def start(args):
    os.makedirs(args.state, exist_ok=True)
    watch = _ancestor_playbook_pid() or 0
    argv = [sys.executable, os.path.abspath(__file__), "keep", "--root", args.root, "--state", args.state,
            "--options", args.options, "--lifetime", str(args.lifetime), "--watch", str(watch)]
    with open(os.path.join(args.state, "keeper.log"), "ab") as log:
        keeper = subprocess.Popen(argv, cwd=args.root, stdin=subprocess.DEVNULL, stdout=log, stderr=log,  # pylint: disable=consider-using-with
                                  start_new_session=True)
    _write(os.path.join(args.state, PIDFILE), str(keeper.pid))
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        for name in (READY, ERROR):
            path = os.path.join(args.state, name)
            if os.path.exists(path):
                with open(path, encoding="utf-8") as handle:
                    text = handle.read()
                if name == ERROR:
                    sys.stderr.write("the HEM emulator did not start: %s\n" % text)
                    return 1
                sys.stdout.write(text + "\n")
                return 0
        if keeper.poll() is not None:
            break
        time.sleep(0.1)
    _stop_keeper(keeper.pid)
    with open(os.path.join(args.state, "keeper.log"), encoding="utf-8", errors="replace") as handle:
        sys.stderr.write("the HEM emulator did not start within %s s: %s\n" % (args.timeout, handle.read()[-2000:]))
    return 1


def _stop_keeper(pid, timeout=20.0):
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        time.sleep(0.1)


def stop(args):
    path = os.path.join(args.state, PIDFILE)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            _stop_keeper(int(handle.read().strip()))
    shutil.rmtree(args.state, ignore_errors=True)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("start", "keep", "stop"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--state", required=True)
        if name != "stop":
            cmd.add_argument("--root", required=True)
            cmd.add_argument("--options", default="{}")
            cmd.add_argument("--lifetime", type=float, default=3600.0)
        if name == "start":
            cmd.add_argument("--timeout", type=float, default=60.0)
        if name == "keep":
            cmd.add_argument("--watch", type=int, default=0)
    args = parser.parse_args(argv)
    return {"start": start, "keep": keep, "stop": stop}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
