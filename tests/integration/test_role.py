# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Integration tests of the encedo.hem.device role and playbooks/site.yml: real
ansible-playbook runs against the emulator, checked from the emulator's request log and
state and, for the TLS step, with a TLS client that trusts only the test CA."""

from __future__ import annotations

import json
import re
import socket
import ssl
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from tests.emulator.util import write_ca
from tests.emulator.proxy import CountingForwarder

REPO_ROOT = Path(__file__).resolve().parents[2]
SITE = str(REPO_ROOT / "playbooks" / "site.yml")
PASS = "pw-role-user"
MASTER = "pw-role-master"
JWT_RE = re.compile(r"eyJ[\w-]{10,}\.eyJ[\w-]{10,}\.[\w-]{20,}")

# Requests a no-op run of the role makes per host with every step enabled (status, check-in and
# personalisation skipped, login, attestation, configuration, TLS), all in one module run:
#   encedo_device      GET /api/system/status (the served certificate comes from this request's own
#                      TLS handshake), GET /api/auth/token, POST /api/auth/token (the one login),
#                      GET /api/system/config/attestation, GET /api/system/config (read once for the
#                      attestation's genuine_id and the configuration step)
#   TLS step           the certificate is the CA's with days left: no CSR, no request
# One module run per host (NOOP_MODULES), the rest of the role runs on the controller.
# The device closes the connection after every answer (PROTOCOL.md "Transport"), so this is
# also the number of TCP connections (counted by CountingForwarder in the test below).
NOOP_REQUESTS_PER_HOST = 5
NOOP_MODULES = ["encedo.hem.encedo_device"]


def role_vars(emu, tmp_path, tls=True, attestation=True, **over):
    """Host variables of the role for the emulator's devices (templated per host by the inventory)."""
    values = {
        "encedo_hem_url": "{{ hem_url }}",
        "encedo_hem_ca_path": "{{ hem_ca_path }}",
        "encedo_hem_passphrase": PASS,
        "encedo_hem_master_passphrase": MASTER,
        "encedo_hem_backend_url": "{{ hem_backend_url }}",
        "encedo_hem_reboot_timeout": 60,
        # 127.0.0.1 in the device's CSR makes its new certificate valid for the URL of the test.
        "encedo_hem_init": {"ip": "127.0.0.1/8", "hostname": "{{ inventory_hostname }}.emulator.test", "email": "ops@example.com"},
        "encedo_hem_config": {"user": "Role test", "http_option_hsts": True, "allow_keysearch": False},
    }
    if attestation:
        values["encedo_hem_attestation_trust_anchor_path"] = "{{ hem_custody_ca_path }}"
    if tls:
        cert, cert_path, key_path = write_ca(tmp_path, "Role test CA")
        bundle = Path(tmp_path) / "trust.pem"
        bundle.write_text(Path(emu.ca_file).read_text() + Path(cert_path).read_text())
        values.update(encedo_hem_ca_path=str(bundle), encedo_hem_tls_issuer_cert_path=cert_path,
                      encedo_hem_tls_issuer_key_path=key_path)
    values.update(over)
    return values


def served_issuer_with_only(ca_path, url):
    """TLS handshake trusting only ``ca_path`` (hostname checked); return the served certificate's issuer CN."""
    parts = urlsplit(url)
    ctx = ssl.create_default_context(cafile=ca_path)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=parts.hostname) as tls:
            der = tls.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def per_host(emu, n):
    return {i: emu.log(i) for i in range(n)}


def assert_no_secret(run):
    for secret in (PASS, MASTER):
        assert secret not in run.output
    assert not JWT_RE.search(run.output), "a bearer token was printed"


# ---------------------------------------------------------------------------- tests

def test_fresh_devices_to_desired_state_then_noop(emulator, hem_playbook, tmp_path):
    n = 2
    emu = emulator(devices=n, reboot_seconds=1.0)
    boots = [emu.state(i)["boot_id"] for i in range(n)]
    host_vars = role_vars(emu, tmp_path)
    runner = hem_playbook(emu, host_vars=host_vars)

    check = runner.run_playbook(SITE, check=True)
    check.assert_ok()
    for i in range(n):
        assert [e for e in emu.log(i) if e["method"] == "POST"] == [], "check mode sent a POST"
        assert emu.state(i)["personalised"] is False
        emu.clear_log(i)

    first = runner.run_playbook(SITE, diff=True, verbosity=3)
    first.assert_ok()
    assert_no_secret(first)
    for i in range(n):
        host = "hem%d" % i
        assert first.stats[host]["changed"] > 0 and first.stats[host]["failures"] == 0
        state = emu.state(i)
        assert state["personalised"] and state["rtc_set"] and state["boot_id"] != boots[i]
        cfg = state["config"]
        assert (cfg["user"], cfg["hostname"], cfg["ip"], cfg["http_option_hsts"]) == ("Role test", host + ".emulator.test",
                                                                                      "127.0.0.1/8", True)
        # One login for the device module once the device is set up, one for the certificate upload, one for the
        # reboot (the handler): each module logs in with the passphrase, no token travels through the role.
        assert len([e for e in emu.log(i) if e["method"] == "POST" and e["path"] == "/api/auth/token"]) == 3
        assert len([e for e in emu.log(i) if e["path"] == "/api/system/reboot"]) == 1
        # The device now serves the certificate issued by the test CA, valid for its URL.
        assert served_issuer_with_only(host_vars["encedo_hem_tls_issuer_cert_path"], emu.url(i)) == "Role test CA"
        emu.clear_log(i)

    # The no-op run goes through a counting TCP proxy in front of each device: connections, not only requests.
    proxies = [CountingForwarder(emu.url(i)) for i in range(n)]
    try:
        proxied = hem_playbook(emu, host_vars=dict(host_vars, hem_proxy_urls=[p.url for p in proxies],
                                                   encedo_hem_url="{{ hem_proxy_urls[hem_index] }}"))
        second = proxied.run_playbook(SITE, verbosity=3)
    finally:
        for proxy in proxies:
            proxy.close()
    second.assert_ok()
    assert_no_secret(second)
    logs = per_host(emu, n)
    for i in range(n):
        host = "hem%d" % i
        assert second.stats[host]["changed"] == 0, second.tail()
        # One module ran (the cost of a fleet's no-op is mostly module runs).
        ran = [t.action for t in second.results(host=host, status="ok") if not t.action.startswith("ansible.builtin.")]
        assert ran == NOOP_MODULES, ran
        # At most 5 HTTP(S) connections per device: one per request, none for the TLS step.
        assert proxies[i].connections <= 5, (proxies[i].connections, [(e["method"], e["path"]) for e in logs[i]])
        assert proxies[i].connections == len(logs[i]), "a connection without a request (e.g. a TLS handshake of its own)"
        posts = [(e["method"], e["path"]) for e in logs[i] if e["method"] == "POST"]
        assert posts == [("POST", "/api/auth/token")], "a no-op run may only POST its one login: %s" % posts
        assert len([e for e in logs[i] if e["path"] == "/api/auth/token" and e["method"] == "GET"]) == 1
        assert len(logs[i]) == NOOP_REQUESTS_PER_HOST, [(e["method"], e["path"]) for e in logs[i]]
        assert all(e["scheme"] == "https" for e in logs[i])
        # Every authenticated request used the one token (no request without it needed one).
        assert all(e["status"] == 200 for e in logs[i])


@pytest.mark.parametrize("typo", [{"encedo_hem_init": {"hostnme": "typo"}},
                                  # the role hands encedo_hem_config to encedo_config as it is
                                  {"encedo_hem_config": {"user": "x", "hostnme": "typo"}}])
def test_argument_spec_refuses_unknown_options_before_any_request(emulator, hem_playbook, tmp_path, typo):
    emu = emulator()
    emu.clear_log(0)
    runner = hem_playbook(emu, host_vars=role_vars(emu, tmp_path, tls=False, **typo))
    run = runner.run_playbook(SITE)
    assert run.rc != 0
    assert "hostnme" in run.output
    assert emu.log(0) == []


@pytest.mark.parametrize("bad,words", [({"encedo_hem_timeout": "abc"}, ("encedo_hem_timeout", "int")),
                                       ({"encedo_hem_init": {"hostnme": "typo"}}, ("encedo_hem_init", "hostnme")),
                                       # issue 30: ansible-core's own wording has no "unknown" and a double period
                                       ({"encedo_hem_config": {"emial": "a@example.com"}},
                                        ("unsupported option encedo_hem_config.emial (supported there: allow_keysearch, ",
                                         ", user). The role's variables"))])
def test_a_bad_role_variable_is_named_in_a_few_lines(emulator, hem_playbook, tmp_path, bad, words):
    """Issue 17, defect 10: not ~9 KB of argument spec, but which variable is wrong and why. Issue 30: also
    with -v, where the check's own result printed the spec and, on ansible-core 2.21, a
    "failed_when_suppressed_exception": "(traceback unavailable)" that reads as a crash."""
    emu = emulator()
    emu.clear_log(0)
    runner = hem_playbook(emu, host_vars=role_vars(emu, tmp_path, tls=False, **bad))
    for verbosity in (0, 1):
        run = runner.run_playbook(SITE, verbosity=verbosity)
        assert run.rc != 0
        [failed] = run.failed()
        assert all(word in failed.msg for word in words), failed.msg
        assert "ansible-doc -t role encedo.hem.device" in failed.msg and ".." not in failed.msg
        assert len(failed.msg) < 600 and len(run.output) < 3000, run.output
        assert "argument_spec_data" not in run.output and "description" not in run.output
        assert "traceback" not in run.output and "exception" not in run.output, run.output
    assert emu.log(0) == []


def test_tls_step_refuses_a_certificate_that_does_not_name_the_url(emulator, hem_playbook, tmp_path):
    """Never lock the controller out (issue 17): the device is personalised with ip 192.168.7.1, so its CSR (and the
    certificate the CA signs) names that address and its hostname, but the play reaches it as https://127.0.0.1."""
    emu = emulator(rtc_set=True, reboot_seconds=1.0)
    host_vars = role_vars(emu, tmp_path, attestation=False, encedo_hem_config={},
                          encedo_hem_init={"ip": "192.168.7.1/24", "hostname": "hem0.emulator.test"})
    runner = hem_playbook(emu, host_vars=host_vars)
    served = emu.state(0)["tls_cert_pem"]
    run = runner.run_playbook(SITE)
    assert run.rc != 0
    [failed] = run.failed()
    assert failed.task == "Upload the certificate (the device serves it after a reboot)"
    assert "the certificate names DNS:hem0.emulator.test, IP:192.168.7.1" in failed.msg, failed.msg
    assert "127.0.0.1 (the host of url) needs IP:127.0.0.1" in failed.msg and "Nothing was uploaded" in failed.msg
    # Nothing uploaded: the device still serves the certificate the play can verify, and the next run can reach it.
    state = emu.state(0)
    assert state["tls_cert_pem"] == served and not state["pending_tls"]
    assert [e["keys"] for e in emu.log(0) if e["method"] == "POST" and e["path"] == "/api/system/config"] == [["gen_csr"]]
    assert runner.run_playbook(SITE, extra_vars={"encedo_hem_tls_issuer_cert_path": ""}).rc == 0


def test_site_playbook_runs_on_the_hosts_pattern_given(emulator, hem_playbook, tmp_path):
    emu = emulator(devices=2, passphrase=PASS, rtc_set=True)
    for i in range(2):
        emu.clear_log(i)
    runner = hem_playbook(emu, host_vars=role_vars(emu, tmp_path, tls=False, attestation=False))
    run = runner.run_playbook(SITE, extra_vars={"encedo_hem_hosts": "hem1"})
    run.assert_ok()
    assert set(run.stats) == {"hem1"}
    assert emu.log(0) == [] and emu.log(1) != []
    assert set(runner.run_playbook(SITE).stats) == {"hem0", "hem1"}     # default: all


CRYPTO_CHECK = "Check that community.crypto is installed (the TLS step signs the device certificate with it)"


def test_tls_step_without_community_crypto_fails_with_instructions(emulator, hem_playbook, tmp_path):
    emu = emulator(devices=2, passphrase=PASS, rtc_set=True)
    runner = hem_playbook(emu, host_vars=role_vars(emu, tmp_path, attestation=False, encedo_hem_config={}))
    # community.crypto comes from the `ansible` package on the Python path: hide it.
    run = runner.run_playbook(SITE, env={"ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false"})
    assert run.rc != 0
    failed = run.failed()
    # Issue 30: every host fails with the explanation (none stops silently with failed=0), and the
    # explanation is the first thing printed (not Ansible's "No filter named 'community.crypto...'").
    assert sorted((t.task, t.host) for t in failed) == [(CRYPTO_CHECK, "hem0"), (CRYPTO_CHECK, "hem1")]
    assert all("ansible-galaxy collection install community.crypto" in t.msg for t in failed)
    assert run.stats["hem0"]["failures"] == run.stats["hem1"]["failures"] == 1
    problems = [line for line in run.output.splitlines() if re.match(r"\[(ERROR|WARNING)\]|fatal:", line)]
    assert problems and "The TLS step of encedo.hem.device" in problems[0], run.output
    assert "No filter named" not in run.output and "community.crypto.split_pem" not in run.output
    # No host went on: nothing but the login was sent to either device (no CSR requested).
    for i in range(2):
        assert [e for e in emu.log(i) if e["method"] == "POST" and e["path"] != "/api/auth/token"] == []
    assert run.results(task="Bring the device to its declared state (status, attestation, configuration, certificate due)") == []


def test_unexpected_reboot_mid_play_fails_clearly_and_a_rerun_recovers(emulator, hem_playbook, tmp_path):
    emu = emulator(passphrase=PASS, rtc_set=True, reboot_seconds=1.0)
    runner = hem_playbook(emu, host_vars=role_vars(emu, tmp_path, tls=False, attestation=True))
    boot = emu.state(0)["boot_id"]
    emu.clear_log(0)
    # Right after the role's one login is answered, the device loses power (deterministic: a fault of the emulator).
    emu.fault(0, "reboot_after", path="/api/auth/token", method="POST")
    run = runner.run_playbook(SITE)
    assert emu.state(0)["boot_id"] != boot, "the fault did not fire"
    assert run.rc != 0, "the play cannot use a token from before the reboot"
    failed = run.failed()
    assert len(failed) == 1
    assert failed[0].task == "Bring the device to its declared state (status, attestation, configuration, certificate due)"
    # the request that met the dead token tried to log in again (it has the passphrase): the clock is unset now
    assert "rebooted since it was issued" in failed[0].msg and "run a check-in first" in failed[0].msg, failed[0].msg
    assert_no_secret(run)

    again = runner.run_playbook(SITE)
    again.assert_ok()
    assert again.result("Check the device in (its clock is unset)", host="hem0")["changed"] is True
    state = emu.state(0)
    assert state["rtc_set"] and state["config"]["user"] == "Role test"


def test_reboot_handler_when_the_device_never_comes_back(emulator, hem_playbook, tmp_path):
    emu = emulator(rtc_set=True, reboot_seconds=120.0)
    # A new IP needs a reboot after the personalisation; the device then stays away.
    runner = hem_playbook(emu, host_vars=role_vars(emu, tmp_path, tls=False, attestation=False, encedo_hem_reboot_timeout=3))
    started = time.monotonic()
    run = runner.run_playbook(SITE)
    assert time.monotonic() - started < 60
    assert run.rc != 0
    failed = run.failed()
    assert [t.task for t in failed] == ["Reboot the device and wait until it is back"]
    assert "did not come back within" in failed[0].msg and "timeout 3 s" in failed[0].msg


def test_reboot_can_be_left_to_the_operator(emulator, hem_playbook, tmp_path):
    emu = emulator(rtc_set=True)
    runner = hem_playbook(emu, host_vars=role_vars(emu, tmp_path, tls=False, attestation=False, encedo_hem_reboot=False))
    run = runner.run_playbook(SITE)
    run.assert_ok()
    notice = run.result("Reboot to apply the changes that need it", host="hem0")
    assert "reboot it yourself" in notice["msg"]
    assert notice["changed"] is False, "no reboot allowed: the notice must not notify the reboot handler"
    assert [e for e in emu.log(0) if e["path"] == "/api/system/reboot"] == []


def test_a_reboot_left_to_the_operator_is_recalled_until_the_device_rebooted(emulator, hem_playbook, tmp_path):
    """Issue 17: encedo_hem_reboot false reminds on every run, not only on the run that made the change; a run with
    encedo_hem_reboot true then reboots; once rebooted, no more reminder."""
    emu = emulator(rtc_set=True, reboot_seconds=0.5)
    runner = hem_playbook(emu, host_vars=role_vars(emu, tmp_path, tls=False, attestation=False, encedo_hem_reboot=False,
                                                   encedo_hem_pending_reboot_dir=str(tmp_path / "pending")))
    remind = "Reboot to apply the changes that need it"
    include = "Reboot to apply the changes that need it, or remember the reboot left to you"
    first = runner.run_playbook(SITE).assert_ok()
    notice = first.result(remind, host="hem0")["msg"]
    assert "reboot it yourself" in notice and "still pending" not in notice
    assert not first.results(task="Say what the reboot waits for")
    assert (tmp_path / "pending" / "hem0.json").is_file()

    check = runner.run_playbook(SITE, check=True).assert_ok()
    second = runner.run_playbook(SITE).assert_ok()
    for run in (check, second):
        notice = run.result(remind, host="hem0")
        assert "still pending since" in notice["msg"] and "personalisation" in notice["msg"], notice
        assert "reboot it yourself" in notice["msg"] and notice["changed"] is False
    assert second.stats["hem0"]["changed"] == 0
    assert [e for e in emu.log(0) if e["path"] == "/api/system/reboot"] == []

    # The operator allows the reboot now: the pending reboot is done, and recalled no more.
    boot = emu.state(0)["boot_id"]
    third = runner.run_playbook(SITE, extra_vars={"encedo_hem_reboot": True}).assert_ok()
    assert third.result(remind, host="hem0")["changed"] is True
    assert third.result("Reboot the device and wait until it is back", host="hem0")["rebooted"] is True
    # Before the silent wait, a line says what it waits for (the handlers run in order).
    said = third.result("Say what the reboot waits for", host="hem0")["msg"]
    assert "waits, silently, until the device answers again" in said and "up to 60 s" in said
    order = [t.task for t in third.tasks]
    assert order.index("Say what the reboot waits for") == order.index("Reboot the device and wait until it is back") - 1
    assert emu.state(0)["boot_id"] != boot
    assert not (tmp_path / "pending" / "hem0.json").exists()
    fourth = runner.run_playbook(SITE).assert_ok()
    assert fourth.results(task=include, status="skipped") and fourth.stats["hem0"]["changed"] == 0


def test_a_reboot_done_by_hand_ends_the_reminder(emulator, hem_playbook, tmp_path):
    emu = emulator(rtc_set=True, reboot_seconds=0.5)
    runner = hem_playbook(emu, host_vars=role_vars(emu, tmp_path, tls=False, attestation=False, encedo_hem_reboot=False,
                                                   encedo_hem_pending_reboot_dir=str(tmp_path / "pending")))
    runner.run_playbook(SITE).assert_ok()
    marker = json.loads((tmp_path / "pending" / "hem0.json").read_text())
    # A boot time that differs from the remembered one by more than the role's slack (5 s).
    time.sleep(max(0.0, marker["boot"] + 10 - time.time()))
    boot = emu.state(0)["boot_id"]
    emu.fault(0, "reboot")
    assert emu.wait_new_boot(0, boot)
    after = runner.run_playbook(SITE).assert_ok()
    assert after.results(task="Reboot to apply the changes that need it, or remember the reboot left to you", status="skipped")
    assert not (tmp_path / "pending" / "hem0.json").exists()


def test_checkin_action_stops_the_host_with_the_modules_message(emulator, hem_playbook, tmp_path):
    """The role's check-in (clock unset) gets action L: that host stops there, the result shows the action."""
    emu = emulator(devices=2, passphrase=PASS, reboot_seconds=0.5)
    emu.checkin_order(0, action="L")
    runner = hem_playbook(emu, host_vars=role_vars(emu, tmp_path, tls=False, attestation=False))
    run = runner.run_playbook(SITE)
    assert run.rc != 0
    failed = run.failed()
    assert [(t.task, t.host) for t in failed] == [("Check the device in (its clock is unset)", "hem0")]
    assert failed[0].changed and failed[0].result["status"] == "L" and failed[0].result["action"] == "user key erased"
    assert "erased its user key" in failed[0].msg and "master" in failed[0].msg
    # hem0 stopped at the check-in (no login after it); hem1 went on to the end.
    assert [e for e in emu.log(0) if e["path"] == "/api/auth/token"] == []
    assert run.stats["hem1"]["failures"] == 0 and emu.state(1)["config"]["user"] == "Role test"
    assert_no_secret(run)


def test_reboot_handler_reports_the_action_of_its_checkin(emulator, hem_playbook, tmp_path):
    emu = emulator(rtc_set=True, reboot_seconds=0.5)
    # A new IP needs a reboot after the personalisation; the handler's check-in then gets action W, which the
    # device executes because the personalisation turned trusted_backend on.
    emu.checkin_order(0, action="W")
    host_vars = role_vars(emu, tmp_path, tls=False, attestation=False)
    host_vars["encedo_hem_init"] = dict(host_vars["encedo_hem_init"], trusted_backend=True)
    runner = hem_playbook(emu, host_vars=host_vars)
    run = runner.run_playbook(SITE)
    assert run.rc != 0
    failed = run.failed()
    assert [t.task for t in failed] == ["Reboot the device and wait until it is back"]
    checkin = failed[0].result["checkin"]
    assert (checkin["status"], checkin["action"]) == ("W", "wiped (factory reset) and rebooting")
    assert failed[0].changed and "wiped itself" in failed[0].msg and "personalise it again" in failed[0].msg
    assert len([e for e in emu.log(0) if e["path"] == "/api/system/reboot"]) == 1
    deadline = time.monotonic() + 10
    while not emu.state(0)["up"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert emu.state(0)["personalised"] is False, "the wipe was not executed"
    assert_no_secret(run)


def test_keys_are_ensured_in_the_one_module_run(emulator, hem_playbook, tmp_path):
    """encedo_hem_keys: created after the configuration in the device's one module run; a second run changes nothing
    and still runs one module per device (issue 26)."""
    emu = emulator(passphrase=PASS, rtc_set=True, reboot_seconds=0.5)
    keys = [{"label": "role-signing", "type": "SECP256R1", "descr": "role test"}]
    runner = hem_playbook(emu, host_vars=role_vars(emu, tmp_path, tls=False, attestation=False, encedo_hem_keys=keys))
    first = runner.run_playbook(SITE).assert_ok()
    device = first.results(task="Bring the device to its declared state (status, attestation, configuration, certificate due)")
    [created] = device[0].result["key_results"]
    assert created["changed"] and created["type"] == "SECP256R1" and created["public_key"].startswith("-----BEGIN PUBLIC KEY")
    emu.clear_log(0)
    second = runner.run_playbook(SITE).assert_ok()
    assert second.stats["hem0"]["changed"] == 0, second.tail()
    ran = [t.action for t in second.results(host="hem0", status="ok") if not t.action.startswith("ansible.builtin.")]
    assert ran == NOOP_MODULES, ran
    assert [e for e in emu.log(0) if e["method"] == "POST" and e["path"] != "/api/auth/token"] == []


def test_a_new_ip_is_followed_for_the_rest_of_the_run(emulator, hem_playbook, tmp_path):
    """Issue 25 item 1: personalised with another address, the device answers only there after the reboot that
    applies it; the role's handler reboots it at the old URL, waits and checks it in at the new one, and the rest of
    the run uses it (the old behaviour waited at the old URL and failed)."""
    emu = emulator(rtc_set=True, reboot_seconds=0.5)
    moved = "127.0.0.9"
    host_vars = role_vars(emu, tmp_path, tls=False, attestation=False)
    host_vars["encedo_hem_init"] = dict(host_vars["encedo_hem_init"], ip=moved + "/8")
    play = [{"hosts": "all", "gather_facts": False, "roles": ["encedo.hem.device"], "tasks": [
        {"name": "Run the handlers", "ansible.builtin.meta": "flush_handlers"},
        {"name": "Read the device where the run now reaches it", "encedo.hem.encedo_info": {
            "url": "{{ encedo_hem_url }}", "ca_path": "{{ hem_ca_path }}", "passphrase": PASS}}]}]
    run = hem_playbook(emu, host_vars=host_vars).run_playbook(play)
    run.assert_ok()
    new_url = emu.url(0).replace("127.0.0.1", moved)
    init = run.result("Personalise the factory-fresh device")
    assert init["url"] == new_url and init["reboot_required"] is True
    reboot = run.result("Reboot the device and wait until it is back")
    assert reboot["rebooted"] is True and reboot["url"] == new_url and reboot["checkin"]["status"] == "OK"
    info = run.result("Read the device where the run now reaches it")
    assert info["personalised"] is True and info["config"]["ip"] == moved + "/8"
    assert "answers at %s from now on" % new_url in run.output and "set encedo_hem_url" in run.output
    state = emu.state(0)
    assert state["address"] == moved and state["url"] == new_url
    assert len([e for e in emu.log(0) if e["path"] == "/api/system/reboot"]) == 1
