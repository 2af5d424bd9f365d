# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""encedo_config and encedo_factory_reset: the modules' rules against the emulator, over real HTTPS.

Each test runs the module's main() in this process (helpers/inprocess.py ModuleRunner), always
with the emulator's request log as the proof of what reached the device. What only a playbook
shows is proven by playbook runs elsewhere: the four-step runs (check, apply, apply again, check)
are the ansible-test targets (tests/integration/targets/encedo_config, encedo_factory_reset), the
secrets in every output level (-vvvv included) tests/reliability/test_secrets.py, the token guard
tests/integration/test_info_login.py.
"""

from __future__ import annotations

import sys

import pytest

from tests.emulator.harness import Emulator
from tests.integration.helpers import ensure_collection_link
from tests.integration.helpers.inprocess import ModuleRunner
from tests.integration.helpers.playbook import REPO_ROOT

try:
    from ansible_collections.encedo.hem.plugins.module_utils._client import HemClient
    from ansible_collections.encedo.hem.plugins.module_utils._errors import HemError
except ImportError:  # the collection resolves through build/collections (make link)
    ensure_collection_link()
    sys.path.insert(0, str(REPO_ROOT / "build" / "collections"))
    from ansible_collections.encedo.hem.plugins.module_utils._client import HemClient
    from ansible_collections.encedo.hem.plugins.module_utils._errors import HemError

PW = "integration-pass-1"
NEW_PW = "integration-pass-2"
CONFIG = "/api/system/config"
ROTATION = ["userkey", "userkey_hmac", "userkey_nonce"]
PPA_DEVICES = 14
SPARE = PPA_DEVICES - 1     # a device that no test changes (read-only checks and guards)
FORMAT_SECONDS = 2.5        # how long the emulated PPA formats its storage after a new storage_disk0size
FORMAT_START = 1.5          # and how long after the request the format starts
CAPACITY = 120979451


# ------------------------------------------------------------------ emulators and runners

@pytest.fixture(scope="module")
def ppa(tmp_path_factory):
    emu = Emulator(devices=PPA_DEVICES, passphrase=PW, rtc_set=True, auth_delay=0.0, control=True, reboot_seconds=1.0,
                   tmp_path=tmp_path_factory.mktemp("config-ppa"), extra_args=["--format-seconds", str(FORMAT_SECONDS),
                                                                               "--format-start-seconds", str(FORMAT_START)])
    emu.start()
    emu.next_device = 0
    yield emu
    emu.stop()


@pytest.fixture(scope="module")
def epa(tmp_path_factory):
    emu = Emulator(devices=1, passphrase=PW, rtc_set=True, auth_delay=0.0, control=True, model="epa",
                   tmp_path=tmp_path_factory.mktemp("config-epa"))
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture
def spare(ppa):
    ppa.clear_log(SPARE)
    return SPARE


@pytest.fixture
def dev(ppa):
    """A device of the PPA fleet that no other test of this file has touched."""
    index = ppa.next_device
    assert index < SPARE, "raise PPA_DEVICES"
    ppa.next_device += 1
    ppa.clear_log(index)
    return index


@pytest.fixture
def task(ppa, dev):
    return ModuleRunner(ppa, dev)


@pytest.fixture
def spare_task(ppa, spare):
    return ModuleRunner(ppa, spare)


def config_posts(emu, i):
    return [e for e in emu.log(i) if e["method"] == "POST" and e["path"] == CONFIG]


def requests_of(emu, i):
    return [(e["method"], e["path"]) for e in emu.log(i)]


# ------------------------------------------------------------------ performance (request counts)

def test_noop_with_token_makes_one_request(ppa, spare, spare_task):
    token = HemClient(ppa.url(spare), passphrase=PW, ca_path=ppa.ca_file).login()
    ppa.clear_log(spare)
    result = spare_task("encedo.hem.encedo_config", {"passphrase": None, "token": token, "user": "user", "origin": "*"})
    assert result["changed"] is False and result["sent"] == []
    assert requests_of(ppa, spare) == [("GET", CONFIG)]
    assert token not in spare_task.output


def test_noop_with_passphrase_makes_three_requests(ppa, spare, spare_task):
    result = spare_task("encedo.hem.encedo_config", {"user": "user", "trusted_ts": True})
    assert result["changed"] is False
    assert requests_of(ppa, spare) == [("GET", "/api/auth/token"), ("POST", "/api/auth/token"), ("GET", CONFIG)]


# ------------------------------------------------------------------ normalisation

def test_type_spellings_are_no_change(ppa, dev, task):
    HemClient(ppa.url(dev), passphrase=PW, ca_path=ppa.ca_file).post(CONFIG, {"http_option_dosprot_mode": 2, "allow_keysearch": True})
    ppa.clear_log(dev)
    result = task("encedo.hem.encedo_config", {"http_option_dosprot_mode": "2", "allow_keysearch": "yes", "trusted_ts": "true", "ctx": "0"})
    assert result["changed"] is False and result["sent"] == []
    assert config_posts(ppa, dev) == []


# ------------------------------------------------------------------ passphrase rotation

def test_rotation(ppa, dev, task):
    args = {"new_passphrase": NEW_PW, "user": "rotated"}
    outputs = []

    check = task("encedo.hem.encedo_config", args, check=True, diff=True)
    outputs.append(task.output)
    assert check["changed"] is True and check["sent"] == sorted(["user"] + ROTATION)
    assert check["diff"]["after"]["passphrase"].startswith("********")
    assert config_posts(ppa, dev) == []
    ppa.clear_log(dev)

    apply = task("encedo.hem.encedo_config", args, diff=True)
    outputs.append(task.output)
    assert apply["changed"] is True and apply["sent"] == sorted(["user"] + ROTATION)
    assert apply["diff"]["after"]["user"] == "rotated"
    log = ppa.log(dev)
    posts = [e["keys"] for e in log if e["method"] == "POST" and e["path"] == CONFIG]
    assert posts == [sorted(["user"] + ROTATION)]     # one request: the field and the rotation proof together
    logins = [e["status"] for e in log if e["method"] == "POST" and e["path"] == "/api/auth/token"]
    assert logins == [401, 200]                        # the new passphrase tried first, then the old one

    HemClient(ppa.url(dev), passphrase=NEW_PW, ca_path=ppa.ca_file).login()
    with pytest.raises(HemError) as err:
        HemClient(ppa.url(dev), passphrase=PW, ca_path=ppa.ca_file).login()
    assert err.value.status == 401
    ppa.clear_log(dev)

    # The same task again (passphrase still the old one): converged, no POST, no failed login.
    for check_mode in (False, True):
        again = task("encedo.hem.encedo_config", args, check=check_mode)
        outputs.append(task.output)
        assert again["changed"] is False and again["sent"] == []
        assert requests_of(ppa, dev) == [("GET", "/api/auth/token"), ("POST", "/api/auth/token"), ("GET", CONFIG)]
        assert [e["status"] for e in ppa.log(dev) if e["path"] == "/api/auth/token"] == [200, 200]
        ppa.clear_log(dev)

    for out in outputs:
        assert PW not in out and NEW_PW not in out


def test_rotation_with_neither_passphrase_working_sends_nothing(ppa, dev, task):
    result = task("encedo.hem.encedo_config", {"passphrase": "wrong-old-pw", "new_passphrase": "wrong-new-pw"})
    assert result["failed"] and "neither new_passphrase nor passphrase" in result["msg"]
    assert config_posts(ppa, dev) == []
    assert [e["status"] for e in ppa.log(dev) if e["method"] == "POST"] == [401, 401]
    assert "wrong-old-pw" not in task.output and "wrong-new-pw" not in task.output


# ------------------------------------------------------------------ guards: fail, and nothing is POSTed

@pytest.mark.parametrize("check", [False, True])
@pytest.mark.parametrize("bad,words", [
    ({"user": "x" * 33}, ["option user:", "33 characters", "at most 32"]),
    ({"http_option_dosprot_mode": 5}, ["option http_option_dosprot_mode:", "0 (off) to 4"]),
    ({"email": "not an email"}, ["option email:", "e-mail"]),
    ({"new_passphrase": ""}, ["'new_passphrase'", "empty"]),
    # Issue 17 defect 1: every value encedo_init refuses (one field table), refused here too, before any request.
    ({"email": "a" * 52 + "@example.com"}, ["option email:", "at most 63", "got 64 characters"]),
    ({"origin": "https://" + "o" * 56}, ["option origin:", "at most 63", "got 64 characters"]),
    ({"user": "Ops\tteam"}, ["option user:", "character 4 is a tab (U+0009)", "1 to 32 printable characters"]),
    ({"user": "Ops\u200bteam"}, ["option user:", "character 4 is the invisible or control character U+200B"]),
    ({"user": ""}, ["option user:", "1 to 32", "empty"]),
    ({"hostname": "hem_0.emulator.test"}, ["option hostname:", "character 4 is '_'"]),
    ({"hostname": "a" * 64 + ".test"}, ["option hostname:", "label 1 has 64 characters"]),
    ({"ip": "10.0.0.1/31"}, ["option ip:", "prefix length must be 8 to 30"]),
    ({"ip": "fe80::1/64"}, ["option ip:", "not an IPv4"]),
    ({"ctx": 2 ** 32}, ["option ctx:", "0 to 4294967295"]),
])
def test_validation_fails_before_any_request(ppa, spare, spare_task, bad, words, check):
    result = spare_task("encedo.hem.encedo_config", bad, check=check)
    assert result["failed"]
    for word in words:
        assert word in result["msg"], result["msg"]
    assert ppa.log(spare) == []             # not even the login or the configuration read


@pytest.mark.parametrize("check", [False, True])
@pytest.mark.parametrize("bad,words", [
    ({"hostname": "other.example.com"}, ["'hostname'", "personalisation", "hem"]),
    ({"ip": "10.0.0.1/24"}, ["'ip'", "personalisation"]),
    ({"storage_disk0size": 4096, "user": "x"}, ["storage_disk0size", "allow_reformat", "erase"]),
    ({"storage_disk0size": 999999999, "allow_reformat": True}, ["storage_capacity"]),
])
def test_guards_fail_before_any_write(ppa, spare, spare_task, bad, words, check):
    before = ppa.state(spare)["config"]
    result = spare_task("encedo.hem.encedo_config", bad, check=check)
    assert result["failed"] and "nothing was sent" in result["msg"]
    for word in words:
        assert word in result["msg"]
    assert config_posts(ppa, spare) == []
    assert ppa.state(spare)["config"] == before


def test_same_hostname_and_ip_are_fine(ppa, spare, spare_task):
    cfg = ppa.state(spare)["config"]
    result = spare_task("encedo.hem.encedo_config", {"hostname": cfg["hostname"].upper() + ".", "ip": cfg["ip"].split("/")[0]})
    assert result["changed"] is False
    assert config_posts(ppa, spare) == []


def test_msc_fields_on_epa_fail_before_any_write(epa):
    epa.clear_log(0)
    result = ModuleRunner(epa, 0)("encedo.hem.encedo_config", {"storage_mode": "hidden_ctr", "dnsd": True, "user": "x"})
    assert result["failed"]
    assert "'storage_mode'" in result["msg"] and "'dnsd'" in result["msg"] and "EPA" in result["msg"]
    assert config_posts(epa, 0) == []
    assert epa.state(0)["config"]["user"] != "x"


def test_epa_common_fields_work(epa):
    epa.clear_log(0)
    result = ModuleRunner(epa, 0)("encedo.hem.encedo_config", {"http_option_hsts": True, "full_config": True})
    assert result["changed"] is True and result["reboot_required"] is False and result["sent"] == ["http_option_hsts"]
    assert "storage_mode" not in result["config"] and "devid" in result["config"]
    assert [e["keys"] for e in config_posts(epa, 0)] == [["http_option_hsts"]]


def test_result_holds_only_the_declared_fields_unless_full_config(epa):
    task = ModuleRunner(epa, 0)
    declared = task("encedo.hem.encedo_config", {"http_option_hsts": True, "user": "Small result"})
    assert declared["config"] == {"http_option_hsts": True, "user": "Small result"}
    full = task("encedo.hem.encedo_config", {"user": "Small result", "full_config": True})
    assert full["changed"] is False
    assert {"devid", "hostname", "user", "http_option_hsts"} <= set(full["config"])


def test_disk0_resize_waits_for_the_format_four_steps(ppa, dev, task):
    """check mode -> apply (POST, then status polls until the format is done) -> apply again -> check mode."""
    args = {"storage_disk0size": 16777216, "allow_reformat": True, "format_timeout": 60}
    check = task("encedo.hem.encedo_config", args, check=True, diff=True)
    assert check["changed"] is True and check["reformatted"] is True and check["sent"] == ["storage_disk0size"]
    assert check["reboot_required"] is False and "format_seconds" not in check
    assert check["diff"] == {"before": {"storage_disk0size": 8388608}, "after": {"storage_disk0size": 16777216}}
    assert config_posts(ppa, dev) == [] and ppa.state(dev)["format"] is None
    ppa.clear_log(dev)

    apply = task("encedo.hem.encedo_config", args)
    assert apply["changed"] is True and apply["reformatted"] is True and apply["updated"] is True
    assert apply["reboot_required"] is False and apply["sent"] == ["storage_disk0size"]
    assert apply["storage"] == [{"sectors": 16777216, "access": "ro"}, {"sectors": CAPACITY - 16777216, "access": "-"}]
    assert apply["config"] == {"storage_disk0size": 16777216}
    assert FORMAT_START + FORMAT_SECONDS - 1 <= apply["format_seconds"] <= FORMAT_START + FORMAT_SECONDS + 5
    log = ppa.log(dev)
    assert [e["status"] for e in log if e["status"] != 200] == []           # no 409: nothing written during the format
    calls = [(e["method"], e["path"]) for e in log]
    post = calls.index(("POST", CONFIG))
    assert calls[:post] == [("GET", "/api/auth/token"), ("POST", "/api/auth/token"), ("GET", CONFIG)]
    polls = calls[post + 1:-1]
    assert calls[-1] == ("GET", CONFIG)                                      # the re-read once the format is over
    assert polls == [("GET", "/api/system/status")] * len(polls) and len(polls) >= 2
    posted_at = log[post]["t"]
    poll_times = [e["t"] - posted_at for e in log[post + 1:-1]]
    assert poll_times[0] < FORMAT_SECONDS <= poll_times[-1]                  # polled while it ran, and once it was done
    assert ppa.state(dev)["format"] == "done"
    ppa.clear_log(dev)

    for check_mode in (False, True):
        again = task("encedo.hem.encedo_config", args, check=check_mode)
        assert again["changed"] is False and again["reformatted"] is False and again["sent"] == []
        assert requests_of(ppa, dev) == [("GET", "/api/auth/token"), ("POST", "/api/auth/token"), ("GET", CONFIG)]
        ppa.clear_log(dev)


def test_storage_mode_by_name(ppa, dev, task):
    # The emulated device holds storage_mode 0x51 (disk 1 in CTR): hidden_xts re-encrypts disk 1 (XTS), so it needs
    # allow_reformat; the same mode again is no change, another XTS mode needs no opt-in.
    refused = task("encedo.hem.encedo_config", {"storage_mode": "hidden_xts"})
    assert refused["failed"] and "allow_reformat" in refused["msg"] and "XTS" in refused["msg"]
    assert config_posts(ppa, dev) == []
    # Issue 25: the encryption change goes with the disk 0 size the device holds, as the vendor manager sends it
    # (build.js storageChange(..., true)); the emulator formats (starting FORMAT_START s after the answer) and the
    # task waits for the format to start and to end; reformatted says what happened.
    size = ppa.state(dev)["config"]["storage_disk0size"]
    done = task("encedo.hem.encedo_config", {"storage_mode": "hidden_xts", "allow_reformat": True, "format_timeout": 60})
    assert done["changed"] is True and done["reboot_required"] is True and done["config"] == {"storage_mode": 160}
    assert done["sent"] == ["storage_disk0size", "storage_mode"] and done["reformatted"] is True
    assert FORMAT_START + FORMAT_SECONDS - 1 <= done["format_seconds"] <= FORMAT_START + FORMAT_SECONDS + 5
    assert done["storage"][0]["sectors"] == size
    assert [e["keys"] for e in config_posts(ppa, dev)] == [["storage_disk0size", "storage_mode"]]
    assert ppa.state(dev)["format"] == "done" and ppa.state(dev)["config"]["storage_disk0size"] == size
    ppa.clear_log(dev)
    for value in ("hidden_xts", 160, "160"):
        same = task("encedo.hem.encedo_config", {"storage_mode": value})
        assert same["changed"] is False
    other = task("encedo.hem.encedo_config", {"storage_mode": "shown_writable_xts"})     # same encryption: no opt-in
    assert other["changed"] is True and other["reformatted"] is False
    assert [e["keys"] for e in config_posts(ppa, dev)] == [["storage_mode"]]


@pytest.fixture(scope="module")
def slow_format(tmp_path_factory):
    emu = Emulator(devices=1, passphrase=PW, rtc_set=True, auth_delay=0.0, control=True,
                   tmp_path=tmp_path_factory.mktemp("config-slow-format"), extra_args=["--format-seconds", "600"])
    emu.start()
    yield emu
    emu.stop()


def test_format_that_does_not_finish_in_time_then_a_write_during_it(slow_format):
    emu = slow_format
    emu.clear_log(0)
    task = ModuleRunner(emu, 0)
    result = task("encedo.hem.encedo_config", {"storage_disk0size": 4194304, "allow_reformat": True, "format_timeout": 3})
    assert result["failed"] and result["changed"] is True and result["reformatted"] is False
    msg = result["msg"]
    for words in ("format_timeout=3 s", "is formatting its storage", "still reports format 'status", "HTTP 409",
                  "encedo.hem.encedo_info", "run the task again"):
        assert words in msg, msg
    assert result["device_status"]["format"].startswith("status") and 2 <= result["format_seconds"] <= 6
    assert [(e["keys"], e["status"]) for e in config_posts(emu, 0)] == [(["storage_disk0size"], 200)]
    assert emu.state(0)["config"]["storage_disk0size"] == 4194304 and emu.state(0)["format"].startswith("status")
    emu.clear_log(0)

    # A write while the device formats: the emulator answers 409, the module says why and that nothing changed.
    busy = task("encedo.hem.encedo_config", {"user": "during format"})
    assert busy["failed"] and busy["changed"] is False and busy["status"] == 409
    assert "formatting its storage" in busy["msg"] and "nothing was changed" in busy["msg"]
    assert [(e["keys"], e["status"]) for e in config_posts(emu, 0)] == [(["user"], 409)]
    assert emu.state(0)["config"]["user"] == "user"
    # The device already holds the size: the task converges without a POST (and without waiting).
    emu.clear_log(0)
    again = task("encedo.hem.encedo_config", {"storage_disk0size": 4194304, "allow_reformat": True})
    assert again["changed"] is False and config_posts(emu, 0) == []


def test_device_400_names_the_fields_and_says_nothing_changed(ppa, dev, task):
    # A device that refuses a body the module's checks passed (the emulator's error400 fault: 400, nothing applied).
    ppa.fault(dev, "error400", path=CONFIG, method="POST")
    result = task("encedo.hem.encedo_config", {"user": "changed", "email": "a" * 40 + "@example.com"})
    assert result["failed"] and "HTTP 400" in result["msg"] and "nothing was changed" in result["msg"]
    assert "encedo.hem.encedo_info" in result["msg"]
    assert "email" in result["msg"] and "user" in result["msg"]
    assert [(e["keys"], e["status"]) for e in config_posts(ppa, dev)] == [(["email", "user"], 400)]
    assert ppa.state(dev)["config"]["user"] == "user"


@pytest.mark.parametrize("applied", [True, False])
def test_outcome_unknown_rereads_the_config(ppa, dev, task, applied):
    ppa.fault(dev, "drop", path=CONFIG, method="POST", after_apply=applied)
    result = task("encedo.hem.encedo_config", {"user": "dropped", "ctx": 7})
    assert result["failed"] and "outcome unknown" in result["msg"]
    assert len(config_posts(ppa, dev)) == 1
    assert requests_of(ppa, dev)[-1] == ("GET", CONFIG)    # the re-read
    if applied:
        assert result["applied"] == ["ctx", "user"] and result["not_applied"] == []
        assert result["config"]["user"] == "dropped" and result["changed"] is True
    else:
        assert result["applied"] == [] and result["not_applied"] == ["ctx", "user"]
        assert result["config"]["user"] == "user" and result["changed"] is False
        assert "none of the changed fields applied" in result["msg"]


def test_factory_reset_wrong_devid_sends_nothing(ppa, spare, spare_task):
    result = spare_task("encedo.hem.encedo_factory_reset", {"confirm_devid": "0000000000000000"})
    assert result["failed"] and "does not match" in result["msg"] and "encedo.hem.encedo_info" in result["msg"]
    # The real devid is nowhere in the failure (issue 17, defect 9): copying it past the safeguard would be too easy.
    assert ppa.device(spare)["devid"] not in str(result) and ppa.device(spare)["devid"] not in spare_task.output
    assert config_posts(ppa, spare) == []
    assert ppa.state(spare)["personalised"] is True


def test_factory_reset_lost_answer_is_resolved_by_the_device_state(ppa, dev, task):
    ppa.fault(dev, "drop", path=CONFIG, method="POST", after_apply=True)
    result = task("encedo.hem.encedo_factory_reset", {"confirm_devid": ppa.device(dev)["devid"], "wait": False, "wait_timeout": 30,
                                                      "factory_url": "{{ hem_url }}", "factory_ca_path": "{{ hem_factory_ca_path }}"})
    assert result["changed"] is True and result["rebooted"] is True, result
    assert [e["keys"] for e in config_posts(ppa, dev)] == [["wipeout"]]
    assert ppa.state(dev)["personalised"] is False
