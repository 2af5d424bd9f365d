# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Record the device answers the unit tests of the modules' main() replay.

    python -m tests.unit.plugins.modules.record_fixtures            # every scenario
    python -m tests.unit.plugins.modules.record_fixtures config_   # those whose name contains config_

Starts the emulator (tests/emulator) in the states each scenario needs, runs each module's
main() in-process with Transport.send wrapped, and writes what went over the wire to
tests/unit/fixtures/modules/<module>_<scenario>.json (format: replay.py). Secrets are never
written: the task's secret options are left out of ``args`` (named in ``secret_options``),
the bearer token is not recorded, login proofs, signed personalisation requests and wrapped
keys become placeholders. Tokens, keys and certificates the emulator answers with are its
test values. Not a test (pytest does not collect it); run it from the repository root.
"""

from __future__ import annotations

import datetime
import importlib
import json
import os
import sys
import tempfile
import time

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.emulator.harness import Emulator
from tests.integration.helpers.tls_pki import issue, make_ca, pem
from tests.unit.plugins.modules import replay as R

from ansible_collections.encedo.hem.plugins.module_utils import _transport

PW = "recorded-user-passphrase"
PW2 = "recorded-new-passphrase"
MPW = "recorded-master-passphrase"
SECRET_OPTIONS = ("passphrase", "new_passphrase", "master_passphrase", "master_recovery_phrase", "token")
COMMAND = "python -m tests.unit.plugins.modules.record_fixtures"


def read(path):
    with open(path, encoding="ascii") as fh:
        return fh.read()


class Recorder(object):
    """Wraps Transport.send while one scenario runs; keeps what went over the wire."""

    def __init__(self):
        self.exchanges = []
        self.certificates = {}
        self.start = time.monotonic()
        self._original = _transport.Transport.send

    def __enter__(self):
        recorder, original = self, self._original

        def send(transport, method, path, data, headers, timeout, **kwargs):
            entry = {"t": round(time.monotonic() - recorder.start, 3), "url": transport.url, "method": method, "path": path}
            if data is not None:
                entry["request"] = R.redact(R.decode_body(data))
            try:
                answer = original(transport, method, path, data, headers, timeout, **kwargs)
            except _transport.TransportError as exc:
                entry["error"] = {"reason": exc.reason, "sent": exc.sent, "timeout": exc.timeout, "tls": exc.tls}
                recorder.add(entry, transport)
                raise
            entry["status"] = answer.status
            try:
                entry["json"] = json.loads(answer.body.decode("utf-8")) if answer.body.strip() else None
            except ValueError:
                entry["text"] = answer.body.decode("utf-8", "replace")
            if entry.get("json", 0) is None:
                del entry["json"]
                entry["text"] = ""
            headers = dict((k, v) for k, v in answer.headers.items() if k.lower() in ("content-type", "retry-after"))
            if headers:
                entry["headers"] = headers
            recorder.add(entry, transport)
            return answer

        _transport.Transport.send = send
        return self

    def __exit__(self, *exc):
        _transport.Transport.send = self._original

    def add(self, entry, transport):
        der = transport.peer_certificate
        if der is not None:
            cert = x509.load_der_x509_certificate(der)
            key = "sha256:" + cert.fingerprint(cert.signature_hash_algorithm.__class__()).hex()[:16]
            self.certificates[key] = cert.public_bytes(serialization.Encoding.PEM).decode()
            entry["peer_certificate"] = key
        self.exchanges.append(entry)


class Session(object):
    """The emulators of a recording session, and the scenario writer."""

    def __init__(self, only):
        self.only = only
        self.tmp = tempfile.mkdtemp(prefix="hem-record-")
        self.emulators = {}
        self.written = []

    def emulator(self, name, **options):
        if name not in self.emulators:
            options = dict(dict(auth_delay=0.0, reboot_seconds=1.0, control=True), **options)
            emu = Emulator(tmp_path=os.path.join(self.tmp, name), **options)
            os.makedirs(emu.tmp_path)
            emu.start()
            emu.options = dict((k, v) for k, v in options.items() if k not in ("passphrase", "master_passphrase"))
            emu.options["personalised"] = bool(options.get("passphrase"))
            self.emulators[name] = emu
        return self.emulators[name]

    def close(self):
        for emu in self.emulators.values():
            emu.stop()

    def wanted(self, name):
        return not self.only or any(part in name for part in self.only)

    def record(self, name, module, emu, index, args, check_mode=False, diff=False, note="", files=None):
        """Run ``module`` (short name) against device ``index`` of ``emu`` with ``args`` (url and ca_path added)."""
        if not self.wanted(name):
            return None
        files = dict(files or {})
        task = dict(url=emu.url(index), timeout=10)
        task.update(args)
        files.setdefault("ca_path", read(emu.ca_file))
        task["ca_path"] = emu.ca_file
        mod = importlib.import_module("ansible_collections.encedo.hem.plugins.modules." + module)
        epoch = time.time()
        with Recorder() as rec:
            result, failed = R.run_main(mod, task, check_mode=check_mode, diff=diff)
        result.pop("invocation", None)      # the arguments again, with the recorder's temporary paths
        fixture = {
            "recorded": {"by": COMMAND, "date": datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "epoch": round(epoch, 3), "emulator": dict(emu.options, device=index), "note": note},
            "module": module,
            "args": dict((k, v) for k, v in task.items() if k not in SECRET_OPTIONS and k not in files),
            "secret_options": sorted(k for k in task if k in SECRET_OPTIONS),
            "files": files,
            "check_mode": check_mode,
            "diff": diff,
            "exchanges": rec.exchanges,
            "certificates": rec.certificates,
            "result": result,
        }
        path = R.fixture_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(fixture, fh, indent=1, sort_keys=False)
            fh.write("\n")
        self.written.append(name)
        sys.stderr.write("%-40s %-6s %d exchanges\n" % (name, "FAILED" if failed else "ok", len(rec.exchanges)))
        return result


def scenarios(s):
    # reboot_seconds 2.5: the first status poll of encedo_reboot (delay 1) meets the device down
    ppa = s.emulator("ppa", devices=5, passphrase=PW, rtc_set=True, reboot_seconds=2.5)
    # --- encedo_info, encedo_login, encedo_attestation: device 0 of the personalised PPAs
    s.record("encedo_info_all", "encedo_info", ppa, 0, dict(passphrase=PW), note="personalised PPA, everything read")
    s.record("encedo_info_status", "encedo_info", ppa, 0, dict(gather_subset=["status"]), note="only the status, no credentials")
    s.record("encedo_info_bad_passphrase", "encedo_info", ppa, 0, dict(passphrase="not-the-passphrase", gather_subset=["config"]),
             note="a passphrase the device refuses")
    s.record("encedo_login_ok", "encedo_login", ppa, 0, dict(passphrase=PW, lifetime=600))
    s.record("encedo_login_bad_passphrase", "encedo_login", ppa, 0, dict(passphrase="not-the-passphrase"))
    custody = read(ppa.custody_ca_file)
    s.record("encedo_attestation_verified", "encedo_attestation", ppa, 0, dict(passphrase=PW, trust_anchor=custody))
    if s.wanted("encedo_attestation_tampered"):
        ppa.fault(0, "tamper_attestation")
    s.record("encedo_attestation_tampered", "encedo_attestation", ppa, 0, dict(passphrase=PW, trust_anchor=custody),
             note="the control interface's tamper_attestation fault: the token's signature does not verify")

    # --- encedo_config: device 1
    change = dict(passphrase=PW, user="Recorded User", origin="https://app.example")
    s.record("encedo_config_change", "encedo_config", ppa, 1, change, diff=True)
    s.record("encedo_config_noop", "encedo_config", ppa, 1, change, diff=True, note="the same task again")
    if s.wanted("encedo_config_busy"):
        ppa.fault(1, "busy", path="/api/system/config", method="POST")
    s.record("encedo_config_busy", "encedo_config", ppa, 1, dict(passphrase=PW, user="Another User"),
             note="the control interface's busy fault: the update is answered 409")
    if s.wanted("encedo_config_lost_answer"):
        ppa.fault(1, "drop", path="/api/system/config", method="POST", after_apply=True)
    s.record("encedo_config_lost_answer", "encedo_config", ppa, 1, dict(passphrase=PW, user="Lost Answer User", email="lost@example.com"),
             note="the control interface's drop fault after_apply: the update is applied, its answer lost")
    s.record("encedo_config_rotate", "encedo_config", ppa, 1, dict(passphrase=PW, new_passphrase=PW2), diff=True,
             note="passphrase rotation")

    # --- encedo_tls: device 2 (served certificate: the emulator's, for 127.0.0.1)
    served = x509.load_pem_x509_certificate(ppa.state(2)["tls_cert_pem"].encode())
    ca_key, ca_cert = make_ca("encedo.hem recorded test CA")
    new_cert = pem(issue(ca_key, ca_cert, served.public_key(), days=3650, names=("localhost",), ips=("127.0.0.1",)))
    s.record("encedo_tls_noop", "encedo_tls", ppa, 2, dict(passphrase=PW, certificate=pem(served)), diff=True,
             note="the certificate given is the one served")
    s.record("encedo_tls_csr", "encedo_tls", ppa, 2, dict(passphrase=PW, state="csr", force=True), diff=True)
    if s.wanted("encedo_tls_busy"):
        ppa.fault(2, "busy", path="/api/system/config", method="POST")
    s.record("encedo_tls_busy", "encedo_tls", ppa, 2, dict(passphrase=PW, certificate=new_cert), note="busy fault on the upload")
    s.record("encedo_tls_present", "encedo_tls", ppa, 2, dict(passphrase=PW, certificate=new_cert), diff=True,
             note="a certificate for the served key, issued by a CA made by the recorder")

    # --- encedo_reboot: device 3, up for more than UPTIME_SLACK seconds (its uptime can prove the restart at once)
    while s.wanted("encedo_reboot_ok") and ppa.state(3)["uptime"] <= 3:
        time.sleep(0.5)
    s.record("encedo_reboot_ok", "encedo_reboot", ppa, 3, dict(passphrase=PW, checkin=False, delay=1, poll_interval=0.5))

    # --- encedo_factory_reset: device 4
    s.record("encedo_factory_reset_wrong_devid", "encedo_factory_reset", ppa, 4, dict(passphrase=PW, confirm_devid="0123456789abcdef"))
    devid = ppa.state(4)["config"].get("devid", "")
    if s.wanted("encedo_factory_reset_busy"):
        ppa.fault(4, "busy", path="/api/system/config", method="POST")
    s.record("encedo_factory_reset_busy", "encedo_factory_reset", ppa, 4, dict(passphrase=PW, confirm_devid=devid),
             note="the control interface's busy fault: the wipe is answered 409")
    # a wiped device comes back at its factory address (here the same URL) with a factory certificate (factory CA)
    factory = dict(factory_url=ppa.url(4), factory_ca_path=ppa.factory_ca_file)
    s.record("encedo_factory_reset_ok", "encedo_factory_reset", ppa, 4, dict(factory, passphrase=PW, confirm_devid=devid),
             diff=True, files=dict(factory_ca_path=read(ppa.factory_ca_file)))

    # --- clock unset (power-up without a check-in): encedo_checkin, and encedo_reboot with checkin false
    unset = s.emulator("unset", devices=3, passphrase=PW, rtc_set=False)
    backend = dict(backend_url=unset.backend_url)
    s.record("encedo_checkin_unset", "encedo_checkin", unset, 0, backend)
    s.record("encedo_checkin_set", "encedo_checkin", unset, 0, backend, note="right after the first: the clock is set")
    if s.wanted("encedo_checkin_action_l"):
        unset.checkin_order(1, action="L", count=1)
    s.record("encedo_checkin_action_l", "encedo_checkin", unset, 1, backend, note="the stand-in backend orders action L")
    s.record("encedo_reboot_clock_unset", "encedo_reboot", unset, 2, dict(passphrase=PW, checkin=False))

    # --- factory-fresh PPAs (clock set, as after a check-in): encedo_init
    fresh = s.emulator("fresh", devices=3, rtc_set=True)
    init = dict(passphrase=PW, master_passphrase=MPW, user="Recorded User", hostname="localhost", ip="127.0.0.1/8")
    s.record("encedo_init_check", "encedo_init", fresh, 0, init, check_mode=True, diff=True)
    s.record("encedo_init_ok", "encedo_init", fresh, 0, init, diff=True)
    s.record("encedo_init_noop", "encedo_init", fresh, 0, init, diff=True, note="the same task again")
    if s.wanted("encedo_init_rejected"):
        fresh.fault(1, "error400", path="/api/auth/init", method="POST")
    s.record("encedo_init_rejected", "encedo_init", fresh, 1, init, note="the control interface's error400 fault")
    s.record("encedo_factory_reset_fresh", "encedo_factory_reset", fresh, 2, dict(confirm_devid="0123456789abcdef"))

    # --- an EPA: no secure-element attestation
    epa = s.emulator("epa", devices=1, passphrase=PW, rtc_set=True, model="epa")
    s.record("encedo_attestation_epa", "encedo_attestation", epa, 0, dict(passphrase=PW, trust_anchor=custody))


def main(argv=None):
    session = Session(list(sys.argv[1:] if argv is None else argv))
    try:
        scenarios(session)
    finally:
        session.close()
    sys.stderr.write("%d fixture files written to %s\n" % (len(session.written), R.FIXTURES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
