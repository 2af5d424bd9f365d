# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/report.yml: a real ansible-playbook run on three emulated devices and one that cannot be
reached; the HTML page is parsed (html.parser) and every device and value checked against the JSON
and the emulator; nothing is written to a device (the emulator's request log)."""

from __future__ import annotations

import json
import socket
from html.parser import HTMLParser

import yaml

from tests.emulator_tests.conftest import client
from tests.integration.helpers.playbook import REPO_ROOT
from tests.integration.test_audit_log import PASS, audit, reboot

REPORT = str(REPO_ROOT / "playbooks" / "report.yml")


class Page(HTMLParser):
    """The report page: its rows ({"host", "class", "cells": [text of each td]}), scripts and external references."""

    def __init__(self):
        super().__init__()
        self.rows, self.external, self.scripts = [], [], 0
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("src", "href"):
            if attrs.get(name):
                self.external.append(attrs[name])
        if tag == "script":
            self.scripts += 1
        if tag == "tr" and "data-host" in attrs:
            self.rows.append({"host": attrs["data-host"], "class": attrs.get("class"), "cells": []})
        if tag == "td" and self.rows:
            self._cell = []
        if tag in ("br", "li") and self._cell is not None:
            self._cell.append(" | ")

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[-1]["cells"].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_report_of_three_devices_and_an_unreachable_one(emulator, hem_playbook, tmp_path):
    emu = emulator(devices=3, passphrase=PASS, rtc_set=True, reboot_seconds=0.3)
    hem1 = client(emu, 1)
    hem1.login(PASS)
    assert hem1.post("/api/system/config", {"user": "Declared user"}).status == 200     # hem1 matches the declaration
    for i in range(3):
        reboot(emu, i)
    runner = hem_playbook(emu)
    audit_dir = tmp_path / "audit"
    audit(runner, audit_dir, hosts="hem0")[0].assert_ok()                               # hem0's closed file is fetched
    pending = tmp_path / "pending"
    pending.mkdir()
    (pending / "hem2.json").write_text(json.dumps({"since": "2026-12-07T15:00:00+00:00", "reasons": ["configuration"]}))

    inventory = yaml.safe_load(open(runner.inventory))
    hosts = inventory["all"]["children"]["hem"]["hosts"]
    for host in hosts.values():
        host.update(encedo_hem_url="{{ hem_url }}", encedo_hem_ca_path="{{ hem_ca_path }}", encedo_hem_passphrase=PASS,
                    encedo_hem_config={"user": "Declared user"}, encedo_hem_audit_dir=str(audit_dir),
                    encedo_hem_attestation_trust_anchor_path="{{ hem_custody_ca_path }}",
                    encedo_hem_pending_reboot_dir=str(pending))
    hosts["hem9"] = dict(hosts["hem0"], encedo_hem_url="https://127.0.0.1:%d" % free_port(), encedo_hem_timeout=3)
    open(runner.inventory, "w").write(yaml.safe_dump(inventory))
    out = tmp_path / "report"
    out.mkdir()
    for i in range(3):
        emu.clear_log(i)

    run = runner.run_playbook(REPORT, extra_vars={"encedo_hem_report_dir": str(out)})
    run.assert_ok()
    assert PASS not in run.output and "Bearer ey" not in run.output
    for i in range(3):
        assert [e for e in emu.log(i) if e["method"] == "POST" and e["path"] != "/api/auth/token"] == []   # nothing written

    data = json.loads((out / "encedo-hem-report.json").read_text())
    rows = {row["host"]: row for row in data["devices"]}
    assert [row["host"] for row in data["devices"]] == ["hem0", "hem2", "hem9", "hem1"]   # needing attention first
    down = rows["hem9"]
    assert not down["reachable"] and down["attention"][0].startswith("unreachable: ")
    for i in range(3):
        row, state = rows["hem%d" % i], emu.state(i)
        assert row["reachable"] and row["model"] == "ppa" and row["personalised"] is True and row["clock_set"] is True
        assert row["firmware"] == client(emu, i).get("/api/system/version", auth=False).json["fwv"]
        assert row["attestation"]["verified"] is True and row["attestation"]["not_after"]
        assert row["tls"]["issuer"] and row["tls"]["days_left"] > 30
        keys = client(emu, i)
        keys.login(PASS, scope="keymgmt:list")
        assert row["keys"] == keys.get("/api/keymgmt/list").json["total"] and row["drift"] == ([] if i == 1 else ["user"])
        assert row["pending_reboot"] is (i == 2)
        closed = len(emu.logger(i)["files"]) - 1
        assert row["audit"] == {"verified": 1 if i == 0 else 0, "not_fetched": closed - (1 if i == 0 else 0),
                                "quarantined": [], "error": None}
        assert state["boot_id"]
    assert rows["hem0"]["attention"] == ["configuration differs: user"]
    assert rows["hem2"]["attention"] == ["configuration differs: user", "reboot pending (configuration)"]
    assert rows["hem1"]["attention"] == []

    page = Page()
    page.feed((out / "encedo-hem-report.html").read_text())
    assert page.external == [] and page.scripts == 0
    assert [r["host"] for r in page.rows] == [row["host"] for row in data["devices"]]
    for shown in page.rows:
        row = rows[shown["host"]]
        assert shown["class"] == ("attention" if row["attention"] else "ok")
        device = shown["cells"][0]
        assert device.startswith(row["host"]) and (("NEEDS ATTENTION" in device) == bool(row["attention"]))
        assert all(reason in device for reason in row["attention"])
        if not row["reachable"]:
            assert shown["cells"][1] == "unreachable: " + row["error"]
            continue
        model, firmware, personalised, clock, att, tls, drift, reboot_pending, keys, logs = shown["cells"][1:]
        assert (model, firmware, personalised) == (row["model"], row["firmware"], "yes")
        assert clock == row["clock"]
        assert att == "yes | expires %s" % row["attestation"]["not_after"]
        assert tls == "%s | %d days left" % (row["tls"]["issuer"], row["tls"]["days_left"])
        assert drift == (", ".join(row["drift"]) or "none")
        assert reboot_pending == ("yes" if row["pending_reboot"] else "no") and keys == str(row["keys"])
        assert logs == "%d verified, %d not fetched, 0 quarantined" % (row["audit"]["verified"], row["audit"]["not_fetched"])
