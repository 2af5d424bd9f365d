# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The key repository of one emulated device: `/api/keymgmt/*` (list, search, get, create,
update, import, derive, delete).

The Device owns one `KeyRepository`; records live in the device state (`p["keys"]`, so
`Device.save` keeps them with --state-dir and `Device._wipe`, which rebuilds the state,
empties them). Every rule below and its source is in docs/fidelity.md, "Key repository".
Keys are real: `cryptography` generates them (ML-KEM-512, which it lacks, and ML-KEM/ML-DSA
before cryptography 46 get a public part of the right length that is no real key), and
`get` returns public parts only.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import re
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, x448, x25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .util import b64d, b64e

PAGE = 15                  # OA list/search: page size, `count`/`limit` clamped to 15
LABEL_MAX = 32             # OA create/update/import/derive: label 1-32 printable ASCII
DESCR_MAX = 64             # OA create/update, search needle: 64 decoded bytes
ANON_SEARCH_MIN = 6        # OA search: anonymous `^` needles of at least 6 decoded bytes
FREE_SLOTS = 1024          # selftest `freeslots` before any record (the emulator's number; no limit is enforced)
KID_RE = re.compile(r"^[0-9a-fA-F]{32}$")
NUMBER_RE = re.compile(r"^[0-9]{1,9}$")
MODES = {"ECDH": ("ECDH",), "ExDSA": ("ExDSA",), "ECDH,ExDSA": ("ECDH", "ExDSA")}
EC_CURVES = {"SECP256R1": ec.SECP256R1, "SECP384R1": ec.SECP384R1, "SECP521R1": ec.SECP521R1,
             "SECP256K1": ec.SECP256K1}
PQC_PUBLIC = {"MLKEM512": 800, "MLKEM768": 1184, "MLKEM1024": 1568, "MLDSA44": 1312, "MLDSA65": 1952, "MLDSA87": 2592}
# Montgomery and Edwards curves: (private class, public class).
RAW_CLASSES = {"x25519": (x25519.X25519PrivateKey, x25519.X25519PublicKey),
               "x448": (x448.X448PrivateKey, x448.X448PublicKey),
               "ed25519": (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey),
               "ed448": (ed448.Ed448PrivateKey, ed448.Ed448PublicKey)}
# Key type -> (kind, usage flags without a `mode`, bytes of private material). A SECP* key made without `mode` is
# ECDH only (PY OQ-19); AES/SHA secrets are their own length (HMAC keys: the digest size, the emulator's choice).
KINDS = {name: ("ec", ("ECDH",), (curve.key_size + 7) // 8) for name, curve in EC_CURVES.items()}
KINDS.update({"CURVE25519": ("x25519", ("ECDH",), 32), "CURVE448": ("x448", ("ECDH",), 56),
              "ED25519": ("ed25519", ("ExDSA",), 32), "ED448": ("ed448", ("ExDSA",), 57),
              "AES128": ("secret", (), 16), "AES192": ("secret", (), 24), "AES256": ("secret", (), 32),
              "SHA2-256": ("secret", (), 32), "SHA2-384": ("secret", (), 48), "SHA2-512": ("secret", (), 64),
              "SHA3-256": ("secret", (), 32), "SHA3-384": ("secret", (), 48), "SHA3-512": ("secret", (), 64)})
KINDS.update({name: ("pqc", ("PQC",), 64 if name.startswith("MLKEM") else 32) for name in PQC_PUBLIC})
CREATE_TYPES = tuple(KINDS)                                                  # OA create: 23 types
IMPORT_TYPES = tuple(t for t in KINDS if KINDS[t][0] != "secret")            # OA import: 14
DERIVE_TYPES = tuple(t for t in KINDS if KINDS[t][0] != "pqc")               # OA derive: 17


class _Bad(Exception):
    """A field failed validation: the endpoint answers `status` (400 unless told)."""

    def __init__(self, status=400):
        super().__init__(status)
        self.status = status


def _response(status, body=None):
    from .device import Response          # device.py imports this module
    return Response(status, body)


def _label(value):
    if not isinstance(value, str) or not 1 <= len(value) <= LABEL_MAX or not all(" " <= c <= "~" for c in value):
        raise _Bad()
    return value


def _b64_field(value):
    """A base64 field (descr, pubkey): 400 when absent or not base64."""
    try:
        return b64d(value)
    except ValueError as exc:
        raise _Bad() from exc


def _descr(value):
    raw = _b64_field(value)
    if len(raw) > DESCR_MAX:
        raise _Bad()
    return raw


def _flags(ktype, mode, private):
    """The list `type` prefixes: PKEY (private part held), then the usage flags (`mode` for SECP* only)."""
    if mode is not None and mode not in MODES:
        raise _Bad()
    kind, flags, _size = KINDS[ktype]
    if kind == "ec" and mode is not None:
        flags = MODES[mode]
    return (("PKEY",) if private and kind != "secret" else ()) + flags


def _pqc_class(ktype):
    """cryptography's ML-KEM/ML-DSA private key class (46 and later), None where it has none."""
    try:
        from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem
    except ImportError:
        return None
    return getattr(mlkem if ktype.startswith("MLKEM") else mldsa, ktype + "PrivateKey", None)


def _ec_private(ktype, seed):
    """The SECP* private key of `seed`: a scalar below 2^(bits-1), so under the group order of all four curves."""
    curve = EC_CURVES[ktype]()
    return ec.derive_private_key(max(1, int.from_bytes(seed, "big") & ((1 << (curve.key_size - 1)) - 1)), curve)


def _from_seed(ktype, seed):
    """(private or secret bytes, raw public bytes or None) of a key made from `seed` (generated or derived)."""
    kind = KINDS[ktype][0]
    if kind == "secret":
        return seed, None
    if kind == "ec":
        pub = _ec_private(ktype, seed).public_key()
        return seed, pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    if kind == "pqc":
        cls = _pqc_class(ktype)
        if cls is None:       # not in this `cryptography`: the right length, no real key
            return seed, HKDF(hashes.SHA256(), PQC_PUBLIC[ktype], None, b"emulator-" + ktype.encode()).derive(seed)
        return seed, cls.from_seed_bytes(seed).public_key().public_bytes_raw()
    return seed, RAW_CLASSES[kind][0].from_private_bytes(seed).public_key().public_bytes_raw()


def _public_key(ktype, raw):
    """The `cryptography` public key of raw bytes (compressed X9.63 for SECP*); ValueError when not one."""
    kind = KINDS[ktype][0]
    if kind == "ec":
        if len(raw) != 1 + (EC_CURVES[ktype].key_size + 7) // 8 or raw[:1] not in (b"\x02", b"\x03"):
            raise ValueError("not a compressed point")
        return ec.EllipticCurvePublicKey.from_encoded_point(EC_CURVES[ktype](), raw)
    if kind == "pqc":
        if len(raw) != PQC_PUBLIC[ktype]:
            raise ValueError("length")
        return raw
    return RAW_CLASSES[kind][1].from_public_bytes(raw)


def _ecdh(ktype, seed, peer_raw):
    peer = _public_key(ktype, peer_raw)
    kind = KINDS[ktype][0]
    if kind == "ec":
        return _ec_private(ktype, seed).exchange(ec.ECDH(), peer)
    return RAW_CLASSES[kind][0].from_private_bytes(seed).exchange(peer)


class KeyRepository:
    """`/api/keymgmt/*` of one device (`dev`): the device lock is held by the caller."""

    def __init__(self, dev):
        self.dev = dev

    # ------------------------------------------------------------------ records

    @property
    def _stored(self):
        return self.dev.p.setdefault("keys", [])

    def _tls_records(self):
        """The device's TLS key and certificate, listed as records but never changed through this API."""
        p = self.dev.p
        cert = x509.load_pem_x509_certificate(p["tls_crt"].encode("ascii"))
        point = cert.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
        der = cert.public_bytes(serialization.Encoding.DER)
        start = getattr(cert, "not_valid_before_utc", None)          # cryptography 42 and later
        when = int((start or cert.not_valid_before.replace(tzinfo=datetime.timezone.utc)).timestamp())
        base = {"created": when, "updated": when, "descr": "", "pub": None, "fixed": True}
        return [dict(base, kid=hashlib.sha1(point).hexdigest()[:32], label="TLS key", type="PKEY,GENERIC_DER",
                     alg="DER_PKEY"),
                dict(base, kid=hashlib.sha1(der).hexdigest()[:32], label="TLS certificate", type="CERT,GENERIC_DER",
                     alg="CERT", der=b64e(der))]

    def _records(self):
        return self._tls_records() + self._stored

    def _find(self, kid):
        kid = kid.lower()
        return next((r for r in self._records() if r["kid"] == kid and not r.get("deleted")), None)

    def _store(self, label, ktype, flags, descr, secret, pub, kid=None):
        now = self.dev.now()
        rec = {"kid": kid or secrets.token_hex(16), "label": label, "alg": ktype, "type": ",".join(flags + (ktype,)),
               "created": now, "updated": now, "descr": b64e(descr) if descr else "",
               "pub": b64e(pub) if pub is not None else None, "priv": b64e(secret) if secret is not None else None}
        self._stored.append(rec)
        self.dev.save()
        return _response(200, {"kid": rec["kid"]})

    def stats(self):
        """`repo_stats` of GET /api/system/selftest."""
        records = self._records()
        deleted = sum(1 for r in records if r.get("deleted"))
        return {"total": len(records) - deleted, "deleted": deleted, "invalid": 0, "fragmented": 0,
                "freeslots": max(0, FREE_SLOTS - len(records))}

    @staticmethod
    def _entry(rec):
        out = {"kid": rec["kid"], "created": rec["created"], "type": rec["type"], "label": rec["label"],
               "updated": rec["updated"]}
        if rec["descr"]:
            out["descr"] = rec["descr"]
        return out

    def _page(self, records, offset, count, deleted):
        page = records[offset:offset + count]
        return _response(200, {"offset": offset, "deleted": deleted, "total": len(records), "listed": len(page),
                               "list": [self._entry(r) for r in page]})

    # ------------------------------------------------------------------ dispatch and access

    def route(self, method, path):
        """The handler of (method, path) under /api/keymgmt/, path arguments bound; None: no such route."""
        if not path.startswith("/api/keymgmt/"):
            return None
        name, *args = path[len("/api/keymgmt/"):].split("/")
        if method == "GET" and name == "list" and len(args) <= 2:
            return functools.partial(self.get_list, args)
        if method == "GET" and name == "get" and len(args) == 1:
            return functools.partial(self.get_key, args[0])
        if method == "DELETE" and name == "delete" and len(args) == 1:
            return functools.partial(self.delete_key, args[0])
        if method == "POST" and not args and name in ("search", "create", "update", "import", "derive"):
            return getattr(self, "post_" + name)
        return None

    def _busy(self):
        """409 before personalisation (OA: the repository is initialised then) and while a disk format runs."""
        dev = self.dev
        return not dev.p["personalised"] or (dev.msc and dev.formatting())

    def _deny(self, claims, prefixes, exact=None):
        """None when allowed, else the error Response: 409, 401 without a token, 403 for role M or scope."""
        if self._busy():
            return _response(409)
        if not claims:
            return _response(401)
        if claims.get("sub") == "M":
            return _response(403)
        if self.dev.scope_ok(claims, *prefixes) or (exact is not None and claims.get("scope") == exact):
            return None
        return _response(403)

    # ------------------------------------------------------------------ endpoints

    def get_list(self, args, req, claims):
        denied = self._deny(claims, ("keymgmt:list",))
        if denied:
            return denied
        if not all(NUMBER_RE.match(a) for a in args):
            return _response(406)
        offset = int(args[0]) if args else 0
        count = min(int(args[1]), PAGE) if len(args) == 2 else PAGE
        records = self._records()
        valid = [r for r in records if not r.get("deleted")]
        return self._page(valid, offset, count, len(records) - len(valid))

    def post_search(self, req, claims, body):
        needle = body.get("descr")
        raw, start, end = None, False, False
        if isinstance(needle, str):
            start = needle.startswith("^")
            end = needle.endswith("$") and len(needle) > int(start)
            core = needle[int(start):len(needle) - int(end)]
            try:
                raw = b64d(core) if core else b""
            except ValueError:
                raw = None
        anonymous = (raw is not None and start and len(raw) >= ANON_SEARCH_MIN and not self._busy()
                     and self.dev.cfg.get("allow_keysearch"))
        if not anonymous:
            denied = self._deny(claims, ("keymgmt:search", "keymgmt:list", "auth:ext:pair"))
            if denied:
                return denied
        offset, limit = body.get("offset", 0), body.get("limit", PAGE)
        if raw is None or any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in (offset, limit)):
            return _response(400)
        if len(raw) > DESCR_MAX:
            return _response(406)
        records = self._records()
        valid = [r for r in records if not r.get("deleted")]

        def hit(rec):
            descr = b64d(rec["descr"]) if rec["descr"] else b""
            if start and end:
                return descr == raw
            if start or end:
                return descr.startswith(raw) if start else descr.endswith(raw)
            return raw in descr

        return self._page([r for r in valid if hit(r)], offset, min(limit, PAGE), len(records) - len(valid))

    def get_key(self, kid, req, claims):
        denied = self._deny(claims, ("keymgmt:get", "keymgmt:gen"), exact="keymgmt:use:" + kid)
        if denied:
            return denied
        if not KID_RE.match(kid):
            return _response(400)
        rec = self._find(kid)
        if rec is None:
            return _response(406)
        out = {"type": rec["alg"], "updated": rec["updated"]}
        if rec.get("pub"):
            out["pubkey"] = rec["pub"]
        if rec.get("der"):
            out["der"] = rec["der"]
        if rec["descr"]:
            out["descr"] = rec["descr"]
        return _response(200, out)

    def post_create(self, req, claims, body):
        denied = self._deny(claims, ("keymgmt:gen",))
        if denied:
            return denied
        try:
            label = _label(body.get("label"))
            ktype = body.get("type")
            if ktype not in CREATE_TYPES:
                raise _Bad()
            flags = _flags(ktype, body.get("mode"), private=True)
            descr = _descr(body["descr"]) if "descr" in body else b""
        except _Bad as exc:
            return _response(exc.status)
        return self._store(label, ktype, flags, descr, *_from_seed(ktype, secrets.token_bytes(KINDS[ktype][2])))

    def post_update(self, req, claims, body):
        denied = self._deny(claims, ("keymgmt:upd",))
        if denied:
            return denied
        kid = body.get("kid")
        try:
            if not isinstance(kid, str) or not KID_RE.match(kid):
                raise _Bad()
            label = _label(body.get("label"))
            descr = _descr(body["descr"]) if "descr" in body else None
        except _Bad as exc:
            return _response(exc.status)
        rec = self._find(kid)
        if rec is None or rec.get("fixed"):
            return _response(406)
        rec["label"] = label
        if descr is not None:
            rec["descr"] = b64e(descr) if descr else ""
        rec["updated"] = self.dev.now()
        self.dev.save()
        return _response(200)

    def post_import(self, req, claims, body):
        denied = self._deny(claims, ("keymgmt:imp",))
        if denied:
            return denied
        ktype = body.get("type")
        try:
            label = _label(body.get("label"))
            descr = _descr(body["descr"]) if "descr" in body else b""
            if not isinstance(ktype, str):
                raise _Bad()
            pub = _b64_field(body.get("pubkey"))
            if ktype not in IMPORT_TYPES:
                raise _Bad(406)
            flags = _flags(ktype, body.get("mode"), private=False)
            _public_key(ktype, pub)
        except ValueError:
            return _response(406)
        except _Bad as exc:
            return _response(exc.status)
        kid = hashlib.sha1(pub).hexdigest()[:32]
        if self._find(kid) is not None:
            return _response(406)
        return self._store(label, ktype, flags, descr, None, pub, kid=kid)

    def post_derive(self, req, claims, body):
        denied = self._deny(claims, ("keymgmt:derive", "keymgmt:gen"))
        if denied:
            return denied
        kid, ktype, ext_kid = body.get("kid"), body.get("type"), body.get("ext_kid")
        try:
            if not isinstance(kid, str) or not KID_RE.match(kid) or not isinstance(ktype, str):
                raise _Bad()
            if ext_kid is not None and (not isinstance(ext_kid, str) or not KID_RE.match(ext_kid)):
                raise _Bad()
            label = _label(body.get("label"))
            if ktype not in DERIVE_TYPES:
                # OA quirk: an unknown target type answers 200 with the source kid and creates nothing.
                return _response(200, {"kid": kid.lower()})
            flags = _flags(ktype, body.get("mode"), private=True)
            peer_raw = None if ext_kid is not None else _b64_field(body.get("pubkey"))
        except _Bad as exc:
            return _response(exc.status)
        try:
            descr = _descr(body["descr"]) if "descr" in body else b""
        except _Bad:
            descr = b""                # OA: "silently dropped when malformed"
        src = self._find(kid)
        if src is None or not src.get("priv") or "ECDH" not in src["type"].split(","):
            return _response(406)
        if ext_kid is not None:
            peer = self._find(ext_kid)
            if peer is None or peer.get("alg") != src["alg"] or "ECDH" not in peer["type"].split(","):
                return _response(406)
            peer_raw = b64d(peer["pub"])
        try:
            shared = _ecdh(src["alg"], b64d(src["priv"]), peer_raw)
        except ValueError:
            return _response(406)
        seed = HKDF(hashes.SHA256(), KINDS[ktype][2], None, ("encedo-" + ktype).encode()).derive(shared)
        return self._store(label, ktype, flags, descr, *_from_seed(ktype, seed))

    def delete_key(self, kid, req, claims):
        denied = self._deny(claims, ("keymgmt:del",))
        if denied:
            return denied
        if not KID_RE.match(kid):
            return _response(400)
        rec = self._find(kid)
        if rec is None or rec.get("fixed"):
            return _response(406)
        rec.clear()
        rec.update(kid=kid.lower(), deleted=True)
        self.dev.save()
        return _response(200)
