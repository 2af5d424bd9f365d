# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWX / Automation Platform readiness.

- The built collection artifact carries the EE metadata (meta/execution-environment.yml
  and the files it names) and nothing private (no PEM private key, no virtualenv, no
  build output or caches).
- `ansible-builder create` on docs/examples/execution-environment.yml produces a build
  context that installs the artifact; replaying its galaxy and introspection steps
  (what the container build runs) yields the collection's Python requirements.
- docs/awx/credential_type.yml: its injectors are rendered here the way AWX renders them
  (Jinja2 sandbox, missing inputs undefined, missing booleans false, `file` templates
  written to the job's private `env/` directory).
- The site playbook runs through ansible-runner (the executor AWX uses) against emulated
  devices with the connection settings given ONLY as those injected environment
  variables plus the CA file; every host converges and no secret reaches any event.
- Job slicing: the inventory is cut in slices as AWX cuts it, each slice run on its own
  (`--limit`) converges independently, then a full run changes nothing.
"""

from __future__ import annotations

import glob
import json
import os
import re
import secrets
import shlex
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile

import pytest
import yaml
from jinja2 import sandbox

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
CREDENTIAL_TYPE = os.path.join(REPO, "docs", "awx", "credential_type.yml")
EXAMPLE_EE = os.path.join(REPO, "docs", "examples", "execution-environment.yml")

# A real PEM private key block: BEGIN line, optional RFC 1421 headers, base64 body, END line;
# lines end with a newline, or with an escaped one as in a JSON file (emulator --state-dir).
_EOL = r"(?:\r?\n|(?:\\r)?\\n)"
PEM_PRIVATE_KEY = re.compile(
    r"-----BEGIN (?P<kind>[A-Z0-9 ]*)PRIVATE KEY-----" + _EOL +
    r"(?:[A-Za-z-]+: [^\n\\]*" + _EOL + r")*" + _EOL + r"?"
    r"(?:[A-Za-z0-9+/=]{16,}" + _EOL + r")+"
    r"-----END (?P=kind)PRIVATE KEY-----")

# Paths that must never be in the artifact (first path component, or any component for caches).
FORBIDDEN_TOP = {".venv", ".venv-sanity", "build", ".pytest_cache", ".hypothesis", ".ansible", ".git", "tests/output"}
FORBIDDEN_ANY = {"__pycache__", ".pytest_cache", ".hypothesis", ".mypy_cache", ".tox"}


def ee_requirement_names(text=None):
    """Package names of meta/ee-requirements.txt (or of ``text``), lower case, in file order."""
    if text is None:
        with open(os.path.join(REPO, "meta", "ee-requirements.txt")) as f:
            text = f.read()
    return [re.split(r"[<>=!~;\[ ]", line.strip())[0].lower() for line in text.splitlines()
            if line.strip() and not line.startswith("#")]


def _clean_env(**extra):
    """The caller's environment without Ansible or encedo.hem settings (`make` exports ANSIBLE_CONFIG)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "ENCEDO_HEM_"))}
    env.update(extra)
    return env


def _run(argv, cwd=None, env=None, timeout=600):
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, "%s failed (rc=%s):\n%s\n%s" % (
        " ".join(argv), proc.returncode, proc.stdout[-4000:], proc.stderr[-4000:])
    return proc


# ---------------------------------------------------------------------------------------------- artifact


@pytest.fixture(scope="module")
def collection_artifact(tmp_path_factory):
    """`ansible-galaxy collection build` of the working tree (as a user or CI builds it)."""
    out = tmp_path_factory.mktemp("artifact")
    _run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--force", "--output-path", str(out), REPO],
         cwd=str(out), env=_clean_env())
    found = glob.glob(os.path.join(str(out), "encedo-hem-*.tar.gz"))
    assert len(found) == 1, found
    return found[0]


def _members(artifact):
    with tarfile.open(artifact) as tar:
        return list(tar.getmembers())


def test_pem_detector_is_not_fooled():
    """The detector flags a real key block and ignores code that merely names the marker."""
    fake_body = "\n".join(["MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"] * 3)
    assert PEM_PRIVATE_KEY.search("x\n-----BEGIN PRIVATE KEY-----\n%s\n-----END PRIVATE KEY-----\n" % fake_body)
    assert PEM_PRIVATE_KEY.search("-----BEGIN EC PRIVATE KEY-----\n%s\n-----END EC PRIVATE KEY-----" % fake_body)
    as_json = json.dumps({"ca_key": "-----BEGIN PRIVATE KEY-----\n%s\n-----END PRIVATE KEY-----\n" % fake_body})
    assert PEM_PRIVATE_KEY.search(as_json)
    assert not PEM_PRIVATE_KEY.search('MARK = b"-----BEGIN OPENSSH PRIVATE KEY-----"\nEND = b"-----END OPENSSH PRIVATE KEY-----"')
    assert not PEM_PRIVATE_KEY.search("-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n" % fake_body)


def test_artifact_ships_ee_metadata(collection_artifact):
    names = {m.name for m in _members(collection_artifact)}
    for required in ("meta/execution-environment.yml", "meta/ee-requirements.txt", "meta/ee-bindep.txt", "meta/runtime.yml",
                     "MANIFEST.json", "FILES.json"):
        assert required in names, "%s missing from the artifact" % required
    with tarfile.open(collection_artifact) as tar:
        ee = yaml.safe_load(tar.extractfile("meta/execution-environment.yml"))
        deps = ee["dependencies"]
        # The files the EE metadata names are in the artifact, relative to the collection root.
        assert deps["python"] in names and deps["system"] in names
        pip = tar.extractfile(deps["python"]).read().decode()
    reqs = ee_requirement_names(pip)
    assert reqs == ee_requirement_names(), "the artifact's meta/ee-requirements.txt is not the checkout's"
    # the modules' third-party imports (the HTTP transport, certificates and login), and mnemonic for
    # encedo_init's optional master_recovery_phrase
    assert reqs == ["cryptography", "requests", "urllib3", "mnemonic"], reqs
    assert "ansible-core" not in reqs and "ansible" not in reqs, "the EE brings its own ansible-core"
    assert all(not re.search(r"(==|<|~=|!=)", line) for line in pip.splitlines() if not line.startswith("#")), \
        "EE requirements carry floors only (>=), no pins or upper bounds"


def test_artifact_has_no_private_keys_venvs_or_caches(collection_artifact):
    members = _members(collection_artifact)
    bad_paths = []
    for m in members:
        parts = m.name.split("/")
        if parts[0] in FORBIDDEN_TOP or "/".join(parts[:2]) in FORBIDDEN_TOP or FORBIDDEN_ANY & set(parts) \
                or m.name.endswith((".pyc", ".tar.gz")):
            bad_paths.append(m.name)
    roots = sorted({"/".join(name.split("/")[:2]) if name.startswith("tests/") else name.split("/")[0] for name in bad_paths})
    assert not bad_paths, "galaxy.yml build_ignore lets %d paths into the artifact, under: %s" % (len(bad_paths), roots)
    keys = []
    with tarfile.open(collection_artifact) as tar:
        for m in members:
            if not m.isfile():
                continue
            data = tar.extractfile(m).read().decode("latin-1")
            if PEM_PRIVATE_KEY.search(data):
                keys.append(m.name)
    assert not keys, "PEM private keys shipped in the artifact: %s" % keys


def test_build_ignore_leaves_out_ansible_cfg_venvs_and_caches(tmp_path):
    """A checkout in which tests, type checks and `make matrix` have run: the artifact built from
    it holds none of their leftovers, nor the repository's ansible.cfg (aimed at the emulator)."""
    src = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if os.path.isfile(os.path.join(REPO, name)):
            os.makedirs(os.path.dirname(str(src / name)), exist_ok=True)
            shutil.copy(os.path.join(REPO, name), str(src / name))
    assert (src / "ansible.cfg").is_file() and (src / "galaxy.yml").is_file()
    planted = [".coverage", ".coverage.hem0.1234", ".mypy_cache/3.11/x.json", ".pytest_cache/v/cache/lastfailed",
               ".venv-2.17/bin/python", ".venv-floor/pyvenv.cfg", ".venv-importer/pyvenv.cfg", "build/sanity-2.17.log",
               "tests/output/junit.xml", "plugins/modules/__pycache__/encedo_info.cpython-311.pyc", ".tox/log"]
    for name in planted:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text("leftover\n")
    out = tmp_path / "out"
    out.mkdir()
    _run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(out), str(src)],
         cwd=str(out), env=_clean_env())
    (artifact,) = glob.glob(str(out / "encedo-hem-*.tar.gz"))
    names = {m.name for m in _members(artifact)}
    assert "galaxy.yml" not in names and "MANIFEST.json" in names and "plugins/modules/encedo_info.py" in names
    roots = {".coverage", ".coverage.hem0.1234", ".mypy_cache", ".pytest_cache", ".venv-2.17", ".venv-floor", ".venv-importer",
             "build", ".tox", "ansible.cfg"}
    leaked = sorted(n for n in names if n.split("/")[0] in roots or n.startswith("tests/output") or "__pycache__" in n.split("/"))
    assert not leaked, "galaxy.yml build_ignore lets these into the artifact: %s" % leaked


# ---------------------------------------------------------------------------------------------- ansible-builder


def test_builder_context_installs_collection_and_lists_its_python_requirements(collection_artifact, tmp_path):
    """`ansible-builder create` on the documented example, then the build's galaxy and
    introspection steps replayed outside a container (no container engine here)."""
    ee_dir = tmp_path / "ee"
    ee_dir.mkdir()
    # Exactly the steps docs/examples/execution-environment.yml tells the user to take.
    shutil.copy(EXAMPLE_EE, ee_dir / "execution-environment.yml")
    shutil.copy(collection_artifact, ee_dir / "encedo-hem.tar.gz")
    ctx = tmp_path / "context"
    _run([os.path.join(BIN, "ansible-builder"), "create", "-f", str(ee_dir / "execution-environment.yml"),
          "--context", str(ctx), "--output-filename", "Containerfile"])

    build = ctx / "_build"
    containerfile = (ctx / "Containerfile").read_text()
    assert (build / "collections" / "encedo-hem.tar.gz").is_file(), "the artifact is not in the build context"
    galaxy_reqs = yaml.safe_load((build / "requirements.yml").read_text())
    file_reqs = [c for c in galaxy_reqs["collections"] if isinstance(c, dict) and c.get("type") == "file"]
    assert [c["name"] for c in file_reqs] == ["collections/encedo-hem.tar.gz"]
    # Both collections: this one (the artifact) and community.crypto for the role's TLS step.
    names = sorted(c["name"] if isinstance(c, dict) else c for c in galaxy_reqs["collections"])
    assert names == ["collections/encedo-hem.tar.gz", "community.crypto"], names
    assert "COPY _build /build" in containerfile and "WORKDIR /build" in containerfile
    assert "ansible-galaxy collection install" in containerfile
    introspect = [line for line in containerfile.splitlines() if "introspect.py introspect" in line]
    assert len(introspect) == 1, containerfile

    # Galaxy stage: `ansible-galaxy collection install -r requirements.yml` in /build (= _build).
    # Only the local artifact is installed: other entries would need Galaxy, which the build has.
    coll_root = tmp_path / "usr-share-ansible-collections"
    only_file = tmp_path / "requirements-file-only.yml"
    only_file.write_text(yaml.safe_dump({"collections": file_reqs}))
    _run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--force", "-r", str(only_file), "-p", str(coll_root)],
         cwd=str(build), env=_clean_env(ANSIBLE_GALAXY_DISABLE_GPG_VERIFY="1"))
    assert (coll_root / "ansible_collections" / "encedo" / "hem" / "meta" / "execution-environment.yml").is_file()

    # Builder stage: the context's own introspect command, run on the installed collections.
    argv = shlex.split(introspect[0][len("RUN "):])
    assert argv[0] == "$PYCMD" and argv[1] == "/output/scripts/introspect.py", argv
    out_dir = tmp_path / "src"
    argv = [sys.executable, str(build / "scripts" / "introspect.py")] + [
        a.replace("/tmp/src/", str(out_dir) + "/") for a in argv[2:]] + [str(coll_root)]
    proc = _run(argv, cwd=str(build))
    written = (out_dir / "requirements.txt").read_text().splitlines()
    # Exactly the Python dependencies meta/ee-requirements.txt declares, with their floors.
    from_us = sorted(line.split("#")[0].strip() for line in written if line.endswith("# from collection encedo.hem"))
    with open(os.path.join(REPO, "meta", "ee-requirements.txt")) as f:
        declared = sorted(line.strip() for line in f if line.strip() and not line.startswith("#"))
    assert from_us == declared, proc.stdout
    assert sorted(re.split(r"[<>=!~;\[ ]", r)[0].lower() for r in from_us) == sorted(ee_requirement_names())
    assert not any(line.split()[0].lower() in ("ansible-core", "ansible") for line in written)


# ---------------------------------------------------------------------------------------------- credential type


def awx_inject(credential_type, inputs, private_data_dir, kind="env"):
    """Render a custom credential type's injectors as AWX does (CredentialType.inject_credential):

    the template namespace holds the inputs that are set and non-empty, booleans never set
    are false, each `file` template is rendered into a fresh file under
    `<private_data_dir>/env/` whose path is `tower.filename.<label>`, then every `env`
    template is rendered. Returns the injected environment (dict).
    """
    class Namespace:
        pass

    tower = Namespace()
    namespace = {"tower": tower}
    for field in credential_type["inputs"]["fields"]:
        fid = field["id"]
        if fid in inputs:
            value = inputs[fid]
            if isinstance(value, bool) or len(value):
                namespace[fid] = value
        elif field["type"] == "boolean":
            namespace[fid] = False
    jinja = sandbox.ImmutableSandboxedEnvironment()
    env_dir = os.path.join(private_data_dir, "env")
    os.makedirs(env_dir, exist_ok=True)
    for label, template in credential_type["injectors"].get("file", {}).items():
        data = jinja.from_string(template).render(**namespace)
        fd, path = tempfile.mkstemp(dir=env_dir)
        with os.fdopen(fd, "w") as handle:
            handle.write(data)
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IWGRP)
        if "." in label:
            if not hasattr(tower, "filename"):
                tower.filename = Namespace()
            setattr(tower.filename, label.split(".", 1)[1], path)
        else:
            tower.filename = path
    return {name: jinja.from_string(template).render(**namespace)
            for name, template in credential_type["injectors"].get(kind, {}).items()}


@pytest.fixture(scope="module")
def credential_type():
    with open(CREDENTIAL_TYPE) as handle:
        return yaml.safe_load(handle)


def test_credential_type_shape(credential_type):
    fields = {f["id"]: f for f in credential_type["inputs"]["fields"]}
    assert credential_type["kind"] == "cloud"
    assert fields["passphrase"].get("secret") is True
    assert fields["ca_bundle"].get("multiline") is True
    assert {f["type"] for f in fields.values()} <= {"string", "boolean"}
    # The keys AWX's credential type schema accepts (CredentialTypeInputField / InjectorField).
    allowed = {"id", "label", "type", "help_text", "secret", "multiline", "format", "choices", "ask_at_runtime", "default"}
    assert all(set(f) <= allowed and {"id", "label", "type"} <= set(f) for f in fields.values())
    assert set(credential_type["injectors"]) <= {"file", "env", "extra_vars"}
    assert all(re.fullmatch(r"template(\.[a-zA-Z_][a-zA-Z0-9_]*)?", k) for k in credential_type["injectors"]["file"])
    assert set(credential_type["inputs"]["required"]) <= set(fields)
    assert set(credential_type["injectors"]["env"]) == {
        "ENCEDO_HEM_URL", "ENCEDO_HEM_PASSPHRASE", "ENCEDO_HEM_VALIDATE_CERTS", "ENCEDO_HEM_CA_PATH"}
    # Every env var it injects is one the modules read (their documented fallbacks).
    with open(os.path.join(REPO, "plugins", "doc_fragments", "connection.py")) as handle:
        fragment = handle.read()
    for name in credential_type["injectors"]["env"]:
        assert "E(%s)" % name in fragment, name


def test_credential_type_injects_env_and_ca_file(credential_type, tmp_path):
    ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    env = awx_inject(credential_type, {"url": "https://hem0.example.test", "passphrase": "s3cret pw",
                                       "ca_bundle": ca, "skip_tls_verify": False}, str(tmp_path))
    assert env["ENCEDO_HEM_URL"] == "https://hem0.example.test"
    assert env["ENCEDO_HEM_PASSPHRASE"] == "s3cret pw"
    assert env["ENCEDO_HEM_VALIDATE_CERTS"] == "true"
    path = env["ENCEDO_HEM_CA_PATH"]
    assert os.path.dirname(path) == str(tmp_path / "env")
    with open(path) as handle:
        assert handle.read() == ca
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o007 == 0, "the CA file must not be world-readable"


def test_credential_type_defaults_are_safe(credential_type, tmp_path):
    """Only the passphrase set (as an API-created credential may be): verification stays on,
    no CA path (the modules then use certifi's bundle or the system store), no URL (the inventory gives it)."""
    env = awx_inject(credential_type, {"passphrase": "pw"}, str(tmp_path))
    assert env == {"ENCEDO_HEM_URL": "", "ENCEDO_HEM_PASSPHRASE": "pw", "ENCEDO_HEM_VALIDATE_CERTS": "true",
                   "ENCEDO_HEM_CA_PATH": ""}
    insecure = awx_inject(credential_type, {"passphrase": "pw", "skip_tls_verify": True}, str(tmp_path))
    assert insecure["ENCEDO_HEM_VALIDATE_CERTS"] == "false"


# ---------------------------------------------------------------------------------------------- ansible-runner

# Secrets and bearer tokens must not appear anywhere in a job's artifacts.
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}")


@pytest.fixture(scope="module")
def installed_collection(collection_artifact, tmp_path_factory):
    """The artifact installed as an EE holds it: <root>/ansible_collections/encedo/hem."""
    root = tmp_path_factory.mktemp("ee-collections")
    _run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--force", "--offline", "-p", str(root),
          collection_artifact], cwd=str(root), env=_clean_env(ANSIBLE_GALAXY_DISABLE_GPG_VERIFY="1"))
    path = root / "ansible_collections" / "encedo" / "hem"
    assert (path / "playbooks" / "site.yml").is_file() and (path / "roles" / "device" / "tasks" / "main.yml").is_file()
    return root


class AwxJob:
    """One job as AWX launches it: a private data dir whose env/ holds what the credential
    injected, ansible-runner (the executor AWX uses) running the project's playbook."""

    def __init__(self, workdir, collections_root, inventory, injected_env, limit=None, verbosity=0, name="job"):
        self.pdd = os.path.join(str(workdir), name)
        self.collections_root = str(collections_root)
        self.project = os.path.join(self.collections_root, "ansible_collections", "encedo", "hem")
        self.inventory = inventory
        self.limit = limit
        self.verbosity = verbosity
        os.makedirs(os.path.join(self.pdd, "env"), exist_ok=True)
        self.injected_env = injected_env
        self.rc = None
        self.events = []

    def run(self, timeout=600):
        envvars = dict(self.injected_env)
        envvars["ANSIBLE_COLLECTIONS_PATH"] = self.collections_root
        with open(os.path.join(self.pdd, "env", "envvars"), "w") as handle:
            yaml.safe_dump(envvars, handle)
        # The runner's own environment: nothing of the caller's (no ENCEDO_HEM_*, no ANSIBLE_*).
        home = os.path.join(self.pdd, "home")
        os.makedirs(home, exist_ok=True)
        env = {"PATH": BIN + os.pathsep + "/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8", "TMPDIR": home}
        argv = [os.path.join(BIN, "ansible-runner"), "run", self.pdd, "--ident", "job", "-p", "playbooks/site.yml",
                "--project-dir", self.project, "--inventory", self.inventory, "-q"]
        if self.limit:
            argv += ["--limit", self.limit]
        if self.verbosity:
            argv.append("-" + "v" * self.verbosity)
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        self.rc = proc.returncode
        self.runner_output = proc.stdout + proc.stderr
        events_dir = os.path.join(self.artifacts, "job_events")
        for name in sorted(os.listdir(events_dir), key=lambda n: int(n.split("-", 1)[0])):
            with open(os.path.join(events_dir, name)) as handle:
                self.events.append(json.load(handle))
        return self

    @property
    def artifacts(self):
        return os.path.join(self.pdd, "artifacts", "job")

    @property
    def stdout(self):
        with open(os.path.join(self.artifacts, "stdout")) as handle:
            return handle.read()

    @property
    def stats(self):
        stats = [e["event_data"] for e in self.events if e.get("event") == "playbook_on_stats"]
        assert len(stats) == 1, self.stdout[-3000:]
        return stats[0]

    def host_summary(self):
        """{host: {"ok", "changed", "failures", "dark", "skipped"}} from the stats event."""
        stats = self.stats
        hosts = set(stats.get("processed", {}))
        return {h: {k: stats.get(k, {}).get(h, 0) for k in ("ok", "changed", "failures", "dark", "skipped")} for h in hosts}

    def task_hosts(self):
        return {e["event_data"]["host"] for e in self.events
                if e.get("event", "").startswith("runner_on_") and "host" in e.get("event_data", {})}

    def assert_converged(self, hosts):
        assert self.rc == 0, "job failed (rc=%s):\n%s\n%s" % (self.rc, self.stdout[-6000:], self.runner_output[-2000:])
        with open(os.path.join(self.artifacts, "status")) as handle:
            assert handle.read().strip() == "successful"
        summary = self.host_summary()
        assert set(summary) == set(hosts), "the job ran on %s, expected %s" % (sorted(summary), sorted(hosts))
        for host, counts in summary.items():
            assert counts["failures"] == 0 and counts["dark"] == 0, (host, counts, self.stdout[-4000:])
            assert counts["ok"] > 0, (host, counts)
        return summary

    def command(self):
        """ansible-runner's record of what it started: {"command": argv, "cwd", "env"}."""
        with open(os.path.join(self.artifacts, "command")) as handle:
            return json.load(handle)

    def scan_for_secrets(self, secrets):
        """Every event file, stdout and every other artifact of the job -> list of findings.

        Skipped: `command`, ansible-runner's record of the environment it was given (the
        injected variables themselves; AWX keeps only a masked copy and deletes the private
        data dir), checked separately by the caller.
        """
        findings = []
        scanned = 0
        for dirpath, _dirs, files in os.walk(self.artifacts):
            for name in files:
                path = os.path.join(dirpath, name)
                if path == os.path.join(self.artifacts, "command"):
                    continue
                scanned += 1
                with open(path, "rb") as handle:
                    text = handle.read().decode("utf-8", "replace")
                for secret in secrets:
                    if secret in text:
                        findings.append("%s: a secret" % os.path.relpath(path, self.pdd))
                if JWT.search(text):
                    findings.append("%s: a JWT (bearer or login token)" % os.path.relpath(path, self.pdd))
                if re.search(r"Bearer\s+[A-Za-z0-9]", text):
                    findings.append("%s: an Authorization header" % os.path.relpath(path, self.pdd))
        assert scanned > len(self.events), "the job's events were not all scanned"
        return findings


def _write_inventory(path, emu, hosts_vars):
    """A fleet inventory with NO connection secret: only where each device is and what to apply."""
    hosts = {}
    for i, extra in hosts_vars.items():
        hostvars = {
            "encedo_hem_backend_url": emu.backend_url,
            "encedo_hem_attestation_trust_anchor_path": emu.custody_ca_file,
            "encedo_hem_config": {"user": "awx-hem%d" % i, "dnsd": False},
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        }
        hostvars.update(extra)
        hosts["hem%d" % i] = hostvars
    with open(path, "w") as handle:
        yaml.safe_dump({"all": {"children": {"hem": {"hosts": hosts}}}}, handle, sort_keys=True)
    return str(path)


def _login_posts(entries):
    return [e for e in entries if e["method"] == "POST" and e["path"].startswith("/api/auth/token")]


def _write_posts(entries):
    return [e for e in entries if e["method"] == "POST" and not e["path"].startswith("/api/auth/token")]


def _passphrase():
    return "awx-" + secrets.token_urlsafe(12)


def test_site_playbook_through_ansible_runner_with_injected_credentials(
        emulator, installed_collection, credential_type, tmp_path):
    passphrase = _passphrase()
    emu = emulator(devices=3, passphrase=passphrase, rtc_set=False, auth_delay=0.0)
    with open(emu.ca_file) as handle:
        ca_bundle = handle.read()
    # The credential as a user fills it in for this job template. hem0 and hem1 have their
    # URL in the inventory (a fleet); hem2 has none and is the device of the credential's
    # URL (as in a single-device job template): ENCEDO_HEM_URL is its only address.
    injected = awx_inject(credential_type, {"url": emu.url(2), "passphrase": passphrase, "ca_bundle": ca_bundle},
                          str(tmp_path / "converge"))
    inventory = _write_inventory(tmp_path / "inventory.yml", emu, {
        0: {"encedo_hem_url": emu.url(0)}, 1: {"encedo_hem_url": emu.url(1)}, 2: {}})
    with open(inventory) as handle:
        text = handle.read()
    assert passphrase not in text and "ca_path" not in text and "validate_certs" not in text
    hosts = ["hem0", "hem1", "hem2"]

    # Converge at AWX's "3 (Debug)" verbosity: even then nothing secret may reach an event.
    job = AwxJob(tmp_path, installed_collection, inventory, injected, verbosity=3, name="converge").run()
    summary = job.assert_converged(hosts)
    assert all(summary[h]["changed"] > 0 for h in hosts), summary
    for i in range(3):
        state = emu.state(i)
        assert state["rtc_set"] and state["config"]["user"] == "awx-hem%d" % i and state["config"]["dnsd"] is False, state
    # The role ran from the installed artifact, as inside an execution environment.
    paths = {e.get("event_data", {}).get("task_path") for e in job.events} - {None}
    assert paths and all(p.startswith(str(installed_collection)) for p in paths), sorted(paths)[:3]
    assert job.scan_for_secrets([passphrase]) == []
    # The passphrase reached ansible-playbook only through the injected environment.
    record = job.command()
    assert record["env"]["ENCEDO_HEM_PASSPHRASE"] == passphrase and passphrase not in " ".join(record["command"])
    assert not any(k.startswith("ENCEDO_HEM_") and k not in injected for k in record["env"])

    # A second job is a no-op: nothing changed, no device written to, one login per device.
    for i in range(3):
        emu.clear_log(i)
    again = AwxJob(tmp_path, installed_collection, inventory,
                   awx_inject(credential_type, {"url": emu.url(2), "passphrase": passphrase, "ca_bundle": ca_bundle},
                              str(tmp_path / "noop")), name="noop").run()
    summary = again.assert_converged(hosts)
    assert all(summary[h]["changed"] == 0 for h in hosts), summary
    for i in range(3):
        log = emu.log(i)
        assert _write_posts(log) == [] and len(_login_posts(log)) == 1, (i, log)
    assert again.scan_for_secrets([passphrase]) == []


def awx_slices(hosts, count):
    """AWX job slicing: hosts ordered by name, slice k (1-based) gets hosts[k-1::count]."""
    ordered = sorted(hosts)
    return [ordered[k::count] for k in range(count)]


def test_job_slices_converge_independently(emulator, installed_collection, credential_type, tmp_path):
    passphrase = _passphrase()
    emu = emulator(devices=4, passphrase=passphrase, rtc_set=False, auth_delay=0.0)
    with open(emu.ca_file) as handle:
        ca_bundle = handle.read()
    inventory = _write_inventory(tmp_path / "inventory.yml", emu, {i: {"encedo_hem_url": emu.url(i)} for i in range(4)})
    index = {"hem%d" % i: i for i in range(4)}
    slices = awx_slices(index, 2)
    assert slices == [["hem0", "hem2"], ["hem1", "hem3"]]

    for number, members in enumerate(slices, 1):
        for i in range(4):
            emu.clear_log(i)
        others = [h for h in index if h not in members]
        before = {h: emu.state(index[h])["config"] for h in others}
        # Each slice is its own job (AWX may run it on another node): own private data dir,
        # own credential injection, the same inventory cut down with --limit.
        injected = awx_inject(credential_type, {"passphrase": passphrase, "ca_bundle": ca_bundle},
                              str(tmp_path / ("slice%d" % number)))
        job = AwxJob(tmp_path, installed_collection, inventory, injected, limit=",".join(members),
                     name="slice%d" % number).run()
        summary = job.assert_converged(members)
        assert all(summary[h]["changed"] > 0 for h in members), summary
        assert job.task_hosts() == set(members)
        for h in members:
            assert emu.state(index[h])["config"]["user"] == "awx-%s" % h
        # The other slice's devices saw no request at all and kept their state.
        for h in others:
            assert emu.log(index[h]) == [], (number, h)
            assert emu.state(index[h])["config"] == before[h]
        assert job.scan_for_secrets([passphrase]) == []

    # The whole inventory afterwards: nothing left to do anywhere.
    for i in range(4):
        emu.clear_log(i)
    injected = awx_inject(credential_type, {"passphrase": passphrase, "ca_bundle": ca_bundle}, str(tmp_path / "full"))
    full = AwxJob(tmp_path, installed_collection, inventory, injected, name="full").run()
    summary = full.assert_converged(list(index))
    assert all(counts["changed"] == 0 for counts in summary.values()), summary
    for i in range(4):
        assert _write_posts(emu.log(i)) == [], i


# ---------------------------------------------------------------------------------------------- release pieces


def _role_options():
    with open(os.path.join(REPO, "roles", "device", "meta", "argument_specs.yml")) as handle:
        return yaml.safe_load(handle)["argument_specs"]["variables"]["options"]


@pytest.mark.parametrize("name, variable, secret_inputs", [
    ("credential_type_master.yml", "encedo_hem_master_passphrase", {"master_passphrase": "pw-master-1"}),
    ("credential_type_tls_ca.yml", "encedo_hem_tls_issuer_key_passphrase", {"ca_key": "KEY-PEM", "ca_key_passphrase": "pw-ca"}),
])
def test_secret_credential_types_inject_role_variables(name, variable, secret_inputs, tmp_path):
    """The credential types for the master passphrase and the TLS CA key: every input is secret and
    required where the type is useless without it; they inject only role variables, rendered as AWX renders them."""
    with open(os.path.join(REPO, "docs", "awx", name)) as handle:
        ctype = yaml.safe_load(handle)
    assert set(ctype) == {"name", "description", "kind", "inputs", "injectors"}
    fields = {f["id"]: f for f in ctype["inputs"]["fields"]}
    assert all(f.get("secret") is True for f in fields.values()), "every input of %s must be secret" % name
    assert ctype["inputs"]["required"] and set(ctype["inputs"]["required"]) <= set(fields)
    assert set(ctype["injectors"]) <= {"extra_vars", "file"} and "env" not in ctype["injectors"]
    options = _role_options()
    assert set(ctype["injectors"]["extra_vars"]) <= set(options), "injects variables the role does not take"
    extra = awx_inject(ctype, secret_inputs, str(tmp_path), kind="extra_vars")
    assert extra[variable] == list(secret_inputs.values())[-1]
    assert options[variable].get("no_log") is True, "%s carries a secret: the role must declare it no_log" % variable
    if "ca_key" in secret_inputs:
        key_path = extra["encedo_hem_tls_issuer_key_path"]
        assert key_path.startswith(str(tmp_path / "env") + os.sep) and open(key_path).read() == "KEY-PEM"
        assert not os.stat(key_path).st_mode & 0o007, "the CA key file is readable by others"
        # Without the optional key passphrase the role gets "", which it treats as unset (default(omit, true)).
        assert awx_inject(ctype, {"ca_key": "KEY-PEM"}, str(tmp_path), kind="extra_vars")[variable] == ""


def test_survey_example_matches_the_role_argument_spec():
    """docs/examples/job_template_survey.json: AWX survey fields, variables the role (or site.yml) takes,
    answer types the role's argument spec accepts, the role's defaults, and no secrets (credentials carry those)."""
    with open(os.path.join(REPO, "docs", "examples", "job_template_survey.json")) as handle:
        survey = json.load(handle)
    assert set(survey) == {"name", "description", "spec"} and survey["spec"]
    options = _role_options()
    with open(os.path.join(REPO, "playbooks", "site.yml")) as handle:
        site = handle.read()
    variables = [q["variable"] for q in survey["spec"]]
    assert len(variables) == len(set(variables)), "a variable asked twice"
    kinds = {"text": ("str", "path"), "integer": ("int",), "multiplechoice": ("str", "bool")}
    for q in survey["spec"]:
        assert {"question_name", "question_description", "variable", "type", "required", "default"} <= set(q), q
        assert q["type"] in kinds, "%s: survey type %s not used here" % (q["variable"], q["type"])
        if q["variable"] == "encedo_hem_hosts":  # site.yml's own variable, not the role's
            assert "encedo_hem_hosts | default('all')" in site and q["default"] == "all"
            continue
        assert q["variable"] in options, "%s is not a variable of encedo.hem.device" % q["variable"]
        option = options[q["variable"]]
        assert not option.get("no_log"), "%s is a secret: it belongs in a credential, not a survey" % q["variable"]
        assert option["type"] in kinds[q["type"]], (q["variable"], option["type"], q["type"])
        if option["type"] == "bool":
            assert sorted(q["choices"]) == ["false", "true"]
            assert q["default"] == str(option.get("default")).lower()
        else:
            assert q["default"] == option.get("default"), "%s: survey default %r, role default %r" % (
                q["variable"], q["default"], option.get("default"))
        if q["type"] == "integer":
            assert q["min"] <= q["default"] <= q["max"]


def test_project_collections_requirements_example():
    """docs/examples/collections/requirements.yml (an AWX project's collections/requirements.yml)
    installs this collection within its major version and community.crypto at the floor the EE uses."""
    with open(os.path.join(REPO, "docs", "examples", "collections", "requirements.yml")) as handle:
        reqs = {c["name"]: c.get("version") for c in yaml.safe_load(handle)["collections"]}
    with open(os.path.join(REPO, "galaxy.yml")) as handle:
        version = yaml.safe_load(handle)["version"]
    major = int(version.split(".")[0])
    assert reqs["encedo.hem"] == ">=%d.0.0,<%d.0.0" % (major, major + 1)
    with open(EXAMPLE_EE) as handle:
        ee = yaml.safe_load(handle)
    ee_crypto = [c for c in ee["dependencies"]["galaxy"]["collections"] if c["name"] == "community.crypto"]
    assert len(ee_crypto) == 1 and reqs["community.crypto"] == ee_crypto[0]["version"]
    assert set(reqs) == {"encedo.hem", "community.crypto"}
