# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_keys: the rules of encedo_key and encedo_key_info without a device (bad input, matching, paging, scopes).

The flows against the emulator over HTTPS are in tests/integration/test_keys.py. Here every request a module
would send goes to a stub that fails the test: bad input must be refused before the first one.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from tests.unit.plugins.modules import replay as R

from ansible_collections.encedo.hem.plugins.module_utils import _keys, _transport
from ansible_collections.encedo.hem.plugins.module_utils._errors import HemError
from ansible_collections.encedo.hem.plugins.modules import encedo_key, encedo_key_info

URL = "https://hem.example.test"
KID1, KID2, KID3 = "1" * 32, "2" * 32, "3" * 32


def b64(data):
    return base64.b64encode(data).decode("ascii")


def listed(kid, label, kind, descr=b""):
    item = {"kid": kid, "label": label, "type": kind, "created": 1, "updated": 1}
    if descr:
        item["descr"] = b64(descr)
    return _keys.entry(item)


TLS = [listed("a" * 32, "TLS key", "PKEY,GENERIC_DER"), listed("b" * 32, "TLS certificate", "CERT,GENERIC_DER")]


@pytest.fixture
def sent(monkeypatch):
    """Every request main() tries to send (none may reach anything)."""
    requests = []

    def send(transport, method, path, *rest):
        requests.append((method, path))
        raise AssertionError("a request went out: %s %s" % (method, path))

    monkeypatch.setattr(_transport.Transport, "send", send)
    return requests


def run(module, args, check=False):
    return R.run_main(module, dict(dict(url=URL, passphrase="unit-pass-1"), **args), check_mode=check)


ED_PEM = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.mark.parametrize("args, msg", [
    (dict(url="http://hem.example.test", label="k", type="ED25519"), "option url: the key repository (/api/keymgmt/*) answers over HTTPS only"),
    (dict(label="k"), "option type: required to find or create a key"),
    (dict(type="ED25519"), "option label: required to find or create a key"),
    (dict(label="", type="ED25519"), "option label: '' must be 1 to 32 printable ASCII characters"),
    (dict(label="x" * 33, type="ED25519"), "option label: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' must be 1 to 32"),
    (dict(label="caf\u00e9", type="ED25519"), "option label: 'caf\u00e9' must be 1 to 32 printable ASCII"),
    (dict(label="k", type="ED25519", descr="\u00e9" * 33), "option descr: is 66 bytes in UTF-8; the device keeps at most 64"),
    (dict(label="k", type="ED25519", descr="EXTAID-1"), "option descr: descriptions starting with EXTAID or holding ETSFTX"),
    (dict(label="k", type="ED25519", descr="my ETSFTX app"), "option descr: descriptions starting with EXTAID or holding ETSFTX"),
    (dict(label="k", type="ED25519", mode="ExDSA"), "option mode: applies to the SECP* types only (type ED25519)"),
    (dict(kid="xyz", state="absent"), "option kid: 'xyz' is not a key id (32 hexadecimal digits)"),
    (dict(state="absent"), "option label: state=absent needs kid, public_key or label"),
    (dict(label="k", type="AES256", public_key=ED_PEM), "option type: importing public_key needs the type of the key"),
    (dict(label="k", type="SECP256R1", public_key=ED_PEM), "option public_key: the PEM key is not a secp256r1 key"),
    (dict(label="k", type="ED25519", public_key="not base64!"), "option public_key: neither PEM"),
    (dict(label="k", type="ED25519", public_key=b64(b"\x01" * 31)), "option public_key: a raw ED25519 public key is 32 bytes, got 31"),
    (dict(label="k", type="SECP256R1", public_key=b64(b"\x05" + b"\x00" * 32)), "option public_key: not a secp256r1 point"),
    (dict(type="ED25519", public_key=ED_PEM), "option label: required to import public_key"),
    (dict(label="k", type="ED25519", public_key=ED_PEM, kid=KID1), "option kid: 1111"),
])
def test_bad_input_is_refused_before_any_request(sent, args, msg):
    result, failed = run(encedo_key, args)
    assert failed and result["msg"].startswith(msg), result["msg"]
    assert "Nothing was sent" in result["msg"] or "HTTPS only" in result["msg"]
    assert sent == []


def test_a_bad_choice_is_refused_by_the_argument_spec(sent):
    result, failed = run(encedo_key, dict(label="k", type="RSA2048"))
    assert failed and "type" in result["msg"] and "RSA2048" in result["msg"] and sent == []


def test_key_info_refuses_plain_http_before_any_request(sent):
    result, failed = run(encedo_key_info, dict(url="http://hem.example.test"))
    assert failed and "HTTPS only" in result["msg"] and sent == []
    assert R.warnings(result) == []          # refused before the client is made (which warns about plain http)


def test_a_token_without_the_scope_is_named_before_any_request(sent):
    token = "e30." + base64.urlsafe_b64encode(b'{"scope":"system:config","exp":9999999999}').decode().rstrip("=") + ".c2ln"
    result, failed = run(encedo_key, dict(passphrase=None, token=token, label="k", type="ED25519"))
    assert failed and "needs a token with the scope keymgmt:list" in result["msg"], result["msg"]
    assert "the token given has the scope system:config" in result["msg"] and "Give passphrase" in result["msg"]
    assert token not in result["msg"] and sent == []


# ------------------------------------------------------------------ public keys and kids

def test_public_keys_in_every_accepted_form_give_the_device_form_and_kid():
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    compressed = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    forms = [key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
             b64(key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)), b64(compressed)]
    for text in forms:
        assert _keys.device_public_key("SECP256R1", text) == compressed
    assert _keys.import_kid(compressed) == hashlib.sha1(compressed).hexdigest()[:32]
    pem, form = _keys.shown_public_key("SECP256R1", compressed)
    assert form == "pem" and serialization.load_pem_public_key(pem.encode()) == key
    assert _keys.shown_public_key("MLDSA44", b"\x05" * 1312) == (b64(b"\x05" * 1312), "base64")
    assert _keys.shown_public_key("AES256", None) == (None, None)


# ------------------------------------------------------------------ matching

def want(**kw):
    return _keys.desired(dict(dict(state="present"), **kw))


def test_a_key_is_found_by_label_and_type_or_by_kid():
    keys = TLS + [listed(KID1, "sig", "PKEY,ExDSA,ED25519"), listed(KID2, "other", "PKEY,ECDH,SECP256R1")]
    assert _keys.find(keys, want(label="sig", type="ED25519"))["kid"] == KID1
    assert _keys.find(keys, want(kid=KID2))["kid"] == KID2
    assert _keys.find(keys, want(label="new", type="ED25519")) is None


def test_several_keys_under_one_label_fail_and_name_their_kids():
    keys = [listed(KID1, "sig", "PKEY,ExDSA,ED25519"), listed(KID2, "sig", "PKEY,ExDSA,ED25519")]
    with pytest.raises(HemError) as err:
        _keys.find(keys, want(label="sig", type="ED25519"))
    assert "names 2 keys" in err.value.msg and KID1 in err.value.msg and KID2 in err.value.msg


def test_another_type_or_mode_under_the_label_fails_and_names_the_kid():
    keys = [listed(KID1, "sig", "PKEY,ECDH,SECP256R1")]
    with pytest.raises(HemError) as err:
        _keys.find(keys, want(label="sig", type="ED25519"))
    assert KID1 in err.value.msg and "of type SECP256R1, not ED25519" in err.value.msg
    with pytest.raises(HemError) as err:
        _keys.find(keys, want(label="sig", type="SECP256R1", mode="ExDSA"))
    assert KID1 in err.value.msg and "mode ECDH, not ExDSA" in err.value.msg
    assert _keys.find(keys, want(label="sig", type="SECP256R1", mode="ECDH"))["kid"] == KID1


@pytest.mark.parametrize("record, owner", [
    (TLS[0], "device"), (TLS[1], "device"),
    (listed(KID1, "phone", "ATT,PKEY,ECDH,CURVE25519"), "phone"),
    (listed(KID1, "phone", "PKEY,ECDH,CURVE25519", b"EXTAID" + b"\x01\x02"), "phone"),
    (listed(KID1, "app", "ATT,PKEY,ECDH,CURVE25519", b"xETSFTXy"), "app"),
])
def test_keys_of_the_device_and_its_pairings_are_never_matched(record, owner):
    assert _keys.owner(dict(type=",".join(record["flags"] + [record["type"]]), descr_raw=record["descr"].encode())) == owner
    for wanted in (want(kid=record["kid"]), want(label=record["label"], type="CURVE25519"),
                   _keys.desired(dict(kid=record["kid"], state="absent"))):
        with pytest.raises(HemError) as err:
            _keys.find(TLS + [record] if record not in TLS else TLS, wanted)
        assert "never changes or deletes it" in err.value.msg


def test_an_import_under_a_label_in_use_fails():
    pub = _keys.device_public_key("ED25519", ED_PEM)
    keys = [listed(KID1, "partner", "ExDSA,ED25519")]
    with pytest.raises(HemError) as err:
        _keys.find(keys, want(label="partner", type="ED25519", public_key=ED_PEM))
    assert KID1 in err.value.msg and "second key" in err.value.msg
    keys.append(listed(_keys.import_kid(pub), "partner", "ExDSA,ED25519"))
    assert _keys.find(keys, want(label="partner", type="ED25519", public_key=ED_PEM))["kid"] == _keys.import_kid(pub)


# ------------------------------------------------------------------ paging and scopes

class PagingClient(object):
    """Answers the key list from ``records`` with a ``listed`` that lies (the community client's finding)."""

    def __init__(self, records):
        self.records = records
        self.paths = []

    def get(self, path):
        self.paths.append(path)
        offset, count = (int(part) for part in path.rsplit("/", 2)[1:])
        page = self.records[offset:offset + min(count, 15)]
        return {"offset": offset, "total": len(self.records), "listed": 0, "list": page}


def test_the_list_is_read_until_the_offset_reaches_the_total():
    records = [{"kid": "%032x" % i, "label": "k%d" % i, "type": "AES256", "created": 1, "updated": 1} for i in range(40)]
    client = PagingClient(records)
    assert [k["label"] for k in _keys.list_keys(client)] == ["k%d" % i for i in range(40)]
    assert client.paths == ["/api/keymgmt/list/0/15", "/api/keymgmt/list/15/15", "/api/keymgmt/list/30/15"]


def test_an_empty_page_before_the_total_fails_instead_of_looping():
    client = PagingClient([])
    client.get = lambda path: {"total": 3, "list": []}
    with pytest.raises(HemError) as err:
        _keys.list_keys(client)
    assert "listed 0 of its 3 keys" in err.value.msg


class ScopeClient(object):
    scope = "system:config"

    def __init__(self, token=None, passphrase="pw"):
        self.token = token
        self.passphrase = passphrase


def test_scopes_keep_one_token_per_scope_and_give_the_client_back():
    client = ScopeClient()
    scopes = _keys.Scopes(client)
    assert scopes.on("keymgmt:list") is client and client.scope == "keymgmt:list" and client.token is None
    client.token = "list-token"               # what the lazy login would set
    scopes.on("keymgmt:get")
    client.token = "get-token"
    scopes.on("keymgmt:list")
    assert client.token == "list-token"
    assert scopes.get_scope() == "keymgmt:get"
    scopes.on("keymgmt:gen")
    assert scopes.get_scope() == "keymgmt:gen"
    scopes.close()
    assert (client.scope, client.token) == ("system:config", None)


def test_a_rename_onto_a_label_in_use_fails_before_any_write():
    keys = [listed(KID1, "a", "PKEY,ExDSA,ED25519"), listed(KID2, "b", "PKEY,ExDSA,ED25519")]
    resource = _keys.KeyResource(scopes=None)
    with pytest.raises(HemError) as err:
        resource.plan(keys, want(kid=KID1, label="b"))
    assert "label 'b' is held by %s" % KID2 in err.value.msg and "Nothing was sent" in err.value.msg
    plan = resource.plan(keys, want(kid=KID1, label="c", descr=""))
    assert plan.extra["action"] == "update" and plan.body == {"kid": KID1, "label": "c"} and plan.sent == ["kid", "label"]
    plan = resource.plan(keys, want(kid=KID1, descr="new"))
    assert plan.body == {"kid": KID1, "label": "a", "descr": b64(b"new")} and plan.after == {"descr": "new"}
    assert not resource.plan(keys, want(kid=KID1, label="a"))
