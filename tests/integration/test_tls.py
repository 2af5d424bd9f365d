# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""encedo_tls: the module's rules in-process, and the renewal flow of playbooks/tls.yml in real ansible-playbook runs.

In-process (helpers/inprocess.py ModuleRunner: the module's main() in this process, against the
emulator over real HTTPS, its request log as the proof of what reached the device): a key import
(vendor-style encrypted key) with its certificate; state=csr deciding from served_certificate;
a certificate that does not name the url refused before anything is sent.

Real ansible-playbook runs (what only a playbook shows: the role, its handler, templating,
register between tasks, -vvv output): the renewal flow of playbooks/tls.yml (from the installed
collection), with the variables of the role encedo.hem.device, whose TLS step it runs
(tasks_from: renew): check mode sends nothing; CSR on the device, signed by a CA generated here,
uploaded, the emulated device rebooted and checked in by the role's handler
(encedo.hem.encedo_reboot), then a client that trusts ONLY that CA verifies an HTTPS request to
the device; encedo_hem_ca_path updated on request; a last run changes nothing and POSTs nothing;
and the playbook's refusals (missing variables, a device not set up).

Every CA and key is generated at run time; nothing secret is committed. The devices are
personalised with hostname "localhost" and ip 127.0.0.1/8, so that the CSR the device
makes names the address the tests reach it at (as a real device names its own).
The four-step runs of encedo_tls (bad input, state=csr and state=present, a reboot between
them, verification with the user's CA only) are the ansible-test target
tests/integration/targets/encedo_tls; no secret (key_import's key included) in any output
level (-vvvv) of ansible-playbook is tests/reliability/test_secrets.py.
"""

from __future__ import annotations

import re
import socket
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.emulator import util

from tests.emulator.harness import Emulator
from tests.emulator_tests.hemclient import Hem
from tests.integration.helpers.inprocess import ModuleRunner
from tests.integration.helpers.playbook import PlaybookRunner, TaskResult
from tests.integration.helpers.tls_pki import issue, make_ca, pem, write_user_ca
from tests.unit.plugins.modules.replay import warnings

REPO = Path(__file__).resolve().parents[2]
PW = "tls-integration-pass"
CONFIG = "/api/system/config"
JWT_RE = re.compile(r"eyJ[\w-]{4,}\.eyJ[\w-]{4,}\.[\w-]{10,}")


# ------------------------------------------------------------------ PKI generated at run time
# (tests/integration/helpers/tls_pki.py, shared with the target's own run under ansible-test)


def only_status_reads(log):
    """No login and no write: at most the unauthenticated status reads that bring the served certificate."""
    return len(log) <= 2 and all((e["method"], e["path"], e.get("auth")) == ("GET", "/api/system/status", "none") for e in log)


@pytest.fixture(scope="module")
def user_ca(tmp_path_factory):
    return write_user_ca(tmp_path_factory.mktemp("user-ca"))


# ------------------------------------------------------------------ emulated devices

@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    """Three factory-fresh devices, each personalised here as "localhost" / 127.0.0.1."""
    emulator = Emulator(devices=3, rtc_set=True, auth_delay=0.0, control=True, reboot_seconds=1.0,
                        tmp_path=tmp_path_factory.mktemp("tls-emulator"))
    emulator.start()
    try:
        for i in range(emulator.devices):
            answer = Hem(emulator.url(i), emulator.ca_file).personalise(PW, hostname="localhost", ip="127.0.0.1/8")
            assert answer.status == 200, answer
            emulator.clear_log(i)
        yield emulator
    finally:
        emulator.stop()


def module_runner(emulator, index):
    """encedo_tls in-process against device ``index`` (personalised here with PW)."""
    return ModuleRunner(emulator, index, hem_passphrase=PW)


def task_result(result):
    """An in-process result read as a playbook task's (.failed, .changed, .msg, .result)."""
    return TaskResult(host="hem", task="tls", action="encedo.hem.encedo_tls", status="failed" if result.get("failed") else "ok",
                      changed=bool(result.get("changed")), result=result)


def served_pem(emulator, index):
    return emulator.state(index)["tls_cert_pem"]


def served_cert(emulator, index):
    return x509.load_pem_x509_certificate(served_pem(emulator, index).encode())


def trust_bundle(emulator, user_ca, path):
    path.write_text(Path(emulator.ca_file).read_text() + "\n" + Path(user_ca["cert_path"]).read_text())
    return str(path)


def reboot(emulator, index):
    boot = emulator.state(index)["boot_id"]
    emulator.fault(index, "reboot")
    assert emulator.wait_up(index, timeout=30), "the device did not come back"
    assert emulator.state(index)["boot_id"] != boot
    assert not emulator.state(index)["pending_tls"]


def https_status(url, cafile):
    """GET /api/system/status over a TLS connection verified with `cafile` only (hostname checked)."""
    parts = url.split("://", 1)[1].split(":")
    host, port = parts[0], int(parts[1].split("/")[0])
    ctx = ssl.create_default_context(cafile=cafile)   # trusts this file only: no system CAs
    with socket.create_connection((host, port), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
            tls.sendall(b"GET /api/system/status HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host.encode())
            data = b""
            while True:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                data += chunk
            return int(data.split(b" ", 2)[1]), der


def config_posts(emulator, index):
    return [e for e in emulator.log(index) if e["method"] == "POST" and e["path"] == CONFIG]


# ------------------------------------------------------------------ the example playbook

PLAYBOOK = str(REPO / "playbooks" / "tls.yml")
# playbooks/tls.yml runs the role's TLS step (encedo.hem.device, tasks_from: renew): these are the role's tasks.
DUE_TASK = "Tell whether the TLS certificate is due (the device generates a CSR when it is)"
SIGN_TASK = "Sign the CSR with the CA"
SIGN_AND_UPLOAD = "Sign and upload the certificate that is due"   # the role's include of tasks/tls.yml
UPLOAD_TASK = "Upload the certificate (the device serves it after a reboot)"
REBOOT_HANDLER = "Reboot the device and wait until it is back"
VERIFY_TASK = "Verify the device with a client that trusts only our CA"
TRUST_TASK = "Write the trust bundle (the CA of today's certificate and our CA)"
SAY_CA_PATH = "Say what encedo_hem_ca_path needs"
ADD_CA = "Add our CA to encedo_hem_ca_path (encedo_hem_tls_update_ca_path is true; the CAs in it stay)"


def playbook_runner(emulator, index, workdir, user_ca):
    """tls.yml takes the variables of the role encedo.hem.device: an inventory like the one of
    playbooks/site.yml (connection, passphrase, backend, issuer CA), nothing tls.yml-specific."""
    return PlaybookRunner(emulator, workdir, devices=[index], host_vars={
        "encedo_hem_url": "{{ hem_url }}",
        "encedo_hem_ca_path": "{{ hem_ca_path }}",
        "encedo_hem_passphrase": PW,
        "encedo_hem_backend_url": "{{ hem_backend_url }}",
        "encedo_hem_tls_issuer_cert_path": user_ca["cert_path"],
        "encedo_hem_tls_issuer_key_path": user_ca["key_path"],
        "encedo_hem_tls_validity_days": 60,
        "encedo_hem_reboot_timeout": 60,
    })


def requests_of(emulator, index, method, path):
    return [e for e in emulator.log(index) if e["method"] == method and e["path"] == path]


def posts(emulator, index):
    return [e for e in emulator.log(index) if e["method"] == "POST"]


def test_tls_playbook_refuses_missing_variables(emu, user_ca, tmp_path):
    i = 2
    runner = PlaybookRunner(emu, tmp_path / "runner", devices=[i], host_vars={
        "hem_passphrase": PW, "encedo_hem_url": "{{ hem_url }}", "encedo_hem_ca_path": "{{ hem_ca_path }}",
        "encedo_hem_passphrase": PW, "encedo_hem_tls_issuer_cert_path": user_ca["cert_path"],
        "encedo_hem_tls_issuer_key_path": user_ca["key_path"], "encedo_hem_reboot": False})
    emu.clear_log(i)
    run = runner.run_playbook(PLAYBOOK)
    assert run.rc != 0
    failed = run.failed()
    assert [f.task for f in failed] == ["Check the variables"]
    assert "encedo_hem_reboot is false" in failed[0].msg
    assert emu.log(i) == []


def test_tls_playbook_stops_on_a_device_that_is_not_set_up(emulator, user_ca, tmp_path):
    """The role's entry point renew renews, it does not set up: a factory-fresh device (clock unset) fails the host
    with what to do, after nothing but the status read."""
    emu = emulator()
    emu.clear_log(0)
    run = playbook_runner(emu, 0, tmp_path / "runner", user_ca).run_playbook(PLAYBOOK)
    assert run.rc != 0
    failed = run.failed()
    assert [f.task for f in failed] == ["Stop on a device that is not set up"], run.tail()
    assert "is not set up (personalised: False, clock set: False)" in failed[0].msg
    assert "Apply the role as usual (encedo.hem.site)" in failed[0].msg
    assert only_status_reads(emu.log(0)) and not emu.state(0)["personalised"]


# ------------------------------------------------------------------ key import

def test_tls_key_import(emu, user_ca, tmp_path):
    i = 2
    old = served_cert(emu, i)
    new_key = ec.generate_private_key(ec.SECP256R1())
    new_cert = issue(user_ca["key"], user_ca["cert"], new_key.public_key())
    key_import = util.wrap_tls_key(new_key, old.public_key())
    run = module_runner(emu, i)
    trust = trust_bundle(emu, user_ca, tmp_path / "trust.pem")

    def tls(with_import=True):
        args = {"ca_path": trust, "passphrase": "{{ hem_passphrase }}", "certificate": pem(new_cert)}
        if with_import:
            args["key_import"] = key_import
        result = run("encedo.hem.encedo_tls", args)
        assert not result.get("failed"), run.output
        return result

    emu.clear_log(i)
    res = tls()
    assert res["changed"] and res["reboot_required"] and res["key_match"] == "key_import"
    assert res["sent"] == ["tls.crt", "tls.emp", "tls.key"]
    assert [(p["keys"], p["tls_keys"]) for p in config_posts(emu, i)] == [(["tls"], ["crt", "emp", "key"])]
    assert key_import["key"] not in run.output, "the encrypted key leaked into the result"

    # Before the reboot, without key_import: the served certificate is for the old key, the
    # device's pending key (read from a fresh CSR) matches, so the certificate alone is accepted.
    emu.clear_log(i)
    res = tls(with_import=False)
    assert res["changed"] and res["key_match"] == "csr" and res["sent"] == ["tls.crt"]
    assert [p["keys"] for p in config_posts(emu, i)] == [["gen_csr"], ["tls"]]

    reboot(emu, i)
    assert served_cert(emu, i) == new_cert
    status, dummy = https_status(emu.url(i), user_ca["cert_path"])
    assert status == 200

    # Idempotent after the reboot: same DER served, nothing sent (no login either).
    emu.clear_log(i)
    res = tls()
    assert not res["changed"] and res["sent"] == [] and "uploaded" not in res
    assert res["certificate"]["spki_sha256"].replace(":", "") == _spki_hex(new_key.public_key())
    assert only_status_reads(emu.log(i))   # the served certificate comes with an unauthenticated status read


def _spki_hex(public_key):
    import hashlib
    return hashlib.sha256(public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()


# ------------------------------------------------------------------ served_certificate: the certificate from encedo_info

def test_tls_csr_with_served_certificate(emu, user_ca, tmp_path):
    """state=csr decides from the certificate given in served_certificate: no connection at all when it is fine,
    the same decision as from the device when it expires soon or is from another CA, a bad one refused first."""
    from tests.emulator.proxy import CountingForwarder
    i = 1
    device_key = served_cert(emu, i).public_key()
    other_ca_key, other_ca = make_ca("Somebody Else CA")
    given = {
        "fine": issue(user_ca["key"], user_ca["cert"], device_key, days=90),
        "expiring": issue(user_ca["key"], user_ca["cert"], device_key, days=10),
        "other_ca": issue(other_ca_key, other_ca, device_key, days=90),
    }
    run = module_runner(emu, i)
    trust = trust_bundle(emu, user_ca, tmp_path / "trust.pem")

    def csr_task(served, check=False, **more):
        emu.clear_log(i)
        with CountingForwarder(emu.url(i)) as proxy:
            args = dict({"url": proxy.url, "ca_path": trust, "passphrase": "{{ hem_passphrase }}", "state": "csr",
                         "issuer_ca_path": user_ca["cert_path"], "remaining_days": 30, "served_certificate": served}, **more)
            result = run("encedo.hem.encedo_tls", args, check=check)
        return task_result(result), proxy.connections

    # fine: nothing to do, and no connection to the device (not even a TLS handshake)
    res, connections = csr_task(pem(given["fine"]))
    assert not res.failed and not res.changed, res.msg
    assert res.result["csr_needed"] is False and res.result["csr_reasons"] == []
    assert res.result["certificate"]["serial_number"] == "%x" % given["fine"].serial_number
    assert connections == 0 and emu.log(i) == []

    # expiring soon, or from another CA: a CSR is needed, for the same reasons as read from the device
    for name, reason in (("expiring", "days left, fewer than remaining_days (30)"),
                         ("other_ca", "is not issued by the CA in issuer_ca_path")):
        res, connections = csr_task(pem(given[name]), check=True)
        assert not res.failed and res.changed, res.msg
        assert res.result["csr_needed"] is True
        assert any(reason in r for r in res.result["csr_reasons"]), res.result["csr_reasons"]
        assert connections == 0 and emu.log(i) == []       # check mode: no CSR asked for, nothing read

    # not a certificate, or a chain: refused before any request, naming the option
    for bad, words in (("not a certificate", "is not an X.509 certificate"),
                       (pem(given["fine"]) + pem(user_ca["cert"]), "holds 2 certificates")):
        res, connections = csr_task(bad)
        assert res.failed and "option served_certificate" in res.msg and words in res.msg, res.msg
        assert "Nothing was sent to the device" in res.msg
        assert connections == 0 and emu.log(i) == []

    # only with state=csr
    res, connections = csr_task(pem(given["fine"]), state="present", certificate=pem(given["fine"]))
    assert res.failed and "option served_certificate: not used with state=present" in res.msg, res.msg
    assert connections == 0


# ------------------------------------------------------------------ never lock the controller out (issue 17)

def test_a_certificate_that_does_not_name_the_url_is_refused_before_anything_is_sent(emu, user_ca, tmp_path):
    """The device is reached as https://127.0.0.1:<port>: a certificate naming only a DNS name (or the address as a
    DNS name, which TLS clients never match against an IP address) would lock every later task out after the reboot."""
    i = 0
    device_key = served_cert(emu, i).public_key()
    trust = trust_bundle(emu, user_ca, tmp_path / "trust.pem")
    only_dns = issue(user_ca["key"], user_ca["cert"], device_key, names=("hem0.example.com",), ips=())
    ip_as_dns = issue(user_ca["key"], user_ca["cert"], device_key, names=("127.0.0.1", "localhost"), ips=())
    run = module_runner(emu, i)
    served_before, boot = served_pem(emu, i), emu.state(i)["boot_id"]

    def upload(cert, check=False, **extra):
        args = dict({"url": "{{ hem_url }}", "ca_path": trust, "passphrase": "{{ hem_passphrase }}", "certificate": pem(cert)},
                    **extra)
        return run("encedo.hem.encedo_tls", args, check=check)

    for cert, names in ((only_dns, "DNS:hem0.example.com"), (ip_as_dns, "DNS:127.0.0.1, DNS:localhost")):
        for check in (False, True):
            emu.clear_log(i)
            result = upload(cert, check=check)
            assert result.get("failed") is True
            msg = result["msg"]
            assert "the certificate names %s" % names in msg, msg
            assert "127.0.0.1 (the host of url) needs IP:127.0.0.1" in msg and "allow_name_mismatch" in msg
            assert "Nothing was uploaded" in msg and result["changed"] is False
            # Refused before anything was sent: not even a login.
            assert [e for e in emu.log(i) if e["method"] == "POST"] == []

    # Allowed explicitly (check mode here: the emulated device must stay reachable for the other tests).
    emu.clear_log(i)
    allowed = upload(only_dns, check=True, allow_name_mismatch=True)
    assert not allowed.get("failed"), run.output
    assert allowed["changed"] and allowed["reboot_required"]
    assert any("allow_name_mismatch is true" in w and "DNS:hem0.example.com" in w for w in warnings(allowed))
    assert [e for e in emu.log(i) if e["method"] == "POST"] == []
    assert served_pem(emu, i) == served_before and not emu.state(i)["pending_tls"] and emu.state(i)["boot_id"] == boot


# ------------------------------------------------------------------ tls.yml from the installed collection (issue 17, defect 8)

def _tree(root):
    """Every file under root with its content hash (what a run may not change), but Python's bytecode cache: the
    interpreter writes __pycache__ beside the plugins it loads (unless PYTHONDONTWRITEBYTECODE is set)."""
    import hashlib
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(root).rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def _installed_collection(tmp_path):
    """Build the collection tarball and install it into a directory of its own, as a user would."""
    import subprocess
    import sys
    galaxy = str(Path(sys.executable).parent / "ansible-galaxy")
    dist, installed = tmp_path / "dist", tmp_path / "installed"
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("ANSIBLE_")}
    env["ANSIBLE_HOME"] = str(tmp_path / "galaxy-home")
    subprocess.run([galaxy, "collection", "build", str(REPO), "--output-path", str(dist)], check=True, env=env,
                   cwd=str(tmp_path), capture_output=True, timeout=300)
    [tarball] = dist.glob("encedo-hem-*.tar.gz")
    subprocess.run([galaxy, "collection", "install", str(tarball), "-p", str(installed)], check=True, env=env,
                   cwd=str(tmp_path), capture_output=True, timeout=300)
    assert (installed / "ansible_collections" / "encedo" / "hem" / "playbooks" / "tls.yml").is_file()
    return installed


def test_tls_playbook_renewal_flow_from_the_installed_collection(emulator, user_ca, tmp_path):
    """encedo.hem.tls as a user runs it (installed collection): check mode, the renewal through the role's TLS step
    (CSR on the device, signed by a CA generated here, uploaded, the device rebooted and checked in by the role's
    handler, then verified by a client that trusts ONLY that CA), encedo_hem_ca_path updated on request, and a run
    that changes nothing and POSTs nothing."""
    emu = emulator(rtc_set=True, reboot_seconds=1.0)
    assert Hem(emu.url(0), emu.ca_file).personalise(PW, hostname="localhost", ip="127.0.0.1/8").status == 200
    emu.clear_log(0)
    old, boot_before = served_cert(emu, 0), emu.state(0)["boot_id"]
    installed = _installed_collection(tmp_path)
    before = _tree(installed)
    cwd, scratch = tmp_path / "cwd", tmp_path / "scratch"
    cwd.mkdir()
    scratch.mkdir()
    # encedo_hem_ca_path: a file of the user's, trusting only the CA of the certificate the device serves today
    # (an extra var: the playbook's trust bundle must reach the role's modules and handler all the same).
    ca_path = tmp_path / "trust.pem"
    ca_path.write_text(Path(emu.ca_file).read_text())
    runner = playbook_runner(emu, 0, tmp_path / "runner", user_ca)
    env = {"ANSIBLE_COLLECTIONS_PATH": str(installed), "TMPDIR": str(scratch)}
    extra = {"encedo_hem_ca_path": str(ca_path)}

    def run(**options):
        result = runner.run_playbook("encedo.hem.tls", extra_vars=dict(extra, **options.pop("extra", {})), env=env, cwd=cwd,
                                     **options)
        # Nothing written into the installed collection, the current directory or left in the temporary directory.
        assert _tree(installed) == before
        assert list(cwd.iterdir()) == [] and list(scratch.iterdir()) == []
        return result

    # Check mode predicts the CSR but has none to sign: signing, upload and reboot are skipped, nothing is sent
    # but the unauthenticated status read that brings the served certificate, and nothing is written.
    check = run(check=True).assert_ok()
    due = check.result(DUE_TASK)
    assert due["changed"] and due["certificate"]["csr_needed"] and due["certificate"]["csr"] is None
    assert check.results(task=TRUST_TASK, status="skipped")
    assert check.results(task=SIGN_AND_UPLOAD, status="skipped") and not check.results(task=UPLOAD_TASK)
    assert not check.results(task=REBOOT_HANDLER)
    assert only_status_reads(emu.log(0))
    assert served_cert(emu, 0) == old and not emu.state(0)["pending_tls"] and emu.state(0)["boot_id"] == boot_before

    # Before the renewal a client that trusts only the user's CA is refused.
    with pytest.raises(ssl.SSLCertVerificationError):
        https_status(emu.url(0), user_ca["cert_path"])

    emu.clear_log(0)
    first = run(verbosity=3).assert_ok()
    assert PW not in first.output, "the passphrase leaked into the output (-vvv)"
    assert not JWT_RE.search(first.output), "a bearer token was printed"
    due = first.result(DUE_TASK)
    assert due["changed"] and due["certificate"]["csr_needed"] and due["certificate"]["csr"]
    assert due["reboot_required"] is False and due["ready"]
    upload = first.result(UPLOAD_TASK)
    assert upload["changed"] and upload["reboot_required"] and upload["sent"] == ["tls.crt"]
    assert upload["uploaded"]["issuer"] == user_ca["subject"]
    assert upload["key_match"] == "served"

    # The role's handler (encedo.hem.encedo_reboot) rebooted the device, waited for it - polling with the playbook's
    # trust bundle, as the device came back with the new certificate - and checked it in through the emulator's
    # backend (a reboot unsets the clock).
    assert "waits, silently, until the device answers again" in first.result("Say what the reboot waits for")["msg"]
    rebooted = first.result(REBOOT_HANDLER)
    assert rebooted["changed"] and rebooted["rebooted"] and rebooted["elapsed"] >= 1
    assert rebooted["checkin"] is not None and rebooted["checkin"]["clock_was_set"] is False
    state = emu.state(0)
    assert state["boot_id"] != boot_before and not state["pending_tls"] and state["rtc_set"]
    assert len(requests_of(emu, 0, "GET", "/api/system/reboot")) == 1
    assert len(requests_of(emu, 0, "POST", "/api/system/checkin")) == 1
    # One login per module that needs one (CSR, upload, reboot): no token travels through the role.
    assert len(requests_of(emu, 0, "POST", "/api/auth/token")) == 3
    assert [p["keys"] for p in config_posts(emu, 0)] == [["gen_csr"], ["tls"]]
    assert config_posts(emu, 0)[1]["tls_keys"] == ["crt"]
    assert {p["auth"] for p in config_posts(emu, 0)} == {"bearer"}

    # In the same run, after the reboot, the playbook verified the device trusting only the user's CA.
    assert first.results(task=VERIFY_TASK, status="ok") and first.result(VERIFY_TASK)["status"] == 200
    signed = x509.load_pem_x509_certificate(first.result(SIGN_TASK)["certificate"].encode())
    new = served_cert(emu, 0)
    assert new == signed and new.issuer == user_ca["cert"].subject and new.public_key() == old.public_key()
    assert (new.not_valid_after_utc - new.not_valid_before_utc).days in (59, 60)
    # Independently of Ansible: a client that trusts ONLY the user's CA verifies an HTTPS request ...
    status, der = https_status(emu.url(0), user_ca["cert_path"])
    assert status == 200 and der == new.public_bytes(serialization.Encoding.DER)
    # ... and encedo_hem_ca_path (the emulator CA alone) no longer does: the end says what it needs.
    with pytest.raises(ssl.SSLCertVerificationError):
        https_status(emu.url(0), str(ca_path))
    told = first.result(SAY_CA_PATH)["msg"]
    assert str(ca_path) in told and user_ca["cert_path"] in told and "encedo_hem_tls_update_ca_path" in told

    # Opted in: the playbook adds the new CA to encedo_hem_ca_path, keeping the old one. The device is not touched:
    # its certificate is fine now, so it is only read (no login, no POST, no reboot).
    boot_after = emu.state(0)["boot_id"]
    emu.clear_log(0)
    fixed = run(extra={"encedo_hem_tls_update_ca_path": True}).assert_ok()
    assert not fixed.result(DUE_TASK)["certificate"]["csr_needed"] and not fixed.result(DUE_TASK)["changed"]
    assert fixed.results(task=SIGN_AND_UPLOAD, status="skipped") and not fixed.results(task=UPLOAD_TASK)
    assert not fixed.results(task=REBOOT_HANDLER)
    assert [t.task for t in fixed.results(host="hem0") if t.changed] == [ADD_CA], fixed.tail()
    assert posts(emu, 0) == [] and emu.state(0)["boot_id"] == boot_after
    assert Path(emu.ca_file).read_text().strip() in ca_path.read_text()
    status, dummy = https_status(emu.url(0), str(ca_path))
    assert status == 200

    # The next run needs no change: nothing changed, nothing posted, nothing to tell.
    emu.clear_log(0)
    again = run(extra={"encedo_hem_tls_update_ca_path": True}).assert_ok()
    assert again.stats["hem0"]["changed"] == 0, again.tail()
    assert again.results(task=VERIFY_TASK, status="ok")
    assert again.results(task=SAY_CA_PATH, status="skipped") and again.results(task=ADD_CA, status="skipped")
    assert posts(emu, 0) == [] and emu.state(0)["boot_id"] == boot_after
