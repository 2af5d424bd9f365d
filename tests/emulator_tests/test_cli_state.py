# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The command line, start-up time, signals, and --state-dir persistence."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.emulator import util
from tests.emulator.harness import REPO_ROOT, Emulator, pick_ports

from .conftest import PASS, client


def test_help_lists_every_option():
    out = subprocess.run([sys.executable, "-m", "tests.emulator", "--help"], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=30, check=True).stdout
    for opt in ("--devices", "--bind", "--port", "--http-port", "--ca-file", "--model", "--passphrase",
                "--master-passphrase", "--state-dir", "--auth-delay", "--rtc-set", "--reboot-seconds",
                "--backend-port", "--control-port", "--se-provisioned", "--se-fresh"):
        assert opt in out


def _cpu_seconds(pid):
    with open("/proc/%d/stat" % pid, encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_hundred_devices_start_fast(tmp_path):
    t0 = time.monotonic()
    with Emulator(devices=100, passphrase=PASS, tmp_path=tmp_path, control=False) as emu:
        elapsed = time.monotonic() - t0
        cpu = _cpu_seconds(emu.proc.pid)
        # CPU time to READY does not depend on what else runs on the machine; wall time does.
        assert cpu < 5, cpu
        if os.getloadavg()[0] < (os.cpu_count() or 1):
            assert elapsed < 5, elapsed
        assert len(emu.ready["devices"]) == 100
        assert emu.ready["control_url"] is None
        assert len({d["devid"] for d in emu.ready["devices"]}) == 100
        assert client(emu, 99).get("/api/system/status").status == 200
        assert emu.url(99).endswith(":%d" % (int(emu.url(0).rsplit(":", 1)[1]) + 99))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_ready_line_and_clean_exit(tmp_path, sig):
    ports = pick_ports(2, control=False)
    ca = tmp_path / "ca.pem"
    proc = subprocess.Popen([sys.executable, "-m", "tests.emulator", "--devices", "2", "--port", str(ports["port"]),
                             "--http-port", str(ports["http_port"]), "--backend-port", str(ports["backend_port"]),
                             "--ca-file", str(ca)], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY ")
        ready = json.loads(line[6:])
        assert set(ready) == {"devices", "ca_file", "custody_ca_file", "factory_ca_file", "backend_url",
                              "control_url"}
        assert ready["devices"][1] == {"index": 1, "url": "https://127.0.0.1:%d" % (ports["port"] + 1),
                                       "http_url": "http://127.0.0.1:%d" % (ports["http_port"] + 1),
                                       "devid": ready["devices"][1]["devid"],
                                       "genuine_id": ready["devices"][1]["genuine_id"], "model": "ppa"}
        assert ready["ca_file"] == str(ca) and ready["custody_ca_file"] == str(tmp_path / "ca-custody.pem")
        assert os.path.isfile(ready["custody_ca_file"])
        assert ready["backend_url"] == "http://127.0.0.1:%d" % ports["backend_port"]
        proc.send_signal(sig)
        assert proc.wait(10) == 0
        assert proc.stdout.read() == ""             # exactly one line on stdout
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_port_collision_is_reported(tmp_path):
    with Emulator(tmp_path=tmp_path / "a") as first:
        port = int(first.url(0).rsplit(":", 1)[1])
        res = subprocess.run([sys.executable, "-m", "tests.emulator", "--port", str(port), "--http-port", "1",
                              "--backend-port", "2", "--ca-file", str(tmp_path / "b.pem")], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=30, check=False)
        assert res.returncode == 3 and "cannot bind" in res.stderr and res.stdout == ""
        # Issue 30: which port, of what, and the option that moves it.
        assert "cannot bind the HTTPS port of device 0, 127.0.0.1 port %d: " % port in res.stderr, res.stderr
        assert "--port" in res.stderr.split(": ", 2)[-1]


def test_state_dir_keeps_the_fleet(tmp_path):
    state = tmp_path / "state"
    emu = Emulator(devices=2, passphrase=PASS, rtc_set=True, state_dir=state, tmp_path=tmp_path)
    emu.start()
    try:
        hem = client(emu)
        hem.login(PASS)
        hem.post("/api/system/config", {"user": "persisted", "ctx": 42})
        hem.post("/api/system/config", hem.rotation_fields("rotated pass"))
        before = [emu.state(i) for i in range(2)]
        ca_before = open(emu.ca_file, encoding="ascii").read()
    finally:
        emu.stop_keep_tmp()
    files = sorted(os.listdir(state))
    assert files == ["device-0.json", "device-1.json", "fleet.json"]          # no temporary leftovers
    for name in files:
        json.loads((state / name).read_text())
        assert (state / name).stat().st_mode & 0o077 == 0
    # restart WITHOUT --passphrase: the identities, config and keys come back
    emu2 = Emulator(devices=2, rtc_set=True, state_dir=state, tmp_path=tmp_path)
    emu2.start()
    try:
        after = [emu2.state(i) for i in range(2)]
        for b, a in zip(before, after):
            assert a["config"] == b["config"] and a["tls_cert_pem"] == b["tls_cert_pem"]
            assert a["personalised"] is True and a["boot_id"] != b["boot_id"]
        assert open(emu2.ca_file, encoding="ascii").read() == ca_before
        hem = client(emu2)
        hem.login("rotated pass")
        hem.login(PASS, expect=401)
        # device 1 never logged in before the stop: its keys were not derived, no passphrase now
        client(emu2, 1).login(PASS, expect=401)
        assert emu2.state(1)["config"]["user"] == "user"
    finally:
        emu2.stop()
    # with --passphrase again, the never-derived device resumes
    emu3 = Emulator(devices=2, passphrase=PASS, rtc_set=True, state_dir=state, tmp_path=tmp_path)
    with emu3:
        client(emu3, 1).login(PASS)
        client(emu3, 0).login("rotated pass")


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "f.json"
    util.atomic_write(str(target), b'{"a": 1}')
    with pytest.raises(TypeError):
        util.atomic_write(str(target), object())            # fails while writing the temporary file
    assert target.read_bytes() == b'{"a": 1}'
    assert os.listdir(tmp_path) == ["f.json"]


def test_the_readme_way_to_run_the_installed_emulator_works(tmp_path):
    """Issue 30: someone who installed the tarball has no repository root; the README's command runs the
    emulator from the installed collection, from any directory, and writes its CA file there."""
    import re
    sys.path.insert(0, os.path.join(REPO_ROOT, "tests", "integration"))
    from helpers.playbook import COLLECTION_LINK, ensure_collection_link
    ensure_collection_link()
    readme = open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8").read()
    [command] = re.findall(r"^\$ PYTHONPATH=~/\.ansible/collections (python -m \S+)", readme, re.M)
    ports = pick_ports(1, control=False)
    module = command.split()[-1]
    proc = subprocess.Popen([sys.executable, "-m", module, "--port", str(ports["port"]), "--http-port", str(ports["http_port"]),
                             "--backend-port", str(ports["backend_port"])], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONPATH=str(COLLECTION_LINK.parents[2])))
    try:
        ready = json.loads(proc.stdout.readline().split(" ", 1)[1])
        assert ready["devices"][0]["url"] == "https://127.0.0.1:%d" % ports["port"]
        assert (tmp_path / "hem-emulator-ca.pem").is_file()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        proc.stdout.close()
        proc.stderr.close()
    assert "192.168.7.1" in readme and "encedo_hem_init: {ip: 127.0.0.1/8}" in readme
