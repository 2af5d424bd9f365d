# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet report's filters: the reasons a device needs attention, the order, and an HTML page that escapes every value."""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from ansible_collections.encedo.hem.plugins.filter import report
except ImportError:  # run without the collection link on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "build" / "collections"))
    from ansible_collections.encedo.hem.plugins.filter import report

INFO = {"model": "ppa", "firmware": "nGINE 1.2.2", "personalised": True, "rtc_set": True, "status": {"time": 1796000000},
        "certificate": {"issuer": "CN=Fleet CA", "days_remaining": 200, "not_after": "2027-06-01T00:00:00Z"}}


def device(host, **over):
    data = {"host": host, "url": "https://%s.example" % host, "info": dict(INFO), "attestation": {"skipped": True},
            "config": {"changed": False, "sent": []}, "keys": {"failed": False, "json": {"total": 3}},
            "audit": {"supported": True, "verified_total": 2, "files": [], "quarantined": []}, "pending": {}}
    data.update(over)
    return data


def test_each_reason_for_attention_and_the_order():
    rows = report.report_rows([
        device("ok"),
        device("drift", config={"changed": True, "sent": ["user", "origin"]}),
        device("down", info={"failed": True, "msg": "cannot reach the device"}),
        device("tls", info=dict(INFO, certificate=dict(INFO["certificate"], days_remaining=5))),
        device("expired", info=dict(INFO, certificate=dict(INFO["certificate"], days_remaining=-1))),
        device("fresh", info=dict(INFO, personalised=False, rtc_set=False)),
        device("att", attestation={"failed": True, "msg": "signature check failed", "attestation": {"verified": False}}),
        device("log", audit={"failed": True, "msg": "1 audit log file(s) did not verify", "quarantined": ["00000001"]}),
        device("reboot", pending={"reasons": ["configuration"]}),
    ], 30)
    assert [r["host"] for r in rows] == ["att", "down", "drift", "expired", "fresh", "log", "reboot", "tls", "ok"]
    why = {r["host"]: r["attention"] for r in rows}
    assert why == {
        "att": ["attestation not verified: signature check failed"], "down": ["unreachable: cannot reach the device"],
        "drift": ["configuration differs: origin, user"], "expired": ["TLS certificate expired"],
        "fresh": ["not personalised", "clock not set (no check-in since power-up)"],
        "log": ["audit log: 1 audit log file(s) did not verify"], "reboot": ["reboot pending (configuration)"],
        "tls": ["TLS certificate: 5 days left"], "ok": []}
    ok = rows[-1]
    assert ok["clock"] == "2026-11-30T00:53:20Z" and ok["keys"] == 3 and ok["drift"] == []
    assert ok["attestation"] is None and ok["audit"] == {"verified": 2, "not_fetched": 0, "quarantined": [], "error": None}


def test_not_checked_is_not_a_problem():
    row = report.report_row(device("h", config={"skipped": True}, audit={}, keys={}))
    assert row["attention"] == [] and row["drift"] is None and row["audit"] is None and row["keys"] is None


def test_the_page_escapes_every_value_and_marks_attention():
    rows = report.report_rows([device("<b>x</b>", config={"sent": ["user"]}), device("calm")])
    page = report.report_html(rows, "2026-12-07T15:00:00Z")
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert page.count('class="attention"') == 1 and page.count('class="ok"') == 1
    assert "2 device(s); <strong class=\"bad\">1 need attention</strong>" in page and "http" not in page.split("<body>")[0]
