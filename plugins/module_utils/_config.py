# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils file is PRIVATE to the encedo.hem collection. It may change or
# disappear without notice; do not import it from outside the collection.
"""Normalisation and delta logic of ``POST /api/system/config`` (the fields are _fields.FIELDS).

Pure logic, no I/O: the ``encedo_config`` module reads the device configuration,
hands it to :func:`plan_update` together with what the user asked for, and POSTs
``plan.delta`` (only the differing fields, in one request) when it is not empty.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.encedo.hem.plugins.module_utils._engine import Plan, Resource
from ansible_collections.encedo.hem.plugins.module_utils._errors import TOKEN_PATH, HemError, refused
from ansible_collections.encedo.hem.plugins.module_utils._login import HAS_CRYPTOGRAPHY, derive_keypair, x25519_shared
from ansible_collections.encedo.hem.plugins.module_utils._module import POLL
from ansible_collections.encedo.hem.plugins.module_utils._fields import (  # noqa: F401 pylint: disable=unused-import
    FIELDS, STORAGE_MODE_NAMES, FieldError, check, device_model, options_of, to_bool, to_int,
)

# Keys of GET /api/system/config that are not configuration: per-request values
# (the rotation nonce and session key, the current time) and the last-update stamp.
NOISE = frozenset(("nonce", "spk", "iat", "uts"))

# The three fields of a user passphrase rotation, always sent together.
ROTATION_FIELDS = ("userkey", "userkey_hmac", "userkey_nonce")


class ConfigError(HemError):
    """A request that cannot be honoured; raised before anything is sent to the device (so the failure
    says ``changed`` false and ``sent`` [])."""

    def __init__(self, msg, **result):
        super(ConfigError, self).__init__(msg, result=dict(dict(changed=False, sent=[]), **result))


def storage_encryption(mode):
    """'ctr' or 'xts' for the manager's storage_mode values, None for any other value."""
    if mode in (0x50, 0x51, 0x53):
        return 'ctr'
    if mode in (0xA0, 0xA1, 0xA3):
        return 'xts'
    return None


# The field table (types, limits with their sources, models, reboot/reformat) is _fields.FIELDS.
READABLE = tuple(name for name, f in FIELDS.items() if not f.write_only)

# The conversions of each field kind live in _fields (its Kind classes: check, normalise, same, wire).


def storage_mode_name(mode):
    """The name of a storage_mode value (None for a value the vendor's clients never send)."""
    return STORAGE_MODE_NAMES.get(mode)


def normalise(name, value):
    """The canonical form of ``value`` for field ``name`` (as the device would store it): the field kind's.

    Raises ValueError (its text says what is wrong with the value) when it cannot be read.
    """
    return FIELDS[name].kind_of.normalise(value)


def same(name, desired, current):
    """True when the canonical desired value is what the device holds (both already normalised): the field kind's."""
    field = FIELDS[name]
    return field.kind_of.same(field, desired, current)


def wire(name, value):
    """The JSON value to POST for a canonical value: the field kind's."""
    return FIELDS[name].kind_of.wire(value)


def validate(params):
    """Check and normalise what the user asked for; no device needed.

    ``params``: option name -> value, ``None`` meaning "not set" (left alone). The rules are the field
    table's (_fields.check), the same as encedo_init's. Returns option name -> canonical value for the
    options that are set. Raises ConfigError naming every bad option, the problem and what is allowed.
    """
    desired, problems = {}, []
    for field in options_of("config"):
        value = params.get(field.name)
        if value is None:
            continue
        try:
            if field.kind_of.spellings:
                value = normalise(field.name, value)    # "yes", " 2 ": the spellings Ansible's own types accept
            desired[field.name] = normalise(field.name, check(field.name, value, "config"))
        except FieldError as exc:
            problems.append(str(exc))
        except ValueError as exc:
            problems.append("option %s: %s; allowed: %s" % (field.name, exc, field.allowed))
    if problems:
        raise ConfigError("invalid configuration, nothing was sent to the device: " + "; ".join(problems))
    return desired


def current_values(current):
    """The device's fields in canonical form (fields it lacks or reports unreadably are left out)."""
    values = {}
    for name in READABLE:
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
        if key in READABLE:
            try:
                value = wire(key, normalise(key, value))
            except ValueError:
                pass
        result[key] = value
    return result


class Update(object):
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
    msc = device_model(config=current) == "ppa"
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
        if field.settable and "epa" not in field.models and not msc:
            problems.append("option '%s' exists only on the PPA (MSC build); this device is an EPA, which has no such setting" % name)
            continue
        if name in have and same(name, want, have[name]):
            continue
        if not field.settable:
            problems.append("option '%s' cannot be changed after personalisation (the device has %r, the task asks for %r); "
                            "only a factory reset and a new personalisation change it"
                            % (name, wire(name, have[name]) if name in have else None, wire(name, want)))
            continue
        if field.reformat and not allow_reformat:
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
        reformat = reformat or field.reformat
    if problems:
        raise ConfigError("nothing was sent to the device: " + "; ".join(problems))
    if "storage_mode" in delta and reformat and "storage_disk0size" not in delta and "storage_disk0size" in have:
        # An encryption change goes with the disk 0 size, as the vendor manager sends it (build.js storage_change:
        # storageChange(..., true) resends storage_disk0size whenever the encryption changes): the size the device
        # holds, so the layout stays and only the format comes. Not a change of its own: no before/after.
        delta["storage_disk0size"] = wire("storage_disk0size", have["storage_disk0size"])
    return Update(delta, before, after, reboot, "ppa" if msc else "epa", reformat)


def _mode_text(mode):
    name = storage_mode_name(mode)
    return "%s (%s)" % (mode, name) if name else repr(mode)


def apply_delta(current, delta):
    """The configuration the device holds after accepting ``delta`` (used to predict and to test)."""
    result = dict(current)
    result.update(delta)
    return result


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
#: Seconds without any answer (no HTTP status at all) after which a device that answered while it
#: formats is reported as gone, not waited for until format_timeout: it answers its status while it
#: formats (409 only on busy endpoints), so a refused or unanswered connection is not the format.
FORMAT_GONE_GRACE = 15.0
#: Seconds a format the device was asked for may take to start (to show ``format`` "status<N>"): the web manager
#: keeps its "storage is being formatted" notice up for 28.2 s after the request (build.js storageChange).
FORMAT_START_GRACE = 30.0


class FormatNotFinished(HemError):
    """The device still formats (or could not be read) when the wait ran out."""

    def __init__(self, msg, last_status=None, waited=0.0, gone=False):
        super(FormatNotFinished, self).__init__(msg, endpoint='GET /api/system/status')
        self.last_status = last_status
        self.waited = waited
        #: The device stopped answering (``msg`` then says so and what to check): not a slow format.
        self.gone = gone


def format_running(status):
    """True while the status shows a disk format in progress (``format`` = "status<N>")."""
    value = status.get("format") if isinstance(status, dict) else None
    return isinstance(value, str) and value.startswith("status")


def wait_for_format(read_status, timeout, interval=FORMAT_POLL_INTERVAL, clock=time.monotonic, sleep=time.sleep,
                    grace=FORMAT_GONE_GRACE, start_within=0.0):
    """Poll ``read_status()`` until no disk format runs, for at most ``timeout`` seconds.

    Done when the status has no ``format`` or ``format`` is "done" (what the vendor manager's
    checkDeviceReadyAfterInit waits for). Polls answered with an HTTP error are tolerated until the
    time is up; polls with no answer at all (refused, reset, timed out) for ``grace`` seconds mean the
    device is gone (FormatNotFinished with ``gone``). The caller has just seen the device answer.
    ``start_within``: a format was just asked for and may not have started yet; a status without a running
    format counts only once one was seen running, or when that many seconds (at most ``timeout``) passed
    without one (a short format may run between two polls).
    Returns (last status, seconds waited, polls, seen): ``seen`` is true when a poll showed the format running;
    raises FormatNotFinished.
    """
    start = clock()
    deadline = start + timeout
    last, last_error, polls, answered, started = None, None, 0, start, False
    while True:
        try:
            status = read_status()
            polls += 1
            last, last_error, answered = status, None, clock()
            if format_running(status):
                started = True
            elif started or clock() - start >= min(start_within, timeout):
                return status, clock() - start, polls, started
        except HemError as exc:
            polls += 1
            last_error = exc
            if exc.status is None:
                silent = clock() - answered
                if silent >= min(grace, timeout):
                    raise FormatNotFinished(
                        "the device stopped answering: nothing for %.0f s (%s). Check that it is still powered and "
                        "connected (its USB cable, the server it is plugged into, the network path to url); once it "
                        "answers, encedo.hem.encedo_info shows whether the format finished (status.format gone or "
                        "\"done\"), then run the task again" % (silent, exc), last, clock() - start, gone=True)
            else:
                answered = clock()
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


# ---------------------------------------------------------------------------- the resource

CONFIG_PATH = "/api/system/config"


class ConfigResource(Resource):
    """``GET``/``POST /api/system/config``: the configuration fields of the table, and the user passphrase rotation.

    Its own steps besides the engine's: the rotation (a trial login with ``new_passphrase`` first: already
    rotated means nothing to send), the disk format a storage change starts (waited for), and what a refused
    or lost update means.
    """

    name = "config"
    path = CONFIG_PATH

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.rotate = False

    # -- what the task asks for
    def desired(self, params):
        if params["format_timeout"] <= 0:
            raise refused("option format_timeout: must be a positive number of seconds, got %d" % params["format_timeout"])
        want = validate(dict((field.name, params.get(field.name)) for field in options_of("config")))
        new = params.get("new_passphrase")
        if new is not None and not new:
            raise refused("option 'new_passphrase' is empty; allowed: a non-empty passphrase. Nothing was sent to the device.")
        if not self.module.has_credentials() and new is None:
            raise refused("credentials needed: set passphrase or token (or ENCEDO_HEM_PASSPHRASE / ENCEDO_HEM_TOKEN)")
        return want

    def connect(self, client):
        """The client to use: with ``new_passphrase``, one that logs in with it when the device accepts it (already rotated)."""
        new = self.params.get("new_passphrase")
        if not new:
            return client
        trial = self.module.client(passphrase=new, token=None)
        try:
            trial.login()
            return trial
        except HemError as exc:
            if not (exc.status == 401 and exc.endpoint == "POST " + TOKEN_PATH):
                raise
        if not self.module.has_credentials():
            raise refused("new_passphrase does not log in yet, and neither passphrase nor token was given to authorise the "
                          "rotation. Nothing was sent.")
        self.rotate = True
        return client

    def read(self, client):
        try:
            return client.get(self.path)
        except HemError as exc:
            if self.rotate and exc.status == 401 and exc.endpoint == "POST " + TOKEN_PATH:
                raise refused("neither new_passphrase nor passphrase is accepted by the device (two failed login attempts; after "
                              "3 consecutive failures the device answers logins more slowly until one succeeds). Nothing was "
                              "sent.", status=401, endpoint=exc.endpoint)
            raise

    # -- the plan
    def plan(self, current, want):
        try:
            update = plan_update(current, want, self.params.get("allow_reformat"))
        except ConfigError as exc:
            exc.result["config"] = self.shown(current)
            raise
        rotated = ("passphrase",) if self.rotate else ()
        sent = sorted(list(update.delta) + (list(ROTATION_FIELDS) if self.rotate else []))
        return Plan(update.before, update.after, body=update.delta, sent=sent, rotated=rotated,
                    reboot_required=update.reboot_required, reformat=update.reformat, want=want)

    def predict(self, current, plan):
        return apply_delta(current, plan.body)

    def write(self, client, plan, current):
        body = dict(plan.body)
        if self.rotate:
            if not HAS_CRYPTOGRAPHY:
                raise refused(missing_required_lib("cryptography"))
            private, public = derive_keypair(self.params["new_passphrase"], current["eid"])
            body.update(rotation_fields(private, public, current))
        return client.post(self.path, body)

    def refused(self, client, exc, plan):
        sent = plan.sent
        if exc.status == 400:
            return refused("the device rejected the configuration update (HTTP 400): at least one of the fields sent failed its "
                           "validation on the device (sent: %s). The device applies all or nothing, so nothing was changed. "
                           "The module checked the documented ranges first; check these values against what this device and "
                           "its firmware accept (encedo.hem.encedo_info shows the model and firmware)." % ", ".join(sent),
                           sent=sent, status=400, endpoint=exc.endpoint)
        if exc.status == 409:
            return refused(self._busy_message(sent), sent=sent, status=409, endpoint=exc.endpoint)
        if exc.status == 406 and self.rotate:
            exc.msg += ("; the device refused the passphrase rotation for the role of this login (the vendor documents a 406 for "
                        '"user-key rotation with wrong role" without naming the role). Nothing was applied: try with the other '
                        "credential - the user passphrase, or a token of the master key")
        return exc

    def _busy_message(self, sent):
        """The device answered 409 to the update: say whether a storage format is the reason."""
        try:
            formatting = format_running(self.module.client(**POLL).status())
        except HemError:
            formatting = False
        if formatting:
            return ("the device refused the configuration update (HTTP 409) because it is formatting its storage (sent: %s); "
                    "nothing was changed. Wait until the format is over (encedo.hem.encedo_info shows status.format \"done\"), "
                    "then run the task again." % ", ".join(sent))
        return ("the device refused the configuration update (HTTP 409): it is busy or in the wrong state (a firmware install, a "
                "disk format or a latched self-test fault; sent: %s); nothing was changed. Check encedo.hem.encedo_info, wait "
                "until the device is idle, then run the task again." % ", ".join(sent))

    def outcome_unknown(self, exc, plan, now, want):
        have = current_values(now)
        applied = [n for n in sorted(plan.body) if n in have and same(n, want[n], have[n])]
        pending = [n for n in sorted(plan.body) if n not in applied]
        msg = ("outcome unknown: the configuration update was sent but its answer was lost (%s). A re-read of the configuration "
               "shows: %s; %s." % (exc, "as requested now: " + ", ".join(applied) if applied else "none of the changed fields applied",
                                   "still different: " + ", ".join(pending) if pending else "nothing left to change"))
        if self.rotate:
            msg += (" Whether the passphrase was rotated cannot be read back: run the task again, it tries new_passphrase first "
                    "and rotates only if that login fails.")
        return refused(msg, changed=bool(applied), sent=plan.sent, config=self.shown(public_config(now)), applied=applied,
                       not_applied=pending)

    def settle(self, client, plan, answer):
        """After an accepted storage change: wait for the device's format; fails the task on a timeout."""
        if not plan.extra.get("reformat"):
            return {}
        timeout = self.params["format_timeout"]
        try:
            # OA: a new storage_disk0size "triggers a reformat", which may start a moment after the answer; an
            # encryption change is sent with the size (plan_update), as the vendor manager does.
            start = FORMAT_START_GRACE if "storage_disk0size" in plan.sent else 0.0
            status, waited, dummy, seen = wait_for_format(self.module.client(**POLL).status, timeout, start_within=start)
        except FormatNotFinished as exc:
            if exc.gone:
                raise refused("the device accepted the storage change (sent: %s) and started formatting its storage, but %s."
                              % (", ".join(plan.sent), exc.msg), changed=True, sent=plan.sent,
                              updated=bool(answer.get("updated", True)), reformatted=False,
                              format_seconds=int(round(exc.waited)), device_status=exc.last_status)
            raise refused("the device accepted the storage change (sent: %s) and is formatting its storage, but the format did "
                          "not finish within format_timeout=%d s: %s. Leave the device powered and connected: it refuses "
                          "configuration changes (HTTP 409) until the format is over. Watch encedo.hem.encedo_info (status.format "
                          "becomes \"done\"), then run the task again: it sends nothing once the device holds the requested values. "
                          "Raise format_timeout if formats take longer on this device." % (", ".join(plan.sent), timeout, exc.msg),
                          changed=True, sent=plan.sent, updated=bool(answer.get("updated", True)), reformatted=False,
                          format_seconds=int(round(exc.waited)), device_status=exc.last_status)
        if not seen:
            # What happened is reported, not what was asked for: no poll showed a format within the wait.
            self.module.warn("the device accepted the storage change (sent: %s) but no status read within %.0f s showed a disk "
                             "format (status.format \"status<N>\"), so reformatted is false: either the format ran entirely "
                             "between two reads or the device did not format. encedo.hem.encedo_info shows status.storage; "
                             "treat the data on the storage as possibly erased." % (", ".join(plan.sent), waited))
            return dict(reformatted=False)
        fields = dict(reformatted=True, format_seconds=int(round(waited)))
        split = storage_split(status)
        if split is not None:
            fields["storage"] = split
        return fields

    def result(self, plan, answer):
        out = dict(updated=bool(answer and answer.get("updated", False)))
        if answer is None or not (plan and plan.extra.get("reformat")):
            # Check mode or no storage change: the prediction. After a storage change, settle() says what happened.
            out["reformatted"] = bool(plan) and bool(plan.extra.get("reformat"))
        return out

    # -- what the device holds
    def values(self, current):
        return dict((name, wire(name, value)) for name, value in current_values(current).items())

    def same(self, name, written, have):
        if have is None:
            return False
        try:
            return same(name, normalise(name, written), normalise(name, have))
        except ValueError:
            return written == have

    def shown(self, current):
        """The declared fields only, or all of it with full_config (results stay small in a fleet)."""
        config = public_config(current)
        if self.params.get("full_config"):
            return config
        return dict((name, value) for name, value in config.items() if self.params.get(name) is not None)
