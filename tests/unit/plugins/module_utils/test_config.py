# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the encedo_config comparison and normalisation logic (pure logic, no device)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519
from hypothesis import given, settings
from hypothesis import strategies as st

try:
    from ansible_collections.encedo.hem.plugins.module_utils import _config as C
    from ansible_collections.encedo.hem.plugins.module_utils import _fields as F, _engine
except ImportError:  # run without the collection link on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "build" / "collections"))
    from ansible_collections.encedo.hem.plugins.module_utils import _config as C
    from ansible_collections.encedo.hem.plugins.module_utils import _fields as F, _engine


def ppa_config(**over):
    cfg = {
        "iat": 1700000000, "uts": 1700000000, "devid": "2023b758c209269a", "instanceid": "f4980240-da72-13e3-f45c-2ffbde2a1800",
        "eid": "ff6/rpgprw6OjcPbedIB5LbsxjZqmnf43J1zeK1x82I=", "eid_sign": "T61jY1AgV5XUW++eAcQibRDFOl5KjKwLGdo+U0def8A=",
        "user": "John Doe", "email": "john@example.com", "hostname": "example.ence.do", "dnsd": True, "trusted_ts": True,
        "trusted_backend": True, "allow_keysearch": True, "origin": "*", "ctx": 0, "http_option_hsts": True,
        "http_option_dosprot_mode": 1, "ip": "192.168.11.1/24", "genuine_id": "0123eb561f5ea073ee", "storage_mode": 81,
        "storage_disk0size": 8388607, "storage_capacity": 120979451,
        "spk": "fi2bgSQwaGhLkRi016q9saqeTWvrLyU08nM8hJUpTBg=", "nonce": "fOw1YvMYWIqbTfrxgQFzEuvcJozIRqEVKluO9KDza0w=",
    }
    cfg.update(over)
    return cfg


def epa_config(**over):
    cfg = ppa_config(**over)
    for key in ("genuine_id", "storage_mode", "storage_disk0size", "storage_capacity"):
        cfg.pop(key, None)
    return cfg


# ------------------------------------------------------------------ normalisation

@pytest.mark.parametrize("raw", [True, "yes", "Yes", "true", "TRUE", "on", "1", 1, "y", "t", " true "])
def test_true_spellings(raw):
    assert C.to_bool(raw) is True


@pytest.mark.parametrize("raw", [False, "no", "false", "False", "off", "0", 0, "n", "f"])
def test_false_spellings(raw):
    assert C.to_bool(raw) is False


@pytest.mark.parametrize("raw", ["maybe", 2, -1, None, "", [], {}])
def test_not_booleans(raw):
    with pytest.raises(ValueError):
        C.to_bool(raw)


@pytest.mark.parametrize("raw,want", [(2, 2), ("2", 2), (" 2 ", 2), ("+2", 2), (2.0, 2), ("-3", -3), ("007", 7)])
def test_int_spellings(raw, want):
    assert C.to_int(raw) == want


@pytest.mark.parametrize("raw", [True, False, "2.5", 2.5, "two", "", None, [2]])
def test_not_ints(raw):
    with pytest.raises(ValueError):
        C.to_int(raw)


def test_string_two_equals_int_two_for_a_number_field():
    assert C.normalise("http_option_dosprot_mode", "2") == C.normalise("http_option_dosprot_mode", 2) == 2


def test_yes_equals_true_for_a_boolean_field():
    assert C.normalise("trusted_ts", "yes") is C.normalise("trusted_ts", "true") is C.normalise("trusted_ts", True) is True


def test_numbers_given_for_a_string_field_become_strings():
    assert C.normalise("user", 42) == "42"


def test_hostname_is_case_and_trailing_dot_insensitive():
    assert C.normalise("hostname", "Example.Ence.Do.") == "example.ence.do"


# ------------------------------------------------------------------ validation before any request

def test_unset_options_are_left_alone():
    assert C.validate({"user": None, "ctx": None, "trusted_ts": False}) == {"trusted_ts": False}


def test_user_longer_than_32_is_refused_naming_the_option():
    with pytest.raises(C.ConfigError) as err:
        C.validate({"user": "x" * 33})
    msg = str(err.value)
    assert "option user:" in msg and "33 characters" in msg and "at most 32" in msg and "nothing was sent" in msg


def test_user_of_32_is_accepted():
    assert C.validate({"user": "x" * 32}) == {"user": "x" * 32}


@pytest.mark.parametrize("value", [-1, 5, 100])
def test_dosprot_out_of_range(value):
    with pytest.raises(C.ConfigError) as err:
        C.validate({"http_option_dosprot_mode": value})
    assert "option http_option_dosprot_mode:" in str(err.value) and "0 (off) to 4" in str(err.value)


@pytest.mark.parametrize("value", [0, 4, "3"])
def test_dosprot_in_range(value):
    assert C.validate({"http_option_dosprot_mode": value}) == {"http_option_dosprot_mode": int(value)}


@pytest.mark.parametrize("email", ["not-an-email", "a@b@c", "with space@example.com", "@example.com", "me@"])
def test_email_shape(email):
    with pytest.raises(C.ConfigError) as err:
        C.validate({"email": email})
    assert "option email:" in str(err.value)


@pytest.mark.parametrize("email", ["admin@example.com", "a.b+c@sub.example.org", ""])
def test_email_accepted(email):
    assert C.validate({"email": email}) == {"email": email}


def test_lengths_are_the_sourced_ones():
    # user: OpenAPI maxLength 32. email/origin: the vendor manager's fields stop at 63 (kept to protect the user,
    # the same as encedo_init); 63 passes, 64 fails; an empty origin (no browser origin allowed) passes.
    email63 = "a" * 51 + "@example.com"
    assert len(email63) == 63
    assert C.validate({"email": email63, "origin": "o" * 63, "user": "\u017c" * 32}) == {
        "email": email63, "origin": "o" * 63, "user": "\u017c" * 32}
    assert C.validate({"origin": ""}) == {"origin": ""}
    for bad in ({"email": "a" + email63}, {"origin": "o" * 64}, {"user": "x" * 33}):
        with pytest.raises(C.ConfigError, match="option %s:" % next(iter(bad))):
            C.validate(bad)


@pytest.mark.parametrize("name,value,where", [("user", "Ops\tteam", "character 4 is a tab (U+0009)"),
                                              ("email", "a@b.example\n", "character 12 is a line break (U+000A)"),
                                              ("origin", "*\x1b", "character 2 is the control character U+001B"),
                                              ("user", "Ops\u200bteam", "character 4 is the invisible or control character U+200B"),
                                              ("user", "Ops\u00a0team", "character 4 is the invisible or control character U+00A0")])
def test_control_characters_are_refused_naming_the_character(name, value, where):
    # The same rule as encedo_init: a control character is nearly always an accident; the message says which one.
    with pytest.raises(C.ConfigError) as err:
        C.validate({name: value})
    assert "option %s: " % name in str(err.value) and where in str(err.value)
    assert C.validate({"user": "Ops team \u017c"}) == {"user": "Ops team \u017c"}     # spaces and letters are fine


def test_every_problem_is_named_at_once():
    with pytest.raises(C.ConfigError) as err:
        C.validate({"user": "x" * 40, "ctx": -2, "trusted_ts": "perhaps", "storage_mode": 300})
    msg = str(err.value)
    for name in ("option user:", "option ctx:", "option trusted_ts:", "option storage_mode:"):
        assert name in msg


def test_bad_ip_is_refused():
    with pytest.raises(C.ConfigError, match="option ip:"):
        C.validate({"ip": "300.1.1.1"})


# ------------------------------------------------------------------ the plan (delta)

def test_only_differing_fields_are_in_the_delta():
    desired = C.validate({"user": "John Doe", "email": "ops@example.com", "trusted_ts": "yes", "http_option_dosprot_mode": "1"})
    plan = C.plan_update(ppa_config(), desired)
    assert plan.delta == {"email": "ops@example.com"}
    assert plan.before == {"email": "john@example.com"}
    assert plan.after == {"email": "ops@example.com"}
    assert plan.reboot_required is False


def test_device_side_is_normalised_too():
    # Some firmware builds report booleans and numbers as strings.
    current = ppa_config(trusted_ts="true", dnsd="1", ctx="0", http_option_dosprot_mode="2")
    desired = C.validate({"trusted_ts": True, "dnsd": "yes", "ctx": 0, "http_option_dosprot_mode": 2})
    assert C.plan_update(current, desired).delta == {}


def test_no_options_no_delta():
    assert C.plan_update(ppa_config(), {}).delta == {}


def test_values_sent_have_device_types():
    desired = C.validate({"ctx": "5", "allow_keysearch": "no", "http_option_hsts": "off"})
    plan = C.plan_update(ppa_config(), desired)
    assert plan.delta == {"ctx": 5, "allow_keysearch": False, "http_option_hsts": False}
    assert isinstance(plan.delta["ctx"], int) and not isinstance(plan.delta["ctx"], bool)


def test_network_and_storage_changes_need_a_reboot():
    assert C.plan_update(ppa_config(), {"dnsd": False}).reboot_required is True
    assert C.plan_update(ppa_config(), {"storage_mode": 0x53}).reboot_required is True     # disk 0 applies "on start"
    assert C.plan_update(ppa_config(), {"dnsd": True}).reboot_required is False


def test_msc_fields_on_an_epa_are_refused():
    with pytest.raises(C.ConfigError) as err:
        C.plan_update(epa_config(), {"storage_mode": 81, "dnsd": True, "user": "x"})
    msg = str(err.value)
    assert "'storage_mode'" in msg and "'dnsd'" in msg and "EPA" in msg and "nothing was sent" in msg


def test_model_detection():
    assert C.device_model(config=ppa_config()) == "ppa"
    assert C.device_model(config=epa_config()) == "epa"


def test_hostname_change_after_personalisation_is_refused():
    with pytest.raises(C.ConfigError) as err:
        C.plan_update(ppa_config(), {"hostname": "other.example.com"})
    msg = str(err.value)
    assert "'hostname'" in msg and "personalisation" in msg and "example.ence.do" in msg


def test_same_hostname_and_ip_are_fine():
    desired = C.validate({"hostname": "EXAMPLE.ence.do", "ip": "192.168.11.1/24"})
    assert C.plan_update(ppa_config(), desired).delta == {}


def test_bare_ip_compares_the_address_only():
    assert C.plan_update(ppa_config(), C.validate({"ip": "192.168.11.1"})).delta == {}
    with pytest.raises(C.ConfigError, match="'ip'"):
        C.plan_update(ppa_config(), C.validate({"ip": "192.168.11.2"}))
    with pytest.raises(C.ConfigError, match="'ip'"):
        C.plan_update(ppa_config(), C.validate({"ip": "192.168.11.1/16"}))


def test_disk0_resize_needs_allow_reformat():
    with pytest.raises(C.ConfigError) as err:
        C.plan_update(ppa_config(), {"storage_disk0size": 4096})
    assert "allow_reformat" in str(err.value) and "erase" in str(err.value)
    plan = C.plan_update(ppa_config(), {"storage_disk0size": 4096}, allow_reformat=True)
    assert plan.delta == {"storage_disk0size": 4096} and plan.reformat
    assert plan.reboot_required is False         # the device formats at once (the module waits), no reboot


def test_disk0_same_size_needs_no_opt_in():
    assert C.plan_update(ppa_config(), {"storage_disk0size": 8388607}).delta == {}


def test_disk0_one_sector_short_is_the_same_size():
    # The vendor's sample reads 8388607 where the web manager writes 4 GiB = 8388608: no reformat for that sector.
    assert C.plan_update(ppa_config(), {"storage_disk0size": 8388608}).delta == {}
    # Two sectors apart is a real change (and needs the opt-in).
    with pytest.raises(C.ConfigError, match="allow_reformat"):
        C.plan_update(ppa_config(), {"storage_disk0size": 8388609})


def test_disk0_larger_than_capacity_is_refused():
    with pytest.raises(C.ConfigError, match="storage_capacity"):
        C.plan_update(ppa_config(), {"storage_disk0size": 120979452}, allow_reformat=True)


def test_disk0_size_need_not_be_whole_gib():
    # The vendor's own sample device holds 8388607 sectors (4 GiB - 1): any whole number of sectors.
    plan = C.plan_update(ppa_config(storage_disk0size=0), C.validate({"storage_disk0size": "8388607"}), allow_reformat=True)
    assert plan.delta == {"storage_disk0size": 8388607}
    assert C.plan_update(ppa_config(), {"storage_disk0size": 120979451}, allow_reformat=True).delta == {"storage_disk0size": 120979451}


# ------------------------------------------------------------------ storage_mode names

def test_storage_mode_names_are_the_managers_six_values():
    # build.js layeredStorageEncrSet: [shown][mode][encryption] = 0x51 0xA1 / 0x53 0xA3 ; hidden 0x50 0xA0
    assert F.STORAGE_MODES == {"shown_readonly_ctr": 0x51, "shown_readonly_xts": 0xA1, "shown_writable_ctr": 0x53,
                               "shown_writable_xts": 0xA3, "hidden_ctr": 0x50, "hidden_xts": 0xA0}
    assert F.STORAGE_MODES["shown_readonly_ctr"] == 81 and F.STORAGE_MODES["hidden_xts"] == 160


@pytest.mark.parametrize("raw,value", [("hidden_ctr", 80), ("Shown_Writable_XTS", 163), (" shown_readonly_ctr ", 81),
                                       (81, 81), ("161", 161), (160.0, 160), ("0x51", 81)])
def test_storage_mode_by_name_or_number(raw, value):
    assert C.validate({"storage_mode": raw}) == {"storage_mode": value}


@pytest.mark.parametrize("raw", [0, 17, 255, 256, -1, "hidden", "shown_ctr", True, "0x52", 81.5])
def test_other_storage_modes_are_refused_with_the_allowed_list(raw):
    with pytest.raises(C.ConfigError) as err:
        C.validate({"storage_mode": raw})
    msg = str(err.value)
    assert "option storage_mode:" in msg and "hidden_ctr (80, 0x50)" in msg and "shown_writable_xts (163, 0xA3)" in msg
    assert "nothing was sent" in msg


def test_disk1_encryption_change_is_a_reformat():
    with pytest.raises(C.ConfigError) as err:
        C.plan_update(ppa_config(), C.validate({"storage_mode": "shown_readonly_xts"}))
    msg = str(err.value)
    assert "allow_reformat" in msg and "CTR to XTS" in msg and "81 (shown_readonly_ctr)" in msg
    plan = C.plan_update(ppa_config(), C.validate({"storage_mode": "shown_readonly_xts"}), allow_reformat=True)
    # issue 25: the disk 0 size the device holds goes with the new encryption, as the vendor manager sends it
    # (storageChange(..., true)); it is no change of its own, so the diff shows the mode only
    assert plan.delta == {"storage_mode": 161, "storage_disk0size": 8388607} and plan.reformat and plan.reboot_required
    assert plan.before == {"storage_mode": 81} and plan.after == {"storage_mode": 161}
    # with a new size too, the new size is sent
    plan = C.plan_update(ppa_config(), C.validate({"storage_mode": 161, "storage_disk0size": 4194304}), allow_reformat=True)
    assert plan.delta == {"storage_mode": 161, "storage_disk0size": 4194304}
    # the same encryption, another disk 0 setting: no format, no opt-in
    plan = C.plan_update(ppa_config(), C.validate({"storage_mode": "hidden_ctr"}))
    assert plan.delta == {"storage_mode": 80} and not plan.reformat
    # from a value no vendor client sends (a factory 0): the encryption is unknown, so it counts as a change
    with pytest.raises(C.ConfigError, match="allow_reformat"):
        C.plan_update(ppa_config(storage_mode=0), C.validate({"storage_mode": 81}))


def test_no_format_without_a_change():
    assert C.plan_update(ppa_config(), C.validate({"storage_mode": 81, "storage_disk0size": 8388607})).reformat is False


# ------------------------------------------------------------------ waiting for a format

class FakeClock(object):
    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def _reader(answers, clock, cost=0.1):
    answers = list(answers)

    def read():
        clock.now += cost
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer
    return read


def test_wait_for_format_until_done():
    clock = FakeClock()
    read = _reader([{"format": "status0"}, C.HemError("down", "GET /api/system/status"), {"format": "status50"},
                    {"format": "done", "storage": ["8388608:rw", "112590843:-"]}], clock)
    status, waited, polls, seen = C.wait_for_format(read, 30, interval=1.0, clock=clock.clock, sleep=clock.sleep)
    assert status["format"] == "done" and polls == 4 and seen is True
    assert clock.sleeps == [1.0, 1.0, 1.0] and waited == pytest.approx(3.4)
    assert C.storage_split(status) == [{"sectors": 8388608, "access": "rw"}, {"sectors": 112590843, "access": "-"}]


def test_wait_for_format_no_format_field_is_done():
    # The manager (checkDeviceReadyAfterInit) takes a status without `format` as ready.
    clock = FakeClock()
    status, _waited, polls, seen = C.wait_for_format(_reader([{"uptime": 5}], clock), 30, clock=clock.clock, sleep=clock.sleep)
    assert polls == 1 and status == {"uptime": 5} and seen is False


def test_wait_for_format_times_out_saying_the_state():
    clock = FakeClock()
    read = _reader([{"format": "status%d" % i} for i in range(100)], clock)
    with pytest.raises(C.FormatNotFinished) as err:
        C.wait_for_format(read, 5, interval=1.0, clock=clock.clock, sleep=clock.sleep)
    assert "still reports format 'status" in str(err.value) and err.value.waited >= 5
    assert err.value.last_status["format"].startswith("status")
    assert sum(clock.sleeps) <= 5


def test_wait_for_format_reports_a_device_that_stopped_answering_after_a_grace_period():
    """Issue 30: the emulator killed during a format was waited for the whole format_timeout (60 s), then
    "Leave the device powered..."; a device with no answer at all is gone after the grace period."""
    clock = FakeClock()
    refused = C.HemError("cannot reach the device at https://127.0.0.1:1 ([Errno 111] Connection refused)", "GET /api/system/status")
    read = _reader([{"format": "status10"}] + [refused] * 100, clock)
    with pytest.raises(C.FormatNotFinished) as err:
        C.wait_for_format(read, 60, interval=1.0, clock=clock.clock, sleep=clock.sleep)
    assert err.value.gone and err.value.last_status == {"format": "status10"}
    assert C.FORMAT_GONE_GRACE <= err.value.waited < C.FORMAT_GONE_GRACE + 3
    msg = str(err.value)
    assert "stopped answering: nothing for 15 s" in msg and "Connection refused" in msg
    assert "powered and connected" in msg and "encedo.hem.encedo_info" in msg


def test_wait_for_format_waits_through_http_errors_and_short_silences():
    # An HTTP answer (the device is there, busy) is not silence; a silence shorter than the grace is tolerated.
    clock = FakeClock()
    busy = C.HemError("busy", "GET /api/system/status", 503)
    silent = C.HemError("no answer within the timeout of 5 s (timed out)", "GET /api/system/status")
    read = _reader([{"format": "status1"}] + [busy] * 30 + [silent] * 10 + [{"format": "done"}], clock)
    status, waited, polls, seen = C.wait_for_format(read, 120, interval=1.0, clock=clock.clock, sleep=clock.sleep)
    assert status == {"format": "done"} and polls == 42 and seen and waited > 40
    read = _reader([{"format": "status1"}] + [busy] * 200, clock)
    with pytest.raises(C.FormatNotFinished) as err:
        C.wait_for_format(read, 60, interval=1.0, clock=clock.clock, sleep=clock.sleep)
    assert not err.value.gone and err.value.waited >= 60


def test_wait_for_format_waits_for_a_format_to_start():
    # A format the device was just asked for may not show yet: those polls do not count as "done".
    clock = FakeClock()
    read = _reader([{"format": "done"}, {}, {"format": "status0"}, {"format": "status60"}, {"format": "done"}], clock)
    status, waited, polls, seen = C.wait_for_format(read, 60, interval=1.0, clock=clock.clock, sleep=clock.sleep, start_within=30)
    assert status["format"] == "done" and polls == 5 and seen and waited == pytest.approx(4.5)


def test_wait_for_format_gives_up_on_the_start_after_the_grace():
    # a format that never shows (it ran between two polls, or the firmware did not format): done after the grace
    clock = FakeClock()
    read = _reader([{"uptime": 5}] * 100, clock)
    status, waited, polls, seen = C.wait_for_format(read, 60, interval=1.0, clock=clock.clock, sleep=clock.sleep, start_within=10)
    assert status == {"uptime": 5} and 10 <= waited < 11.5 and seen is False
    # never beyond the timeout, and then without an error: nothing ran that could be waited for
    clock = FakeClock()
    read = _reader([{"uptime": 5}] * 100, clock)
    dummy, waited, dummy, dummy = C.wait_for_format(read, 5, interval=1.0, clock=clock.clock, sleep=clock.sleep, start_within=30)
    assert 5 <= waited < 6


def test_storage_split_unreadable():
    assert C.storage_split({}) is None
    assert C.storage_split({"storage": ["x:rw"]}) is None
    assert C.storage_split({"storage": "8:rw"}) is None


def test_public_config_has_no_noise():
    out = C.public_config(ppa_config(dnsd="true"))
    for key in ("nonce", "spk", "iat", "uts"):
        assert key not in out
    assert out["dnsd"] is True and out["devid"] == "2023b758c209269a"


def test_diff_masks_the_passphrase():
    d = _engine.Plan({"user": "a"}, {"user": "b"}, rotated=("passphrase",)).diff()
    assert d["before"] == {"user": "a", "passphrase": _engine.MASK}
    assert d["after"]["passphrase"].startswith(_engine.MASK) and d["after"]["user"] == "b"


def test_rotation_proof_verifies_from_the_device_side():
    device_session = x25519.X25519PrivateKey.generate()
    spk = base64.b64encode(device_session.public_key().public_bytes_raw()).decode()
    nonce = base64.b64encode(b"\x01" * 32).decode()
    seed = hashlib.pbkdf2_hmac("sha256", b"new-pass", b"eid-text", 1000, 32)
    pub = base64.b64encode(x25519.X25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()).decode()
    fields = C.rotation_fields(seed, pub, {"spk": spk, "nonce": nonce})
    assert sorted(fields) == sorted(C.ROTATION_FIELDS)
    assert fields["userkey"] == pub and fields["userkey_nonce"] == nonce
    shared = device_session.exchange(x25519.X25519PublicKey.from_public_bytes(base64.b64decode(fields["userkey"])))
    want = hmac.new(shared, base64.b64decode(nonce), hashlib.sha256).digest()
    assert base64.b64decode(fields["userkey_hmac"]) == want


# ------------------------------------------------------------------ properties

def _spellings(name, value):
    """Strategy: the ways a user or a device may write a canonical value."""
    kind = C.FIELDS[name].kind
    if kind == "bool":
        words = ["true", "yes", "on", "1", "True", "YES"] if value else ["false", "no", "off", "0", "False", "NO"]
        return st.sampled_from([value, int(value)] + words)
    if kind == "int":
        return st.sampled_from([value, str(value), " %d " % value, float(value)])
    if kind == "storage_mode":
        name = C.storage_mode_name(value)
        return st.sampled_from([value, str(value), name, name.upper()])
    return st.just(value)


_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=32)
_EMAILS = st.builds(lambda a, b: "%s@%s.example" % (a, b), st.from_regex(r"[a-z0-9.]{1,10}", fullmatch=True),
                    st.from_regex(r"[a-z0-9]{1,10}", fullmatch=True)) | st.just("")

_CANONICAL = {
    "user": _TEXT,
    "email": _EMAILS,
    "origin": st.sampled_from(["*", "https://app.example.com", "*.example.com", ""]),
    "allow_keysearch": st.booleans(),
    "trusted_ts": st.booleans(),
    "trusted_backend": st.booleans(),
    "ctx": st.integers(min_value=0, max_value=1000),
    "http_option_hsts": st.booleans(),
    "http_option_dosprot_mode": st.integers(min_value=0, max_value=4),
    "dnsd": st.booleans(),
    "storage_mode": st.sampled_from(sorted(F.STORAGE_MODES.values())),
    "storage_disk0size": st.integers(min_value=0, max_value=120979451),
}


@st.composite
def raw_config(draw, msc):
    """A device answer with random values, each written in a random (device-acceptable) spelling."""
    cfg = ppa_config() if msc else epa_config()
    for name, strategy in _CANONICAL.items():
        if C.FIELDS[name].models == ("ppa",) and not msc:
            cfg.pop(name, None)
            continue
        cfg[name] = draw(strategy.flatmap(lambda v, n=name: _spellings(n, v)))
    return cfg


@st.composite
def scenario(draw):
    msc = draw(st.booleans())
    current = draw(raw_config(msc))
    names = [n for n in _CANONICAL if msc or C.FIELDS[n].models != ("ppa",)]
    chosen = draw(st.lists(st.sampled_from(names), unique=True))
    wanted = {}
    for name in chosen:
        if draw(st.booleans()) and name in current:
            value = C.normalise(name, current[name])  # ask for what is already there
        else:
            value = draw(_CANONICAL[name])
        wanted[name] = draw(_spellings(name, value))
    return current, wanted


@settings(max_examples=400, deadline=None)
@given(scenario())
def test_applying_the_delta_yields_the_desired_state_and_a_second_delta_is_empty(case):
    current, wanted = case
    desired = C.validate(wanted)
    plan = C.plan_update(current, desired, allow_reformat=True)
    # Only options the user set, and only those that really differ, are changed; an encryption change carries the
    # disk 0 size the device holds besides (as the vendor manager sends it), and nothing else.
    assert set(plan.after) <= set(desired)
    assert set(plan.delta) - set(plan.after) <= {"storage_disk0size"}
    if set(plan.delta) - set(plan.after):
        assert plan.reformat and "storage_mode" in plan.after and plan.delta["storage_disk0size"] == C.to_int(current["storage_disk0size"])
    have = C.current_values(current)
    for name in plan.after:
        assert have.get(name) != desired[name]
    for name in set(desired) - set(plan.after):
        assert C.same(name, desired[name], have[name])      # equal, or one sector apart for storage_disk0size
    after = C.apply_delta(current, plan.delta)
    assert C.plan_update(after, desired, allow_reformat=True).delta == {}
    after_values = C.current_values(after)
    for name, value in desired.items():
        assert C.same(name, value, after_values[name])
    # Fields the user did not set are untouched.
    for key in set(current) - set(desired):
        assert after[key] == current[key] or (key in plan.delta and C.normalise(key, after[key]) == C.normalise(key, current[key]))
    assert plan.reboot_required == any(C.FIELDS[n].reboot for n in plan.after)


@settings(max_examples=200, deadline=None)
@given(scenario(), st.randoms())
def test_the_delta_does_not_depend_on_how_values_are_spelled(case, rnd):
    current, wanted = case
    desired = C.validate(wanted)
    respelled = {}
    for name, value in desired.items():
        if C.FIELDS[name].kind == "bool":
            respelled[name] = rnd.choice([("no", "yes"), ("false", "true"), (0, 1)])[int(value)]
        elif C.FIELDS[name].kind == "int":
            respelled[name] = str(value)
        elif C.FIELDS[name].kind == "storage_mode":
            respelled[name] = C.storage_mode_name(value)
        else:
            respelled[name] = value
    assert C.plan_update(current, C.validate(respelled), True).delta == C.plan_update(current, desired, True).delta


# ------------------------------------------------------------------ what the result says of a format (issue 25)

class _FormatModule(object):
    """The part of HemModule that ConfigResource.settle uses: params, warn, and a client whose status is scripted."""

    def __init__(self, statuses):
        self.params = {"format_timeout": 1}
        self.warnings = []
        self.statuses = list(statuses)

    def warn(self, msg):
        self.warnings.append(msg)

    def client(self, **_overrides):
        return self

    def status(self):
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]


def _storage_plan():
    update = C.plan_update(ppa_config(), C.validate({"storage_mode": "hidden_xts"}), allow_reformat=True)
    return _engine.Plan(update.before, update.after, body=update.delta, reformat=update.reformat)


def test_reformatted_is_false_with_a_warning_when_no_format_showed(monkeypatch):
    # Before issue 25 the result said reformatted: true for every accepted storage change, formatted or not.
    monkeypatch.setattr(C, "FORMAT_START_GRACE", 0.1)
    module = _FormatModule([{"format": "done"}])
    resource = C.ConfigResource(module)
    plan = _storage_plan()
    result = dict(resource.settle(None, plan, {"updated": True}))
    result.update(resource.result(plan, {"updated": True}))         # the engine's order: settle, then result
    assert result == {"reformatted": False, "updated": True}
    assert len(module.warnings) == 1 and "no status read" in module.warnings[0] and "reformatted is false" in module.warnings[0]


def test_reformatted_is_true_when_a_format_ran():
    module = _FormatModule([{"format": "status10"}, {"format": "done", "storage": ["8388607:-", "112590844:-"]}])
    resource = C.ConfigResource(module)
    plan = _storage_plan()
    result = dict(resource.settle(None, plan, {"updated": True}))
    result.update(resource.result(plan, {"updated": True}))
    assert result["reformatted"] is True and result["storage"][0] == {"sectors": 8388607, "access": "-"}
    assert module.warnings == []
    # check mode: the prediction
    assert resource.result(plan, None)["reformatted"] is True
