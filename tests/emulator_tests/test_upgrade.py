# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Firmware and dashboard upgrade (`/api/system/upgrade/*`, check-in `U`) over real HTTPS."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import ssl
import subprocess
import sys
import time

import pytest

from tests.emulator import firmware
from tests.emulator.harness import REPO_ROOT, Emulator

from .conftest import PASS, client

UP = "/api/system/upgrade/"
NEW = "nGINE 1.2.3 (HEM emulator test)"
SECONDS = 1.5          # --upgrade-seconds: checks answer 202 and install_fw's device answers this long


def upload(hem, data, name="firmware.bin", what="upload_fw", token=None):
    headers = {"Content-Type": "application/octet-stream", "Content-Disposition": 'attachment; filename="%s"' % name}
    return hem.request("POST", UP + what, data=data, headers=headers, token=token)


def check(hem, what="check_fw", timeout=20.0):
    """Poll as the web manager does while the answer is 201/202. -> the list of statuses seen."""
    seen = [hem.get(UP + what).status]
    deadline = time.monotonic() + timeout
    while seen[-1] in (201, 202) and time.monotonic() < deadline:
        time.sleep(0.1)
        seen.append(hem.get(UP + what).status)
    return seen


def raw(emu, head, body=b"", http=False, half_close=False, path=UP + "upload_fw"):
    """One hand-made request (headers dict, body bytes). -> the raw answer, b"" when closed unanswered."""
    url = emu.http_url(0) if http else emu.url(0)
    host, port = url.split("//")[1].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    if not http:
        sock = ssl.create_default_context(cafile=emu.ca_file).wrap_socket(sock, server_hostname="localhost")
    lines = ["POST %s HTTP/1.1" % path, "Host: localhost"] + ["%s: %s" % kv for kv in head.items()]
    data = b""
    try:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:                   # reset (ssl.SSLError is an OSError too)
        pass
    finally:
        sock.close()
    return data


def version(hem):
    return hem.get("/api/system/version", auth=False).json


@pytest.fixture
def ppa(emulator):
    emu = emulator(passphrase=PASS, rtc_set=True, reboot_seconds=0.5, upgrade_seconds=SECONDS)
    hem = client(emu)
    hem.login(PASS, scope="system:upgrade")
    return emu, hem


def test_firmware_upload_check_install_and_the_new_boot(ppa):
    emu, hem = ppa
    image = firmware.make_image(NEW)
    before = version(hem)
    assert before["fwv"] != NEW and before["fwk"] == firmware.public_key_b64()
    assert upload(hem, image).status == 200
    seen = check(hem)
    assert seen[:2] == [201, 202] and seen[-1] == 200 and set(seen[1:-1]) == {202}, seen
    assert hem.get(UP + "check_fw").status == 200                  # stays verified
    assert version(hem)["fwv"] == before["fwv"]                    # nothing installed yet
    boot = emu.state(0)["boot_id"]
    assert hem.get(UP + "install_fw").status == 200
    assert hem.get(UP + "install_fw").status == 409                # install in progress (still answering)
    assert emu.wait_down(0, timeout=10) and emu.wait_up(0, timeout=20)
    assert emu.state(0)["boot_id"] != boot
    after = version(hem)
    assert after["fwv"] == NEW
    assert after["fws"] == base64.b64encode(image[-64:]).decode() and after["fwk"] == before["fwk"]
    status = hem.get("/api/system/status", auth=False).json
    assert status["fw_upgrade"] is True and "time" not in status and "ts" not in status   # clock unset
    assert "inited" not in status and emu.state(0)["personalised"] is True               # personalisation kept
    assert hem.get(UP + "check_fw").status == 401                  # tokens died with the boot
    assert hem.login(PASS, expect=403).status == 403               # clock unset: check in first
    hem.checkin(emu.backend_url)
    hem.login(PASS, scope="system:upgrade")
    assert hem.get(UP + "check_fw").status == 404                  # the staged image was consumed
    boot = emu.state(0)["boot_id"]
    emu.fault(0, "reboot")
    assert emu.wait_new_boot(0, boot)
    assert "fw_upgrade" not in hem.get("/api/system/status", auth=False).json   # only right after the upgrade
    assert version(hem)["fwv"] == NEW


def test_check_states_and_install_needs_a_verified_image(ppa):
    emu, hem = ppa
    assert hem.get(UP + "check_fw").status == 404                  # nothing staged
    assert hem.get(UP + "install_fw").status == 406
    assert upload(hem, firmware.make_image(NEW, corrupt=True)).status == 200
    assert hem.get(UP + "install_fw").status == 406                # not checked
    seen = check(hem)
    assert seen[0] == 201 and seen[-1] == 406, seen
    assert hem.get(UP + "install_fw").status == 406                # failed the check
    assert upload(hem, firmware.make_image("other", kind="ui")).status == 200   # a dashboard as firmware
    assert check(hem)[-1] == 406
    assert upload(hem, firmware.make_image(NEW)).status == 200     # a new upload restarts the check
    assert hem.get(UP + "check_fw").status == 201
    assert hem.get(UP + "install_fw").status == 406                # still running (202)
    assert check(hem)[-1] == 200
    assert upload(hem, firmware.make_image(NEW), name="update.bin").status == 200
    assert hem.get(UP + "check_fw").status == 404                  # the check looks for firmware.bin/.hex only
    assert upload(hem, firmware.make_image(NEW), name="firmware.hex").status == 200
    assert check(hem)[-1] == 200
    assert emu.state(0)["upgrade"]["staged"]["fw"] == {"name": "firmware.hex", "ok": True}


def test_upload_framing(ppa):
    emu, hem = ppa
    auth = {"Authorization": "Bearer " + hem.token, "Content-Type": "application/octet-stream"}
    name = {"Content-Disposition": 'attachment; filename="firmware.bin"'}
    assert raw(emu, dict(auth, **name, **{"Transfer-Encoding": "chunked"})).startswith(b"HTTP/1.1 411 ")
    assert raw(emu, dict(auth, **name)).startswith(b"HTTP/1.1 411 ")                 # no Content-Length
    body = firmware.make_image(NEW)
    ok = raw(emu, dict(auth, **name, **{"Content-Length": str(len(body))}), body)
    assert ok.startswith(b"HTTP/1.1 200 ")
    # wrong extension and oversize image: closed without any answer (OA upload_fw)
    wrong = {"Content-Disposition": 'attachment; filename="firmware.txt"', "Content-Length": str(len(body))}
    assert raw(emu, dict(auth, **wrong), body) == b""
    assert raw(emu, dict(auth, **name, **{"Content-Length": str(3 * 1024 * 1024 + 1)})) == b""
    # over 16 MiB, or no file name: 413
    assert raw(emu, dict(auth, **name, **{"Content-Length": str(16 * 1024 * 1024 + 1)})).startswith(b"HTTP/1.1 413 ")
    assert raw(emu, dict(auth, **{"Content-Length": str(len(body))}), body).startswith(b"HTTP/1.1 413 ")
    # a body that ends early: 406 (plain HTTP, where the test can half-close the stream)
    short = raw(emu, dict(auth, **name, **{"Content-Length": str(len(body))}), body[:100], http=True, half_close=True)
    assert short.startswith(b"HTTP/1.1 406 ")
    # more than the 7,300 bytes of a JSON body, up to 3 MiB, is taken
    big = firmware.make_image(NEW, size=2 * 1024 * 1024)
    assert upload(hem, big).status == 200 and check(hem)[-1] == 200
    # scopes: upload needs system:upgrade; check and install take system:config too; no token 401
    assert upload(hem, body, token="").status == 401
    cfg = client(emu)
    cfg.login(PASS, scope="system:config")
    assert upload(cfg, body).status == 403
    assert cfg.get(UP + "check_fw").status == 200                  # the refused uploads staged nothing
    posts = [e for e in emu.log(0) if e["path"] == "?"]
    assert {e["status"] for e in posts} >= {411, 413, 406, None}                   # None: closed unanswered


def test_dashboard_archive(ppa):
    emu, hem = ppa
    archive = firmware.make_image("dashboard 2.0", kind="ui")
    uis = version(hem)["uis"]
    assert hem.get(UP + "check_ui").status == 406                  # nothing staged
    assert upload(hem, archive, name="ui.bin", what="upload_ui").status == 200      # hem-sdk-js's default name
    assert check(hem, "check_ui")[-1] == 406                       # the device looks for webroot.tar
    assert hem.get(UP + "install_ui").status == 406
    assert upload(hem, firmware.make_image("fw", kind="fw"), name="webroot.tar", what="upload_ui").status == 200
    assert check(hem, "check_ui")[-1] == 406
    assert upload(hem, archive, name="webroot.tar", what="upload_ui").status == 200
    assert check(hem, "check_ui")[:2] == [201, 202]
    assert check(hem, "check_ui")[-1] == 200
    boot = emu.state(0)["boot_id"]
    assert hem.get(UP + "install_ui").status == 200
    assert emu.state(0)["boot_id"] == boot                         # no reboot
    assert version(hem)["uis"] == base64.b64encode(hashlib.sha256(archive).digest()).decode() != uis
    assert hem.get(UP + "install_ui").status == 406                # consumed
    assert version(hem)["fwv"] != "dashboard 2.0"


def test_faults_power_loss_and_never_back(ppa):
    emu, hem = ppa
    old = version(hem)["fwv"]
    assert upload(hem, firmware.make_image(NEW)).status == 200 and check(hem)[-1] == 200
    emu.fault(0, "flash_power_loss")
    assert hem.get(UP + "install_fw").status == 200
    assert emu.wait_down(0, timeout=10) and emu.wait_up(0, timeout=20)
    assert version(hem)["fwv"] == old                              # back on the old firmware
    assert "fw_upgrade" not in hem.get("/api/system/status", auth=False).json
    hem.checkin(emu.backend_url)
    hem.login(PASS, scope="system:upgrade")
    assert check(hem)[-1] == 200                                   # the staged image is still there
    emu.fault(0, "flash_never_back")
    assert hem.get(UP + "install_fw").status == 200
    assert emu.wait_down(0, timeout=10)
    time.sleep(1.5)                                                # three reboot times: still down
    assert emu.state(0)["up"] is False and not emu._reachable(0)  # pylint: disable=protected-access
    emu.fault(0, "reboot")                                         # the power cycle
    assert emu.wait_up(0, timeout=10)
    assert version(hem)["fwv"] == old


def test_epa_has_no_upload_and_installs_through_checkin_u(emulator):
    emu = emulator(model="epa", passphrase=PASS, rtc_set=True, reboot_seconds=0.5, upgrade_seconds=SECONDS)
    hem = client(emu)
    hem.login(PASS, scope="system:upgrade")
    assert upload(hem, firmware.make_image(NEW)).status == 404
    assert upload(hem, firmware.make_image(NEW, size=100000)).status == 404    # no 413: the path does not exist
    assert hem.get(UP + "check_fw").status == 404 and hem.get(UP + "install_fw").status == 404
    assert "uis" not in version(hem)
    old = version(hem)["fwv"]
    # a pending image that fails the check: U only reboots, and the image is dropped
    assert emu.pending_firmware(0, NEW, corrupt=True)["pending"] == {"fwv": NEW, "ok": False}
    emu.checkin_order(0, action="U", count=1)
    boot = emu.state(0)["boot_id"]
    assert hem.checkin(emu.backend_url).json == {"status": "U"}
    assert emu.wait_new_boot(0, boot)
    assert version(hem)["fwv"] == old and emu.state(0)["upgrade"]["pending"] is None
    emu.pending_firmware(0, NEW)
    emu.checkin_order(0, action="U", count=1)
    boot = emu.state(0)["boot_id"]
    assert hem.checkin(emu.backend_url).json == {"status": "U"}
    assert emu.wait_new_boot(0, boot)
    assert version(hem)["fwv"] == NEW
    status = hem.get("/api/system/status", auth=False).json
    assert status["fw_upgrade"] is True and "time" not in status
    assert emu.state(0)["upgrade"]["pending"] is None


def test_checkin_u_on_a_ppa_installs_the_checked_firmware(ppa):
    emu, hem = ppa
    assert upload(hem, firmware.make_image(NEW)).status == 200 and check(hem)[-1] == 200
    emu.checkin_order(0, action="U", count=1)
    boot = emu.state(0)["boot_id"]
    assert hem.checkin(emu.backend_url).json == {"status": "U"}
    assert emu.wait_new_boot(0, boot)
    assert version(hem)["fwv"] == NEW and hem.get("/api/system/status", auth=False).json["fw_upgrade"] is True
    assert emu.state(0)["upgrade"]["staged"] == {}


def test_upgrade_is_kept_with_state_dir(tmp_path):
    state = str(tmp_path / "state")
    emu = Emulator(passphrase=PASS, rtc_set=True, reboot_seconds=0.3, upgrade_seconds=0.2, state_dir=state,
                   tmp_path=tmp_path)
    with emu:
        hem = client(emu)
        hem.login(PASS, scope="system:upgrade")
        assert upload(hem, firmware.make_image(NEW)).status == 200 and check(hem)[-1] == 200
        assert hem.get(UP + "install_fw").status == 200
        assert emu.wait_down(0, timeout=10) and emu.wait_up(0, timeout=20)
        assert version(hem)["fwv"] == NEW
        assert upload(hem, firmware.make_image("dashboard 3", kind="ui"), name="webroot.tar", what="upload_ui",
                      token="").status == 401
    emu2 = Emulator(rtc_set=True, upgrade_seconds=0.2, state_dir=state, tmp_path=tmp_path)
    with emu2:
        hem = client(emu2)
        assert version(hem)["fwv"] == NEW
        hem.login(PASS, scope="system:upgrade")
        assert upload(hem, firmware.make_image(NEW + "b"), name="firmware.bin").status == 200
    with Emulator(rtc_set=True, upgrade_seconds=0.2, state_dir=state, tmp_path=tmp_path) as emu3:
        hem = client(emu3)
        hem.login(PASS, scope="system:upgrade")
        assert check(hem)[-1] == 200                               # staged before the restart, checked anew


def test_image_tool_cli(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "tests.emulator.firmware", *args], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=60, check=False)

    good, bad, ui = (str(tmp_path / n) for n in ("fw.bin", "bad.bin", "webroot.tar"))
    assert run("--fwv", NEW, "--out", good).returncode == 0
    assert run("--fwv", NEW, "--out", bad, "--corrupt").returncode == 0
    assert run("--fwv", "dashboard 2", "--out", ui, "--ui", "--size", "100").returncode == 0
    with open(good, "rb") as fh:
        data = fh.read()
    assert firmware.parse_image(data, "fw")[0]["fwv"] == NEW
    assert data == firmware.make_image(NEW)                        # deterministic
    with open(bad, "rb") as fh:
        assert len(fh.read()) == len(data)
    with open(bad, "rb") as fh:
        assert firmware.parse_image(fh.read(), "fw") is None
    with open(ui, "rb") as fh:
        assert firmware.parse_image(fh.read(), "ui")[0]["fwv"] == "dashboard 2"
    empty = run("--fwv", " ", "--out", good)
    assert empty.returncode == 2 and "--fwv must not be empty" in empty.stderr
    size = run("--fwv", NEW, "--out", good, "--size", "0")
    assert size.returncode == 2 and "--size must be between 1 and 16777216" in size.stderr
    assert os.path.getsize(good) == len(data)                      # refused before writing
