# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The full life of a device, as the issue describes it, over real sockets."""

from __future__ import annotations

import requests

from .conftest import client
from .hemclient import jwt_claims


def test_full_flow(emulator):
    emu = emulator(devices=1, reboot_seconds=0.5)           # factory-fresh, clock unset
    hem = client(emu)
    assert hem.get("/api/system/status").json["inited"] is False
    assert hem.get("/api/auth/token").status == 409          # not initialised
    assert hem.get("/api/auth/init").status == 403           # clock unset: init needs valid time
    hem.checkin(emu.backend_url)

    # personalise
    init = hem.personalise("first pass", gen_csr=True)
    assert init.status == 200
    assert {"instanceid", "token", "genuine", "csr"} <= set(init.json)
    assert hem.get("/api/auth/init").status == 406
    assert "inited" not in hem.get("/api/system/status").json

    # check-in, then login with the passphrase
    hem.checkin(emu.backend_url)
    hem.token = None
    hem.login("first pass")
    assert jwt_claims(hem.token)["sub"] == "U"

    # read config, change two fields
    cfg = hem.get("/api/system/config").json
    assert cfg["hostname"] == "hem.example.test" and cfg["user"] == "tester"
    upd = hem.post("/api/system/config", {"user": "alice", "allow_keysearch": True})
    assert upd.status == 200 and upd.json == {"updated": True}
    cfg2 = hem.get("/api/system/config").json
    assert (cfg2["user"], cfg2["allow_keysearch"]) == ("alice", True)

    # rotate the passphrase, log in with the new one; the old one is refused
    rot = hem.post("/api/system/config", hem.rotation_fields("second pass"))
    assert rot.json == {"updated": True}
    hem.login("first pass", expect=401)
    hem.login("second pass")
    old_token = hem.token

    # gen_csr, then reboot
    csr = hem.post("/api/system/config", {"gen_csr": True})
    assert csr.status == 200 and csr.json["csr"].startswith("-----BEGIN CERTIFICATE REQUEST-----")
    boot_before = emu.state(0)["boot_id"]
    assert hem.get("/api/system/reboot").status == 200
    assert emu.wait_new_boot(0, boot_before, timeout=10)
    st = emu.state(0)
    assert st["boot_id"] != boot_before and st["rtc_set"] is False

    # old token rejected, login refused until check-in, then login works
    assert hem.get("/api/system/config", token=old_token).status == 401
    hem.token = None
    hem.login("second pass", expect=403)
    hem.checkin(emu.backend_url)
    hem.login("second pass")
    assert hem.get("/api/system/config").json["user"] == "alice"


def test_backend_refuses_forged_check(emulator):
    emu = emulator()
    hem = client(emu)
    check = hem.get("/api/system/checkin").json["check"]
    h, p, s = check.split(".")
    forged = h + "." + p + "." + ("A" if s[0] != "A" else "B") + s[1:]
    resp = requests.post(emu.backend_url + "/checkin", json={"check": forged}, timeout=10)
    assert resp.status_code == 401
    assert requests.post(emu.backend_url + "/checkin", json={"check": "x"}, timeout=10).status_code == 400
    assert requests.post(emu.backend_url + "/nope", json={}, timeout=10).status_code == 404
