# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""encedo_key and encedo_key_info: the modules' rules against the emulator, over real HTTPS.

Each module test runs the module's main() in this process (helpers/inprocess.py ModuleRunner). What
reached the device is proven from the emulator's request log, which records each request's token scope:
the key modules log in once per scope they need and never send a write a run does not need.
One flow stays a real ansible-playbook run: the example playbook docs/examples/keys.yml on three devices
(its templating, register and the public keys written on the controller). What only a playbook shows is
proven elsewhere: the token guard (a registered token censored) tests/integration/test_info_login.py and
test_renewed_token.py, secrets in every output level tests/reliability/test_secrets.py.
The rules without a device (bad input, matching, paging, scopes) are unit tests: tests/unit/plugins/module_utils/test_keys.py.
"""

from __future__ import annotations

import hashlib
import sys
from collections import Counter

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.emulator.harness import Emulator
from tests.integration.helpers import ensure_collection_link
from tests.integration.helpers.inprocess import ModuleRunner
from tests.integration.helpers.playbook import REPO_ROOT

try:
    from ansible_collections.encedo.hem.plugins.module_utils import _keys
    from ansible_collections.encedo.hem.plugins.module_utils._client import HemClient
except ImportError:  # the collection resolves through build/collections (make link)
    ensure_collection_link()
    sys.path.insert(0, str(REPO_ROOT / "build" / "collections"))
    from ansible_collections.encedo.hem.plugins.module_utils import _keys
    from ansible_collections.encedo.hem.plugins.module_utils._client import HemClient

PW = "integration-keys-1"
MASTER = "integration-keys-master"
DEVICES = 16
KEY = "encedo.hem.encedo_key"
INFO = "encedo.hem.encedo_key_info"
EXAMPLE = REPO_ROOT / "docs" / "examples" / "keys.yml"
#: The scope each key endpoint was called with in these runs (least privilege: get reads with keymgmt:get
#: unless the run holds keymgmt:gen already for a creation).
SCOPES = {"list": {"keymgmt:list"}, "get": {"keymgmt:get", "keymgmt:gen"}, "create": {"keymgmt:gen"},
          "update": {"keymgmt:upd"}, "import": {"keymgmt:imp"}, "delete": {"keymgmt:del"}}


@pytest.fixture(scope="module")
def ppa(tmp_path_factory):
    emu = Emulator(devices=DEVICES, passphrase=PW, rtc_set=True, auth_delay=0.0, control=True,
                   tmp_path=tmp_path_factory.mktemp("keys-ppa"))
    emu.start()
    emu.next_device = 0
    yield emu
    emu.stop()


def take(emu, count=1):
    first = emu.next_device
    emu.next_device += count
    assert emu.next_device <= DEVICES, "raise DEVICES"
    for i in range(first, emu.next_device):
        emu.clear_log(i)
    return list(range(first, emu.next_device))


@pytest.fixture
def dev(ppa):
    return take(ppa)[0]


@pytest.fixture
def task(ppa, dev):
    return ModuleRunner(ppa, dev)


def key_requests(emu, i):
    """(method, endpoint name, scope) of every key repository request since the log was cleared."""
    out = []
    for e in emu.log(i):
        if e["path"].startswith("/api/keymgmt/"):
            out.append((e["method"], e["path"].split("/")[3], e["scope"]))
    return out


def writes(emu, i):
    return [r for r in key_requests(emu, i) if r[0] != "GET"]


def logins(emu, i):
    return sum(1 for e in emu.log(i) if e["method"] == "POST" and e["path"] == "/api/auth/token")


def assert_scopes(emu, i):
    requests = key_requests(emu, i)
    assert requests
    for method, name, scope in requests:
        assert scope in SCOPES[name], (method, name, scope)


def client(emu, i, scope):
    c = HemClient(emu.url(i), passphrase=PW, ca_path=emu.ca_file, timeout=10, scope=scope)
    c.login()
    return c


def seed(emu, i, label, ktype="AES256", count=1):
    """Keys made behind the modules' back (with the API, as another client would); -> their kids."""
    c = client(emu, i, "keymgmt:gen")
    return [c.post("/api/keymgmt/create", {"label": label if count == 1 else "%s%d" % (label, n), "type": ktype})["kid"]
            for n in range(count)]


def device_public(emu, i, kid):
    raw = HemClient(emu.url(i), passphrase=PW, ca_path=emu.ca_file, scope="keymgmt:get").get("/api/keymgmt/get/" + kid)["pubkey"]
    return _keys.shown_public_key("ED25519", __import__("base64").b64decode(raw))[0]


def fresh_ed25519_pem():
    return ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


# ------------------------------------------------------------------ create: check mode, apply, again, check mode again

def test_create_four_steps(ppa, dev, task):
    args = {"label": "release-signing", "type": "ED25519", "descr": "signs releases"}
    check = task(KEY, args, check=True, diff=True)
    assert check["changed"] is True and check["kid"] is None and check["public_key"] is None, check
    assert check["diff"] == {"before": {"state": "absent"},
                             "after": {"state": "present", "label": "release-signing", "type": "ED25519", "descr": "signs releases"}}
    assert writes(ppa, dev) == [] and assert_scopes(ppa, dev) is None

    ppa.clear_log(dev)
    made = task(KEY, args, diff=True)
    assert made["changed"] is True and made["sent"] == ["descr", "label", "type"], made
    assert len(made["kid"]) == 32 and made["type"] == "ED25519" and made["key"]["flags"] == ["PKEY", "ExDSA"]
    assert made["public_key"].startswith("-----BEGIN PUBLIC KEY-----") and made["key"]["public_key_format"] == "pem"
    assert made["public_key"] == device_public(ppa, dev, made["kid"])
    assert writes(ppa, dev) == [("POST", "create", "keymgmt:gen")]
    assert logins(ppa, dev) == 2 + 1         # list, gen (create and the public key read) + device_public's own

    ppa.clear_log(dev)
    again = task(KEY, args)
    assert again["changed"] is False and again["sent"] == [] and again["kid"] == made["kid"], again
    assert again["public_key"] == made["public_key"]
    assert writes(ppa, dev) == [], "a second run must send no write"
    assert [r[1:] for r in key_requests(ppa, dev)] == [("list", "keymgmt:list"), ("get", "keymgmt:get")]
    assert logins(ppa, dev) == 2

    ppa.clear_log(dev)
    check_again = task(KEY, args, check=True)
    assert check_again["changed"] is False and check_again["kid"] == made["kid"] and writes(ppa, dev) == []


def test_label_and_description_are_updated_in_place(ppa, dev, task):
    made = task(KEY, {"label": "partner-ecdh", "type": "SECP256R1", "mode": "ECDH,ExDSA"})
    ppa.clear_log(dev)
    renamed = task(KEY, {"kid": made["kid"], "label": "partner-ecdh-2", "descr": "rotated"}, diff=True)
    assert renamed["changed"] is True and renamed["kid"] == made["kid"], renamed
    assert renamed["diff"] == {"before": {"descr": "", "label": "partner-ecdh"}, "after": {"descr": "rotated", "label": "partner-ecdh-2"}}
    assert renamed["key"]["label"] == "partner-ecdh-2" and renamed["key"]["descr"] == "rotated"
    assert renamed["key"]["flags"] == ["PKEY", "ECDH", "ExDSA"] and renamed["public_key"] == made["public_key"]
    assert writes(ppa, dev) == [("POST", "update", "keymgmt:upd")] and assert_scopes(ppa, dev) is None
    assert logins(ppa, dev) == 3


# ------------------------------------------------------------------ paging

def test_forty_keys_are_all_listed_and_found(ppa, dev, task):
    kids = seed(ppa, dev, "bulk", count=40)
    ppa.clear_log(dev)
    info = task(INFO, {})
    assert info["total"] == 42 and info["matched"] == 42, info
    assert [k["kid"] for k in info["key_list"] if k["owner"] == "user"] == kids
    assert [k["owner"] for k in info["key_list"][:2]] == ["device", "device"]
    assert [e["path"] for e in ppa.log(dev) if e["path"].startswith("/api/keymgmt/")] == [
        "/api/keymgmt/list/0/15", "/api/keymgmt/list/15/15", "/api/keymgmt/list/30/15"]
    assert logins(ppa, dev) == 1

    ppa.clear_log(dev)
    last = task(KEY, {"label": "bulk39", "type": "AES256"})
    assert last["changed"] is False and last["kid"] == kids[39] and last["public_key"] is None, last
    assert writes(ppa, dev) == [] and logins(ppa, dev) == 1     # a secret key has no public part: no get

    filtered = task(INFO, {"label": "bulk7", "public_keys": True})
    assert [k["kid"] for k in filtered["key_list"]] == [kids[7]] and filtered["key_list"][0]["public_key"] is None


# ------------------------------------------------------------------ import

def test_import_twice_imports_once(ppa, dev, task):
    pem = fresh_ed25519_pem()
    raw = serialization.load_pem_public_key(pem.encode()).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    kid = hashlib.sha1(raw).hexdigest()[:32]
    args = {"label": "partner-a", "type": "ED25519", "public_key": pem}
    check = task(KEY, args, check=True)
    assert check["changed"] is True and check["kid"] == kid and check["public_key"] == pem, check
    assert writes(ppa, dev) == []
    first = task(KEY, args)
    assert first["changed"] is True and first["kid"] == kid and first["key"]["flags"] == ["ExDSA"], first
    assert first["public_key"] == pem and first["sent"] == ["label", "pubkey", "type"]
    assert writes(ppa, dev) == [("POST", "import", "keymgmt:imp")]
    ppa.clear_log(dev)
    second = task(KEY, args)
    assert second["changed"] is False and second["kid"] == kid and second["public_key"] == pem, second
    assert writes(ppa, dev) == [] and logins(ppa, dev) == 1       # found by its kid; its public key is the one given


# ------------------------------------------------------------------ what must not happen

def test_the_device_tls_key_and_certificate_are_never_touched(ppa, dev, task):
    before = task(INFO, {"public_keys": True})
    tls = [k for k in before["key_list"] if k["owner"] == "device"]
    assert [k["label"] for k in tls] == ["TLS key", "TLS certificate"], before
    ppa.clear_log(dev)
    for args in ({"kid": tls[0]["kid"], "state": "absent"}, {"kid": tls[1]["kid"], "label": "mine"},
                 {"label": "TLS key", "type": "SECP256R1"}, {"label": "TLS certificate", "state": "absent"}):
        result = task(KEY, args)
        assert result.get("failed") and "device's TLS key or certificate" in result["msg"], (args, result)
        assert "never changes or deletes it" in result["msg"]
    assert writes(ppa, dev) == []
    after = task(INFO, {})
    assert [(k["kid"], k["label"], k["updated"]) for k in after["key_list"] if k["owner"] == "device"] == \
        [(k["kid"], k["label"], k["updated"]) for k in tls]


def test_two_keys_with_one_label_fail_and_are_named(ppa, dev, task):
    kids = seed(ppa, dev, "twin") + seed(ppa, dev, "twin")
    ppa.clear_log(dev)
    for args in ({"label": "twin", "type": "AES256"}, {"label": "twin", "state": "absent"}):
        result = task(KEY, args)
        assert result.get("failed") and "label 'twin' names 2 keys" in result["msg"], result
        assert kids[0] in result["msg"] and kids[1] in result["msg"] and "Give kid" in result["msg"]
    assert writes(ppa, dev) == []
    one = task(KEY, {"kid": kids[1], "state": "absent"})
    assert one["changed"] is True and one["deleted"]["kid"] == kids[1]


def test_a_type_conflict_fails_and_names_the_key(ppa, dev, task):
    made = task(KEY, {"label": "sig", "type": "ED25519"})
    ppa.clear_log(dev)
    result = task(KEY, {"label": "sig", "type": "SECP256R1", "mode": "ExDSA"})
    assert result.get("failed") and made["kid"] in result["msg"] and "of type ED25519, not SECP256R1" in result["msg"], result
    assert "never changes in place" in result["msg"] and writes(ppa, dev) == []


def test_absent_deletes_the_one_key_matched_and_names_it(ppa, dev, task):
    made = task(KEY, {"label": "old", "type": "CURVE25519"})
    keep = task(KEY, {"label": "keep", "type": "CURVE25519"})
    ppa.clear_log(dev)
    check = task(KEY, {"label": "old", "type": "CURVE25519", "state": "absent"}, check=True, diff=True)
    assert check["changed"] is True and check["deleted"] == {"kid": made["kid"], "label": "old", "type": "CURVE25519"}
    assert check["diff"]["after"] == {"state": "absent"} and writes(ppa, dev) == []
    gone = task(KEY, {"label": "old", "type": "CURVE25519", "state": "absent"})
    assert gone["changed"] is True and gone["deleted"]["kid"] == made["kid"] and gone["key"] is None, gone
    assert writes(ppa, dev) == [("DELETE", "delete", "keymgmt:del")] and assert_scopes(ppa, dev) is None
    ppa.clear_log(dev)
    again = task(KEY, {"label": "old", "type": "CURVE25519", "state": "absent"})
    assert again["changed"] is False and again["deleted"] is None and writes(ppa, dev) == []
    left = task(INFO, {"type": "CURVE25519"})
    assert [k["kid"] for k in left["key_list"]] == [keep["kid"]]


def test_plain_http_is_refused_before_anything_is_sent(ppa, dev, task):
    for module in (KEY, INFO):
        result = task(module, {"url": "{{ hem_http_url }}", "label": "k", "type": "ED25519"} if module == KEY
                      else {"url": "{{ hem_http_url }}"})
        assert result.get("failed") and "HTTPS only" in result["msg"], result
    assert ppa.log(dev) == []


def test_a_token_with_one_scope_serves_what_it_covers(ppa, dev, task):
    token = client(ppa, dev, "keymgmt:list").token
    ppa.clear_log(dev)
    info = task(INFO, {"passphrase": None, "token": token})
    assert info["total"] == 2 and logins(ppa, dev) == 0, info
    result = task(KEY, {"passphrase": None, "token": token, "label": "k", "type": "ED25519"})
    assert result.get("failed") and "needs a token with the scope keymgmt:gen" in result["msg"], result
    assert "Give passphrase" in result["msg"] and token not in task.output and writes(ppa, dev) == []


# ------------------------------------------------------------------ a factory reset empties the repository

def test_a_factory_reset_empties_the_repository(ppa, dev, task):
    factory = {"url": "{{ hem_url }}", "ca_path": "{{ hem_factory_ca_path }}"}
    made = task(KEY, {"label": "doomed", "type": "ED25519"})
    assert not made.get("failed"), made
    for module, args in (
            ("encedo.hem.encedo_factory_reset", {"confirm_devid": ppa.device(dev)["devid"], "factory_url": "{{ hem_url }}",
                                                 "factory_ca_path": "{{ hem_factory_ca_path }}"}),
            ("encedo.hem.encedo_checkin", dict(factory, passphrase=None, backend_url="{{ hem_backend_url }}")),
            ("encedo.hem.encedo_init", dict(factory, master_passphrase=MASTER, user="u", hostname="hem%d.emulator.test" % dev,
                                            ip="127.0.0.1/8"))):
        result = task(module, args)
        assert not result.get("failed"), (module, result)
    info = task(INFO, factory)
    assert not info.get("failed") and info["total"] == 2 and [k["owner"] for k in info["key_list"]] == ["device", "device"], info
    again = task(KEY, dict(factory, label="doomed", type="ED25519"))
    assert again["changed"] is True and again["kid"] != made["kid"], again


# ------------------------------------------------------------------ the README example on three devices

def test_the_example_playbook_hands_out_three_public_keys(ppa, hem_playbook, tmp_path):
    devices = take(ppa, 3)
    host_vars = {"encedo_hem_url": "{{ hem_url }}", "encedo_hem_ca_path": "{{ hem_ca_path }}",
                 "encedo_hem_passphrase": "{{ hem_passphrase }}"}
    runner = hem_playbook(ppa, devices=devices, host_vars=host_vars)
    out = tmp_path / "public-keys"
    run = runner.run_playbook(str(EXAMPLE), extra_vars={"encedo_hem_keys_dir": str(out)})
    run.assert_ok()
    for i in devices:
        pem = (out / ("hem%d-release-signing.pem" % i)).read_text()
        made = run.result("Ensure the release-signing key", host="hem%d" % i)
        assert made["changed"] is True and pem == made["public_key"] == device_public(ppa, i, made["kid"])
        assert writes(ppa, i) == [("POST", "create", "keymgmt:gen")]
    again = runner.run_playbook(str(EXAMPLE), extra_vars={"encedo_hem_keys_dir": str(out)})
    again.assert_ok()
    assert all(stats["changed"] == 0 for stats in again.stats.values()), again.stats
    assert all(writes(ppa, i) == [("POST", "create", "keymgmt:gen")] for i in devices)


# ------------------------------------------------------------------ encedo_device's entry point

class View(object):
    """What ensure_keys needs of a module: params (url), check mode, diff, warn."""

    def __init__(self, url, check_mode=False):
        self.params = {"url": url}
        self.check_mode = check_mode
        self._diff = False
        self.warnings = []

    def warn(self, msg):
        self.warnings.append(msg)


def test_ensure_keys_shares_the_logins_and_gives_the_client_back(ppa, dev):
    c = HemClient(ppa.url(dev), passphrase=PW, ca_path=ppa.ca_file, timeout=10)
    keys = [{"label": "a", "type": "ED25519"}, {"label": "b", "type": "SECP256R1", "mode": "ExDSA"}, {"label": "c", "type": "AES256"}]
    results = _keys.ensure_keys(View(ppa.url(dev)), c, keys)
    assert [r["changed"] for r in results] == [True, True, True] and all(r["kid"] for r in results)
    assert Counter(e["scope"] for e in ppa.log(dev) if e["path"].startswith("/api/keymgmt/")) == \
        Counter({"keymgmt:list": 6, "keymgmt:gen": 5})
    assert logins(ppa, dev) == 2 and (c.scope, c.token) == ("system:config", None)
    ppa.clear_log(dev)
    again = _keys.ensure_keys(View(ppa.url(dev)), c, keys)
    assert [r["kid"] for r in again] == [r["kid"] for r in results] and not any(r["changed"] for r in again)
    assert writes(ppa, dev) == [] and logins(ppa, dev) == 2
    ppa.clear_log(dev)
    for bad, msg in (([{"label": "d", "type": "ED25519", "mode": "ECDH"}], "option keys[3].mode: applies to the SECP* types only"),
                     ([{"label": "d", "type": "ED25519", "size": 1}], "option keys[3]: unsupported field size")):
        with pytest.raises(Exception) as err:
            _keys.ensure_keys(View(ppa.url(dev)), c, keys + bad)
        assert str(err.value).startswith(msg), err.value
    with pytest.raises(Exception) as err:
        _keys.check_keys(ppa.http_url(dev), keys)
    assert "HTTPS only" in str(err.value) and ppa.log(dev) == []


def test_a_lost_answer_is_reported_and_the_next_run_finds_the_key(ppa, dev, task):
    ppa.fault(dev, "drop", path="/api/keymgmt/create", method="POST", after_apply=True)
    lost = task(KEY, {"label": "lost", "type": "ED448"})
    assert lost.get("failed") and "outcome unknown: the create of key lost was sent" in lost["msg"], lost
    assert lost["changed"] is True and "Run the task again" in lost["msg"]
    info = task(INFO, {"label": "lost"})
    assert info["matched"] == 1 and info["key_list"][0]["kid"] in lost["msg"]
    ppa.clear_log(dev)
    again = task(KEY, {"label": "lost", "type": "ED448"})
    assert again["changed"] is False and again["kid"] == info["key_list"][0]["kid"] and writes(ppa, dev) == []
