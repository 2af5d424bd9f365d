# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""encedo_info and encedo_login against the emulator (HTTPS, CA verified), on two layers.

The modules' rules (what they read, return and refuse; TLS trust; login lifetime and scope) run the
module's main() in this process (helpers/inprocess.py ModuleRunner), with the emulator's request log
as the proof. Real ansible-playbook runs stay for what only a playbook shows: the token guard (the
action plugin hides a result that holds a token, a failed login stays readable), ``register`` passing
tokens between tasks, credentials from ENCEDO_HEM_* through ansible-playbook, a persistent fact cache,
-vvv/-vvvv output, and the test harness itself.

Their four-step runs (encedo_info on a personalised PPA, a factory-fresh PPA with and without
credentials and an EPA; encedo_login's login-once pattern, applied and in check mode) are the
ansible-test targets tests/integration/targets/encedo_info and encedo_login."""

from __future__ import annotations

import os
import re
import time

import pytest

from tests.integration.helpers.inprocess import ModuleRunner
from tests.unit.plugins.modules import replay

PASSPHRASE = "integration-passphrase-4711"


def token_requests(emu, i=0):
    return [(e["method"], e["path"]) for e in emu.log(i) if e["path"] == "/api/auth/token"]


def test_token_from_the_task_is_used_before_passphrase_from_the_environment(emulator, hem_playbook):
    """AWX-style credentials in ENCEDO_HEM_*; the play still logs in once and passes token: (a valid token
    is used; the passphrase from the environment is only for logging in again, see the next test)."""
    emu = emulator(passphrase=PASSPHRASE, rtc_set=True)
    playbook = [{
        "name": "Login once with credentials from the environment", "hosts": "hem", "gather_facts": False,
        "tasks": [
            {"name": "Log in", "encedo.hem.encedo_login": {}, "register": "hem_login"},
            {"name": "Read with the token", "encedo.hem.encedo_info": {"token": "{{ hem_login.token }}"}, "register": "info"},
            {"ansible.builtin.assert": {"that": ["info.config.hostname is string"]}},
        ],
    }]
    env = {"ENCEDO_HEM_URL": emu.url(0), "ENCEDO_HEM_CA_PATH": emu.ca_file, "ENCEDO_HEM_PASSPHRASE": PASSPHRASE}
    run = hem_playbook(emu).run_playbook(playbook, env=env)
    run.assert_ok()
    assert token_requests(emu) == [("GET", "/api/auth/token"), ("POST", "/api/auth/token")]


JWT_RE = re.compile(r"eyJ[\w-]{4,}\.eyJ[\w-]{4,}\.[\w-]{10,}")
CONFIG = "/api/system/config"


def dead_token_playbook(token_file, renewed_file, passphrase_from_env=False):
    """Log in, kill every token of the device (control interface), then: token alone -> clear failure;
    token + passphrase -> one new login, the new token in the (hidden) result; that token alone -> no login."""
    auth = {} if passphrase_from_env else {"passphrase": "{{ hem_passphrase }}"}
    return [{
        "name": "A token that dies between tasks", "hosts": "hem", "gather_facts": False,
        "module_defaults": {"group/encedo.hem.hem": {"url": "{{ hem_url }}", "ca_path": "{{ hem_ca_path }}"}},
        "tasks": [
            {"name": "Log in", "encedo.hem.encedo_login": auth, "register": "hem_login"},
            {"name": "The device forgets every token", "ansible.builtin.uri": {
                "url": "{{ hem_control_url }}/devices/{{ hem_index }}/faults", "method": "POST", "body_format": "json",
                "body": {"kind": "expire_tokens"}}},
            {"name": "Token alone", "block": [
                {"name": "Read with the dead token alone", "encedo.hem.encedo_info": {"token": "{{ hem_login.token }}", "passphrase": ""}},
                {"name": "Dead token accepted", "ansible.builtin.fail": {"msg": "a dead token was accepted"}}],
             "rescue": [{"name": "Dead token refused, saying why", "ansible.builtin.assert": {"that": [
                 "ansible_failed_task.name == 'Read with the dead token alone'",
                 "'expired, or the device rebooted since it was issued' in ansible_failed_result.msg",
                 "'give passphrase' in ansible_failed_result.msg"]}}]},
            {"name": "Read with the dead token and the passphrase", "encedo.hem.encedo_info": dict(auth, token="{{ hem_login.token }}"),
             "register": "renewed"},
            {"name": "Read with the renewed token alone", "encedo.hem.encedo_info": {"token": "{{ renewed.token }}"},
             "register": "after"},
            {"name": "The renewal is a new token", "ansible.builtin.assert": {"that": [
                "renewed.token != hem_login.token", "after.token is undefined", "ansible_facts.encedo_hem_token is undefined",
                "renewed.config.hostname == after.config.hostname"]}},
            {"name": "Keep both tokens for the test", "no_log": True, "ansible.builtin.copy": {
                "content": "{{ item.value }}", "dest": "{{ item.dest }}", "mode": "0600"}, "loop": [
                {"value": "{{ hem_login.token }}", "dest": str(token_file)},
                {"value": "{{ renewed.token }}", "dest": str(renewed_file)}]},
        ],
    }]


@pytest.mark.parametrize("passphrase_from_env", [False, True], ids=["task", "environment"])
def test_dead_token_with_the_passphrase_logs_in_again_once(emulator, hem_playbook, tmp_path, passphrase_from_env):
    emu = emulator(passphrase=PASSPHRASE, rtc_set=True)
    token_file, renewed_file = tmp_path / "token", tmp_path / "renewed"
    env = {"ENCEDO_HEM_PASSPHRASE": PASSPHRASE} if passphrase_from_env else None
    run = hem_playbook(emu).run_playbook(dead_token_playbook(token_file, renewed_file, passphrase_from_env), verbosity=4, env=env)
    run.assert_ok()
    assert [t.status for t in run.results(task="Dead token refused, saying why")] == ["ok"]
    token, renewed = token_file.read_text(), renewed_file.read_text()
    assert JWT_RE.fullmatch(token) and JWT_RE.fullmatch(renewed) and token != renewed
    # exactly one new login: the first login and the one of the task that met the dead token
    assert token_requests(emu) == [("GET", "/api/auth/token"), ("POST", "/api/auth/token")] * 2
    reads = [(e["status"], e["auth"]) for e in emu.log(0) if e["path"] == CONFIG]
    assert reads == [(401, "bearer"), (401, "bearer"), (200, "bearer"), (200, "bearer")], reads
    # the result holding the new token is hidden, like encedo_login's; the next task's is not
    assert run.results(task="Read with the dead token and the passphrase")[0].censored
    assert not run.results(task="Read with the renewed token alone")[0].censored
    # neither token nor passphrase shows anywhere, at -vvvv
    assert "<hem0> EXEC" in run.stdout or "ESTABLISH LOCAL CONNECTION" in run.stdout
    for secret in (PASSPHRASE, token, renewed) + tuple(token.split(".")[2:]) + tuple(renewed.split(".")[2:]):
        assert secret not in run.stdout and secret not in run.stderr
        for task in run.tasks:
            assert secret not in repr(task.result)


def test_renewal_with_a_persistent_fact_cache(emulator, hem_playbook, tmp_path):
    """ansible-runner (so AWX) always caches facts on disk (jsonfile): the renewed token travels in the registered
    result, never as a fact, so it never reaches the cache, and the next task uses it without logging in."""
    emu = emulator(passphrase=PASSPHRASE, rtc_set=True)
    cache = tmp_path / "facts"
    playbook = [{
        "name": "Persistent fact cache", "hosts": "hem", "gather_facts": False,
        "module_defaults": {"group/encedo.hem.hem": {"url": "{{ hem_url }}", "ca_path": "{{ hem_ca_path }}"}},
        "tasks": [
            {"name": "Some fact for the cache", "ansible.builtin.set_fact": {"hem_marker": "cached", "cacheable": True}},
            {"name": "Log in", "encedo.hem.encedo_login": {"passphrase": "{{ hem_passphrase }}"}, "register": "hem_login"},
            {"name": "The device forgets every token", "ansible.builtin.uri": {
                "url": "{{ hem_control_url }}/devices/{{ hem_index }}/faults", "method": "POST", "body_format": "json",
                "body": {"kind": "expire_tokens"}}},
            {"name": "Read with the dead token and the passphrase", "register": "renewed", "encedo.hem.encedo_info": {
                "token": "{{ hem_login.token }}", "passphrase": "{{ hem_passphrase }}"}},
            {"name": "Read with the renewed token and the passphrase", "encedo.hem.encedo_info": {
                "token": "{{ renewed.token | default(hem_login.token) }}", "passphrase": "{{ hem_passphrase }}"}},
        ],
    }]
    env = {"ANSIBLE_CACHE_PLUGIN": "jsonfile", "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(cache)}
    run = hem_playbook(emu).run_playbook(playbook, env=env)
    run.assert_ok()
    assert token_requests(emu) == [("GET", "/api/auth/token"), ("POST", "/api/auth/token")] * 2
    assert run.results(task="Read with the dead token and the passphrase")[0].censored
    assert not run.results(task="Read with the renewed token and the passphrase")[0].censored
    files = [p for p in cache.rglob("*") if p.is_file()]
    assert files and any("cached" in p.read_text() for p in files), "the fact cache was not written"
    for path in files:
        assert not JWT_RE.search(path.read_text()), "a token in the fact cache %s" % path


def test_login_lifetime_and_scope(emulator):
    emu = emulator(passphrase=PASSPHRASE, rtc_set=True)
    hem_login = ModuleRunner(emu, 0)("encedo.hem.encedo_login", {
        "url": "{{ hem_url }}", "ca_path": "{{ hem_ca_path }}", "passphrase": "{{ hem_passphrase }}", "scope": "logger:get", "lifetime": 600})
    assert "failed" not in hem_login, hem_login["msg"]
    assert hem_login["scope"] == "logger:get"
    now = int(time.time())
    assert hem_login["expires"] - now <= 600
    assert hem_login["expires"] - now >= 590


def test_wrong_passphrase_fails_clearly(emulator, hem_playbook):
    """On ansible-playbook: the token guard leaves a failed login readable, and the output shows why."""
    emu = emulator(passphrase=PASSPHRASE, rtc_set=True)
    run = hem_playbook(emu).run_playbook([{
        "name": "Wrong passphrase", "hosts": "hem", "gather_facts": False,
        "tasks": [{"name": "Log in", "encedo.hem.encedo_login": {
            "url": "{{ hem_url }}", "ca_path": "{{ hem_ca_path }}", "passphrase": "not-the-passphrase"}}],
    }])
    assert run.rc != 0
    failed = run.failed()
    assert len(failed) == 1 and failed[0].task == "Log in"
    assert failed[0].msg == ("POST /api/auth/token answered HTTP 401: login refused: the passphrase is wrong "
                             "(or the login challenge expired)")
    assert failed[0].result["status"] == 401
    assert not failed[0].censored            # a failed login stays readable
    assert "passphrase is wrong" in run.stdout
    assert "not-the-passphrase" not in run.output


def test_clock_unset_asks_for_a_checkin(emulator):
    emu = emulator(passphrase=PASSPHRASE, rtc_set=False)
    result = ModuleRunner(emu, 0)("encedo.hem.encedo_info", {
        "url": "{{ hem_url }}", "ca_path": "{{ hem_ca_path }}", "passphrase": "{{ hem_passphrase }}"})
    assert result["failed"]
    msg = result["msg"]
    assert msg.startswith("GET /api/auth/token answered HTTP 403: the device clock is not set")
    assert "check-in" in msg and "encedo.hem.encedo_checkin" in msg and "encedo.hem.encedo_reboot" in msg
    assert token_requests(emu) == [("GET", "/api/auth/token")]  # a 403 is not retried


def _tls_read(emu, ca_path=None, env=None, **extra):
    """encedo_info with url, ca_path only when given, and extra (no passphrase), in-process with env."""
    args = dict({"url": "{{ hem_url }}", "ca_path": ca_path, "passphrase": None}, **extra)
    return ModuleRunner(emu, 0)("encedo.hem.encedo_info", args, env=env)


def test_wrong_ca_is_a_tls_error(emulator):
    emu = emulator(passphrase=PASSPHRASE, rtc_set=True)
    result = _tls_read(emu, "{{ hem_custody_ca_path }}")
    assert result["failed"]
    msg = result["msg"]
    assert msg.startswith("GET /api/system/status: TLS certificate verification")
    assert "CERTIFICATE_VERIFY_FAILED" in msg and "ca_path" in msg
    assert emu.log(0) == []  # nothing got through


def test_requests_ca_bundle_cannot_override_the_choice(emulator):
    """The environment of the module's process (what ansible-playbook would pass on to it) never changes the trust."""
    emu = emulator(passphrase=PASSPHRASE, rtc_set=True)
    # The environment trusts the emulator CA, the task does not: the task's choice wins.
    other = emu.custody_ca_file
    result = _tls_read(emu, other, env={"REQUESTS_CA_BUNDLE": emu.ca_file, "CURL_CA_BUNDLE": emu.ca_file})
    assert result["failed"] and "CERTIFICATE_VERIFY_FAILED" in result["msg"]
    # Without ca_path the trust is certifi's bundle (no emulator CA), and the environment does not widen it.
    result = _tls_read(emu, env={"REQUESTS_CA_BUNDLE": emu.ca_file, "CURL_CA_BUNDLE": emu.ca_file})
    assert result["failed"] and "CERTIFICATE_VERIFY_FAILED" in result["msg"]
    result = _tls_read(emu)
    assert result["failed"] and "CERTIFICATE_VERIFY_FAILED" in result["msg"]
    # The environment points at another bundle, the task at the emulator CA: the task's choice wins.
    result = _tls_read(emu, "{{ hem_ca_path }}", env={"REQUESTS_CA_BUNDLE": other, "CURL_CA_BUNDLE": other})
    assert "failed" not in result, result["msg"]
    # validate_certs: false is not undone by the environment either, and it warns.
    result = _tls_read(emu, validate_certs=False, env={"REQUESTS_CA_BUNDLE": other})
    assert "failed" not in result, result["msg"]
    warnings = replay.warnings(result)
    assert any("validate_certs is false" in w for w in warnings)


def test_bad_url_fails_before_any_request(emulator):
    emu = emulator()
    result = ModuleRunner(emu, 0)("encedo.hem.encedo_info", {"url": "hem0:8443", "ca_path": None})
    assert result["failed"] and result["msg"].startswith("option url:")
    assert emu.log(0) == []


def test_vvv_output_shows_neither_passphrase_nor_token(emulator, hem_playbook, tmp_path):
    emu = emulator(passphrase=PASSPHRASE, rtc_set=True)
    token_file = tmp_path / "token"
    playbook = [{
        "name": "Secrets stay out of the output", "hosts": "hem", "gather_facts": False,
        "module_defaults": {"group/encedo.hem.hem": {"url": "{{ hem_url }}", "ca_path": "{{ hem_ca_path }}"}},
        "tasks": [
            {"name": "Log in", "encedo.hem.encedo_login": {"passphrase": "{{ hem_passphrase }}"}, "register": "hem_login"},
            {"name": "Read facts with the token", "encedo.hem.encedo_info": {"token": "{{ hem_login.token }}"}},
            {"name": "Keep the token for the test", "no_log": True, "delegate_to": "localhost",
             "ansible.builtin.copy": {"content": "{{ hem_login.token }}", "dest": str(token_file), "mode": "0600"}},
        ],
    }]
    run = hem_playbook(emu).run_playbook(playbook, verbosity=3)
    run.assert_ok()
    token = token_file.read_text()
    assert token.count(".") == 2 and len(token) > 40
    assert "Log in" in run.stdout and "Read facts with the token" in run.stdout and "<hem0> EXEC" in run.stdout
    for secret in (PASSPHRASE, token) + tuple(token.split(".")):
        assert secret not in run.stdout and secret not in run.stderr
        for task in run.tasks:
            assert secret not in repr(task.result)
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in run.stdout  # the token option is masked in the invocation
    assert token_requests(emu) == [("GET", "/api/auth/token"), ("POST", "/api/auth/token")]
    assert os.stat(token_file).st_mode & 0o077 == 0


def test_harness_runs_a_playbook_file_with_switches(emulator, hem_playbook, tmp_path):
    """The harness itself: a playbook path, --check/--diff/--limit, two hosts, per-host results."""
    emu = emulator(devices=2)
    runner = hem_playbook(emu)
    path = tmp_path / "play.yml"
    path.write_text(
        "- name: Two devices\n"
        "  hosts: hem\n"
        "  gather_facts: false\n"
        "  tasks:\n"
        "    - name: Read facts\n"
        "      encedo.hem.encedo_info:\n"
        "        url: '{{ hem_url }}'\n"
        "        ca_path: '{{ hem_ca_path }}'\n"
    )
    run = runner.run_playbook(path, check=True, diff=True).assert_ok()
    assert "--check" in run.command and "--diff" in run.command
    assert sorted(t.host for t in run.results(task="Read facts")) == ["hem0", "hem1"]
    assert run.stats["hem1"]["ok"] == 1 and run.stats["hem1"]["failures"] == 0
    run = runner.run_playbook(str(path), limit="hem1").assert_ok()
    assert [t.host for t in run.tasks] == ["hem1"]
    assert emu.log(0) and len(emu.log(1)) == 2 * len(emu.log(0))


# ------------------------------------------------------------------ gather_subset: what is read, what is returned

STATUS, VERSION = ("GET", "/api/system/status"), ("GET", "/api/system/version")
LOGIN = [("GET", "/api/auth/token"), ("POST", "/api/auth/token")]


def info_once(emu, **args):
    """One encedo_info task in-process (url, ca_path and args; no passphrase unless given);
    -> (its result, the requests it sent)."""
    emu.clear_log(0)
    result = ModuleRunner(emu, 0)("encedo.hem.encedo_info", dict({"passphrase": None}, **args))
    return result, [(e["method"], e["path"]) for e in emu.log(0)]


def info_play(emu, runner, **args):
    """One encedo_info task in a real ansible-playbook run; -> (its TaskResult, the requests it sent)."""
    emu.clear_log(0)
    play = {"hosts": "hem", "gather_facts": False, "tasks": [{
        "name": "Read", "encedo.hem.encedo_info": dict({"url": "{{ hem_url }}", "ca_path": "{{ hem_ca_path }}"}, **args)}]}
    run = runner.run_playbook([play])
    found = run.results(task="Read")
    assert len(found) == 1, run.tail()
    return found[0], [(e["method"], e["path"]) for e in emu.log(0)]


@pytest.mark.parametrize("subset, requests, returned, absent", [
    (None, [STATUS, VERSION] + LOGIN + [("GET", CONFIG)], {"model", "version", "firmware", "config", "certificate"}, set()),
    (["all"], [STATUS, VERSION] + LOGIN + [("GET", CONFIG)], {"model", "version", "config", "certificate"}, set()),
    (["status"], [STATUS], {"personalised", "rtc_set", "status", "model"}, {"version", "firmware", "config", "certificate"}),
    (["!all"], [STATUS], {"personalised", "status"}, {"version", "config", "certificate"}),
    (["status", "certificate"], [STATUS], {"certificate"}, {"version", "config"}),
    (["version"], [STATUS, VERSION], {"version", "firmware", "model"}, {"config", "certificate"}),
    (["config"], [STATUS] + LOGIN + [("GET", CONFIG)], {"config"}, {"version", "certificate"}),
    (["!config"], [STATUS, VERSION], {"version", "certificate"}, {"config"}),
    (["all", "!certificate", "!version"], [STATUS] + LOGIN + [("GET", CONFIG)], {"config"}, {"version", "certificate"}),
], ids=["default", "all", "status", "not-all", "status-certificate", "version", "config", "not-config", "all-but-two"])
def test_gather_subset_reads_only_what_is_asked(emulator_module, subset, requests, returned, absent):
    emu = emulator_module(passphrase=PASSPHRASE, rtc_set=True)
    args = {"passphrase": PASSPHRASE}
    if subset is not None:
        args["gather_subset"] = subset
    res, sent = info_once(emu, **args)
    assert not res.get("failed") and not res["changed"], res.get("msg")
    assert sent == requests
    assert returned <= set(res), sorted(res)
    assert not absent & set(res), sorted(res)
    assert res["personalised"] is True and res["rtc_set"] is True
    if "certificate" in returned:
        # the certificate the device serves, from the status request's own TLS handshake (no connection of its own)
        cert = res["certificate"]
        assert cert["pem"].strip() == emu.state(0)["tls_cert_pem"].strip()
        assert cert["subject_alt_names"] and "IP:127.0.0.1" in cert["subject_alt_names"]
        assert cert["not_after"].endswith("Z") and cert["issuer"] and cert["subject"]


def test_gather_subset_certificate_costs_no_connection(emulator):
    from tests.emulator.proxy import CountingForwarder
    emu = emulator(rtc_set=True)
    with CountingForwarder(emu.url(0)) as proxy:
        res, sent = info_once(emu, url=proxy.url, gather_subset=["status", "certificate"])
    assert not res.get("failed"), res.get("msg")
    assert sent == [STATUS] and proxy.connections == 1
    assert res["certificate"]["pem"].strip() == emu.state(0)["tls_cert_pem"].strip()


def test_gather_subset_model_only_when_decided(emulator):
    """Without the version, the model is returned only when the status decides it (a PPA's storage); an EPA's
    status does not, so no model is guessed."""
    emu = emulator(rtc_set=True, model="epa")
    res, sent = info_once(emu, gather_subset=["status"])
    assert not res.get("failed") and sent == [STATUS]
    assert "model" not in res
    res, sent = info_once(emu, gather_subset=["version"])
    assert res["model"] == "epa" and sent == [STATUS, VERSION]


@pytest.mark.parametrize("subset, words", [
    (["bogus"], ["option gather_subset", "'bogus' is not a subset", "allowed: all, status, version, config, certificate"]),
    (["!status"], ["option gather_subset", "!status is not allowed", "use !all"]),
])
def test_gather_subset_bad_value_fails_before_any_request(emulator, subset, words):
    emu = emulator()
    res, sent = info_once(emu, gather_subset=subset)
    assert res.get("failed")
    for word in words:
        assert word in res["msg"], res["msg"]
    assert sent == []


# ------------------------------------------------------------------ return_token: the status and the login in one task

def test_return_token_logs_in_once_for_the_next_tasks(emulator, hem_playbook):
    emu = emulator(passphrase=PASSPHRASE, rtc_set=True)
    runner = hem_playbook(emu)
    play = {"hosts": "hem", "gather_facts": False,
            "module_defaults": {"group/encedo.hem.hem": {"url": "{{ hem_url }}", "ca_path": "{{ hem_ca_path }}"}},
            "tasks": [
                {"name": "Read", "encedo.hem.encedo_info": {"passphrase": PASSPHRASE, "gather_subset": ["status"], "return_token": True},
                 "register": "hem"},
                {"name": "Read the configuration with its token", "encedo.hem.encedo_info": {"token": "{{ hem.token }}"},
                 "register": "again"},
                {"name": "Show", "ansible.builtin.debug": {"msg": "{{ again.config.hostname }}"}}]}
    for check in (False, True):
        emu.clear_log(0)
        run = runner.run_playbook([play], check=check).assert_ok()
        # the status, ONE login, then the second task reads with that token (no login of its own)
        assert [(e["method"], e["path"]) for e in emu.log(0)] == [STATUS] + LOGIN + [STATUS, VERSION, ("GET", CONFIG)], check
        assert emu.log(0)[-1]["auth"] == "bearer" and emu.log(0)[-1]["status"] == 200
        read = run.results(task="Read")[0]
        assert read.censored and "token" not in read.result
        # a token asked for is no re-login: no warning about a refused token
        assert "refused the token" not in run.output
        assert run.result("Show")["msg"] == emu.state(0)["config"]["hostname"]


def test_return_token_on_a_device_that_cannot_log_in_returns_none(emulator, hem_playbook):
    """Factory-fresh (and then with the clock unset): the status only, no login tried, no failure, the result shown
    (on ansible-playbook: shown is the token guard's choice)."""
    for emu in (emulator(), emulator(passphrase=PASSPHRASE, rtc_set=False)):
        res, sent = info_play(emu, hem_playbook(emu), passphrase=PASSPHRASE, gather_subset=["status"], return_token=True)
        assert not res.failed and not res.censored, res.msg
        assert sent == [STATUS] and "token" not in res.result


def test_return_token_without_passphrase_fails_before_any_request(emulator):
    emu = emulator(passphrase=PASSPHRASE, rtc_set=True)
    res, sent = info_once(emu, gather_subset=["status"], return_token=True)
    assert res.get("failed") and "option return_token" in res["msg"] and "passphrase" in res["msg"]
    assert sent == []


def test_issuer_ca_path_tells_whether_the_ca_issued_the_served_certificate(emulator, tmp_path):
    from tests.emulator.util import write_ca
    emu = emulator(rtc_set=True)
    other = write_ca(tmp_path, "Another CA", stem="other")[1]
    for path, issued in ((emu.ca_file, True), (other, False)):
        res, sent = info_once(emu, gather_subset=["status", "certificate"], issuer_ca_path=path)
        assert not res.get("failed") and sent == [STATUS], res.get("msg")
        assert res["certificate"]["issued_by_ca"] is issued
    res, dummy = info_once(emu, gather_subset=["status", "certificate"])
    assert "issued_by_ca" not in res["certificate"]


@pytest.mark.parametrize("args, words", [
    ({"gather_subset": ["status", "certificate"], "issuer_ca_path": "/nonexistent/ca.pem"}, ["option issuer_ca_path", "cannot read"]),
    ({"gather_subset": ["status", "certificate"], "issuer_ca": "not a certificate"}, ["option issuer_ca"]),
    ({"gather_subset": ["status"], "issuer_ca_path": "/nonexistent/ca.pem"}, ["issuer_ca_path", "only with certificate in gather_subset"]),
], ids=["unreadable", "not-pem", "no-certificate-subset"])
def test_issuer_ca_problems_fail_before_any_request(emulator, args, words):
    emu = emulator(rtc_set=True)
    res, sent = info_once(emu, **args)
    assert res.get("failed")
    for word in words:
        assert word in res["msg"], res["msg"]
    assert sent == []
