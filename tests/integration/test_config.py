# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""encedo_config and encedo_factory_reset: real ansible-playbook runs against the emulator.

The targets (tests/integration/targets/encedo_config, encedo_factory_reset) run the
four-step shape and assert in their validate.yml; the tests here drive them and check
the rest from the python side, always with the emulator's request log as the proof of
what reached the device.
"""

from __future__ import annotations

import sys

import pytest

from tests.emulator.harness import Emulator
from tests.integration.helpers import ensure_collection_link
from tests.integration.helpers.playbook import REPO_ROOT

try:
    from ansible_collections.encedo.hem.plugins.module_utils._client import HemClient, HemError
except ImportError:  # the collection resolves through build/collections (make link)
    ensure_collection_link()
    sys.path.insert(0, str(REPO_ROOT / "build" / "collections"))
    from ansible_collections.encedo.hem.plugins.module_utils._client import HemClient, HemError

PW = "integration-pass-1"
NEW_PW = "integration-pass-2"
CONFIG = "/api/system/config"
ROTATION = ["userkey", "userkey_hmac", "userkey_nonce"]
PPA_DEVICES = 14
SPARE = PPA_DEVICES - 1     # a device that no test changes (read-only checks and guards)


# ------------------------------------------------------------------ emulators and runners

@pytest.fixture(scope="module")
def ppa(tmp_path_factory):
    emu = Emulator(devices=PPA_DEVICES, passphrase=PW, rtc_set=True, auth_delay=0.0, control=True, reboot_seconds=1.0,
                   tmp_path=tmp_path_factory.mktemp("config-ppa"))
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


class Task:
    """Runs single tasks of one module against one emulated device (real ansible-playbook)."""

    def __init__(self, hem_playbook, emu, index):
        self.runner = hem_playbook(emu, devices=[index])
        self.host = "hem%d" % index
        self.output = ""

    def __call__(self, module, args, check=False, diff=False):
        """-> the task's result dict (with 'failed' when it failed); the run's output is kept in .output."""
        params = {"url": "{{ hem_url }}", "ca_path": "{{ hem_ca_path }}", "passphrase": "{{ hem_passphrase }}"}
        params.update(args)
        params = dict((k, v) for k, v in params.items() if v is not None)
        task = {"name": "task under test", module: params, "check_mode": check, "diff": diff}
        run = self.runner.run_playbook([{"hosts": self.host, "gather_facts": False, "tasks": [task]}])
        self.output = run.output
        found = run.results(task="task under test", host=self.host)
        assert len(found) == 1, run.tail()
        assert (run.rc != 0) == found[0].failed, run.tail()
        result = dict(found[0].result)
        if found[0].failed:
            result["failed"] = True
        return result


@pytest.fixture
def task(hem_playbook, ppa, dev):
    return Task(hem_playbook, ppa, dev)


@pytest.fixture
def spare_task(hem_playbook, ppa, spare):
    return Task(hem_playbook, ppa, spare)


def config_posts(emu, i):
    return [e for e in emu.log(i) if e["method"] == "POST" and e["path"] == CONFIG]


def requests_of(emu, i):
    return [(e["method"], e["path"]) for e in emu.log(i)]


# ------------------------------------------------------------------ the four-step targets

def test_config_target(ppa, dev, hem_playbook):
    before = ppa.state(dev)["config"]
    hem_playbook(ppa, devices=[dev]).run_target("encedo_config").assert_ok()
    after = ppa.state(dev)["config"]
    assert after["user"] == "Ansible Ops" and after["email"] == "ops@example.com"
    assert after["allow_keysearch"] is True and after["http_option_dosprot_mode"] == 2
    assert after["http_option_hsts"] is True and after["dnsd"] is False
    untouched = set(before) - {"user", "email", "allow_keysearch", "http_option_dosprot_mode", "http_option_hsts", "dnsd", "uts"}
    assert {k: after[k] for k in untouched} == {k: before[k] for k in untouched}


def test_factory_reset_target(ppa, dev, hem_playbook):
    hem_playbook(ppa, devices=[dev]).run_target("encedo_factory_reset").assert_ok()
    assert ppa.state(dev)["personalised"] is False
    with pytest.raises(HemError) as err:
        HemClient(ppa.url(dev), passphrase=PW, ca_path=ppa.ca_file, timeout=5).login()
    assert "not personalised" in str(err.value)


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

@pytest.mark.parametrize("bad,words", [
    ({"user": "x" * 33}, ["'user'", "33 characters", "at most 32"]),
    ({"http_option_dosprot_mode": 5}, ["'http_option_dosprot_mode'", "0 (off) to 4"]),
    ({"email": "not an email"}, ["'email'", "e-mail"]),
    ({"new_passphrase": ""}, ["'new_passphrase'", "empty"]),
])
def test_validation_fails_before_any_request(ppa, spare, spare_task, bad, words):
    result = spare_task("encedo.hem.encedo_config", bad)
    assert result["failed"]
    for word in words:
        assert word in result["msg"]
    assert ppa.log(spare) == []


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


def test_msc_fields_on_epa_fail_before_any_write(epa, hem_playbook):
    epa.clear_log(0)
    result = Task(hem_playbook, epa, 0)("encedo.hem.encedo_config", {"storage_mode": 1, "dnsd": True, "user": "x"})
    assert result["failed"]
    assert "'storage_mode'" in result["msg"] and "'dnsd'" in result["msg"] and "EPA" in result["msg"]
    assert config_posts(epa, 0) == []
    assert epa.state(0)["config"]["user"] != "x"


def test_epa_common_fields_work(epa, hem_playbook):
    epa.clear_log(0)
    result = Task(hem_playbook, epa, 0)("encedo.hem.encedo_config", {"http_option_hsts": True, "full_config": True})
    assert result["changed"] is True and result["reboot_required"] is False and result["sent"] == ["http_option_hsts"]
    assert "storage_mode" not in result["config"] and "devid" in result["config"]
    assert [e["keys"] for e in config_posts(epa, 0)] == [["http_option_hsts"]]


def test_result_holds_only_the_declared_fields_unless_full_config(epa, hem_playbook):
    task = Task(hem_playbook, epa, 0)
    declared = task("encedo.hem.encedo_config", {"http_option_hsts": True, "user": "Small result"})
    assert declared["config"] == {"http_option_hsts": True, "user": "Small result"}
    full = task("encedo.hem.encedo_config", {"user": "Small result", "full_config": True})
    assert full["changed"] is False
    assert {"devid", "hostname", "user", "http_option_hsts"} <= set(full["config"])


def test_disk0_resize_with_allow_reformat(ppa, dev, task):
    args = {"storage_disk0size": 4096, "allow_reformat": True}
    result = task("encedo.hem.encedo_config", args)
    assert result["changed"] is True and result["reboot_required"] is True and result["sent"] == ["storage_disk0size"]
    assert [e["keys"] for e in config_posts(ppa, dev)] == [["storage_disk0size"]]
    ppa.clear_log(dev)
    again = task("encedo.hem.encedo_config", args)
    assert again["changed"] is False and config_posts(ppa, dev) == []


def test_device_400_names_the_fields_and_says_nothing_changed(ppa, dev, task):
    # The emulator limits email to 64 characters; the module cannot know that, the device refuses it.
    result = task("encedo.hem.encedo_config", {"user": "changed", "email": "a" * 70 + "@example.com"})
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
    assert result["failed"] and "does not match" in result["msg"] and ppa.device(spare)["devid"] in result["msg"]
    assert config_posts(ppa, spare) == []
    assert ppa.state(spare)["personalised"] is True


def test_factory_reset_lost_answer_is_resolved_by_the_device_state(ppa, dev, task):
    ppa.fault(dev, "drop", path=CONFIG, method="POST", after_apply=True)
    result = task("encedo.hem.encedo_factory_reset", {"confirm_devid": ppa.device(dev)["devid"], "wait": False, "wait_timeout": 30})
    assert result["changed"] is True and result["rebooted"] is True, result
    assert [e["keys"] for e in config_posts(ppa, dev)] == [["wipeout"]]
    assert ppa.state(dev)["personalised"] is False
