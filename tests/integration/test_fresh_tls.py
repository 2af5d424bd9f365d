# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A device without a TLS bundle (emulator `--no-tls-bundle`): the modules' rules in-process, the role in playbook runs.

In-process (helpers/inprocess.py ModuleRunner: each module's main() in this process, against
the emulator over real HTTPS and plain HTTP, its request log as the proof of what reached the
device):

- encedo_info reports it (https false, tls_bundle_needed, what is needed), no traceback,
  nothing posted; a bad bundle is refused before any request; a stored bundle that does not
  verify fails as changed;
- encedo_init without a bundle fails saying what is needed and sends nothing; with one it
  stores it and personalises (check, apply, apply again, check); a device whose HTTPS does
  not verify is never sent the bundle over plain HTTP;
- encedo_factory_reset on such a device reports factory state and the missing bundle, and
  after a wipe reports the device that came back without one; a personalised device without
  a bundle is never sent a token over plain HTTP.

Real ansible-playbook runs (the role, and its output at -vv): with encedo_hem_tls_bundle check
mode stores nothing; the run stores the bundle over plain HTTP (no token), then personalises
over HTTPS verified with the bundle's CA only, no secret (the bundle's key included) in its -vv
output; a second run changes nothing and posts nothing; without a bundle the role stops saying
what is needed. In-process, the bundle's key and the passphrases are checked against each whole
result (arguments included, as censored by no_log); the passphrases in every output level
(-vvvv) of ansible-playbook: tests/reliability/test_secrets.py.

The bundle is built as the vendor backend would (tests/emulator_tests/test_fresh_tls.py:
the key encrypted to the device's factory TLS key, a certificate from a CA made here).
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.emulator_tests.test_fresh_tls import make_bundle, make_ca, write_ca
from tests.integration.helpers.inprocess import ModuleRunner

REPO_ROOT = Path(__file__).resolve().parents[2]
SITE = str(REPO_ROOT / "playbooks" / "site.yml")
PASS = "pw-fresh-user"
MASTER = "pw-fresh-master"
CONN = {"url": "{{ hem_url }}", "ca_path": "{{ hem_ca_path }}", "http_url": "{{ hem_http_url }}"}


def posts(emu, i=0):
    return [e for e in emu.log(i) if e["method"] == "POST"]


def test_info_reports_a_device_without_bundle(emulator, tmp_path):
    emu = emulator(no_tls_bundle=True)
    run = ModuleRunner(emu, 0)
    res = run("encedo.hem.encedo_info", CONN)
    assert not res.get("failed"), run.output
    assert res["https"] is False and res["tls_bundle_needed"] is True and res["tls_bundle_stored"] is False
    assert res["changed"] is False and res["personalised"] is False and res["model"] == "ppa"
    assert "no TLS bundle" in res["msg"] and "tls_bundle" in res["msg"] and "emp" in res["msg"]
    assert "Traceback" not in run.output
    log = emu.log(0)
    assert posts(emu) == []
    assert {e["scheme"] for e in log} == {"http"}          # the HTTPS attempt is reset before any request

    # check mode with a bundle: would store, sends nothing
    ca = make_ca()
    bundle, _key = make_bundle(emu, ca)
    res = run("encedo.hem.encedo_info", dict(CONN, ca_path=write_ca(ca, tmp_path / "ca.pem"), tls_bundle=bundle), check=True)
    assert not res.get("failed"), run.output
    assert res["changed"] is True and res["tls_bundle_stored"] is True and res["https"] is False
    assert posts(emu) == [] and emu.state(0)["tls_bundle"] is False
    assert bundle["key"] not in run.output


def test_init_without_bundle_fails_saying_what_is_needed(emulator):
    emu = emulator(no_tls_bundle=True, rtc_set=True)
    run = ModuleRunner(emu, 0)
    options = dict(CONN, passphrase=PASS, master_passphrase=MASTER, user="fresh", hostname="hem0.emulator.test")
    res = run("encedo.hem.encedo_init", options)
    assert res.get("failed") is True
    assert res["changed"] is False and res.get("tls_bundle_needed") is True
    assert "no TLS bundle" in res["msg"] and "tls_bundle" in res["msg"] and "Nothing was sent" in res["msg"]
    assert "Traceback" not in run.output
    assert posts(emu) == []
    state = emu.state(0)
    assert state["personalised"] is False and state["tls_bundle"] is False


def test_factory_reset_reports_the_missing_bundle(emulator):
    emu = emulator(no_tls_bundle=True)
    run = ModuleRunner(emu, 0)
    res = run("encedo.hem.encedo_factory_reset", dict(CONN, confirm_devid=emu.state(0)["config"]["devid"]))
    assert not res.get("failed"), run.output
    assert res["changed"] is False and res["https"] is False and res["tls_bundle_needed"] is True
    assert "factory state" in res["msg"] and "TLS bundle" in res["msg"]
    assert posts(emu) == []


def test_role_stores_the_bundle_then_personalises_over_https(emulator, hem_playbook, tmp_path):
    emu = emulator(no_tls_bundle=True, reboot_seconds=1.0)
    ca = make_ca("Fresh role CA")
    ca_path = write_ca(ca, tmp_path / "bundle-ca.pem")
    bundle, _key = make_bundle(emu, ca)
    host_vars = {
        "encedo_hem_url": "{{ hem_url }}",
        "encedo_hem_http_url": "{{ hem_http_url }}",
        "encedo_hem_ca_path": ca_path,                 # only the bundle's CA: HTTPS must verify with it
        "encedo_hem_passphrase": PASS,
        "encedo_hem_master_passphrase": MASTER,
        "encedo_hem_backend_url": "{{ hem_backend_url }}",
        "encedo_hem_reboot_timeout": 60,
        "encedo_hem_init": {"hostname": "{{ inventory_hostname }}.emulator.test"},
        "encedo_hem_tls_bundle": bundle,
    }
    runner = hem_playbook(emu, host_vars=host_vars)

    check = runner.run_playbook(SITE, check=True)
    check.assert_ok()
    assert posts(emu) == [] and emu.state(0)["tls_bundle"] is False and emu.state(0)["personalised"] is False
    assert bundle["key"] not in check.output
    emu.clear_log(0)

    first = runner.run_playbook(SITE, verbosity=2)
    first.assert_ok()
    for secret in (PASS, MASTER, bundle["key"]):
        assert secret not in first.output
    state = emu.state(0)
    assert state["tls_bundle"] is True and state["personalised"] is True
    sent = [(e["scheme"], e["path"], e["auth"], e["tls_keys"], e["status"]) for e in posts(emu)]
    # the bundle first, over plain HTTP without a token; everything after it over HTTPS
    assert sent[0] == ("http", "/api/system/config", "none", ["crt", "emp", "key"], 200), sent
    assert all(s[0] == "https" for s in sent[1:]), sent
    assert ("https", "/api/auth/init") in [(s[0], s[1]) for s in sent]
    assert [e for e in emu.log(0) if e["scheme"] == "http" and e["auth"] != "none"] == []
    info = first.results(task="Bring the device to its declared state (status, attestation, configuration, certificate due)", host="hem0")[0].result
    assert info["tls_bundle_stored"] is True and info["changed"] is True and info["https"] is True
    emu.clear_log(0)

    second = runner.run_playbook(SITE)
    second.assert_ok()
    assert second.stats["hem0"]["changed"] == 0, json.dumps(second.stats)
    assert posts(emu) == [] or all(e["path"] == "/api/auth/token" for e in posts(emu))
    assert [e for e in emu.log(0) if e["scheme"] == "http"] == []      # HTTPS answered: no plain-HTTP request


def test_init_stores_the_bundle_and_personalises_check_apply_apply_check(emulator, tmp_path):
    emu = emulator(no_tls_bundle=True, rtc_set=True)
    ca = make_ca("Fresh init CA")
    bundle, _key = make_bundle(emu, ca)
    args = dict(CONN, ca_path=write_ca(ca, tmp_path / "ca.pem"), passphrase=PASS, master_passphrase=MASTER,
                user="fresh", hostname="hem0.emulator.test", tls_bundle=bundle)
    run = ModuleRunner(emu, 0)

    def personalise(check=False):
        result = run("encedo.hem.encedo_init", args, check=check)
        assert not result.get("failed"), run.output
        return result

    res = personalise(check=True)
    # would store, and the rest predicted from the plain-HTTP status (no credentials sent there)
    assert res["changed"] is True and res["tls_bundle_stored"] is True and res["https"] is False
    assert res["personalised"] is False and res["model"] == "ppa"
    assert posts(emu) == [] and emu.state(0)["tls_bundle"] is False
    assert [e for e in emu.log(0) if e["auth"] != "none"] == []

    res = personalise()
    assert res["changed"] is True and res["tls_bundle_stored"] is True and res["https"] is True and res["personalised"] is True
    sent = [(e["scheme"], e["path"], e["auth"]) for e in posts(emu)]
    assert sent == [("http", "/api/system/config", "none"), ("https", "/api/auth/init", "none")], sent
    assert emu.state(0)["tls_bundle"] is True and emu.state(0)["personalised"] is True
    for secret in (PASS, MASTER, bundle["key"]):
        assert secret not in run.output
    emu.clear_log(0)

    res = personalise()
    assert res["changed"] is False and res["tls_bundle_stored"] is False
    assert [e for e in posts(emu) if e["path"] != "/api/auth/token"] == []
    assert [e for e in emu.log(0) if e["scheme"] == "http"] == []

    assert personalise(check=True)["changed"] is False


def test_bad_bundle_is_refused_before_any_request(emulator, tmp_path):
    emu = emulator(no_tls_bundle=True)
    ca, other = make_ca("Bundle CA"), make_ca("Another CA")
    bundle, _key = make_bundle(emu, ca)
    cases = [
        (dict(bundle, emp="AAAA"), "tls_bundle.emp"),
        (dict(bundle, key="x" * 10), "tls_bundle.key"),
        (dict(bundle, crt="not a certificate"), "tls_bundle.crt"),
        (bundle, "not issued by a CA in ca_path"),      # ca_path holds another CA
    ]
    ca_path = write_ca(other, tmp_path / "other.pem")
    run = ModuleRunner(emu, 0)
    emu.clear_log(0)
    for b, needle in cases:
        res = run("encedo.hem.encedo_info", dict(CONN, ca_path=ca_path, tls_bundle=b))
        assert res.get("failed") is True, run.output
        assert needle in res["msg"], res["msg"]
        assert bundle["key"] not in res["msg"]
        assert bundle["key"] not in run.output
    assert emu.log(0) == []                     # refused before the first request


def test_factory_reset_reports_a_device_that_comes_back_without_bundle(emulator, tmp_path):
    emu = emulator(no_tls_bundle=True, rtc_set=True, reboot_seconds=1.0)
    ca = make_ca("Fresh wipe CA")
    bundle, _key = make_bundle(emu, ca)
    conn = dict(CONN, ca_path=write_ca(ca, tmp_path / "ca.pem"))
    run = ModuleRunner(emu, 0)
    init = run("encedo.hem.encedo_init", dict(conn, passphrase=PASS, master_passphrase=MASTER, user="fresh",
                                              hostname="hem0.emulator.test", tls_bundle=bundle))
    assert not init.get("failed"), run.output
    assert emu.state(0)["tls_bundle"] is True
    devid = emu.state(0)["config"]["devid"]
    emu.clear_log(0)
    res = run("encedo.hem.encedo_factory_reset", dict(
        conn, passphrase=PASS, confirm_devid=devid, wait_timeout=30, factory_url="{{ hem_url }}",
        factory_ca_path="{{ hem_factory_ca_path }}"))
    assert not res.get("failed"), run.output
    assert res["changed"] is True and res["rebooted"] is True and res["sent"] == ["wipeout"]
    assert res["https"] is False and res["tls_bundle_needed"] is True
    assert "came back" in res["msg"] and "tls_bundle" in res["msg"]
    state = emu.state(0)
    assert state["personalised"] is False and state["tls_bundle"] is False
    # the token went over HTTPS only; plain HTTP saw status reads and nothing else
    assert {(e["method"], e["path"], e["auth"]) for e in emu.log(0) if e["scheme"] == "http"} == {
        ("GET", "/api/system/status", "none")}


def test_personalised_device_without_bundle_is_never_sent_a_token_over_plain_http(emulator):
    emu = emulator(no_tls_bundle=True, passphrase=PASS)
    run = ModuleRunner(emu, 0)
    res = run("encedo.hem.encedo_factory_reset", dict(CONN, passphrase=PASS, confirm_devid=emu.state(0)["config"]["devid"]))
    assert "personalised" in res["msg"] and "plain HTTP" in res["msg"] and res["tls_bundle_needed"] is True
    info = run("encedo.hem.encedo_info", dict(CONN, passphrase=PASS))
    assert info["personalised"] is True and info["https"] is False and "config" not in info
    assert [e for e in emu.log(0) if e["auth"] != "none" or e["method"] == "POST"] == []
    assert emu.state(0)["personalised"] is True


def test_role_without_bundle_stops_saying_what_is_needed(emulator, hem_playbook):
    emu = emulator(no_tls_bundle=True)
    runner = hem_playbook(emu, host_vars={
        "encedo_hem_url": "{{ hem_url }}", "encedo_hem_http_url": "{{ hem_http_url }}", "encedo_hem_ca_path": "{{ hem_ca_path }}",
        "encedo_hem_passphrase": PASS, "encedo_hem_master_passphrase": MASTER, "encedo_hem_backend_url": "{{ hem_backend_url }}"})
    run = runner.run_playbook(SITE)
    assert run.rc != 0
    failed = run.results(host="hem0", status="failed")
    assert [t.task for t in failed] == ["Bring the device to its declared state (status, attestation, configuration, certificate due)"], run.tail()
    assert "encedo_hem_tls_bundle" in failed[0].msg and "no TLS bundle" in failed[0].msg
    assert posts(emu) == []


def test_stored_bundle_that_does_not_verify_fails_as_changed(emulator, tmp_path):
    import subprocess
    emu = emulator(no_tls_bundle=True)
    ca, other = make_ca("Bundle CA"), make_ca("Another CA")
    bundle, _key = make_bundle(emu, ca)
    # a hashed CA directory (no issuer pre-check possible) that trusts another CA only
    capath = tmp_path / "capath"
    capath.mkdir()
    pem = write_ca(other, tmp_path / "other.pem")
    digest = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", pem], check=True, capture_output=True, text=True).stdout.strip()
    (capath / (digest + ".0")).write_text(Path(pem).read_text())
    run = ModuleRunner(emu, 0)
    res = run("encedo.hem.encedo_info", dict(CONN, ca_path=str(capath), tls_bundle=bundle))
    assert res.get("failed") is True
    assert res["changed"] is True and res["tls_bundle_stored"] is True
    assert "does not verify" in res["msg"] and "ca_path" in res["msg"]
    assert emu.state(0)["tls_bundle"] is True
    assert "Traceback" not in run.output


def test_untrusted_https_device_is_never_sent_a_bundle_over_plain_http(emulator, tmp_path):
    # A real PPA has said https: false in its status over working HTTPS (community client OQ-21; emulator
    # --status-https-false). Its certificate does not verify with ca_path: that is a TLS problem to report,
    # not a device without a bundle, so the private key in tls_bundle never goes over plain HTTP.
    emu = emulator(status_https_false=True, rtc_set=True)
    ca = make_ca("Bundle CA")
    bundle, _key = make_bundle(emu, ca)
    run = ModuleRunner(emu, 0)
    args = dict(CONN, ca_path=write_ca(ca, tmp_path / "ca.pem"), passphrase=PASS, master_passphrase=MASTER, user="fresh",
                hostname="hem0.emulator.test", tls_bundle=bundle)
    for check in (True, False):
        res = run("encedo.hem.encedo_init", args, check=check)
        assert res.get("failed") is True
        assert res.get("tls_bundle_stored") is not True and "verif" in res["msg"], res["msg"]
        assert bundle["key"] not in run.output
    assert [e for e in emu.log(0) if e["scheme"] == "http" and e["method"] != "GET"] == []
    assert posts(emu) == []
    state = emu.state(0)
    assert state["personalised"] is False and state["tls_bundle"] is True
