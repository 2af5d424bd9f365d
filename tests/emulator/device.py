# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One emulated HEM device: its persistent state, its boot state and its REST API.

Transport (sockets, TLS, HTTP parsing) lives in server.py; this module turns a parsed
`Request` into a `Response` and never touches a socket. See the package docstring for
every choice made where the device contract is ambiguous.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import ipaddress
import json
import os
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from . import keymgmt, upgrade, util
from .logger import AuditLog
from .util import b64d, b64e

# ---------------------------------------------------------------------------- constants

NONCE_TTL = 60                 # login / init nonces (PROTOCOL.md)
CONFIG_NONCE_TTL = 300         # the rotation nonce handed out by GET /api/system/config
CHECKIN_TTL = 600              # how long a `check` stays answerable
DEFAULT_TOKEN_LIFETIME = 8 * 3600
MAX_BODY = 7300
MAX_LOG = 20000
FACTORY_IP = "192.168.7.1/24"
FACTORY_HOSTNAME = "my.ence.do"
STORAGE_CAPACITY = 120979451
BACKEND_ISSUER = "hem-emulator-backend"
CHECKIN_ACTIONS = ("OK", "L", "W", "R", "B", "U")   # OpenAPI POST /api/system/checkin

PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Cache-Control, Pragma, Expires, Authorization, Content-Disposition",
    "Access-Control-Max-Age": "86400",
    "Access-Control-Allow-Credentials": "true",
}

# Families the emulator does not implement: HTTPS answers 404. keymgmt (keymgmt.py) and crypto refuse plain
# HTTP with 418 (two documented quirks answer 409 instead).
UNIMPLEMENTED_PREFIXES = ("/api/crypto/", "/api/storage/", "/api/auth/ext/")
TLS_ONLY_PREFIXES = ("/api/keymgmt/", "/api/crypto/")
HTTP_409_QUIRKS = ("/api/keymgmt/delete/", "/api/crypto/hmac/hash")

# A DNS host name (RFC 1123 syntax: labels of 1-63 letters, digits and hyphens, not starting or
# ending with a hyphen; at most 253 characters). The OpenAPI file gives no format; the vendor
# manager's own names (`<prefix>.ence.do`, prefix up to 63 characters) fit.

# Integers without a documented range: what JSON carries exactly (RFC 8259 section 6), not negative.
JSON_INT_MAX = 2 ** 53 - 1

# Configuration fields: name -> (kind, bounds, MSC build only). Kinds: bool, int, str (bounds =
# (min, max) length, or None: any string). Every bound is the OpenAPI file's (user maxLength 32,
# http_option_dosprot_mode 0..4) or the device's own (storage_capacity); see the package docstring.
CONFIG_FIELDS = {
    "user": ("str", (0, 32), False),
    "email": ("str", None, False),
    "origin": ("str", None, False),
    "trusted_ts": ("bool", None, False),
    "trusted_backend": ("bool", None, False),
    "allow_keysearch": ("bool", None, False),
    "ctx": ("int", (0, JSON_INT_MAX), False),
    "http_option_hsts": ("bool", None, False),
    "http_option_dosprot_mode": ("int", (0, 4), False),
    "dnsd": ("bool", None, True),
    "storage_mode": ("int", (0, JSON_INT_MAX), True),
    "storage_disk0size": ("int", (0, STORAGE_CAPACITY), True),
}

# Status flag of disk 0 at boot for the storage_mode values the vendor manager sends
# (build.js layeredStorageEncrSet; index.html "Show regular disk on start", "Regular disk on
# start: Read-only/Writable"); other values: "rw" (sources silent).
DISK0_FLAGS = {0x51: "ro", 0xA1: "ro", 0x53: "rw", 0xA3: "rw", 0x50: "-", 0xA0: "-"}

# Disk 1 encryption of the storage_mode values the vendor manager sends (build.js layeredStorageEncrSet, its
# "CTR"/"XTS" choice). A change between CTR and XTS formats the storage: the manager warns "This will format
# storage and remove all the data stored there" and resends storage_disk0size with it (build.js storage_change,
# storageChange(..., true)). Other values have no known encryption: a change to or from one does not format
# (sources silent).
DISK1_ENCRYPTION = {0x50: "ctr", 0x51: "ctr", 0x53: "ctr", 0xA0: "xts", 0xA1: "xts", 0xA3: "xts"}


def encryption_changes(old_mode, new_mode) -> bool:
    """True when storage_mode goes between two of the manager's values with another disk 1 encryption."""
    old, new = DISK1_ENCRYPTION.get(old_mode), DISK1_ENCRYPTION.get(new_mode)
    return old is not None and new is not None and old != new


# While a disk format runs these answer 409: the implemented endpoints whose OpenAPI responses
# reference the generic Conflict ("... disk format in progress").
BUSY_DURING_FORMAT = (("POST", "/api/system/config"), ("GET", "/api/auth/init"), ("POST", "/api/auth/init"),
                      ("GET", "/api/system/config/attestation"))
INIT_REQUIRED = ("user", "masterkey", "userkey", "hostname", "origin", "trusted_ts", "trusted_backend",
                 "allow_keysearch", "email")
INIT_REQUIRED_MSC = ("ip", "storage_mode", "storage_disk0size", "dnsd")
INIT_OPTIONAL = ("ctx", "gen_csr", "http_option_hsts", "http_option_dosprot_mode")
# Personalisation `cfg` fields: name -> (kind, bounds or None). Only limits with a source (package docstring,
# "Personalisation"): user maxLength 32 and http_option_dosprot_mode 0..4 (OpenAPI POST /api/system/config),
# storage_disk0size at most the storage (the web manager's size slider stops at the total of status `storage`).
INIT_FIELDS = {
    "user": ("str", (0, 32)), "email": ("str", None), "hostname": ("str", None), "origin": ("str", None),
    "userkey": ("key", None), "masterkey": ("key", None), "ip": ("cidr", None),
    "trusted_ts": ("bool", None), "trusted_backend": ("bool", None), "allow_keysearch": ("bool", None),
    "dnsd": ("bool", None), "gen_csr": ("bool", None), "http_option_hsts": ("bool", None),
    "storage_mode": ("int", None), "ctx": ("int", None), "storage_disk0size": ("int", (0, STORAGE_CAPACITY)),
    "http_option_dosprot_mode": ("int", (0, 4)),
}
INIT_CIDR_RE = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}/\d{1,2}$")
INIT_BIP39_ROUNDS = 2048


def init_master_private(phrase: str) -> bytes:
    """The web manager's master private key from a BIP39 recovery phrase (`--master-recovery-phrase`).

    jsbip39 `toSeed` (words split on white space, joined by single spaces, NFKD; PBKDF2-HMAC-SHA512, salt
    "mnemonic", 2048 rounds) as 128 hex digits, of which digits 1..64 (the second to the 65th) are the key:
    encedo-manager build.js `initFinal`, `fromHexString(seedM.substr(1, 64))`. No word-list or checksum check:
    the device never sees the phrase.
    """
    import unicodedata
    words = unicodedata.normalize("NFKD", " ".join(phrase.split()))
    seed_hex = hashlib.pbkdf2_hmac("sha512", words.encode("utf-8"), b"mnemonic", INIT_BIP39_ROUNDS).hex()
    return bytes.fromhex(seed_hex[1:65])


def factory_config(model: str) -> dict:
    cfg = {
        "user": "", "email": "", "hostname": FACTORY_HOSTNAME, "origin": "*",
        "trusted_ts": True, "trusted_backend": True, "allow_keysearch": False, "ctx": 0,
        "ip": FACTORY_IP, "http_option_hsts": False, "http_option_dosprot_mode": 0, "dnsd": False,
    }
    if model == "ppa":
        # No source gives a fresh PPA's storage layout: the emulator takes the web manager's default one (disk 0 of
        # 4 GiB shown read-only, disk 1 in CTR), so that personalising with the manager's values neither reboots nor
        # formats - the manager's own flow after initFinal (no reboot for my.ence.do, `format` absent = ready).
        cfg.update(dnsd=True, storage_mode=0x51, storage_disk0size=4 * 2097152)
    return cfg


class BadRequest(Exception):
    """Raised by validators: answer 400."""


# ---------------------------------------------------------------------------- request / response

@dataclass
class Request:
    method: str
    path: str
    headers: dict            # lower-case names
    body: bytes | None
    scheme: str              # "https" | "http"
    started: float = field(default_factory=time.monotonic)
    query: str = ""          # the target's query string, without "?" (the control interface reads it)

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)


@dataclass
class Response:
    status: int
    body: object = None      # dict -> JSON, bytes -> text/plain, None -> empty
    headers: dict = field(default_factory=dict)
    after: object = None     # callable run once the answer is sent (reboot, wipe, ...)
    min_time: float = 0.0    # answer no earlier than request start + min_time (login delay)
    drop: bool = False       # close without answering

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body            # text/plain (a log file)
        return b"" if self.body is None else util.json_bytes(self.body)


def _err(status):
    return Response(status)


# ---------------------------------------------------------------------------- device

class Device:
    """State and API of one emulated device."""

    def __init__(self, fleet, index: int, state: dict | None = None):
        self.fleet = fleet
        self.index = index
        self.model = fleet.model
        self.lock = threading.RLock()
        self._derive_lock = threading.Lock()
        self._lazy = {}                   # role -> passphrase whose key is not derived yet (never persisted)
        self.log = []
        self.faults = []
        self.tamper = 0
        self.checkin_order = None         # control interface: the backend's next answer for this device
        self.clock_offset = 0.0
        self.up = True
        self.down_until = 0.0
        self.ssl_context = None
        self.keys = keymgmt.KeyRepository(self)      # its records live in self.p["keys"]
        if state is None:
            self.p = self._new_state()
        else:
            self.p = state
        self.logger = AuditLog(self)      # the audit log (tests/emulator/logger.py)
        self.upgrade = upgrade.Upgrade(self)     # /api/system/upgrade/*, check-in U (upgrade.py)
        self._boot(rtc_set=fleet.rtc_set)

    # ------------------------------------------------------------------ persistent state

    def _new_state(self) -> dict:
        tls_key = util.new_p256()
        att_key = util.new_p256()
        st = {
            "version": 1,
            "model": self.model,
            "devid": secrets.token_hex(8),
            "genuine_id": "0123" + secrets.token_hex(7),
            "eid": b64e(util.new_x25519()),
            "eid_sign": b64e(util.new_ed25519()),
            "att_key": util.key_pem(att_key),
            "att_crt": None,
            "tls_key": util.key_pem(tls_key),
            "tls_crt": util.cert_pem(self.fleet.issue_device_cert(self.index, tls_key.public_key())),
            "pending_tls": None,
            "tls_bundle": self.fleet.tls_bundle,
            "personalised": False,
            "instanceid": None,
            "userkey": None,
            "masterkey": None,
            "iat": 0,
            "uts": 0,
            "config": factory_config(self.model),
        }
        if self.fleet.se_provisioned and self.model == "ppa":
            st["att_crt"] = b64e(util.cert_der(self._issue_att_cert(att_key, st)))
        return st

    def _issue_att_cert(self, att_key, st):
        eid_pub = util.x25519_public(b64d(st["eid"]))
        return util.issue_attestation_cert(self.fleet.custody_key, self.fleet.custody_cert, att_key.public_key(),
                                           st["genuine_id"], eid_pub, not_after=self.fleet.attestation_not_after)

    def save(self):
        if self.fleet.state_dir:
            util.atomic_write(os.path.join(self.fleet.state_dir, "device-%d.json" % self.index),
                              json.dumps(self.p, indent=1, sort_keys=True).encode("utf-8"))

    def personalise_at_start(self, passphrase: str, master: str | None, master_phrase: str | None = None):
        """--passphrase: personalised with lazily derived keys (PBKDF2 runs on first login). With
        --master-recovery-phrase the master key is derived at once (2048 rounds only)."""
        st = self.p
        st["personalised"] = True
        st["config"].update(user="user", hostname="hem%d.emulator.test" % self.index, trusted_ts=True)
        st["iat"] = st["uts"] = int(time.time())
        st["instanceid"] = self._instance_id(b"start")
        self._lazy = {"userkey": passphrase}
        if master_phrase is not None:
            st["masterkey"] = b64e(util.x25519_public(init_master_private(master_phrase)))
        else:
            self._lazy["masterkey"] = master
        self.save()

    def resume_lazy(self, passphrase, master, master_phrase=None):
        """Restart with --state-dir: keys never derived before the last stop are derived from the CLI again."""
        if self.p["personalised"]:
            if self.p["userkey"] is None and passphrase is not None:
                self._lazy["userkey"] = passphrase
            if self.p["masterkey"] is None and master_phrase is not None:
                self.p["masterkey"] = b64e(util.x25519_public(init_master_private(master_phrase)))
                self.save()
            elif self.p["masterkey"] is None and master is not None:
                self._lazy["masterkey"] = master

    def _instance_id(self, salt: bytes) -> str:
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF
        raw = HKDF(hashes.SHA256(), 16, salt, b"instanceid").derive(b64d(self.p["eid"]))
        return str(uuid.UUID(bytes=raw))

    def stored_key(self, role: str):
        """Public key (bytes) stored for role 'userkey'/'masterkey', deriving a lazy one first.

        The derivation runs under its own lock and never holds it while taking the device
        lock (a login holding the device lock may call this too).
        """
        if self.p.get(role) is None and role in self._lazy:
            pub = None
            with self._derive_lock:
                passphrase = self._lazy.get(role)
                if self.p.get(role) is None and passphrase is not None:
                    eid_text = self.eid_public_b64()
                    pub = b64e(util.x25519_public(util.derive_private(passphrase, eid_text)))
            if pub is not None:
                with self.lock:
                    if self.p.get(role) is None and self._lazy.get(role) == passphrase and self.p["personalised"]:
                        self.p[role] = pub
                        self._lazy.pop(role, None)
                        self.save()
        value = self.p.get(role)
        return None if value is None else b64d(value)

    # ------------------------------------------------------------------ boot state

    def _boot(self, rtc_set: bool):
        pending = self.p.get("pending_tls")
        if pending:
            self.p["tls_key"], self.p["tls_crt"] = pending["key"], pending["crt"]
            self.p["pending_tls"] = None
            self.p["tls_bundle"] = True
            self.save()
        self.boot_id = uuid.uuid4().hex
        self.boot_mono = time.monotonic()
        self.session = util.new_x25519()
        self.bearer_key = secrets.token_bytes(32)
        self.nonces = {}             # jti -> expiry (login + init)
        self.cfg_nonces = {}         # nonce -> expiry
        self.check_nonces = {}       # nonce -> expiry
        self.rtc_set = rtc_set
        self.failures = 0
        self.fmt = None              # the disk format task of this boot (None: none ran)
        self.boot_storage_mode = self.cfg.get("storage_mode")
        self.upgrade.on_boot()
        self.address = self._boot_address()
        self.ssl_context = self.fleet.make_ssl_context(self.index, self.p["tls_key"], self.p["tls_crt"])
        self.logger.power_up()

    def _boot_address(self):
        """Where this boot answers (package docstring, "Addressing"): the factory `ip` at the fleet's --bind address,
        a personalised one at its own address."""
        factory = self.fleet.factory_address()
        try:
            ip = str(ipaddress.ip_interface(self.cfg.get("ip", FACTORY_IP)).ip)
        except ValueError:
            ip = None
        moved = self.msc and ip is not None and ip != FACTORY_IP.split("/", 1)[0]
        self._name_certificate(ip if moved else None)
        return ip if moved else factory

    def _name_certificate(self, ip):
        """A certificate of the tests' CA follows the personalised hostname and the personalised address `ip` (None:
        the factory one): re-issued at boot (same key) when it does not name them. OA: the device's CSRs name the
        personalised hostname and ip (`POST /api/auth/init` `gen_csr`), so the certificates issued for them do; an
        imported certificate is served as it is."""
        if not self.p["personalised"] or not self.fleet.issued_by_test_ca(self.p["tls_crt"]):
            return
        hostname = str(self.cfg.get("hostname") or "").lower()
        crt = x509.load_pem_x509_certificate(self.p["tls_crt"].encode("ascii"))
        try:
            san = crt.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = [n.lower() for n in san.get_values_for_type(x509.DNSName)]
            ips = [str(a) for a in san.get_values_for_type(x509.IPAddress)]
        except x509.ExtensionNotFound:
            names, ips = [], []
        want_name = hostname if hostname and util.dns_name_ok(hostname) else None
        if (want_name is None or want_name in names) and (ip is None or ip in ips):
            return
        self.p["tls_crt"] = util.cert_pem(self.fleet.issue_device_cert(self.index, self.tls_key(False).public_key(), ip,
                                                                       hostname=want_name))
        self.save()

    def audit(self, event, result=0, subject="-", data=b""):
        """Write one audit-log line to the current boot's file (tests/emulator/logger.py) and persist it.

        event: a name of logger.EVENTS (the manager's `logger_types`), e.g. "key_generated",
        "key_deleted", "key_imported", "key_derived", "key_attributes_changed", "firmware_upgraded",
        "exdsa_sign", ...; result 0 OK, 1 ERROR, 2 FAIL; subject "U" / "M" (the token's `sub`), "-",
        or base64url bytes; data the raw bytes the manager decodes for that type (a KID for the key
        types: `bytes.fromhex(kid)`). Call it from a handler (device lock held), e.g.
        `self.audit("key_generated", subject=claims["sub"], data=bytes.fromhex(kid))`.
        """
        self.logger.write(event, result, subject, data)

    def go_down(self, seconds: float, wipe: bool = False):
        """Reboot (or power-cycle): unreachable for `seconds`, then a new boot."""
        with self.lock:
            self.up = False
            self.down_until = time.monotonic() + seconds
            if wipe:
                self._wipe()
        timer = threading.Timer(max(seconds, 0.0), self._come_up)
        timer.daemon = True
        timer.start()

    def _come_up(self):
        with self.lock:
            self._boot(rtc_set=False)
            if self.address != self.fleet.factory_address():
                self.fleet.moved(self)
            self.up = True

    def _wipe(self):
        keep = {k: self.p[k] for k in ("devid", "genuine_id", "att_key", "att_crt", "model", "version")}
        keep["upgrade"] = self.p.get("upgrade", {})      # the firmware and its staging survive a wipe
        tls_key = util.new_p256()
        self.p = dict(keep)
        self.p.update({
            "eid": b64e(util.new_x25519()), "eid_sign": b64e(util.new_ed25519()),
            "tls_key": util.key_pem(tls_key),
            "tls_crt": util.cert_pem(self.fleet.issue_factory_cert(self.index, tls_key.public_key())),
            "pending_tls": None, "personalised": False, "instanceid": None, "userkey": None, "masterkey": None,
            "iat": 0, "uts": 0, "config": factory_config(self.model),
        })
        self.p["tls_bundle"] = self.fleet.tls_bundle      # --no-tls-bundle: a wipe removes the bundle too
        self._lazy = {}
        self.save()

    # ------------------------------------------------------------------ helpers

    def now(self) -> int:
        return int(time.time() + self.clock_offset)

    def rtc(self) -> int:
        """What the device's real-time clock reads: now() once a check-in (or --rtc-set) set it;
        while it is unset (every power-up), the seconds since power-up (an RTC counting from 0 = 1970)."""
        return self.now() if self.rtc_set else self.uptime()

    def uptime(self) -> int:
        return int(time.monotonic() - self.boot_mono)

    def start_format(self, old_size):
        """A new storage_disk0size was stored: after --format-start-seconds, format for --format-seconds (state of
        this boot only); until it starts the status shows what it showed before."""
        self.fmt = {"start": time.monotonic() + self.fleet.format_start_seconds, "seconds": self.fleet.format_seconds,
                    "old_size": old_size, "before": self.format_progress()}

    def format_progress(self):
        """None (no format this boot), "status<N>" (N = percent done, 0-99) or "done"."""
        if self.fmt is None:
            return None
        elapsed = time.monotonic() - self.fmt["start"]
        if elapsed < 0:
            return self.fmt["before"]       # not started yet
        if elapsed >= self.fmt["seconds"]:
            return "done"
        return "status%d" % min(99, int(100 * elapsed / self.fmt["seconds"]))

    def formatting(self) -> bool:
        return self.format_progress() not in (None, "done")

    def storage_slots(self):
        """Status `storage`: disk 0 and disk 1 (capacity minus disk 0); the old split while a format runs."""
        pending = self.fmt is not None and time.monotonic() < self.fmt["start"] + self.fmt["seconds"]
        size = self.fmt["old_size"] if pending else self.cfg.get("storage_disk0size", 0)
        flag = DISK0_FLAGS.get(self.boot_storage_mode, "rw")
        return ["%d:%s" % (size, flag), "%d:-" % (STORAGE_CAPACITY - size)]

    @property
    def cfg(self):
        return self.p["config"]

    @property
    def has_tls_bundle(self):
        """False while the device has no TLS bundle (--no-tls-bundle): its HTTPS server is off."""
        return self.p.get("tls_bundle", True)

    @property
    def msc(self):
        return self.model == "ppa"

    def eid_public_b64(self):
        return b64e(util.x25519_public(b64d(self.p["eid"])))

    def spk_b64(self):
        return b64e(util.x25519_public(self.session))

    def _new_nonce(self, table, ttl) -> str:
        """Nonces age with the device clock (so the control interface's clock offset can expire them)."""
        now = time.time() + self.clock_offset
        for k in [k for k, exp in table.items() if exp < now - 3600]:
            del table[k]
        raw = (int(now) & 0xFFFFFFFF).to_bytes(4, "big") + secrets.token_bytes(32)
        value = b64e(raw)
        table[value] = now + ttl
        return value

    def _take_nonce(self, table, value) -> bool:
        exp = table.pop(value, None) if isinstance(value, str) else None
        return exp is not None and exp >= time.time() + self.clock_offset

    def att_key(self):
        return util.load_key_pem(self.p["att_key"])

    def att_cert(self):
        if not self.p.get("att_crt"):
            return None
        return x509.load_der_x509_certificate(b64d(self.p["att_crt"]))

    def genuine(self) -> str:
        cert = self.att_cert()
        key = self.att_key()
        key_id = util.ski_of(cert=cert) if cert is not None else util.ski_of(public_key=key.public_key())
        tamper = False
        if self.tamper > 0:
            self.tamper -= 1
            tamper = True
        return util.genuine_token(key, key_id, self.rtc(), tamper=tamper)

    def tls_key(self, pending_first=True):
        """The stored TLS key: a pending import's, else the one personalisation's gen_csr made (not served until a
        certificate for it is imported and the device reboots), else the served one. pending_first=False: the served one."""
        pend = self.p.get("pending_tls")
        if not pending_first:
            return util.load_key_pem(self.p["tls_key"])
        if pend:
            return util.load_key_pem(pend["key"])
        return util.load_key_pem(self.p.get("csr_key") or self.p["tls_key"])

    def csr(self) -> str:
        hostname = self.cfg.get("hostname") or FACTORY_HOSTNAME
        ips = []
        try:
            ips = [str(ipaddress.ip_interface(self.cfg.get("ip", FACTORY_IP)).ip)]
        except ValueError:
            pass
        return util.make_csr(self.tls_key(), hostname, [hostname], ips)

    # ------------------------------------------------------------------ auth

    def bearer(self, claims) -> str:
        return util.jwt_sign(util.BEARER_HEADER, claims, self.bearer_key)

    def check_bearer(self, req):
        """-> None (no header), claims dict (valid), or False (present but invalid)."""
        value = req.header("authorization")
        if value is None:
            return None
        parts = value.split(None, 1)
        if len(parts) != 2 or parts[0].lower() != "bearer":
            return False
        try:
            _h, claims, signing_input, sig = util.jwt_split(parts[1].strip())
        except (ValueError, UnicodeDecodeError):
            return False
        if not util.hs256_ok(signing_input, sig, self.bearer_key):
            return False
        exp = claims.get("exp")
        if not isinstance(exp, int) or isinstance(exp, bool) or exp <= self.now():
            return False
        if not isinstance(claims.get("scope", ""), str):
            return False
        return claims

    @staticmethod
    def scope_ok(claims, *required) -> bool:
        scope = claims.get("scope") or ""
        return any(scope.startswith(r) for r in required)

    def _auth(self, claims, scopes, fresh_ok=False):
        """None when allowed, else the error Response."""
        if fresh_ok and not self.p["personalised"]:
            return None
        if not claims:
            return _err(401)
        if scopes and not self.scope_ok(claims, *scopes):
            return _err(403)
        return None

    def login_delay(self) -> float:
        delay = self.fleet.auth_delay
        return delay * 3 if self.failures >= 3 else delay

    # ------------------------------------------------------------------ dispatch

    def origin_ok(self, origin: str) -> bool:
        allowed = [a for a in re.split(r"[\s,]+", self.cfg.get("origin", "")) if a]
        for entry in allowed:
            if entry == "*" or entry == origin:
                return True
            if entry.startswith("*.") or "://*." in entry:
                if fnmatch.fnmatchcase(origin, entry) or fnmatch.fnmatchcase(origin.split("://", 1)[-1], entry):
                    return True
        return False

    def handle(self, req: Request) -> Response:
        """Answer one request (faults are applied by the caller)."""
        origin = req.header("origin")
        if req.method == "OPTIONS":
            if origin is not None and not self.origin_ok(origin):
                return _err(412)
            headers = dict(PREFLIGHT_HEADERS)
            if origin is not None:
                headers["Access-Control-Allow-Origin"] = origin
            return Response(204, headers=headers)
        if origin is not None and not self.origin_ok(origin):
            return _err(412)
        # Lazy PBKDF2 outside the device lock, so other requests to this device are not held up.
        if req.method == "POST" and req.path == "/api/auth/token":
            self.stored_key("userkey")
        with self.lock:
            resp = self._route(req)
        if origin is not None:
            resp.headers["Access-Control-Allow-Origin"] = origin
            resp.headers["Access-Control-Allow-Credentials"] = "true"
        if self.cfg.get("http_option_hsts") and req.scheme == "https":
            resp.headers["Strict-Transport-Security"] = "max-age=31536000"
        return resp

    def _route(self, req: Request) -> Response:
        claims = self.check_bearer(req)
        if claims is False:
            return _err(401)
        path = req.path.rstrip("/") or "/"
        if req.scheme == "http" and path.startswith(TLS_ONLY_PREFIXES):
            return _err(409 if any(path.startswith(q) for q in HTTP_409_QUIRKS) else 418)
        if any(path.startswith(p) or path + "/" == p for p in UNIMPLEMENTED_PREFIXES):
            return _err(404)
        if path.startswith("/api/logger/"):
            return self.logger.route(req, claims, path)
        if path.startswith(upgrade.PREFIX):
            status, after = self.upgrade.handle(req, claims, path)
            return Response(status, after=after)
        routes = {
            ("GET", "/api/system/status"): self.get_status,
            ("GET", "/api/system/version"): self.get_version,
            ("GET", "/api/system/selftest"): self.get_selftest,
            ("GET", "/api/auth/token"): self.get_auth_token,
            ("POST", "/api/auth/token"): self.post_auth_token,
            ("GET", "/api/auth/init"): self.get_auth_init,
            ("POST", "/api/auth/init"): self.post_auth_init,
            ("GET", "/api/system/config"): self.get_config,
            ("POST", "/api/system/config"): self.post_config,
            ("GET", "/api/system/checkin"): self.get_checkin,
            ("POST", "/api/system/checkin"): self.post_checkin,
            ("GET", "/api/system/reboot"): self.get_reboot,
            ("GET", "/api/system/shutdown"): self.get_shutdown,
        }
        if self.msc:
            routes[("GET", "/api/system/config/attestation")] = self.get_attestation
            routes[("POST", "/api/system/config/provisioning")] = self.post_provisioning
        handler = routes.get((req.method, path)) or self.keys.route(req.method, path)
        if handler is None:
            return _err(404)
        if self.msc and (req.method, path) in BUSY_DURING_FORMAT and self.formatting():
            return _err(409)
        if req.method == "POST":
            try:
                body = json.loads(req.body.decode("utf-8")) if req.body else None
            except (UnicodeDecodeError, ValueError, RecursionError):
                return _err(400)
            if not isinstance(body, dict):
                return _err(400)
            return handler(req, claims, body)
        return handler(req, claims)

    # ------------------------------------------------------------------ system: status, version, selftest

    def get_status(self, req, claims):
        out = {}
        if not self.p["personalised"]:
            out["inited"] = False
        if self.fleet.status_https_false:
            out["https"] = False        # --status-https-false: a PPA's answer over working HTTPS (PY OQ-21)
        elif req.scheme == "http":
            out["https"] = self.has_tls_bundle
        host = (req.header("host") or "").strip()
        host = host[1:].split("]")[0] if host.startswith("[") else host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        if host.lower() != str(self.cfg.get("hostname", "")).lower():
            out["hostname"] = self.cfg.get("hostname", "")
        if not self.cfg.get("trusted_ts"):
            out["tts"] = False
        out["ctx"] = self.cfg.get("ctx", 0)
        out["uptime"] = self.uptime()
        if self.rtc_set:
            now = self.now()
            out["ts"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
            out["time"] = now
        if self.msc:
            out["storage"] = self.storage_slots()
            progress = self.format_progress()
            if progress is not None:
                out["format"] = progress
        out["temp"] = 36.6
        out["fls_state"] = 0
        if self.upgrade.fw_upgrade:
            out["fw_upgrade"] = True
        return Response(200, out)

    def get_version(self, req, claims):
        out = {
            "hwv": "PPA rev 2.2 (emulated)" if self.msc else "EPA rev 1.0 (emulated)",
            **self.upgrade.version(),
            "blv": "nBOOT 1.0 (HEM emulator)",
            "blk": b64e(hashlib.sha256(b"bl").digest()),
            "bls": b64e(hashlib.sha512(b"bl").digest()),
        }
        if self.msc:
            if claims or not self.p["personalised"]:
                out["sd_csd"] = "400e00325b590000eda37f800a404000"
                out["sd_cid"] = "035344534331323880" + self.p["devid"][:14]
        return Response(200, out)

    def get_selftest(self, req, claims):
        denied = self._auth(claims, None, fresh_ok=True)
        if denied:
            return denied
        now = self.now()
        out = {"last_selftest_ts": now, "last_fls_state": 0, "last_entropytest_ts": now, "last_kat_ts": now,
               "fls_state": 0, "selftest_ts": now,
               "repo_stats": self.keys.stats()}
        if self.msc:
            out["se_state"] = 0
        return Response(200, out)

    # ------------------------------------------------------------------ auth: login

    def get_auth_token(self, req, claims):
        if not self.p["personalised"]:
            return _err(409)
        if self.cfg.get("trusted_ts") and not self.rtc_set:
            return _err(403)
        jti = self._new_nonce(self.nonces, NONCE_TTL)
        return Response(200, {"eid": self.eid_public_b64(), "spk": self.spk_b64(), "jti": jti,
                              "exp": self.now() + NONCE_TTL, "lbl": self.cfg.get("user", "")})

    def post_auth_token(self, req, claims, body):
        delay = self.login_delay()          # 3x after 3 consecutive failures
        resp = self._login(body)
        if resp.status == 401:
            self.failures += 1
        elif resp.status == 200:
            self.failures = 0
        self.logger.login(resp)
        resp.min_time = delay
        return resp

    def _verify_session_jws(self, token, pub_candidates):
        """Check a client JWS keyed with X25519(session, iss). -> (payload, role) or raises PermissionError."""
        try:
            header, payload, signing_input, sig = util.jwt_split(token)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PermissionError("malformed") from exc
        if header != util.LOGIN_HEADER:
            raise PermissionError("header")
        if not self._take_nonce(self.nonces, payload.get("jti")):
            raise PermissionError("nonce")
        aud = payload.get("aud")
        if aud is not None and aud != self.spk_b64():
            raise PermissionError("aud")
        for role, pub in pub_candidates:
            if pub is None:
                continue
            try:
                shared = util.x25519_shared(self.session, pub)
            except ValueError:
                continue
            if util.hs256_ok(signing_input, sig, shared):
                return payload, role
        raise PermissionError("signature")

    def _login(self, body):
        if not isinstance(body.get("auth"), str):      # other keys are ignored (see the package docstring)
            return _err(400)
        if not self.p["personalised"]:
            return _err(409)
        if self.cfg.get("trusted_ts") and not self.rtc_set:
            return _err(403)
        # Pick the stored key named by `iss` (constant-time compare), then verify the HMAC with it.
        try:
            _h, payload, _si, _sig = util.jwt_split(body["auth"])
            iss = b64d(payload.get("iss"))
        except (ValueError, UnicodeDecodeError):
            self._take_nonce(self.nonces, _safe_jti(body["auth"]))
            return _err(401)
        candidates = []
        for role, name in (("U", "userkey"), ("M", "masterkey")):
            stored = self.stored_key(name)
            if stored is not None and hmac.compare_digest(stored, iss):
                candidates.append((role, stored))
        if not candidates:
            self._take_nonce(self.nonces, payload.get("jti"))
            return _err(401)
        try:
            payload, role = self._verify_session_jws(body["auth"], candidates)
        except PermissionError:
            return _err(401)
        exp = payload.get("exp", 0)
        scope = payload.get("scope", "")
        ctx = payload.get("ctx")
        if not isinstance(exp, int) or isinstance(exp, bool) or exp < 0:
            return _err(401)
        if not isinstance(scope, str) or len(scope) > 127:
            return _err(401)
        if ctx is not None and (not isinstance(ctx, str) or len(ctx) >= 64):
            return _err(401)
        now = self.now()
        if exp == 0 and self.fleet.exp_default:
            exp = now + DEFAULT_TOKEN_LIFETIME
        elif exp <= now:
            return _err(401)
        claims = {"jti": b64e(secrets.token_bytes(12)), "iat": now, "exp": exp, "scope": scope, "sub": role}
        if ctx is not None:
            claims["ctx"] = ctx
        return Response(200, {"token": self.bearer(claims)})

    # ------------------------------------------------------------------ auth: personalisation

    def get_auth_init(self, req, claims):
        if self.p["personalised"]:
            return _err(406)
        if not self.rtc_set:
            return _err(403)
        jti = self._new_nonce(self.nonces, NONCE_TTL)
        return Response(200, {"eid": self.eid_public_b64(), "spk": self.spk_b64(), "jti": jti,
                              "exp": self.now() + NONCE_TTL, "genuine": self.genuine()})

    def post_auth_init(self, req, claims, body):
        if not isinstance(body.get("init"), str):
            return _err(400)
        if self.p["personalised"]:
            return _err(406)
        if not self.rtc_set:
            return _err(403)
        try:
            _h, payload, _si, _sig = util.jwt_split(body["init"])
        except (ValueError, UnicodeDecodeError):
            self._take_nonce(self.nonces, _safe_jti(body["init"]))
            return _err(401)
        cfg = payload.get("cfg")
        try:
            if not isinstance(cfg, dict):
                raise BadRequest("cfg")
            values = self._validate_init_cfg(cfg)
        except BadRequest:
            self._take_nonce(self.nonces, payload.get("jti"))
            return _err(400)
        # The proof is the master key's (encedo-manager initFinal, hem-sdk-js initialize): `iss` must be
        # cfg.masterkey and the HMAC keyed with X25519(session, master key). A proof keyed with the user key,
        # or naming another key, is one the device cannot verify: 401.
        try:
            iss = b64d(payload.get("iss"))
        except ValueError:
            iss = b""
        if not hmac.compare_digest(iss, values["masterkey"]):
            self._take_nonce(self.nonces, payload.get("jti"))
            return _err(401)
        try:
            self._verify_session_jws(body["init"], [("M", values["masterkey"])])
        except PermissionError:
            return _err(401)
        gen_csr = values.pop("gen_csr", False)
        userkey, masterkey = values.pop("userkey"), values.pop("masterkey")
        factory = factory_config(self.model)
        reboot = any(values.get(k, factory.get(k)) != factory.get(k) for k in ("ip", "storage_mode", "storage_disk0size"))
        old_size = self.cfg.get("storage_disk0size")
        self.cfg.update(values)
        if self.msc and values.get("storage_disk0size", old_size) != old_size:
            # The web manager waits for `format` after personalising a PPA (build.js checkDeviceReadyAfterInit):
            # a new disk 0 size is formatted then, as after a configuration change.
            self.start_format(old_size)
        now = self.now()
        self.p.update(personalised=True, userkey=b64e(userkey), masterkey=b64e(masterkey), iat=now, uts=now,
                      instanceid=self._instance_id(secrets.token_bytes(16)))
        self._lazy = {}
        self.audit("personalised", subject="M")     # proved with the master key
        token = self.bearer({"jti": b64e(secrets.token_bytes(12)), "iat": now, "exp": now + DEFAULT_TOKEN_LIFETIME,
                             "scope": "system:config", "sub": "U"})
        out = {"instanceid": self.p["instanceid"], "token": token}
        if reboot:
            out["reboot_required"] = True
        csr_failed = False
        if gen_csr:
            # OpenAPI POST /api/auth/init: gen_csr "generate a TLS key + CSR" - a new key, stored; the device keeps
            # serving its certificate (and key) until a certificate for the new key is imported and it reboots.
            self.p["csr_key"] = util.key_pem(util.new_p256())
            try:
                out["csr"] = self.csr()
            except ValueError:          # a hostname no certificate request can carry (e.g. a CN over 64 characters)
                csr_failed = True
                self.p["csr_key"] = None
        if not csr_failed:              # OpenAPI: genuine is "absent if CSR generation was requested but failed"
            out["genuine"] = self.genuine()
        return Response(200, out)

    def _validate_init_cfg(self, cfg):
        """Types from the OpenAPI file; only the limits of INIT_FIELDS (each with its source). -> decoded values."""
        required = INIT_REQUIRED + (INIT_REQUIRED_MSC if self.msc else ())
        allowed = set(required) | set(INIT_OPTIONAL)
        if any(k not in cfg for k in required):
            raise BadRequest("fields")
        out = {}
        for name, value in cfg.items():
            if name not in allowed:
                # Ignored, not refused: the web manager sends the MSC fields to every model (build.js initFinal)
                # and hem-sdk-js initialize passes any caller field through; the OpenAPI names no 400 for them.
                continue
            kind, bounds = INIT_FIELDS[name]
            if kind == "key":               # base64, 32 bytes (OpenAPI)
                try:
                    raw = b64d(value)
                except ValueError as exc:
                    raise BadRequest(name) from exc
                if len(raw) != 32:
                    raise BadRequest(name)
                value = raw
            elif kind == "bool":
                if not isinstance(value, bool):
                    raise BadRequest(name)
            elif kind == "int":
                if not isinstance(value, int) or isinstance(value, bool) or (bounds and not bounds[0] <= value <= bounds[1]):
                    raise BadRequest(name)
            elif kind == "str":
                if not isinstance(value, str) or (bounds and not bounds[0] <= len(value) <= bounds[1]):
                    raise BadRequest(name)
            elif kind == "cidr":            # OpenAPI: "CIDR, e.g. 192.168.7.1/24"
                if not isinstance(value, str) or not INIT_CIDR_RE.match(value):
                    raise BadRequest(name)
                try:
                    ipaddress.IPv4Interface(value)
                except ValueError as exc:
                    raise BadRequest(name) from exc
            out[name] = value
        return out

    # ------------------------------------------------------------------ system: config

    def config_view(self) -> dict:
        """The non-secret stored configuration (GET /api/system/config without spk/nonce)."""
        c = self.cfg
        out = {"iat": self.p["iat"], "uts": self.p["uts"], "devid": self.p["devid"]}
        if self.p.get("instanceid"):
            out["instanceid"] = self.p["instanceid"]
        out.update({
            "eid": self.eid_public_b64(),
            "eid_sign": b64e(util.ed25519_public(b64d(self.p["eid_sign"]))),
            "user": c["user"], "email": c["email"], "hostname": c["hostname"], "dnsd": c["dnsd"],
            "trusted_ts": c["trusted_ts"], "trusted_backend": c["trusted_backend"],
            "allow_keysearch": c["allow_keysearch"], "origin": c["origin"], "ctx": c["ctx"], "ip": c["ip"],
            "http_option_hsts": c["http_option_hsts"], "http_option_dosprot_mode": c["http_option_dosprot_mode"],
        })
        if self.msc:
            out.update(genuine_id=self.p["genuine_id"], storage_mode=c["storage_mode"],
                       storage_disk0size=c["storage_disk0size"], storage_capacity=STORAGE_CAPACITY)
        return out

    def get_config(self, req, claims):
        denied = self._auth(claims, ("system:config", "logger:get", "auth:ext:pair"))
        if denied:
            return denied
        out = self.config_view()
        out["spk"] = self.spk_b64()
        out["nonce"] = self._new_nonce(self.cfg_nonces, CONFIG_NONCE_TTL)
        return Response(200, out)

    def post_config(self, req, claims, body):
        if not self.p["personalised"]:
            return self._post_config_fresh(body)
        denied = self._auth(claims, ("system:config",))
        if denied:
            return denied
        if claims.get("sub") not in ("U", "M"):
            return _err(403)
        try:
            plan = self._validate_config(body)
        except BadRequest:
            return Response(400, {"updated": False})
        if plan.get("wipeout"):
            return Response(200, None, after=lambda: self.go_down(self.fleet.reboot_seconds, wipe=True))
        changed = False
        old_size, old_mode = self.cfg.get("storage_disk0size"), self.cfg.get("storage_mode")
        for name, value in plan["fields"].items():
            if self.cfg.get(name) != value:
                self.cfg[name] = value
                changed = True
        # A new disk 0 size (OpenAPI: "change triggers a reformat") or a new disk 1 encryption (the manager's
        # storage_change: "This will format storage") formats the storage.
        if self.msc and (self.cfg.get("storage_disk0size") != old_size
                         or encryption_changes(old_mode, self.cfg.get("storage_mode"))):
            self.start_format(old_size)
        if "userkey" in plan and self.p["userkey"] != plan["userkey"]:
            self.p["userkey"] = plan["userkey"]
            self._lazy.pop("userkey", None)
            changed = True
        out = {}
        if "tls" in plan:
            self.p["pending_tls"] = plan["tls"]
            self.p["csr_key"] = None            # the import holds the key now (the gen_csr key or an imported one)
            changed = True
            out["reboot_required"] = True
        elif plan.get("gen_csr"):
            out["csr"] = self.csr()
            out["genuine"] = self.genuine()
        if changed:
            self.p["uts"] = self.now()
            self.audit("config_updated", subject=claims.get("sub", "-"))
        out["updated"] = changed
        return Response(200, out)

    def _post_config_fresh(self, body):
        """Factory-fresh mode: only a `tls` bundle is accepted (installed at once, as the HTTPS server starts)."""
        if "tls" not in body:
            return _err(406)
        try:
            bundle = self._validate_tls(body["tls"])
        except BadRequest:
            return _err(400)
        if self.fleet.tls_bundle_at_boot and not self.has_tls_bundle:
            # --tls-bundle-at-boot: stored now, served from the next boot (_boot installs a pending bundle); until then
            # HTTPS stays off and the plain-HTTP status says https: false. The vendor's rescue page reboots the device
            # after storing a bundle (core-rescue-final.js makeCheckin), which suggests a firmware that needs it.
            self.p["pending_tls"] = bundle
            self.save()
            return Response(200, None)
        self.p["tls_key"], self.p["tls_crt"] = bundle["key"], bundle["crt"]
        self.p["pending_tls"] = None
        self.p["tls_bundle"] = True
        self.save()
        self.ssl_context = self.fleet.make_ssl_context(self.index, self.p["tls_key"], self.p["tls_crt"])
        return Response(200, None)

    def _validate_config(self, body):
        plan = {"fields": {}}
        for name, value in body.items():
            if name == "wipeout":
                if not isinstance(value, bool):
                    raise BadRequest(name)
                plan["wipeout"] = value
            elif name == "gen_csr":
                if not isinstance(value, bool):
                    raise BadRequest(name)
                plan["gen_csr"] = value
            elif name in ("userkey", "userkey_hmac", "userkey_nonce"):
                continue
            elif name == "tls":
                plan["tls"] = self._validate_tls(value)
            elif name in CONFIG_FIELDS and not (CONFIG_FIELDS[name][2] and not self.msc):
                plan["fields"][name] = _check_field(name, value)
            # Anything else - an unknown field, an MSC field on an EPA, hostname/ip (not settable after
            # personalisation) - is ignored: hem-sdk-js setConfig "unknown fields are ignored and reported
            # back via updated: false".
        triple = [k in body for k in ("userkey", "userkey_hmac", "userkey_nonce")]
        if any(triple):
            if not all(triple):
                raise BadRequest("userkey triple")
            plan["userkey"] = self._check_rotation(body["userkey"], body["userkey_hmac"], body["userkey_nonce"])
        return plan

    def _check_rotation(self, userkey, proof, nonce):
        try:
            pub = b64d(userkey)
            mac = b64d(proof)
            nonce_raw = b64d(nonce)
        except ValueError as exc:
            raise BadRequest("userkey") from exc
        if len(pub) != 32 or not self._take_nonce(self.cfg_nonces, nonce):
            raise BadRequest("userkey")
        try:
            shared = util.x25519_shared(self.session, pub)
        except ValueError as exc:
            raise BadRequest("userkey") from exc
        expected = hmac.new(shared, nonce_raw, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, mac):
            raise BadRequest("userkey_hmac")
        return b64e(pub)

    def _validate_tls(self, tls):
        """-> {"key": pem, "crt": pem} to install; BadRequest when unusable."""
        # Other keys are ignored: the web manager posts the backend's answer as it is (build.js start_init,
        # registerDomain: it can carry `id` and `status`).
        if not isinstance(tls, dict) or "crt" not in tls:
            raise BadRequest("tls")
        if ("emp" in tls) != ("key" in tls):
            raise BadRequest("tls emp/key")
        try:
            cert = x509.load_der_x509_certificate(b64d(tls["crt"]))
            cert_pub = cert.public_key()
        except ValueError as exc:
            raise BadRequest("crt") from exc
        if not isinstance(cert_pub, ec.EllipticCurvePublicKey) or not isinstance(cert_pub.curve, ec.SECP256R1):
            raise BadRequest("crt key type")
        if "key" in tls:
            key = self._unwrap_tls_key(tls["emp"], tls["key"])
        else:
            key = self.tls_key()
        if not util.same_public(key.public_key(), cert_pub):
            raise BadRequest("crt does not match the key")
        return {"key": util.key_pem(key), "crt": util.cert_pem(cert)}

    def _unwrap_tls_key(self, emp, blob):
        """The emulator's key transport (see the package docstring): ECDH P-256 with the device TLS key."""
        if not isinstance(blob, str) or len(blob) != 113 or blob.count(".") != 1:
            raise BadRequest("key format")
        try:
            emp_raw = b64d(emp)
            iv_text, ct_text = blob.split(".")
            iv, ct = b64d(iv_text), b64d(ct_text)
            if len(iv) != 16 or len(ct) != 64:
                raise ValueError("sizes")
            if emp_raw[:1] == b"\x04" and len(emp_raw) == 65:
                emp_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), emp_raw)
            else:
                from cryptography.hazmat.primitives.serialization import load_der_public_key
                emp_key = load_der_public_key(emp_raw)
            if not isinstance(emp_key, ec.EllipticCurvePublicKey) or not isinstance(emp_key.curve, ec.SECP256R1):
                raise ValueError("emp curve")
            shared = self.tls_key().exchange(ec.ECDH(), emp_key)
            aes = hashlib.sha256(shared).digest()
            dec = Cipher(algorithms.AES(aes), modes.CBC(iv)).decryptor()
            plain = dec.update(ct) + dec.finalize()
            d = int.from_bytes(plain[:32], "big")
            key = ec.derive_private_key(d, ec.SECP256R1())
            if key.public_key().public_numbers().x.to_bytes(32, "big") != plain[32:]:
                raise ValueError("key check")
            return key
        except ValueError as exc:
            raise BadRequest("key") from exc

    # ------------------------------------------------------------------ attestation (MSC build)

    def get_attestation(self, req, claims):
        denied = self._auth(claims, None, fresh_ok=True)
        if denied:
            return denied
        cert = self.att_cert()
        if cert is None:
            key = self.att_key()
            csr = util.make_csr(key, "#" + self.p["genuine_id"])
            return Response(200, {"csr": csr, "key": b64e(util.spki_der(key.public_key())), "genuine": self.genuine()})
        return Response(200, {"crt": self.p["att_crt"], "genuine": self.genuine()})

    def post_provisioning(self, req, claims, body):
        if not all(isinstance(body.get(k), str) for k in ("genuine", "crt")):
            return _err(400)
        try:
            util.parse_genuine(body["genuine"])
            cert = x509.load_der_x509_certificate(b64d(body["crt"]))
        except ValueError:
            return _err(400)
        if self.p["personalised"]:
            return _err(403)
        if self.p.get("att_crt"):
            return _err(406)
        key = self.att_key()
        if not util.verify_genuine(body["genuine"], key.public_key(), util.ski_of(public_key=key.public_key())):
            return _err(400)
        if not util.same_public(cert.public_key(), key.public_key()):
            return _err(406)
        self.p["att_crt"] = b64e(util.cert_der(cert))
        self.save()
        return Response(200, None)

    # ------------------------------------------------------------------ check-in

    def get_checkin(self, req, claims):
        jti = self._new_nonce(self.check_nonces, CHECKIN_TTL)
        serial = x509.load_pem_x509_certificate(self.p["tls_crt"].encode("ascii")).serial_number
        payload = {"jti": jti, "spk": self.spk_b64(), "did": self.p["devid"], "iat": self.now(),
                   "fws": self.upgrade.version()["fws"], "tls": "%x" % serial}
        key = util.x25519_shared(self.session, self.fleet.backend_x25519_public)
        return Response(200, {"check": util.jwt_sign(util.LOGIN_HEADER, payload, key)})

    def post_checkin(self, req, claims, body):
        if not isinstance(body.get("checked"), str):
            return _err(400)
        try:
            header, payload, signing_input, sig = util.jwt_split(body["checked"])
            if json.loads(header) != {"alg": "EdDSA", "typ": "JWT"}:
                raise ValueError("header")
            ed25519.Ed25519PublicKey.from_public_bytes(self.fleet.backend_sign_public).verify(sig, signing_input)
        except Exception:  # pylint: disable=broad-except  # any decoding/signature failure is a 401
            return _err(401)
        if payload.get("iss") != BACKEND_ISSUER or payload.get("aud") != self.p["devid"]:
            return _err(401)
        if not self._take_nonce(self.check_nonces, payload.get("jti")):
            return _err(401)
        iat = payload.get("iat")
        if not isinstance(iat, int) or isinstance(iat, bool):
            return _err(401)
        self.rtc_set = True
        self.logger.rtc_set()
        action = payload.get("action", "OK")
        if action not in CHECKIN_ACTIONS:
            action = "???"
        out = {}
        after = None
        if self.cfg.get("trusted_backend"):
            if "newcrt" in payload:
                out["newcrt"] = self._checkin_install_crt(payload["newcrt"])
            after = self._checkin_execute(action)
        else:
            action = "OK"           # suppressed: nothing was executed (see the package docstring)
        out["status"] = action
        return Response(200, out, after=after)

    def _checkin_install_crt(self, crt) -> str:
        """A certificate pushed by the backend: installed like a `tls` import of `crt` alone. -> OK | ERROR."""
        try:
            bundle = self._validate_tls({"crt": crt})
        except (BadRequest, TypeError, ValueError):
            return "ERROR"
        self.p["pending_tls"] = bundle
        self.p["csr_key"] = None
        self.save()
        return "OK"

    def _checkin_execute(self, action):
        """Execute a backend action (trusted_backend on). -> the callable to run once the answer is sent, or None."""
        if action == "L":
            self.p["userkey"] = None
            self._lazy.pop("userkey", None)
            self.save()
        elif action == "W":
            return lambda: self.go_down(self.fleet.reboot_seconds, wipe=True)
        elif action == "U":
            return self.upgrade.checkin_install()
        elif action == "B":
            return self._stop_web_servers
        return None

    def _stop_web_servers(self):
        """Soft-brick: every connection is reset until a power cycle (control-interface `reboot` fault)."""
        with self.lock:
            self.up = False
            self.down_until = float("inf")

    # ------------------------------------------------------------------ power

    def get_reboot(self, req, claims):
        denied = self._auth(claims, ("system:config", "system:upgrade", "system:shutdown"), fresh_ok=True)
        if denied:
            return denied
        self.audit("reboot", subject=claims.get("sub", "-") if claims else "-")
        return Response(200, None, after=lambda: self.go_down(self.fleet.reboot_seconds))

    def get_shutdown(self, req, claims):
        denied = self._auth(claims, ("system:config", "system:shutdown"))
        if denied:
            return denied
        self.audit("shutdown", subject=claims.get("sub", "-"))
        return Response(200, None, after=lambda: self.go_down(self.fleet.reboot_seconds))

    # ------------------------------------------------------------------ control-interface views

    def state_view(self) -> dict:
        with self.lock:
            return {
                "index": self.index, "model": self.model, "up": self.up,
                "personalised": self.p["personalised"], "rtc_set": self.rtc_set, "boot_id": self.boot_id,
                "uptime": self.uptime(), "config": self.config_view(),
                "se_provisioned": bool(self.p.get("att_crt")), "pending_tls": bool(self.p.get("pending_tls")),
                "tls_cert_pem": self.p["tls_crt"], "clock_offset": self.clock_offset,
                "tls_bundle": self.has_tls_bundle, "tls_public_key": b64e(util.spki_der(self.tls_key().public_key())),
                "format": self.format_progress(), "upgrade": self.upgrade.view(),
                "address": self.address, "url": self.fleet.device_urls(self)[0] if self.fleet.port_base else None,
                "http_url": self.fleet.device_urls(self)[1] if self.fleet.port_base else None,
                # faults queued by the control interface and not yet taken by a request (a test waits on them:
                # a latency fault taken is a request held at the device now)
                "faults": [dict((k, f.get(k)) for k in ("kind", "method", "path", "count")) for f in self.faults],
            }

    def _logged_scope(self, req: Request):
        """The scope of the request's bearer token as the device read it (None: no valid token), for the request log."""
        claims = self.check_bearer(req) if req.header("authorization") else None
        return claims.get("scope") if isinstance(claims, dict) else None

    def record(self, req: Request, status, body_obj):
        keys, tls_keys = [], []
        if isinstance(body_obj, dict):
            keys = sorted(str(k) for k in body_obj)
            if isinstance(body_obj.get("tls"), dict):
                tls_keys = sorted(str(k) for k in body_obj["tls"])
        entry = {"t": time.time(), "method": req.method, "path": req.path, "status": status, "scheme": req.scheme,
                 "keys": keys, "tls_keys": tls_keys, "auth": "bearer" if req.header("authorization") else "none",
                 "scope": self._logged_scope(req), "uptime": self.uptime()}
        with self.lock:
            self.log.append(entry)
            if len(self.log) > MAX_LOG:
                del self.log[: len(self.log) - MAX_LOG]


def _safe_jti(token):
    try:
        return util.jwt_split(token)[1].get("jti")
    except (ValueError, UnicodeDecodeError):
        return None


def _check_field(name, value):
    kind, bounds, _msc = CONFIG_FIELDS[name]
    if kind == "bool":
        if not isinstance(value, bool):
            raise BadRequest(name)
    elif kind == "int":
        if not isinstance(value, int) or isinstance(value, bool) or not bounds[0] <= value <= bounds[1]:
            raise BadRequest(name)
    elif kind == "str":
        if not isinstance(value, str) or (bounds is not None and not bounds[0] <= len(value) <= bounds[1]):
            raise BadRequest(name)
    return value
