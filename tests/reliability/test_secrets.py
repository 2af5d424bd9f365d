# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secrets: nothing secret leaks, TLS verification cannot be weakened, nothing destroys by default.

1. Every module and the role run at -vvvv with --diff, with passphrases, a master
   passphrase, a rotated passphrase, a wrong passphrase, a TLS CA key passphrase, an
   encrypted key import and bearer tokens (one of them renewed by a task after a reboot killed
   the first) all known to the test. None of them may appear
   in stdout, stderr, the recorded JSON results (diffs included), the emulator's request
   log or its stdout/stderr. The same playbook runs through ansible-runner (the executor
   AWX uses) on twin devices, and every event and artifact is scanned the same way.
2. TLS verification is on by default in every module and in the role: without ca_path a
   device signed by a private CA is refused even when REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE
   and SSL_CERT_FILE trust it; an unrelated ca_path is refused the same way; with
   validate_certs false each module warns; a correct ca_path works whatever those
   variables point at. (encedo_info is proven by tests/integration/test_info_login.py.) A
   module's probe runs in-process with those variables in its environment (what decides is
   the module's own HTTP client); the role's runs in ansible-playbook.
3. encedo_factory_reset and allow_reformat cannot be triggered by defaults or check mode.
"""

from __future__ import annotations

import base64
import json
import os
import re
import functools
import secrets
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.integration.helpers.inprocess import ChildJobs, ModuleRunner
from tests.integration.helpers.playbook import REPO_ROOT, VENV_BIN
from tests.reliability.support import (
    ATTESTATION_PATH, Background, FleetRunner, Step, env_without_ca_overrides, host_failures, issue, make_ca, merge_runs, pem, run_steps,
    start_emu, writes,
)

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{10,}")


def _secret(label):
    return "%s-%s" % (label, secrets.token_urlsafe(12))


SECRETS = {name: _secret(name.replace("_", "-")) for name in (
    "pw_user", "pw_master", "pw_new", "pw_wrong", "pw_init", "pw_init_master", "pw_role", "pw_role_master", "pw_cakey")}

CONN = {"url": "{{ hem_url }}", "ca_path": "{{ hem_ca_path }}"}


def secrets_playbook():
    """Every module, their failure paths, and the role: the play a user could run at -vvvv."""
    modules = {
        "name": "Every module with known secrets", "hosts": "modules", "gather_facts": False,
        "module_defaults": {"group/encedo.hem.hem": CONN},
        "tasks": [
            {"name": "Log in", "encedo.hem.encedo_login": {"passphrase": "{{ pw_user }}"}, "register": "login"},
            {"name": "Keep the token for the test", "no_log": True,
             "ansible.builtin.copy": {"content": "{{ login.token }}", "dest": "{{ token_file }}", "mode": "0600"}},
            {"name": "Read facts with the token", "encedo.hem.encedo_info": {"token": "{{ login.token }}"}},
            {"name": "Configure with the passphrase", "diff": True,
             "encedo.hem.encedo_config": {"passphrase": "{{ pw_user }}", "user": "Secrets test", "email": "ops@example.com"}},
            {"name": "Configure with the token", "diff": True, "encedo.hem.encedo_config": {"token": "{{ login.token }}", "ctx": 7}},
            {"name": "Rotate the passphrase", "diff": True,
             "encedo.hem.encedo_config": {"passphrase": "{{ pw_user }}", "new_passphrase": "{{ pw_new }}"}},
            {"name": "Rotate again (already rotated)", "diff": True,
             "encedo.hem.encedo_config": {"passphrase": "{{ pw_user }}", "new_passphrase": "{{ pw_new }}"}},
            {"name": "A wrong passphrase", "block": [
                {"name": "Wrong login", "encedo.hem.encedo_login": {"passphrase": "{{ pw_wrong }}"}},
                {"name": "Wrong login accepted", "ansible.builtin.fail": {"msg": "a wrong passphrase logged in"}}],
             "rescue": [{"name": "Wrong login refused", "ansible.builtin.assert": {
                 "that": ["ansible_failed_task.name == 'Wrong login'", "'passphrase is wrong' in ansible_failed_result.msg"]}}]},
            {"name": "Verify the attestation with the token",
             "encedo.hem.encedo_attestation": {"token": "{{ login.token }}", "trust_anchor_path": "{{ hem_custody_ca_path }}"}},
            {"name": "Have the device generate a CSR", "diff": True,
             "encedo.hem.encedo_tls": {"passphrase": "{{ pw_new }}", "state": "csr", "force": True, "csr_path": "{{ csr_file }}"}},
            {"name": "A key import the device refuses", "block": [
                {"name": "Import a key", "encedo.hem.encedo_tls": {
                    "passphrase": "{{ pw_new }}", "certificate": "{{ tls_cert }}", "key_import": {"emp": "{{ emp }}", "key": "{{ key_secret }}"}}},
                {"name": "Key import accepted", "ansible.builtin.fail": {"msg": "the device accepted a key it cannot decrypt"}}],
             "rescue": [{"name": "Key import refused", "ansible.builtin.assert": {"that": ["ansible_failed_task.name == 'Import a key'"]}}]},
            {"name": "Check in", "encedo.hem.encedo_checkin": {"backend_url": "{{ hem_backend_url }}"}},
            {"name": "Reboot with the token", "encedo.hem.encedo_reboot": {
                "token": "{{ login.token }}", "backend_url": "{{ hem_backend_url }}", "delay": 0, "poll_interval": 0.2, "reboot_timeout": 30}},
            {"name": "A token from before the reboot", "block": [
                {"name": "Stale token", "encedo.hem.encedo_info": {"token": "{{ login.token }}"}},
                {"name": "Stale token accepted", "ansible.builtin.fail": {"msg": "a token survived the reboot"}}],
             "rescue": [{"name": "Stale token refused", "ansible.builtin.assert": {"that": ["ansible_failed_task.name == 'Stale token'"]}}]},
            {"name": "Renew the stale token with the passphrase", "diff": True, "register": "renewal",
             "encedo.hem.encedo_config": {"token": "{{ login.token }}", "passphrase": "{{ pw_new }}", "ctx": 8}},
            {"name": "Keep the renewed token for the test", "no_log": True,
             "ansible.builtin.copy": {"content": "{{ renewal.token }}", "dest": "{{ renewed_file }}", "mode": "0600"}},
            {"name": "Use the renewed token", "encedo.hem.encedo_info": {"token": "{{ renewal.token }}"}},
            {"name": "Wipe", "diff": True,
             "encedo.hem.encedo_factory_reset": {"passphrase": "{{ pw_new }}", "confirm_devid": "{{ hem_devid }}", "wait_timeout": 30,
                                                 "factory_url": "{{ hem_url }}", "factory_ca_path": "{{ hem_factory_ca_path }}"}},
        ],
    }
    fresh = {
        "name": "A factory-fresh device", "hosts": "fresh", "gather_facts": False,
        "module_defaults": {"group/encedo.hem.hem": CONN},
        "tasks": [
            {"name": "Provision the secure element", "diff": True, "encedo.hem.encedo_attestation": {
                "state": "provisioned", "certificate": "{{ att_cert }}", "trust_anchor": "{{ att_anchor }}"}},
            {"name": "Personalise", "diff": True, "encedo.hem.encedo_init": {
                "passphrase": "{{ pw_init }}", "master_passphrase": "{{ pw_init_master }}", "user": "Secrets", "hostname": "hem.example.test"}},
            {"name": "Personalise again (checks the passphrase)", "encedo.hem.encedo_init": {
                "passphrase": "{{ pw_init }}", "master_passphrase": "{{ pw_init_master }}", "user": "Secrets", "hostname": "hem.example.test"}},
        ],
    }
    role = {
        "name": "The role", "hosts": "role", "gather_facts": False,
        "roles": [{"role": "encedo.hem.device"}],
    }
    return [modules, fresh, role]


class Material:
    """Emulators (a twin device for each run), certificates and keys made at test time."""

    def __init__(self, tmp_path_factory):
        self.tmp = tmp_path_factory.mktemp("secrets")
        self.plain = start_emu(tmp_path_factory, "secrets-personalised", devices=2, passphrase=SECRETS["pw_user"],
                               master_passphrase=SECRETS["pw_master"], rtc_set=True)
        self.fresh = start_emu(tmp_path_factory, "secrets-fresh-se", devices=2, se_fresh=True, rtc_set=True)
        self.role = start_emu(tmp_path_factory, "secrets-role", devices=2)
        self.emus = [self.plain, self.fresh, self.role]
        self.ca_key, self.ca_cert, self.ca_pem, _unused = make_ca("Secrets TLS CA")
        _key, _cert, role_ca_pem, encrypted = make_ca("Secrets role CA", key_passphrase=SECRETS["pw_cakey"])
        self.role_ca = self.tmp / "role-ca.pem"
        self.role_ca.write_text(role_ca_pem)
        self.role_ca_key = self.tmp / "role-ca.key"
        self.role_ca_key.write_text(encrypted)
        self.role_ca_key.chmod(0o600)
        self.role_trust = self.tmp / "role-trust.pem"
        self.role_trust.write_text(Path(self.role.ca_file).read_text() + role_ca_pem)
        self.custody_key, self.custody_cert, self.custody_pem, _unused = make_ca("Secrets custody CA")
        key = ec.generate_private_key(ec.SECP256R1())
        self.tls_cert = pem(issue(self.ca_key, self.ca_cert, key.public_key(), "hem0.emulator.test", dns=["hem0.emulator.test"],
                                  ips=["127.0.0.1"]))
        self.emp = base64.b64encode(key.public_key().public_bytes(serialization.Encoding.X962,
                                                                  serialization.PublicFormat.UncompressedPoint)).decode()
        self.key_secrets = []
        self.token_files = []

    def stop(self):
        for emu in self.emus:
            emu.stop()

    def hosts(self, twin):
        """The inventory of one run: device `twin` (0 or 1) of each emulator."""
        key_secret = base64.b64encode(secrets.token_bytes(16)).decode() + "." + base64.b64encode(secrets.token_bytes(64)).decode()
        assert len(key_secret) == 113
        self.key_secrets.append(key_secret)
        # (the role keeps no token: its modules log in with the passphrase; test_role.py scans its output for any JWT)
        tokens = [str(self.tmp / ("token-%d-%s" % (twin, h))) for h in ("modules", "renewed")]
        self.token_files += tokens
        answer = self.fresh.hem(twin).get(ATTESTATION_PATH, auth=False)
        assert answer.status == 200, answer
        se_key = serialization.load_der_public_key(base64.b64decode(answer.json["key"]))
        att_cert = pem(issue(self.custody_key, self.custody_cert, se_key, "#" + self.fresh.device(twin)["genuine_id"]))
        self.fresh.clear_log(twin)
        common = dict(SECRETS)
        modules = dict(common, token_file=tokens[0], renewed_file=tokens[1], csr_file=str(self.tmp / ("csr-%d.pem" % twin)), tls_cert=self.tls_cert,
                       emp=self.emp, key_secret=key_secret)
        fresh = dict(common, att_cert=att_cert, att_anchor=self.custody_pem)
        role = dict(common, **{
            "encedo_hem_url": "{{ hem_url }}", "encedo_hem_ca_path": str(self.role_trust),
            "encedo_hem_passphrase": SECRETS["pw_role"], "encedo_hem_master_passphrase": SECRETS["pw_role_master"],
            "encedo_hem_backend_url": "{{ hem_backend_url }}", "encedo_hem_reboot_timeout": 60,
            "encedo_hem_init": {"ip": "127.0.0.1/8", "hostname": "hem%d.emulator.test" % twin},
            "encedo_hem_config": {"user": "Secrets role", "http_option_hsts": True},
            "encedo_hem_attestation_trust_anchor_path": "{{ hem_custody_ca_path }}",
            "encedo_hem_tls_issuer_cert_path": str(self.role_ca), "encedo_hem_tls_issuer_key_path": str(self.role_ca_key),
            "encedo_hem_tls_issuer_key_passphrase": SECRETS["pw_cakey"],
        })
        return {"modules": (self.plain, twin, modules), "fresh": (self.fresh, twin, fresh), "role": (self.role, twin, role)}

    def all_secrets(self):
        tokens = [Path(p).read_text() for p in self.token_files if os.path.exists(p)]
        return list(SECRETS.values()) + self.key_secrets + tokens


def run_playbook(material, playbook):
    runner = FleetRunner(material.tmp / "playbook-run", material.hosts(0))
    return runner.run_playbook(playbook, verbosity=4, diff=True, env=env_without_ca_overrides(), timeout=600)


class RunnerJob:
    """The same playbook through ansible-runner: its events and artifacts."""

    def __init__(self, material, playbook):
        self.pdd = material.tmp / "runner"
        project = self.pdd / "project"
        project.mkdir(parents=True)
        (project / "secrets.yml").write_text(yaml.safe_dump(playbook, sort_keys=False))
        runner = FleetRunner(material.tmp / "runner-inventory", material.hosts(1))
        self.inventory = runner.inventory
        self.events = []
        self.rc = None
        self.output = ""

    def run(self):
        home = self.pdd / "home"
        home.mkdir()
        env_dir = self.pdd / "env"
        env_dir.mkdir()
        (env_dir / "envvars").write_text(yaml.safe_dump({"ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "ANSIBLE_HOME": str(home)}))
        env = {"PATH": str(VENV_BIN) + os.pathsep + "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", "TMPDIR": str(home)}
        argv = [str(VENV_BIN / "ansible-runner"), "run", str(self.pdd), "--ident", "job", "-p", "secrets.yml",
                "--inventory", self.inventory, "--cmdline=--diff", "-q", "-vvvv"]
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, check=False, cwd=str(REPO_ROOT))
        self.rc = proc.returncode
        self.output = proc.stdout + proc.stderr
        events = self.artifacts / "job_events"
        for name in sorted(os.listdir(events), key=lambda n: int(n.split("-", 1)[0])):
            self.events.append(json.loads((events / name).read_text()))
        return self

    @property
    def artifacts(self):
        return self.pdd / "artifacts" / "job"

    def texts(self):
        """(where, text) of every artifact file and every event."""
        out = [("runner output", self.output)]
        for dirpath, _dirs, files in os.walk(self.artifacts):
            for name in files:
                path = Path(dirpath) / name
                out.append((str(path.relative_to(self.pdd)), path.read_bytes().decode("utf-8", "replace")))
        for event in self.events:
            out.append(("event %s %s" % (event.get("counter"), event.get("event")), json.dumps(event)))
        return out

    def failures(self):
        return [e for e in self.events if e.get("event") == "runner_on_failed" and not e["event_data"].get("ignore_errors")
                and e["event_data"].get("task") not in RESCUED_TASKS]


RESCUED_TASKS = ("Wrong login", "Import a key", "Stale token")


def leaks(texts, secret_values):
    found = []
    for where, text in texts:
        for value in secret_values:
            if value and value in text:
                found.append("%s: a secret (%s...)" % (where, value[:6]))
        match = JWT.search(text)
        if match:
            found.append("%s: a JWT %s..." % (where, match.group(0)[:16]))
        if re.search(r"Bearer\s+[A-Za-z0-9]", text):
            found.append("%s: an Authorization header" % where)
    return found


@pytest.fixture(scope="module")
def secret_runs(tmp_path_factory):
    material = Material(tmp_path_factory)
    try:
        playbook = secrets_playbook()
        job = RunnerJob(material, playbook)
        runner_bg = Background(job.run)
        run = run_playbook(material, playbook)
        job = runner_bg.result()
        yield material, run, job
    finally:
        material.stop()


def test_the_secrets_were_really_used(secret_runs):
    """The scan below is meaningful only if the runs did what they claim."""
    material, run, job = secret_runs
    run.assert_ok()
    assert job.rc == 0, job.output[-3000:]
    assert not job.failures(), [e["event_data"].get("task") for e in job.failures()]
    for path in material.token_files:
        token = Path(path).read_text()
        assert JWT.fullmatch(token), "no bearer token captured in %s" % path
    # the stale token was renewed: one new login, a new token, a hidden result, then used without a login
    for twin in (0, 1):
        first, renewed = (Path(material.tmp / ("token-%d-%s" % (twin, h))).read_text() for h in ("modules", "renewed"))
        assert first != renewed
    renewal = run.results(task="Renew the stale token with the passphrase", host="modules")
    assert [(t.status, t.censored) for t in renewal] == [("ok", True)], renewal
    assert [(t.status, t.censored) for t in run.results(task="Use the renewed token", host="modules")] == [("ok", False)]
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in run.stdout, "-vvvv did not print the module invocations"
    assert "<modules> EXEC" in run.stdout or "ESTABLISH LOCAL CONNECTION" in run.stdout
    assert run.result("Rotate the passphrase", host="modules")["changed"] is True
    assert [t.status for t in run.results(task="Wrong login refused")] == ["ok"]
    assert [t.status for t in run.results(task="Key import refused")] == ["ok"]
    assert run.result("Wipe", host="modules")["changed"] is True
    role_tasks = {t.task for t in run.results(host="role")}
    assert {"Personalise the factory-fresh device", "Upload the certificate (the device serves it after a reboot)",
            "Reboot the device and wait until it is back"} <= role_tasks, sorted(role_tasks)
    for emu in material.emus:
        for twin in (0, 1):
            assert emu.log(twin), "no request reached %s device %d" % (emu.tmp_path, twin)


def test_no_secret_in_ansible_playbook_output(secret_runs):
    material, run, _job = secret_runs
    record = Path(run.command[run.command.index("-i") + 1]).parent
    texts = [("stdout", run.stdout), ("stderr", run.stderr)]
    for path in sorted(record.glob("results-*.jsonl")):
        texts.append((path.name, path.read_text()))
    diffs = [json.dumps(t.result["diff"]) for t in run.tasks if t.result.get("diff")]
    assert len(diffs) >= 4, "the diffs were not recorded"
    texts.append(("diffs", "\n".join(diffs)))
    assert leaks(texts, material.all_secrets()) == []


def test_no_secret_in_ansible_runner_events(secret_runs):
    material, _run, job = secret_runs
    texts = job.texts()
    assert len([t for t in texts if t[0].startswith("event ")]) > 50
    assert leaks(texts, material.all_secrets()) == []


def test_no_secret_in_the_emulator_logs(secret_runs):
    material, _run, _job = secret_runs
    texts = []
    for n, emu in enumerate(material.emus):
        texts.append(("emulator %d output" % n, emu.output))
        for twin in (0, 1):
            texts.append(("emulator %d device %d request log" % (n, twin), json.dumps(emu.log(twin))))
    assert leaks(texts, material.all_secrets()) == []


# ---------------------------------------------------------------------------- TLS verification

# Each module's least intrusive run against a personalised device (check mode for writers).
PROBES = {
    "encedo_login": {"passphrase": "{{ hem_passphrase }}"},
    "encedo_config": {"passphrase": "{{ hem_passphrase }}", "user": "probe", "_check": True},
    "encedo_factory_reset": {"passphrase": "{{ hem_passphrase }}", "confirm_devid": "{{ hem_devid }}", "_check": True},
    "encedo_attestation": {"passphrase": "{{ hem_passphrase }}", "trust_anchor_path": "{{ hem_custody_ca_path }}"},
    "encedo_tls": {"passphrase": "{{ hem_passphrase }}", "state": "csr", "remaining_days": 0, "_check": True},
    "encedo_init": {"passphrase": "{{ hem_passphrase }}", "master_passphrase": "other-master", "user": "u", "hostname": "hem.example.test",
                    "_check": True},
    "encedo_checkin": {"backend_url": "{{ hem_backend_url }}", "_check": True},
    "encedo_reboot": {"backend_url": "{{ hem_backend_url }}", "passphrase": "{{ hem_passphrase }}", "_check": True},
    "role": {"_check": True},
}
# encedo_info: tests/integration/test_info_login.py::test_requests_ca_bundle_cannot_override_the_choice
TLS_CASES = {
    # case: (environment trusts, task ca_path, validate_certs, expected)
    "default": ("emulator", None, None, "refused"),
    "unrelated_ca_path": ("emulator", "unrelated", None, "refused"),
    "insecure": ("unrelated", None, False, "warns"),
    "ca_path": ("unrelated", "emulator", None, "works"),
}
TLS_PAIRS = [(m, c) for m in PROBES for c in TLS_CASES]


def tls_probe(module):
    """The role's probe: its task file (the role runs in ansible-playbook)."""
    block = {"name": module, "block": [{"name": "probe", "ansible.builtin.include_role": {"name": "encedo.hem.device"}}]}
    if PROBES[module].get("_check"):
        block["check_mode"] = True
    return [block]


TLS_PLAY = [{"name": "TLS verification", "hosts": "hem", "gather_facts": False, "strategy": "free",
             "tasks": [{"name": "case", "ansible.builtin.include_tasks": "probe-{{ probe_module }}.yml"}]}]


@pytest.fixture(scope="module")
def tls_runs(tmp_path_factory):
    """Every (module, case) pair on a device of its own. A module's probe runs in-process (its main() over real
    HTTPS, each in a child process, side by side: helpers/inprocess.py) with the environment of the case; the role's
    in one ansible-playbook run per environment, beside them."""
    emu = start_emu(tmp_path_factory, "secrets-tls", devices=len(TLS_PAIRS), passphrase="tls-probe-pass-1", rtc_set=True)
    try:
        unrelated = emu.custody_ca_file          # a real CA file, which did not sign the device certificates
        where = {"emulator": emu.ca_file, "unrelated": unrelated}
        envs, modules, role_hosts, index = {}, {}, {}, {}
        for trusted_by_env in ("emulator", "unrelated"):
            bundle = where[trusted_by_env]
            envs[trusted_by_env] = {"REQUESTS_CA_BUNDLE": bundle, "CURL_CA_BUNDLE": bundle, "SSL_CERT_FILE": bundle, "SSL_CERT_DIR": None}
            role_hosts[trusted_by_env] = {}
        for i, (module, case) in enumerate(TLS_PAIRS):
            env_trust, ca_path, validate, _expected = TLS_CASES[case]
            name = "%s--%s" % (module, case)
            index[name] = i
            if module == "role":
                extra = {"probe_module": module, "encedo_hem_url": "{{ hem_url }}", "encedo_hem_passphrase": "{{ hem_passphrase }}",
                         "encedo_hem_backend_url": "{{ hem_backend_url }}", "encedo_hem_config": {"user": "probe"}}
                if ca_path:
                    extra["encedo_hem_ca_path"] = where[ca_path]
                if validate is not None:
                    extra["encedo_hem_validate_certs"] = validate
                role_hosts[env_trust][name] = (emu, i, extra)
                continue
            args = dict((k, v) for k, v in PROBES[module].items() if not k.startswith("_"))
            args.update(url="{{ hem_url }}", ca_path=where[ca_path] if ca_path else None, validate_certs=validate)
            prepared = ModuleRunner(emu, i, add_passphrase=False).prepare(
                "encedo.hem." + module, args, check=bool(PROBES[module].get("_check")), env=envs[env_trust])
            modules[name] = functools.partial(run_steps, [(Step("probe", module, args), prepared)])
        children = ChildJobs(modules, tmp_path_factory.mktemp("tls-children"))
        jobs = {}
        for trusted_by_env, hosts in role_hosts.items():
            runner = FleetRunner(tmp_path_factory.mktemp("tls-" + trusted_by_env), hosts)
            runner.write_playbook(tls_probe("role"), name="probe-role.yml")
            jobs[trusted_by_env] = Background(runner.run_playbook, TLS_PLAY, env=dict(envs[trusted_by_env], ANSIBLE_FORKS="10"), timeout=600)
        in_process = children.results()
        runs = dict((k, merge_runs(v.result(), in_process)) for k, v in jobs.items())
        logs = {name: emu.log(i) for name, i in index.items()}
        yield runs, logs
    finally:
        emu.stop()


@pytest.mark.parametrize("module,case", TLS_PAIRS, ids=["%s-%s" % p for p in TLS_PAIRS])
def test_tls_verification_cannot_be_weakened(tls_runs, module, case):
    runs, logs = tls_runs
    env_trust, _ca_path, _validate, expected = TLS_CASES[case]
    run = runs[env_trust]
    name = "%s--%s" % (module, case)
    results = run.results(host=name)
    assert results, "the case did not run\n%s" % run.tail()
    failed = host_failures(run, name)
    warnings = [w for t in results for w in (t.result.get("warnings") or [])]
    insecure = [w for w in warnings if "validate_certs is false" in w]
    if expected == "refused":
        assert failed, "%s: the device was trusted without the right ca_path" % name
        msg = failed[0].msg
        assert "ca_path" in msg and re.search(r"CERTIFICATE_VERIFY_FAILED|certificate verify failed|TLS verification of .* failed", msg), msg
        assert logs[name] == [], "%s: requests got through: %s" % (name, logs[name])
    else:
        assert not failed, "%s: %s" % (name, failed[0].msg)
        if module == "encedo_tls":      # a no-op reads the served certificate from the handshake only, no request
            probe = run.results(task="probe", host=name)
            assert len(probe) == 1 and probe[0].result["certificate"]["subject"] == "CN=localhost", probe
        else:
            assert logs[name], "%s: nothing reached the device" % name
        if expected == "warns":
            assert insecure, "%s: validate_certs false did not warn: %s" % (name, warnings)
        else:
            assert not insecure, warnings
    # check mode and probes never write
    assert writes(logs[name]) == [], logs[name]


# ---------------------------------------------------------------------------- nothing destructive by default

def test_factory_reset_and_reformat_need_explicit_options(tmp_path_factory):
    """Check mode predicts but never wipes or reformats; the role never wipes and never reformats unless told."""
    emu = start_emu(tmp_path_factory, "secrets-destructive", devices=3, passphrase="destructive-pass-1", rtc_set=True)
    try:
        devid = emu.device(0)["devid"]
        plays = [{
            "name": "Destructive options in check mode", "hosts": "hem0", "gather_facts": False,
            "module_defaults": {"group/encedo.hem.hem": dict(CONN, passphrase="{{ hem_passphrase }}")},
            "tasks": [
                {"name": "Wipe in check mode", "check_mode": True, "encedo.hem.encedo_factory_reset": {"confirm_devid": devid}},
                {"name": "Reformat in check mode", "check_mode": True,
                 "encedo.hem.encedo_config": {"storage_disk0size": 4096, "allow_reformat": True}},
            ]}, {
            "name": "The role with defaults, and with a disk size but no allow_reformat", "hosts": "hem1:hem2", "gather_facts": False,
            "roles": [{"role": "encedo.hem.device"}]}]
        host_vars = {"encedo_hem_url": "{{ hem_url }}", "encedo_hem_ca_path": "{{ hem_ca_path }}",
                     "encedo_hem_passphrase": "{{ hem_passphrase }}", "encedo_hem_backend_url": "{{ hem_backend_url }}"}
        hosts = {"hem0": (emu, 0, {}), "hem1": (emu, 1, dict(host_vars, encedo_hem_config={"user": "defaults"})),
                 "hem2": (emu, 2, dict(host_vars, encedo_hem_config={"user": "resize", "storage_disk0size": 4096}))}
        runner = FleetRunner(tmp_path_factory.mktemp("destructive"), hosts)
        run = runner.run_playbook(plays, env=env_without_ca_overrides())
        wipe = run.result("Wipe in check mode", host="hem0")
        reformat = run.result("Reformat in check mode", host="hem0")
        assert wipe["changed"] is True and wipe["sent"] == ["wipeout"], wipe             # predicted ...
        assert reformat["changed"] is True and reformat["sent"] == ["storage_disk0size"], reformat
        for i in range(3):
            assert emu.state(i)["personalised"] is True
            keys = [k for e in writes(emu.log(i)) for k in e["keys"]]
            assert "wipeout" not in keys and "storage_disk0size" not in keys, (i, keys)   # ... but never sent
        assert writes(emu.log(0)) == []
        assert emu.state(1)["config"]["user"] == "defaults"                              # the role did run
        failed = host_failures(run, "hem2")
        device_task = "Bring the device to its declared state (status, attestation, configuration, certificate due)"
        assert [t.task for t in failed] == [device_task], run.tail()
        assert "allow_reformat" in failed[0].msg and "nothing was sent" in failed[0].msg
        assert emu.state(2)["config"]["storage_disk0size"] == 8388608     # the factory layout, untouched
    finally:
        emu.stop()
