# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""PPAs behind servers: the encedo.hem.device role with its modules running on the server the
device is plugged into, reached over SSH, on the test bed of tests/integration/helpers/netns.py
(network namespaces: the controller cannot reach 192.168.7.1 at all, a blackhole route makes
it fail at once; my.ence.do resolves on the servers only).

Checked: factory-fresh devices (two on one server, one on each of two servers) reach the
declared state with https://my.ence.do URLs and certificates issued for my.ence.do by a CA
whose key (encrypted) and passphrase stay on the controller; the second run changes nothing
and makes the same requests per device as the local topology (tests/integration/test_role.py);
a TLS renewal works; nothing secret is left in the server's home or temporary directories
(the server's own mount namespace); a task that wrongly runs on the controller fails at once;
a server Python without the modules' libraries stops the role with one message before any
request reaches the device.
"""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtensionOID, NameOID

from tests.emulator.util import make_ca
from tests.integration.helpers.netns import DEVICE_IP, DEVICE_NAME
from tests.integration.test_role import NOOP_REQUESTS_PER_HOST

REPO_ROOT = Path(__file__).resolve().parents[2]
SITE = str(REPO_ROOT / "playbooks" / "site.yml")
PASS = "pw-remote-user-7f3a"
MASTER = "pw-remote-master-91c2"
CA_KEY_PASS = "pw-remote-ca-key-5d0e"
JWT_RE = re.compile(rb"eyJ[\w-]{10,}\.eyJ[\w-]{10,}\.[\w-]{20,}")


class Ca:
    """The test's CA on the controller: certificate, key encrypted with CA_KEY_PASS."""

    def __init__(self, directory):
        self.key, self.cert = make_ca("Remote test CA", "encedo.hem tests")
        self.cert_path = str(Path(directory) / "remote-ca.pem")
        self.key_path = str(Path(directory) / "remote-ca.key")
        Path(self.cert_path).write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.key_pem = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.BestAvailableEncryption(CA_KEY_PASS.encode()))
        Path(self.key_path).write_bytes(self.key_pem)
        Path(self.key_path).chmod(0o600)

    def needles(self):
        """What must never be found on a server: the key in any form, its passphrase, the device passphrases."""
        plain = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
        der = self.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        # a base64 line from the middle of each PEM body
        return {"CA key (encrypted PEM)": self.key_pem.splitlines()[2], "CA key (PEM)": plain.splitlines()[2], "CA key (DER)": der,
                "CA key passphrase": CA_KEY_PASS, "user passphrase": PASS, "master passphrase": MASTER}


def device_vars(emu, i, srv, ca, bundle):
    """Variables of one inventory host: device i of emulator emu, on server srv."""
    values = dict(srv.inventory_vars())
    values.update({
        "encedo_hem_url": emu.name_url(i),
        "encedo_hem_ca_path": bundle,
        "encedo_hem_passphrase": PASS,
        "encedo_hem_master_passphrase": MASTER,
        "encedo_hem_backend_url": emu.backend_url,
        "encedo_hem_reboot_timeout": 60,
        # The PPA's own name and address: the certificates the CA issues are for my.ence.do.
        "encedo_hem_init": {"ip": DEVICE_IP + "/24", "hostname": DEVICE_NAME, "email": "ops@example.com"},
        "encedo_hem_config": {"user": "Remote test", "http_option_hsts": True, "allow_keysearch": False},
        "encedo_hem_attestation_trust_anchor_path": emu.custody_ca_file,
        "encedo_hem_tls_issuer_cert_path": ca.cert_path,
        "encedo_hem_tls_issuer_key_path": ca.key_path,
        "encedo_hem_tls_issuer_key_passphrase": CA_KEY_PASS,
    })
    return values


def write_inventory(runner, hosts):
    """Replace the runner's inventory: {inventory name: variables}."""
    Path(runner.inventory).write_text(yaml.safe_dump({"all": {"children": {"hem": {"hosts": hosts}}}}, sort_keys=True))
    runner.hosts = sorted(hosts)


def served_certificate(srv, port, cafile):
    """TLS handshake from inside the server, trusting only cafile, checking the name my.ence.do."""
    def handshake():
        ctx = ssl.create_default_context(cafile=cafile)
        with socket.create_connection((DEVICE_IP, port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=DEVICE_NAME) as tls:
                return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
    return srv.call(handshake)


def assert_nothing_left(servers, ca, run=None):
    for srv in servers:
        found = srv.leftovers(ca.needles())
        assert found == [], "secrets left on %s: %s" % (srv.name, found)
        for path in srv.files():
            assert not JWT_RE.search(path.read_bytes()), "a bearer token was left on %s in %s" % (srv.name, path)
        staged = [p for p in srv.tmp.iterdir() if p.name.startswith("encedo_hem.")]
        assert staged == [], "the role's temporary directory was not removed: %s" % staged
    if run is not None:
        for secret in (PASS, MASTER, CA_KEY_PASS):
            assert secret not in run.output
        assert not JWT_RE.search(run.output.encode()), "a bearer token was printed"


# ---------------------------------------------------------------------------- tests

@pytest.mark.parametrize("servers", [1, 2], ids=["two-devices-one-server", "one-device-on-each-of-two-servers"])
def test_fresh_ppas_behind_servers_to_desired_state_then_noop(server_testbed, hem_playbook, tmp_path, servers):
    ca = Ca(tmp_path)
    started = time.monotonic()
    if servers == 1:
        srv = server_testbed.server()
        emu = srv.emulator(devices=2, reboot_seconds=1.0)
        devices = [(srv, emu, 0), (srv, emu, 1)]
    else:
        devices = []
        for _n in range(2):
            srv = server_testbed.server()
            devices.append((srv, srv.emulator(devices=1, reboot_seconds=1.0), 0))
    all_servers = list(dict.fromkeys(d[0] for d in devices))
    bundles = {}
    for srv, emu, i in devices:
        if emu not in bundles:
            path = tmp_path / ("trust-%s.pem" % srv.name)
            path.write_text(Path(emu.ca_file).read_text() + Path(ca.cert_path).read_text())
            bundles[emu] = str(path)
    hosts = {"ppa%d" % n: device_vars(emu, i, srv, ca, bundles[emu]) for n, (srv, emu, i) in enumerate(devices)}
    # Every URL is the device's name, whatever the server: only port 444 tells the second PPA of one server apart.
    assert {h["encedo_hem_url"] for h in hosts.values()} <= {"https://my.ence.do", "https://my.ence.do:444"}
    runner = hem_playbook(devices[0][1])
    write_inventory(runner, hosts)
    boots = [emu.state(i)["boot_id"] for _srv, emu, i in devices]

    check = runner.run_playbook(SITE, check=True)
    check.assert_ok()
    for _srv, emu, i in devices:
        assert [e for e in emu.log(i) if e["method"] == "POST"] == [], "check mode sent a POST"
        assert emu.state(i)["personalised"] is False
        emu.clear_log(i)

    first = runner.run_playbook(SITE, diff=True, verbosity=3)
    first.assert_ok()
    for n, (srv, emu, i) in enumerate(devices):
        host = "ppa%d" % n
        assert first.stats[host]["changed"] > 0 and first.stats[host]["failures"] == 0
        state = emu.state(i)
        assert state["personalised"] and state["rtc_set"] and state["boot_id"] != boots[n]
        cfg = state["config"]
        assert (cfg["user"], cfg["hostname"], cfg["ip"], cfg["http_option_hsts"]) == ("Remote test", DEVICE_NAME,
                                                                                      DEVICE_IP + "/24", True)
        # The module ran on the server (its python), the signing on the controller.
        assert first.result("Sign the CSR with the CA", host=host)["changed"] is True
        # The device serves a certificate of the test CA for my.ence.do (checked by name from inside the server).
        cert = served_certificate(srv, emu.ports["port"] + i, ca.cert_path)
        assert cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Remote test CA"
        assert DEVICE_NAME in cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value \
            .get_values_for_type(x509.DNSName)
        emu.clear_log(i)
    assert_nothing_left(all_servers, ca, first)

    env = None
    if servers == 2:
        # As on AWX: the passphrase and the CA bundle only in the controller's environment (the HEM credential
        # type's ENCEDO_HEM_PASSPHRASE, ENCEDO_HEM_CA_PATH); the role passes them on to the modules on the servers.
        both = tmp_path / "trust-all.pem"
        both.write_text("".join(Path(path).read_text() for path in bundles.values()))
        env = {"ENCEDO_HEM_PASSPHRASE": PASS, "ENCEDO_HEM_CA_PATH": str(both)}
        write_inventory(runner, {host: {k: v for k, v in values.items() if k not in ("encedo_hem_passphrase", "encedo_hem_ca_path")}
                                 for host, values in hosts.items()})
    second = runner.run_playbook(SITE, verbosity=3, env=env)
    second.assert_ok()
    for n, (_srv, emu, i) in enumerate(devices):
        host = "ppa%d" % n
        assert second.stats[host]["changed"] == 0, second.tail()
        log = emu.log(i)
        posts = [(e["method"], e["path"]) for e in log if e["method"] == "POST"]
        assert posts == [("POST", "/api/auth/token")], "a no-op run may only POST its one login: %s" % posts
        # The same requests as the role makes from the controller (test_role.py).
        assert len(log) == NOOP_REQUESTS_PER_HOST, [(e["method"], e["path"]) for e in log]
        assert all(e["scheme"] == "https" and e["status"] == 200 for e in log)
        emu.clear_log(i)
    assert_nothing_left(all_servers, ca, second)

    if servers == 1:
        # Renewal: fewer days left than the certificate's whole validity -> a new certificate for every device.
        srv, emu = devices[0][0], devices[0][1]
        serials = [served_certificate(srv, emu.ports["port"] + i, ca.cert_path).serial_number for _s, _e, i in devices]
        renew = runner.run_playbook(SITE, extra_vars={"encedo_hem_tls_remaining_days": 400})
        renew.assert_ok()
        for n, (_srv, _emu, i) in enumerate(devices):
            assert renew.result("Upload the certificate (the device serves it after a reboot)", host="ppa%d" % n)["changed"]
            cert = served_certificate(srv, emu.ports["port"] + i, ca.cert_path)
            assert cert.serial_number != serials[n]
        assert_nothing_left(all_servers, ca, renew)
    print("PPAs behind %d server(s): %.1f s" % (servers, time.monotonic() - started))


def test_a_task_that_runs_on_the_controller_fails_at_once(server_testbed, hem_playbook, tmp_path):
    srv = server_testbed.server()
    emu = srv.emulator(passphrase=PASS, rtc_set=True)
    emu.clear_log(0)
    runner = hem_playbook(emu)
    (srv.home / "hem-ca.pem").write_text(Path(emu.ca_file).read_text())     # /root/hem-ca.pem on the server
    hostvars = dict(srv.inventory_vars(), encedo_hem_url="https://my.ence.do", hem_ca_path=emu.ca_file)
    write_inventory(runner, {"ppa0": hostvars})
    play = [{"name": "Where the modules run", "hosts": "hem", "gather_facts": False, "tasks": [
        {"name": "On the server", "encedo.hem.encedo_info": {"url": "{{ encedo_hem_url }}", "ca_path": "/root/hem-ca.pem"}},
        {"name": "Wrongly on the controller", "delegate_to": "localhost",
         "encedo.hem.encedo_info": {"url": "https://%s" % DEVICE_IP, "ca_path": "{{ hem_ca_path }}", "timeout": 30}},
    ]}]
    started = time.monotonic()
    run = runner.run_playbook(play)
    elapsed = time.monotonic() - started
    print("elapsed %.1f s: %s" % (elapsed, [t.msg for t in run.failed()]))
    assert run.rc != 0
    assert run.result("On the server", host="ppa0")["personalised"] is True
    failed = run.failed()
    assert [t.task for t in failed] == ["Wrongly on the controller"]
    assert "cannot reach the device at https://%s" % DEVICE_IP in failed[0].msg
    # The blackhole route: no waiting for the 30 s timeout, nothing reached the device but the server's task.
    assert elapsed < 25, "the task on the controller waited (%.1f s) instead of failing at once" % elapsed
    assert isinstance(server_testbed.controller_connect(), OSError)
    # The device saw the server's status read only.
    log = emu.log(0)
    assert log and {(e["method"], e["path"]) for e in log} <= {("GET", "/api/system/status"), ("GET", "/api/system/version")}


def test_server_python_without_the_libraries_stops_before_any_request(server_testbed, hem_playbook, tmp_path):
    srv = server_testbed.server()
    emu = srv.emulator()
    emu.clear_log(0)
    # A Python without cryptography and requests on the server (a venv of the base Python, no packages).
    venv = srv.home / "bare-venv"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(venv)], check=True)
    ca = Ca(tmp_path)
    runner = hem_playbook(emu)
    hostvars = device_vars(emu, 0, srv, ca, emu.ca_file)
    hostvars["ansible_python_interpreter"] = "/root/bare-venv/bin/python"     # its path inside the server
    write_inventory(runner, {"ppa0": hostvars})
    run = runner.run_playbook(SITE)
    assert run.rc != 0
    failed = run.failed()
    assert [t.task for t in failed] == ["Stop when the Python there lacks a library or is too old"], run.tail()
    msg = failed[0].msg
    assert "lacks cryptography and requests" in msg and "the server %s" % srv.server_ip in msg
    assert "/root/bare-venv/bin/python" in msg and "pip install cryptography requests" in msg
    assert emu.log(0) == [], "a request reached the device"
