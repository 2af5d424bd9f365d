# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bad input: every module option gets invalid values; each must fail with a message that
names the option, and ZERO requests may leave the module.

The table (CASES) holds one line per case: module, case id, the task's arguments (on top
of a valid baseline for that module), and the words the failure message must contain.
Each case runs the module's ``main()`` in-process (tests/unit/plugins/modules/replay.py
``run_main``), through HemModule.run and the engine as in a task, with the one seam where a
HemClient touches the network (``Transport.send``) and every socket connect replaced by
recorders: a case passes only when the module failed with the words and nothing was sent
or connected. (Until issue 24 this was one ansible-playbook run of ~250 hosts against
emulated devices; the module code under test is the same, the playbook machinery is not
what these cases are about.)
"""

from __future__ import annotations

import base64
import datetime
import importlib
import os
import socket

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.reliability.support import REPO_MODULES, issue, make_ca, pem
from tests.unit.plugins.modules import replay as R

from ansible_collections.encedo.hem.plugins.module_utils import _transport

PW = "bad-input-pass-1"
MISSING = "/nonexistent/encedo-reliability/ca.pem"
CLOSED = "http://127.0.0.1:9"           # a valid backend URL nobody listens on (never reached by these cases)
CONN = {"url": "{{ hem_url }}", "ca_path": "{{ hem_ca_path }}"}
AUTH = dict(CONN, passphrase="{{ hem_passphrase }}")


def _material():
    ca_key, ca_cert, ca_pem, _unused = make_ca("Bad input CA")
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = issue(ca_key, ca_cert, key.public_key(), "hem.example.test", dns=["hem.example.test"])
    now = datetime.datetime.now(datetime.timezone.utc)
    expired = (x509.CertificateBuilder().subject_name(leaf.subject).issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=30))
               .not_valid_after(now - datetime.timedelta(days=1)).sign(ca_key, hashes.SHA256()))
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
           .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode())
    _other_key, _other, other_pem, _unused = make_ca("Another CA")
    point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return {"ca": ca_pem, "leaf": pem(leaf), "expired": pem(expired), "csr": csr, "other_ca": other_pem,
            "emp": base64.b64encode(point).decode(), "key113": base64.b64encode(b"\0" * 16).decode() + "." + base64.b64encode(b"\0" * 64).decode()}


M = _material()

# A valid baseline per module: with it alone the task would run (and talk to the device).
BASE = {
    "encedo_info": dict(CONN),
    "encedo_login": dict(AUTH),
    "encedo_config": dict(AUTH),
    "encedo_factory_reset": dict(AUTH, confirm_devid="{{ hem_devid }}"),
    "encedo_attestation": dict(AUTH),
    "encedo_tls": dict(AUTH, certificate=M["leaf"]),
    "encedo_init": dict(CONN, passphrase=PW, master_passphrase=PW + "-master", user="Bad input", hostname="hem.example.test"),
    "encedo_checkin": dict(CONN, backend_url=CLOSED),
    "encedo_reboot": dict(AUTH, backend_url=CLOSED),
    "encedo_device": dict(AUTH, config={"user": "Bad input"}),
    "encedo_key": dict(AUTH, label="bad-input", type="ED25519"),
    "encedo_key_info": dict(AUTH),
    "encedo_firmware": dict(AUTH, src="{{ hem_ca_path }}", version="nGINE 9.9.9", backend_url=CLOSED),
    "encedo_audit_log": dict(AUTH, dest="{{ playbook_dir }}/audit-{{ inventory_hostname }}"),
}

# The connection options are shared, but each module must still refuse them before any request.
CONNECTION_CASES = [
    ("url_scheme", {"url": "ftp://127.0.0.1:1"}, ["url"]),
    ("url_no_host", {"url": "https://"}, ["url"]),
    ("url_query", {"url": "{{ hem_url }}/?debug=1"}, ["url"]),
    ("url_port", {"url": "https://127.0.0.1:99999"}, ["url"]),
    ("timeout_zero", {"timeout": 0}, ["timeout"]),
    ("timeout_negative", {"timeout": -3}, ["timeout"]),
    ("timeout_type", {"timeout": "soon"}, ["timeout"]),
    ("validate_certs_type", {"validate_certs": "maybe"}, ["validate_certs"]),
    # No "passphrase_and_token" case any more: given together is not a conflict (the token is used first, the
    # passphrase only to log in again when the device refuses it; tests/integration/test_info_login.py proves it),
    # and no other pair of connection options conflicts. Conflicting module options are in MODULE_CASES.
    ("ca_path_missing", {"ca_path": MISSING}, ["ca_path"]),
    ("unknown_option", {"wipeout": True}, ["wipeout", "Unsupported parameters"]),
]

MODULE_CASES = [
    ("encedo_login", "lifetime_zero", {"lifetime": 0}, ["lifetime"]),
    ("encedo_login", "lifetime_type", {"lifetime": "long"}, ["lifetime"]),
    ("encedo_login", "scope_too_long", {"scope": "system:config:" + "x" * 120}, ["scope", "127"]),
    ("encedo_login", "scope_with_space", {"scope": "system:config extra"}, ["scope"]),
    ("encedo_login", "scope_empty", {"scope": ""}, ["scope"]),

    ("encedo_config", "user_too_long", {"user": "u" * 33}, ["user", "32"]),
    ("encedo_config", "email_malformed", {"email": "not-an-email"}, ["email"]),
    ("encedo_config", "user_control_char", {"user": "Ops\tteam"}, ["user", "character 4 is a tab (U+0009)"]),
    ("encedo_config", "email_too_long", {"email": "a" * 52 + "@example.com"}, ["email", "64 characters"]),
    ("encedo_config", "origin_too_long", {"origin": "https://" + "o" * 56}, ["origin", "64 characters"]),
    ("encedo_config", "ctx_negative", {"ctx": -1}, ["ctx"]),
    ("encedo_config", "ctx_too_big", {"ctx": 4294967296}, ["ctx"]),
    ("encedo_config", "ctx_type", {"ctx": "many"}, ["ctx"]),
    ("encedo_config", "dosprot_out_of_range", {"http_option_dosprot_mode": 5}, ["http_option_dosprot_mode"]),
    ("encedo_config", "storage_mode_out_of_range", {"storage_mode": 256}, ["storage_mode"]),
    # storage_mode: only the six values the vendor manager sends, by name or number (the allowed list is in the message)
    ("encedo_config", "storage_mode_not_a_manager_value", {"storage_mode": 17}, ["storage_mode", "shown_readonly_ctr (81, 0x51)"]),
    ("encedo_config", "storage_mode_unknown_name", {"storage_mode": "hidden"}, ["storage_mode", "hidden_ctr (80, 0x50)"]),
    ("encedo_config", "format_timeout_zero", {"format_timeout": 0}, ["format_timeout"]),
    ("encedo_config", "disk0size_negative", {"storage_disk0size": -1}, ["storage_disk0size"]),
    ("encedo_config", "trusted_ts_type", {"trusted_ts": "maybe"}, ["trusted_ts"]),
    ("encedo_config", "hsts_type", {"http_option_hsts": [1]}, ["http_option_hsts"]),
    ("encedo_config", "hostname_malformed", {"hostname": "bad host!"}, ["hostname"]),
    ("encedo_config", "ip_malformed", {"ip": "300.1.2.3/24"}, ["ip"]),
    ("encedo_config", "new_passphrase_empty", {"new_passphrase": ""}, ["new_passphrase"]),
    ("encedo_config", "allow_reformat_type", {"allow_reformat": "perhaps"}, ["allow_reformat"]),
    ("encedo_config", "ctx_fraction", {"ctx": 1.5}, ["ctx"]),
    # The rules of encedo_init (one field table): values encedo_config used to send (issue 17, defect 1).
    ("encedo_config", "user_empty", {"user": ""}, ["option user:", "1 to 32"]),
    ("encedo_config", "user_invisible_char", {"user": "Ops\u200bteam"}, ["option user:", "U+200B"]),
    ("encedo_config", "hostname_underscore", {"hostname": "hem_0.example"}, ["option hostname:", "character 4 is '_'"]),
    ("encedo_config", "ip_prefix_31", {"ip": "10.0.0.1/31"}, ["option ip:", "8 to 30"]),

    ("encedo_factory_reset", "confirm_devid_empty", {"confirm_devid": ""}, ["confirm_devid"]),
    ("encedo_factory_reset", "confirm_devid_malformed", {"confirm_devid": "hem0"}, ["confirm_devid", "16 hex"]),
    ("encedo_factory_reset", "confirm_devid_missing", {"confirm_devid": None}, ["confirm_devid", "missing required"]),
    ("encedo_factory_reset", "wait_type", {"wait": "sometimes"}, ["wait"]),
    ("encedo_factory_reset", "wait_timeout_zero", {"wait_timeout": 0}, ["wait_timeout"]),
    ("encedo_factory_reset", "wait_timeout_type", {"wait_timeout": "long"}, ["wait_timeout"]),

    ("encedo_attestation", "state_choice", {"state": "trusted"}, ["state", "verified, provisioned"]),
    ("encedo_attestation", "max_age_zero", {"max_age": 0}, ["max_age"]),
    ("encedo_attestation", "max_age_type", {"max_age": "old"}, ["max_age"]),
    ("encedo_attestation", "skip_checks_choice", {"skip_checks": ["signature"]}, ["skip_checks", "signature"]),
    ("encedo_attestation", "trust_anchor_garbage", {"trust_anchor": "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----"},
     ["trust_anchor"]),
    ("encedo_attestation", "trust_anchor_not_ca", {"trust_anchor": M["leaf"]}, ["trust_anchor"]),
    ("encedo_attestation", "trust_anchor_both", {"trust_anchor": M["ca"], "trust_anchor_path": MISSING},
     ["trust_anchor", "trust_anchor_path", "mutually exclusive"]),
    ("encedo_attestation", "trust_anchor_path_missing", {"trust_anchor_path": MISSING}, ["trust_anchor_path"]),
    ("encedo_attestation", "fail_on_invalid_type", {"fail_on_invalid": "maybe"}, ["fail_on_invalid"]),
    ("encedo_attestation", "provisioned_without_certificate", {"state": "provisioned"}, ["certificate"]),
    ("encedo_attestation", "certificate_garbage", {"state": "provisioned", "certificate": "garbage"}, ["certificate"]),
    ("encedo_attestation", "certificate_bad_base64", {"state": "provisioned", "certificate": "MII@@@"}, ["certificate"]),

    ("encedo_tls", "state_choice", {"state": "absent"}, ["state", "present, csr"]),
    ("encedo_tls", "certificate_garbage", {"certificate": "garbage"}, ["certificate"]),
    ("encedo_tls", "certificate_bad_pem", {"certificate": "-----BEGIN CERTIFICATE-----\n@@@@\n-----END CERTIFICATE-----"}, ["certificate"]),
    ("encedo_tls", "certificate_is_csr", {"certificate": M["csr"]}, ["certificate"]),
    ("encedo_tls", "certificate_chain", {"certificate": M["leaf"] + M["ca"]}, ["certificate"]),
    ("encedo_tls", "certificate_expired", {"certificate": M["expired"]}, ["certificate", "expired"]),
    ("encedo_tls", "certificate_and_path", {"certificate_path": MISSING}, ["certificate", "certificate_path", "mutually exclusive"]),
    ("encedo_tls", "certificate_path_missing", {"certificate": None, "certificate_path": MISSING}, ["certificate_path"]),
    ("encedo_tls", "no_certificate", {"certificate": None}, ["certificate"]),
    ("encedo_tls", "key_import_bad_emp", {"key_import": {"emp": "!!not base64!!", "key": M["key113"]}}, ["emp"]),
    ("encedo_tls", "key_import_short_key", {"key_import": {"emp": M["emp"], "key": "abc.def"}}, ["key"]),
    ("encedo_tls", "key_import_no_key", {"key_import": {"emp": M["emp"]}}, ["key", "key_import"]),
    ("encedo_tls", "issuer_ca_garbage", {"issuer_ca": "garbage"}, ["issuer_ca"]),
    ("encedo_tls", "issuer_ca_both", {"issuer_ca": M["ca"], "issuer_ca_path": MISSING}, ["issuer_ca", "issuer_ca_path", "mutually exclusive"]),
    ("encedo_tls", "not_issued_by_issuer_ca", {"issuer_ca": M["other_ca"]}, ["certificate", "issuer_ca"]),
    ("encedo_tls", "remaining_days_negative", {"remaining_days": -1}, ["remaining_days"]),
    ("encedo_tls", "served_certificate_garbage", {"state": "csr", "certificate": None, "served_certificate": "garbage"},
     ["served_certificate", "not an X.509 certificate"]),
    ("encedo_tls", "served_certificate_with_present", {"served_certificate": M["leaf"]}, ["served_certificate", "state=present"]),
    ("encedo_info", "gather_subset_unknown", {"gather_subset": ["facts"]}, ["gather_subset", "not a subset", "allowed"]),
    ("encedo_info", "gather_subset_not_status", {"gather_subset": ["!status"]}, ["gather_subset", "!status is not allowed"]),
    ("encedo_tls", "force_with_present", {"force": True}, ["force", "state=present"]),
    ("encedo_tls", "csr_path_with_present", {"csr_path": "/tmp/x.csr"}, ["csr_path", "state=present"]),
    ("encedo_tls", "certificate_with_csr", {"state": "csr"}, ["certificate", "state=csr"]),
    ("encedo_tls", "url_plain_http", {"url": "{{ hem_http_url }}"}, ["url", "https"]),

    ("encedo_init", "user_empty", {"user": ""}, ["user"]),
    ("encedo_init", "user_too_long", {"user": "u" * 33}, ["user"]),
    ("encedo_init", "user_missing", {"user": None}, ["user", "missing required"]),
    ("encedo_init", "email_malformed", {"email": "nobody"}, ["email"]),
    ("encedo_init", "hostname_malformed", {"hostname": "bad_host!"}, ["hostname"]),
    ("encedo_init", "hostname_too_long", {"hostname": "h" * 64}, ["hostname"]),
    ("encedo_init", "origin_too_long", {"origin": "https://" + "o" * 125}, ["origin"]),
    ("encedo_init", "ip_no_prefix", {"ip": "192.168.7.1"}, ["ip"]),
    ("encedo_init", "ip_prefix_out_of_range", {"ip": "192.168.7.1/31"}, ["ip"]),
    ("encedo_init", "ip_malformed", {"ip": "192.168.7.300/24"}, ["ip"]),
    ("encedo_init", "storage_mode_out_of_range", {"storage_mode": 256}, ["storage_mode"]),
    ("encedo_init", "disk0size_negative", {"storage_disk0size": -1}, ["storage_disk0size"]),
    ("encedo_init", "ctx_negative", {"ctx": -1}, ["ctx"]),
    ("encedo_init", "same_passphrases", {"master_passphrase": PW}, ["passphrase", "master_passphrase"]),
    ("encedo_init", "master_empty", {"master_passphrase": ""}, ["master_passphrase"]),
    ("encedo_init", "trusted_ts_type", {"trusted_ts": "maybe"}, ["trusted_ts"]),
    ("encedo_init", "gen_csr_type", {"gen_csr": "maybe"}, ["gen_csr"]),

    ("encedo_device", "config_unknown_field", {"config": {"emial": "x"}}, ["config", "emial"]),
    ("encedo_device", "config_bad_value", {"config": {"user": "u" * 33}}, ["user"]),
    ("encedo_device", "keys_bad_type", {"keys": [{"label": "k", "type": "NOPE"}]}, ["keys[0]"]),
    ("encedo_device", "tls_issuer_missing", {"tls": {"issuer_ca_path": MISSING}}, ["issuer_ca_path"]),
    ("encedo_key", "label_too_long", {"label": "l" * 33}, ["label"]),
    ("encedo_key", "state_choice", {"state": "gone"}, ["state"]),
    ("encedo_key_info", "type_choice", {"type": "NOPE"}, ["type"]),
    ("encedo_firmware", "version_empty", {"version": ""}, ["version"]),
    ("encedo_firmware", "src_missing", {"src": MISSING}, ["src"]),
    ("encedo_firmware", "upload_timeout_zero", {"upload_timeout": 0}, ["upload_timeout"]),
    ("encedo_audit_log", "dest_is_a_file", {"dest": "{{ hem_ca_path }}"}, ["dest"]),

    ("encedo_checkin", "backend_url_scheme", {"backend_url": "ftp://127.0.0.1:1"}, ["backend_url"]),
    ("encedo_checkin", "backend_validate_certs_type", {"backend_validate_certs": "maybe"}, ["backend_validate_certs"]),
    ("encedo_checkin", "backend_ca_path_missing", {"backend_ca_path": MISSING}, ["backend_ca_path"]),

    ("encedo_reboot", "delay_negative", {"delay": -1}, ["delay"]),
    ("encedo_reboot", "reboot_timeout_zero", {"reboot_timeout": 0}, ["reboot_timeout"]),
    ("encedo_reboot", "poll_interval_zero", {"poll_interval": 0}, ["poll_interval"]),
    ("encedo_reboot", "checkin_type", {"checkin": "maybe"}, ["checkin"]),
    ("encedo_reboot", "backend_url_scheme", {"backend_url": "ftp://127.0.0.1:1"}, ["backend_url"]),
    ("encedo_reboot", "backend_ca_path_missing", {"backend_ca_path": MISSING}, ["backend_ca_path"]),
]


def _cases():
    out = []
    for module in BASE:
        for cid, args, words in CONNECTION_CASES:
            out.append((module, cid, args, words))
    out += MODULE_CASES
    return out


CASES = _cases()


@pytest.fixture(scope="module")
def values(tmp_path_factory):
    """What the table's placeholders stand for: a device address nobody listens on (no case may reach it), a
    real CA file, a directory for the audit log."""
    base = tmp_path_factory.mktemp("bad-input")
    ca_path = base / "ca.pem"
    ca_path.write_text(M["ca"])
    return {"{{ hem_url }}": "https://127.0.0.1:9", "{{ hem_http_url }}": "http://127.0.0.1:9", "{{ hem_ca_path }}": str(ca_path),
            "{{ hem_passphrase }}": PW, "{{ hem_devid }}": "0123456789abcdef", "{{ playbook_dir }}": str(base),
            "{{ inventory_hostname }}": "hem0"}


def fill(value, values):
    if isinstance(value, dict):
        return {k: fill(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, values) for v in value]
    if isinstance(value, str):
        for key, real in values.items():
            value = value.replace(key, real)
    return value


def task_args(module, args, values):
    merged = dict(BASE[module])
    merged.update(args)
    return fill({k: v for k, v in merged.items() if v is not None}, values)


@pytest.fixture
def network(monkeypatch):
    """Records every request and connection attempt (and refuses it): the list must stay empty."""
    attempts = []

    def send(transport, method, path, *_args, **_kwargs):
        attempts.append("%s %s%s" % (method, transport.url, path))
        raise AssertionError("a request was sent: %s %s%s" % (method, transport.url, path))

    def connect(_sock, address, *_args):
        attempts.append("connect %r" % (address,))
        raise OSError("no connection in this test (%r)" % (address,))

    monkeypatch.setattr(_transport.Transport, "send", send)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect)
    for name in [n for n in os.environ if n.startswith("ENCEDO_HEM_")] + ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"]:
        monkeypatch.delenv(name, raising=False)
    return attempts


@pytest.mark.parametrize("module,cid,args,words", CASES, ids=["%s-%s" % case[:2] for case in CASES])
def test_bad_input_is_refused_before_any_request(values, network, module, cid, args, words):
    code = importlib.import_module("ansible_collections.encedo.hem.plugins.modules." + module)
    result, failed = R.run_main(code, task_args(module, args, values))
    msg = result.get("msg", "")
    assert failed, "%s-%s: the module accepted the bad input: %s" % (module, cid, result)
    for word in words:
        assert word in msg, "%s-%s: the message does not say %r: %s" % (module, cid, word, msg)
    assert "Traceback" not in msg and "exception" not in result, result
    assert network == [], "%s-%s: requests or connections were attempted: %s" % (module, cid, network)


def test_every_module_has_bad_input_cases():
    """A new module must come with its own rows (connection options alone are not enough)."""
    modules = sorted(f[:-3] for f in os.listdir(REPO_MODULES) if f.startswith("encedo_") and f.endswith(".py"))
    assert sorted(BASE) == modules
    with_own = {m for m, _c, _a, _w in MODULE_CASES}
    assert with_own | {"encedo_info"} == set(modules), "modules without their own bad-input rows: %s" % (set(modules) - with_own)
