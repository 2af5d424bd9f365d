# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared helpers of the reliability suite (tests/reliability).

- ``Emu``: the harness emulator that also keeps its stdout and can restart in place (same
  ports, same ``--state-dir``), as a device process that dies and comes back would.
- ``FleetRunner``: one ``ansible-playbook`` inventory over devices of several emulators
  (the integration harness's runner, with hosts named by the test).
- ``Step``, ``run_steps``, ``merge_runs``: module tasks of many hosts run in-process side by side
  (each host in a child process, helpers/inprocess.py ChildJobs), their results read as a
  playbook run's.
- request-log helpers: which requests wrote which fields, how many logins happened.
- a throw-away CA and certificates made at test time (no key is committed).
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.emulator.harness import Emulator, EmulatorError
from tests.emulator_tests.hemclient import Hem
from tests.integration.helpers import PlaybookRunner, ensure_collection_link
from tests.integration.helpers.inprocess import execute
from tests.integration.helpers.playbook import PlaybookRun, TaskResult
from tests.integration.helpers.playbook import device_vars as harness_device_vars
from tests.unit.plugins.modules import replay

TOKEN_PATH = "/api/auth/token"
CONFIG = "/api/system/config"
ATTESTATION_PATH = "/api/system/config/attestation"
# Requests that change a device although they are GETs.
WRITE_GETS = ("/api/system/reboot", "/api/system/shutdown")


# ---------------------------------------------------------------------------- emulator

class Emu(Emulator):
    """The harness emulator, keeping its stdout lines and able to restart on the same ports."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stdout_lines = []

    def start(self, attempts=6):
        # keep every stdout line after READY (the base class reads and drops them)
        lines = self.stdout_lines

        def drain(proc):
            with proc.stdout:
                for line in proc.stdout:
                    lines.append(line.rstrip("\n"))

        self._drain_stdout = drain
        return super().start(attempts)

    def restart_in_place(self, timeout=15.0):
        """Stop the process (SIGTERM) and start it again with the same command line and ports."""
        argv = list(self.command)
        self.stop_keep_tmp()
        self.stdout_lines.append("(restart)")
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._launch(argv)
                return self
            except EmulatorError:  # a port still held for a moment: try again
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    @property
    def output(self):
        """Everything the emulator process printed (stdout and stderr)."""
        return "\n".join(self.stdout_lines) + "\n" + "".join(self.stderr_lines)

    def hem(self, i):
        """An independent test-side client of device i (tests/emulator_tests/hemclient.py)."""
        return Hem(self.url(i), self.ca_file)


def start_emu(tmp_path_factory, name, **kwargs):
    kwargs.setdefault("auth_delay", 0.0)
    kwargs.setdefault("control", True)
    emu = Emu(tmp_path=str(tmp_path_factory.mktemp(name)), **kwargs)
    emu.start()
    return emu


# ---------------------------------------------------------------------------- ansible-playbook over several emulators

def both_cas(emu):
    """A CA file trusting the device before and after a wipe (the tests' CA and the factory CA): for a task run
    twice on a device that the first run wiped."""
    path = Path(emu.ca_file).with_name("tests-and-factory-ca.pem")
    if not path.exists():
        path.write_text(Path(emu.ca_file).read_text() + Path(emu.factory_ca_file).read_text())
    return str(path)


def device_vars(emu, i):
    """The host variables of the integration harness for device i of ``emu``, with the CA file trusting it before
    and after a wipe and its genuine_id."""
    return dict(harness_device_vars(emu, i), hem_both_ca_path=both_cas(emu), hem_genuine_id=emu.device(i).get("genuine_id"),
                ansible_connection="local", ansible_python_interpreter="{{ ansible_playbook_python }}")


class FleetRunner(PlaybookRunner):
    """PlaybookRunner whose inventory is given host by host: ``{name: (emu, index, extra vars)}``."""

    def __init__(self, workdir, hosts, group="hem"):  # pylint: disable=super-init-not-called
        ensure_collection_link()
        self.emulator = None
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.group = group
        self.hosts = sorted(hosts)
        self.inventory = str(self.workdir / ("inventory-%d.yml" % id(self)))
        self._counter = itertools.count(1)
        inventory = {}
        for name, (emu, index, extra) in hosts.items():
            values = device_vars(emu, index)
            values.update(extra or {})
            inventory[name] = values
        Path(self.inventory).write_text(yaml.safe_dump({"all": {"children": {group: {"hosts": inventory}}}}, sort_keys=True))


# ---------------------------------------------------------------------------- in-process module runs

@dataclass
class Step:
    """One module task of a host, run in-process (tests/integration/helpers/inprocess.py): its name, the module, its arguments (``{{ hem_* }}`` are the
    host's variables) and, with ``when``, the key of the previous step's result that must be true for it to run."""
    name: str
    module: str
    args: dict
    when: str | None = None


def run_steps(prepared):
    """A host's module steps (``[(Step, Prepared run), ...]``), in this (child) process: -> [[step name, module,
    result], ...]. A step runs when the one before it succeeded (and, with ``when``, its result has that key true)."""
    done = []
    for step, run in prepared:
        if done and (done[-1][2].get("failed") or (step.when and not done[-1][2].get(step.when))):
            break
        done.append([step.name, run.module, execute(run)])
    return done


def merge_runs(playbook, modules):
    """One PlaybookRun holding the task results of an ansible-playbook run (None: none) and of hosts' in-process steps
    (``{host: run_steps(...)}``), so that a test reads both alike."""
    tasks = list(playbook.tasks) if playbook else []
    for host, steps in modules.items():
        for name, module, result in steps:
            result = dict(result, warnings=replay.warnings(result))
            tasks.append(TaskResult(host=host, task=name, action=module, status="failed" if result.get("failed") else "ok",
                                    changed=bool(result.get("changed")), result=result))
    if playbook is None:
        return PlaybookRun(rc=0, stdout="(no ansible-playbook run: in-process module runs only)", stderr="", command=[], tasks=tasks)
    return dataclasses.replace(playbook, tasks=tasks)


# ---------------------------------------------------------------------------- request logs

def is_write(entry):
    """True for a request that may change the device (every POST but a login, and reboot/shutdown)."""
    if entry["method"] == "POST":
        return entry["path"] != TOKEN_PATH
    return entry["method"] == "GET" and entry["path"] in WRITE_GETS


def fields(entry):
    """The fields a write carries, e.g. ['user', 'ctx'] or ['tls.crt'] or ['reboot']."""
    if entry["method"] == "GET":
        return [entry["path"].rsplit("/", 1)[-1]]
    out = []
    for key in entry["keys"]:
        if key == "tls" and entry.get("tls_keys"):
            out += ["tls.%s" % k for k in entry["tls_keys"]]
        else:
            out.append(key)
    return out


def writes(log):
    return [e for e in log if is_write(e)]


def applied_writes(log, dropped_applied=False):
    """Writes that the device applied: answered 2xx, or dropped after being applied (the test knows which)."""
    out = []
    for entry in writes(log):
        status = entry["status"]
        if status is not None and 200 <= status < 300:
            out.append(entry)
        elif status is None and dropped_applied:
            out.append(entry)
    return out


def field_counts(entries):
    counts = {}
    for entry in entries:
        for name in fields(entry):
            counts[name] = counts.get(name, 0) + 1
    return counts


def logins(log, status=200):
    """Successful (by default) login answers: POST /api/auth/token."""
    return [e for e in log if e["method"] == "POST" and e["path"] == TOKEN_PATH and (status is None or e["status"] == status)]


def on(log, method, path):
    return [e for e in log if e["method"] == method and e["path"] == path]


def assert_writes_declared(log, declared, what=""):
    """No write carries a field the user did not declare."""
    extra = sorted(set(f for e in writes(log) for f in fields(e)) - set(declared))
    assert not extra, "%s wrote undeclared fields %s: %s" % (what, extra, [(e["method"], e["path"], e["keys"]) for e in writes(log)])


def assert_no_field_twice(entries, what=""):
    """No field is written twice within one boot of the device: a reboot (GET /api/system/reboot) between two
    writes starts a new boot, whose clock must be set again (a check-in before and one after a reboot)."""
    boots, twice = [[]], set()
    for entry in entries:
        if entry["path"] == "/api/system/reboot":
            boots.append([])
        else:
            boots[-1].append(entry)
    for boot in boots:
        twice.update(k for k, v in field_counts(boot).items() if v > 1)
    twice = sorted(twice)
    assert not twice, "%s wrote %s more than once: %s" % (what, twice, [(e["path"], e["keys"], e["status"]) for e in entries])


# ---------------------------------------------------------------------------- certificates made at test time

def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def make_ca(cn="Reliability test CA", key_passphrase=None):
    """-> (key, cert, cert_pem, key_pem); key_pem encrypted when key_passphrase is given."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "encedo.hem reliability"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(days=1)).not_valid_after(_now() + datetime.timedelta(days=60))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    encryption = (serialization.BestAvailableEncryption(key_passphrase.encode()) if key_passphrase
                  else serialization.NoEncryption())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption).decode("ascii")
    return key, cert, pem(cert), key_pem


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def issue(ca_key, ca_cert, public_key, cn, dns=(), ips=(), days=30, ca=False):
    import ipaddress
    sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(ca_cert.subject).public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(_now() - datetime.timedelta(days=1)).not_valid_after(_now() + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def served_certificate(url, ca_file):
    """The certificate a device serves (verified with ca_file)."""
    parts = urlsplit(url)
    ctx = ssl.create_default_context(cafile=ca_file)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=parts.hostname) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


# ---------------------------------------------------------------------------- threads

class Background(threading.Thread):
    """Run fn(*args) in a thread; .result() re-raises its exception."""

    def __init__(self, fn, *args, **kwargs):
        super().__init__(daemon=True)
        self._call = (fn, args, kwargs)
        self._value = None
        self._error = None
        self.start()

    def run(self):
        fn, args, kwargs = self._call
        try:
            self._value = fn(*args, **kwargs)
        except BaseException as exc:  # pylint: disable=broad-except
            self._error = exc

    def result(self, timeout=900):
        self.join(timeout)
        assert not self.is_alive(), "background work did not finish in %s s" % timeout
        if self._error is not None:
            raise self._error
        return self._value


def wait_for(predicate, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def env_without_ca_overrides():
    """What every run of this suite sets explicitly: this machine exports REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE."""
    return {"REQUESTS_CA_BUNDLE": None, "CURL_CA_BUNDLE": None, "SSL_CERT_FILE": None, "SSL_CERT_DIR": None}


def host_failures(run, host):
    """The failed (not ignored) task results of host in run."""
    return [t for t in run.failed() if t.host == host]


def host_warnings(run, host):
    out = []
    for item in run.results(host=host):
        out += list(item.result.get("warnings") or [])
    return out


def read_text(path):
    return Path(path).read_text(encoding="utf-8") if os.path.exists(path) else ""


REPO_ROOT = Path(__file__).resolve().parents[2]
REPO_MODULES = REPO_ROOT / "plugins" / "modules"
