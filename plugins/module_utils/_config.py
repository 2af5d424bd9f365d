# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils file is PRIVATE to the encedo.hem collection. It may change or
# disappear without notice; do not import it from outside the collection.
"""Field table, normalisation and delta logic of ``POST /api/system/config``.

Pure logic, no I/O: the ``encedo_config`` module reads the device configuration,
hands it to :func:`plan_update` together with what the user asked for, and POSTs
``plan.delta`` (only the differing fields, in one request) when it is not empty.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import time

from ansible_collections.encedo.hem.plugins.module_utils._client import HemError, x25519_shared

MASK = "********"

# Keys of GET /api/system/config that are not configuration: per-request values
# (the rotation nonce and session key, the current time) and the last-update stamp.
NOISE = frozenset(("nonce", "spk", "iat", "uts"))

# Keys only an MSC build (PPA) reports; their presence tells the model.
MSC_MARKERS = ("storage_mode", "storage_disk0size", "storage_capacity", "genuine_id")

# The three fields of a user passphrase rotation, always sent together.
ROTATION_FIELDS = ("userkey", "userkey_hmac", "userkey_nonce")


class ConfigError(Exception):
    """A request that cannot be honoured; raised before anything is sent to the device."""


class Field(object):
    """One configuration field of the device.

    kind: ``str``, ``bool``, ``int``, ``email``, ``hostname`` or ``ip``.
    msc_only: exists on the PPA (MSC build) only.
    reboot: the device applies a change at the next boot (network and storage settings).
    destructive: changing it destroys data (needs an explicit opt-in).
    settable: can be changed after personalisation.
    """

    __slots__ = ("name", "kind", "minimum", "maximum", "max_length", "msc_only", "reboot", "destructive", "settable", "allowed")

    def __init__(self, name, kind, minimum=None, maximum=None, max_length=None, msc_only=False, reboot=False,
                 destructive=False, settable=True, allowed=""):
        self.name = name
        self.kind = kind
        self.minimum = minimum
        self.maximum = maximum
        self.max_length = max_length
        self.msc_only = msc_only
        self.reboot = reboot
        self.destructive = destructive
        self.settable = settable
        self.allowed = allowed

    def __repr__(self):
        return "Field(%r)" % self.name


# Named storage_mode values: the six the vendor web manager sends (build.js
# layeredStorageEncrSet [disk 0 shown][disk 0 mode][disk 1 encryption]; labels from
# index.html: "Show regular disk on start", "Regular disk on start: Read-only/Writable",
# "Storage encryption mode: CTR/XTS"). encedo_init uses the same names.
STORAGE_MODES = {
    'shown_readonly_ctr': 0x51,     # 81
    'shown_readonly_xts': 0xA1,     # 161
    'shown_writable_ctr': 0x53,     # 83
    'shown_writable_xts': 0xA3,     # 163
    'hidden_ctr': 0x50,             # 80
    'hidden_xts': 0xA0,             # 160
}
_STORAGE_MODE_NAMES = dict((v, k) for k, v in STORAGE_MODES.items())
STORAGE_MODES_ALLOWED = ', '.join('%s (%d)' % (name, value) for name, value in sorted(STORAGE_MODES.items(), key=lambda kv: kv[1]))

# Sectors of 512 bytes in one GiB: the vendor manager's unit for storage_disk0size (build.js: size in GiB x 2097152).
SECTORS_PER_GIB = 2097152


def storage_encryption(mode):
    """'ctr' or 'xts' for the manager's storage_mode values, None for any other value."""
    if mode in (0x50, 0x51, 0x53):
        return 'ctr'
    if mode in (0xA0, 0xA1, 0xA3):
        return 'xts'
    return None


# Every limit below traces to a source (docs/fidelity.md, "Configuration fields"):
# - user: at most 32 characters - the OpenAPI file (POST /api/system/config, user maxLength 32).
#   The manager's form (2-63 of [a-zA-Z0-9 ]) is stricter on characters and looser on length;
#   the OpenAPI wins, and the character rule is the form's, not the device's.
# - email: at most 63 characters, one @ and no blanks, or empty; origin: at most 63 characters. The
#   OpenAPI gives no length; the vendor manager's fields stop at 63 (index.html maxlength), which
#   suggests a 64-byte buffer in the firmware. Kept to protect the user: a longer value may be
#   refused or stored shortened, and a shortened value makes every run report a change. An empty
#   origin (no browser may call the API) stays allowed: refusing it protects nobody. The
#   same limits as encedo_init's. The e-mail form check is weaker than the manager's
#   type="email", so nothing the vendor client sends is refused; it catches typos.
# - ctx: 0 to 4294967295. The OpenAPI says only "integer" (the vendor's clients send 0); kept
#   to protect the user: a context number outside what a 32-bit unsigned field holds, or a
#   negative one, may be stored as another value, and the task would then report a change at
#   every run. The emulator accepts any integer JSON carries exactly.
# - http_option_dosprot_mode: 0 to 4 - the OpenAPI file (minimum 0, maximum 4).
# - storage_mode: one of the six values the manager sends, by name or number (STORAGE_MODES).
#   The OpenAPI says only "integer"; kept because no source says what any other value does to
#   the disks.
# - storage_disk0size: 0 to the device's storage_capacity (GET /api/system/config, "total usable
#   sectors"; checked in plan_update). Any whole number of sectors: the vendor's own sample
#   (seed-system-configuration.md) holds 8388607, not a whole GiB.
# - hostname, ip: only compared with the device (not settable); DNS name / IP address syntax.
FIELDS = dict((f.name, f) for f in (
    Field("user", "str", max_length=32, allowed="a string of at most 32 characters"),
    Field("email", "email", max_length=63,
          allowed="an e-mail address of at most 63 characters such as admin@example.com, or an empty string"),
    Field("origin", "str", max_length=63,
          allowed="a CORS allow-list of at most 63 characters such as '*', 'https://app.example.com' or '*.example.com'"),
    Field("allow_keysearch", "bool", allowed="a boolean"),
    Field("trusted_ts", "bool", allowed="a boolean"),
    Field("trusted_backend", "bool", allowed="a boolean"),
    Field("ctx", "int", minimum=0, maximum=4294967295, allowed="an integer from 0 to 4294967295"),
    Field("http_option_hsts", "bool", allowed="a boolean"),
    Field("http_option_dosprot_mode", "int", minimum=0, maximum=4,
          allowed="an integer from 0 (off) to 4 (request timeout in 0.5 s steps)"),
    Field("dnsd", "bool", msc_only=True, reboot=True, allowed="a boolean"),
    # Disk 0 visibility and mode apply "on start" (index.html labels): a reboot.
    Field("storage_mode", "storage_mode", msc_only=True, reboot=True, allowed="one of " + STORAGE_MODES_ALLOWED),
    # A new size is applied by a disk format the device starts at once (OpenAPI: "change triggers
    # a reformat"); the module waits for it, as the manager does (storageChange), no reboot.
    Field("storage_disk0size", "int", minimum=0, msc_only=True, destructive=True,
          allowed="an integer >= 0 (sectors of 512 bytes, 2097152 per GiB), at most the device's storage_capacity"),
    Field("hostname", "hostname", settable=False, allowed="a DNS name"),
    Field("ip", "ip", settable=False, allowed="an IPv4 address, optionally with a prefix length (192.168.7.1/24)"),
))

SETTABLE = tuple(name for name, f in FIELDS.items() if f.settable)
MSC_ONLY = tuple(name for name, f in FIELDS.items() if f.msc_only)

_TRUE = frozenset(("1", "true", "yes", "on", "y", "t"))
_FALSE = frozenset(("0", "false", "no", "off", "n", "f"))
_INT_RE = re.compile(r"^\s*[+-]?\d+\s*$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")
_LABEL_RE = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


class _Invalid(ValueError):
    pass


def to_bool(value):
    """yes/"true"/True/1/"on" -> True, their opposites -> False; anything else raises ValueError."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, float) and value in (0.0, 1.0):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise _Invalid("is %r, not a boolean" % (value,))


def to_int(value):
    """2, "2", " 2 ", 2.0 -> 2; booleans and anything else raise ValueError."""
    if isinstance(value, bool):
        raise _Invalid("is a boolean (%r), not an integer" % (value,))
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT_RE.match(value):
        return int(value)
    raise _Invalid("is %r, not an integer" % (value,))


def to_str(value):
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict, tuple, set)):
        raise _Invalid("is %r, not a string" % (value,))
    return value if isinstance(value, str) else str(value)


def _hostname(value):
    text = to_str(value).strip().lower().rstrip(".")
    return text


def _ip(value):
    text = to_str(value).strip()
    try:
        if "/" in text:
            return ipaddress.ip_interface(text)
        return ipaddress.ip_address(text)
    except ValueError:
        raise _Invalid("is %r, not an IP address (with an optional /prefix)" % (text,))


def storage_mode_value(value, option="storage_mode"):
    """The number of a storage_mode given by name or number (decimal or 0x-hex), one of STORAGE_MODES.

    Raises ValueError naming ``option`` and listing the allowed values. A limit kept to protect the
    user: the firmware's type is an integer, but only these six values are documented (by the web
    manager); what another value would do to the storage is unknown.
    """
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if text in STORAGE_MODES:
            return STORAGE_MODES[text]
        for base in (0, 10):
            try:
                number = int(text, base)
                break
            except ValueError:
                pass
    if number not in _STORAGE_MODE_NAMES:
        raise ValueError("option %s: %r is not one of the storage modes the Encedo web manager sets: %s. Other values are "
                         "refused because their meaning is not documented"
                         % (option, value, ", ".join("%s (%d, 0x%02X)" % (n, v, v) for n, v in STORAGE_MODES.items())))
    return number


def _storage_mode(value):
    try:
        return storage_mode_value(value)
    except ValueError:
        raise _Invalid("is %r, not a storage mode name or number the vendor's clients use" % (value,))


def storage_mode_name(mode):
    """The name of a storage_mode value (None for a value the vendor's clients never send)."""
    return _STORAGE_MODE_NAMES.get(mode)


def normalise(name, value):
    """The canonical form of ``value`` for field ``name`` (as the device would store it).

    Raises ValueError (its text says what is wrong with the value) when it cannot be read.
    """
    kind = FIELDS[name].kind
    if kind == "bool":
        return to_bool(value)
    if kind == "int":
        return to_int(value)
    if kind == "storage_mode":
        return _storage_mode(value)
    if kind == "hostname":
        return _hostname(value)
    if kind == "ip":
        return _ip(value)
    return to_str(value)


# A device may read back one sector less than was written: the vendor's own sample holds 8388607
# where the web manager writes whole GiB (4 x 2097152 = 8388608; it compares rounded GiB itself).
# A one-sector difference counts as the same size, so that no run reformats the disk for it.
DISK0_SLACK = 1


def same(name, desired, current):
    """True when the canonical desired value is what the device holds (both already normalised)."""
    if name == "storage_disk0size" and isinstance(desired, int) and isinstance(current, int):
        return abs(desired - current) <= DISK0_SLACK
    if FIELDS[name].kind == "ip" and not isinstance(desired, (ipaddress.IPv4Interface, ipaddress.IPv6Interface)):
        # A bare address leaves the prefix length alone.
        if isinstance(current, (ipaddress.IPv4Interface, ipaddress.IPv6Interface)):
            return current.ip == desired
    return desired == current


def wire(name, value):
    """The JSON value to POST for a canonical value."""
    if FIELDS[name].kind == "ip":
        return str(value)
    return value


CHAR_NAMES = {"\t": "a tab", "\n": "a line break", "\r": "a carriage return", " ": "a space", "\x00": "a NUL"}


def describe_char(char):
    """How a message names one character: 'a tab (U+0009)', "'_'", 'the control character U+001B'."""
    if char in CHAR_NAMES:
        return "%s (U+%04X)" % (CHAR_NAMES[char], ord(char))
    if char.isprintable():
        return repr(char)
    return "the control character U+%04X" % ord(char)


def _problem(name, value):
    """None when ``value`` (canonical) is within the field's limits, else what is wrong."""
    field = FIELDS[name]
    if field.kind in ("str", "email"):
        # Control characters are refused to protect the user, as encedo_init does (no source forbids them): in a
        # label, address or CORS list they are nearly always a copy-and-paste or templating accident.
        for position, char in enumerate(value, 1):
            if not char.isprintable() and char != " ":
                return "has %s at character %d (tabs, line breaks and other control characters are refused)" % (
                    describe_char(char), position)
    if field.kind in ("str", "email", "hostname") and field.max_length is not None and len(value) > field.max_length:
        return "is %d characters long" % len(value)
    if field.kind == "int":
        if field.minimum is not None and value < field.minimum:
            return "is %d" % value
        if field.maximum is not None and value > field.maximum:
            return "is %d" % value
    if field.kind == "email" and value and not _EMAIL_RE.match(value):
        return "is %r, which does not look like an e-mail address" % value
    if field.kind == "hostname" and (not value or len(value) > 253 or not all(_LABEL_RE.match(label) for label in value.split("."))):
        return "is %r, not a valid DNS name" % value
    return None


def validate(params):
    """Check and normalise what the user asked for; no device needed.

    ``params``: option name -> value, ``None`` meaning "not set" (left alone).
    Returns option name -> canonical value for the options that are set.
    Raises ConfigError naming every bad option, the problem and what is allowed.
    """
    desired = {}
    problems = []
    for name in FIELDS:
        value = params.get(name)
        if value is None:
            continue
        try:
            canonical = normalise(name, value)
        except ValueError as exc:
            problems.append("option '%s' %s; allowed: %s" % (name, exc, FIELDS[name].allowed))
            continue
        problem = _problem(name, canonical)
        if problem:
            problems.append("option '%s' %s; allowed: %s" % (name, problem, FIELDS[name].allowed))
            continue
        desired[name] = canonical
    if problems:
        raise ConfigError("invalid configuration, nothing was sent to the device: " + "; ".join(problems))
    return desired


def is_msc(current):
    """True for a PPA (MSC build): its configuration carries the storage / secure element fields."""
    return any(key in current for key in MSC_MARKERS)


def current_values(current):
    """The device's fields in canonical form (fields it lacks or reports unreadably are left out)."""
    values = {}
    for name in FIELDS:
        if name not in current:
            continue
        try:
            values[name] = normalise(name, current[name])
        except ValueError:
            continue
    return values


def public_config(current):
    """The configuration to return to the user: no per-request noise, known fields in canonical types."""
    result = {}
    for key, value in current.items():
        if key in NOISE or key in ROTATION_FIELDS:
            continue
        if key in FIELDS:
            try:
                value = wire(key, normalise(key, value))
            except ValueError:
                pass
        result[key] = value
    return result


class Plan(object):
    """What to send: ``delta`` (field -> wire value), ``before``/``after`` of those fields."""

    __slots__ = ("delta", "before", "after", "reboot_required", "model", "reformat")

    def __init__(self, delta, before, after, reboot_required, model_name, reformat=False):
        self.delta = delta
        self.before = before
        self.after = after
        self.reboot_required = reboot_required
        self.model = model_name
        self.reformat = reformat

    @property
    def fields(self):
        return sorted(self.delta)


def plan_update(current, desired, allow_reformat=False):
    """Compare the user's canonical ``desired`` values with the device's ``current`` configuration.

    Only the options in ``desired`` are compared. Raises ConfigError (listing every
    problem) when the request cannot be honoured on this device: MSC-only fields on an
    EPA, ``hostname``/``ip`` different from the personalised values, a disk 0 resize
    without ``allow_reformat`` or beyond the storage capacity, a change of the disk 1
    encryption (CTR/XTS, in ``storage_mode``) without ``allow_reformat``.
    ``plan.reformat`` is true when the device will format its storage (the module waits).
    """
    msc = is_msc(current)
    have = current_values(current)
    problems = []
    delta, before, after = {}, {}, {}
    reboot = False
    reformat = False
    for name in FIELDS:
        if name not in desired:
            continue
        field = FIELDS[name]
        want = desired[name]
        if field.msc_only and not msc:
            problems.append("option '%s' exists only on the PPA (MSC build); this device is an EPA, which has no such setting" % name)
            continue
        if name in have and same(name, want, have[name]):
            continue
        if not field.settable:
            problems.append("option '%s' cannot be changed after personalisation (the device has %r, the task asks for %r); "
                            "only a factory reset and a new personalisation change it"
                            % (name, wire(name, have[name]) if name in have else None, wire(name, want)))
            continue
        if field.destructive and not allow_reformat:
            problems.append("changing '%s' from %r to %r makes the device reformat its storage and erase its data "
                            "(disk 0 and disk 1 are resized); set allow_reformat=true to allow it" % (name, have.get(name), want))
            continue
        if name == "storage_mode" and storage_encryption(want) != storage_encryption(have.get(name)):
            # The vendor manager warns that a change of the disk 1 encryption "will format storage and
            # remove all the data stored there" (build.js, storage_change); treat it as a reformat.
            if not allow_reformat:
                problems.append("changing 'storage_mode' from %s to %s changes the disk 1 encryption (%s to %s), which "
                                "formats the storage and erases its data (the vendor's manager warns so); set "
                                "allow_reformat=true to allow it"
                                % (_mode_text(have.get(name)), _mode_text(want),
                                   (storage_encryption(have.get(name)) or "unknown").upper(), storage_encryption(want).upper()))
                continue
            reformat = True
        if name == "storage_disk0size" and "storage_capacity" in current:
            try:
                capacity = to_int(current["storage_capacity"])
            except ValueError:
                capacity = None
            if capacity is not None and want > capacity:
                problems.append("option 'storage_disk0size' is %d sectors; the device's storage_capacity is %d" % (want, capacity))
                continue
        delta[name] = wire(name, want)
        before[name] = wire(name, have[name]) if name in have else None
        after[name] = wire(name, want)
        reboot = reboot or field.reboot
        reformat = reformat or field.destructive
    if problems:
        raise ConfigError("nothing was sent to the device: " + "; ".join(problems))
    return Plan(delta, before, after, reboot, "ppa" if msc else "epa", reformat)


def _mode_text(mode):
    name = storage_mode_name(mode)
    return "%s (%s)" % (mode, name) if name else repr(mode)


def apply_delta(current, delta):
    """The configuration the device holds after accepting ``delta`` (used to predict and to test)."""
    result = dict(current)
    result.update(delta)
    return result


def diff(before, after, rotation=False):
    """An Ansible diff of the changed fields only; the passphrase is never shown."""
    before = dict(before)
    after = dict(after)
    if rotation:
        before["passphrase"] = MASK
        after["passphrase"] = MASK + " (rotated)"
    return {"before": before, "after": after}


def rotation_fields(new_private, new_public_b64, current):
    """The ``userkey`` proof of PROTOCOL.md for a new key pair and the GET config's nonce/spk.

    ``new_private``: the raw 32-byte X25519 private key derived from the new passphrase.
    """
    nonce = current["nonce"]
    shared = x25519_shared(new_private, current["spk"])
    mac = hmac.new(shared, base64.b64decode(nonce), hashlib.sha256).digest()
    return {
        "userkey": new_public_b64,
        "userkey_nonce": nonce,
        "userkey_hmac": base64.b64encode(mac).decode("ascii"),
    }


# ---------------------------------------------------------------------------- disk format

#: Seconds between two status polls while the device formats its storage (the manager polls every 3 s).
FORMAT_POLL_INTERVAL = 1.0


class FormatNotFinished(HemError):
    """The device still formats (or could not be read) when the wait ran out."""

    def __init__(self, msg, last_status=None, waited=0.0):
        super(FormatNotFinished, self).__init__(msg, endpoint='GET /api/system/status')
        self.last_status = last_status
        self.waited = waited


def format_running(status):
    """True while the status shows a disk format in progress (``format`` = "status<N>")."""
    value = status.get("format") if isinstance(status, dict) else None
    return isinstance(value, str) and value.startswith("status")


def wait_for_format(read_status, timeout, interval=FORMAT_POLL_INTERVAL, clock=time.monotonic, sleep=time.sleep):
    """Poll ``read_status()`` until no disk format runs, for at most ``timeout`` seconds.

    Done when the status has no ``format`` or ``format`` is "done" (what the vendor manager's
    checkDeviceReadyAfterInit waits for). Unanswered polls are tolerated until the time is up.
    Returns (last status, seconds waited, polls); raises FormatNotFinished.
    """
    start = clock()
    deadline = start + timeout
    last, last_error, polls = None, None, 0
    while True:
        try:
            status = read_status()
            polls += 1
            last, last_error = status, None
            if not format_running(status):
                return status, clock() - start, polls
        except HemError as exc:
            polls += 1
            last_error = exc
        now = clock()
        if now >= deadline:
            waited = now - start
            if last_error is not None:
                state = "the last status poll failed (%s)" % last_error
            elif last is not None:
                state = "the device still reports format %r" % last.get("format")
            else:
                state = "no status could be read"
            raise FormatNotFinished(state, last, waited)
        sleep(max(0.0, min(interval, deadline - now)))


def storage_split(status):
    """The status ``storage`` slots as [{"sectors": int, "access": str}, ...] (None when absent or unreadable)."""
    slots = status.get("storage") if isinstance(status, dict) else None
    if not isinstance(slots, list):
        return None
    out = []
    for slot in slots:
        if not isinstance(slot, str) or ":" not in slot:
            return None
        sectors, access = slot.split(":", 1)
        try:
            out.append({"sectors": int(sectors), "access": access})
        except ValueError:
            return None
    return out
