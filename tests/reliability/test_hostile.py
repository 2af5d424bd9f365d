# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A hostile device (tests/reliability/hostile.py, a real socket server on 127.0.0.1) against
the collection: answers too large or compressed into a bomb, answers that drip in, answers of
the wrong shape, plain HTTP where credentials would travel, a proxy password at -vvv, and an
https:// url on a plain-HTTP port.

Module runs here are a real module process (the module's main(), without AnsiballZ), whose
peak memory the test reads from the kernel (``os.wait4``: the child's max RSS) and compares
with the same module against a well-behaved answer; the -vvv check runs real ansible-playbook.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.integration.helpers import PlaybookRunner
from tests.reliability.hostile import MB, HostileDevice
from tests.reliability.support import REPO_ROOT, env_without_ca_overrides
from tests.unit.loopback import ConnectProxy

try:
    from ansible_collections.encedo.hem.plugins.module_utils import _client as C
except ImportError:  # run without the collection link on sys.path
    sys.path.insert(0, str(REPO_ROOT / "build" / "collections"))
    from ansible_collections.encedo.hem.plugins.module_utils import _client as C
from ansible_collections.encedo.hem.plugins.module_utils import _errors as E
from ansible_collections.encedo.hem.plugins.module_utils._transport import MAX_ANSWER

#: What a module may use above its idle size, whatever a device answers.
MEMORY_BUDGET = 100 * MB
PASSPHRASE = "hostile-passphrase-5521"


def closed_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def run_module(tmp_path, name, args, limit=90):
    """Run encedo.hem's module ``name`` (its main(), no AnsiballZ) in a child process.
    -> (result dict, the child's peak RSS in bytes, seconds). The child is killed after ``limit`` s."""
    args_file = tmp_path / ("args-%s-%d.json" % (name, time.monotonic_ns()))
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    out_file = tmp_path / (args_file.name + ".out")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENCEDO_HEM_", "ANSIBLE_")) and not k.lower().endswith("_proxy")}
    for key, value in env_without_ca_overrides().items():
        env.pop(key, None)
    env["PYTHONPATH"] = str(REPO_ROOT / "build" / "collections")
    started = time.monotonic()
    with open(out_file, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ansible_collections.encedo.hem.plugins.modules.%s" % name, str(args_file)],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        killer = threading.Timer(limit, proc.kill)
        killer.start()
        try:
            dummy, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.monotonic() - started
    text = out_file.read_text(errors="replace")
    assert proc.returncode >= 0, "the module was killed after %s s (still running):\n%s" % (limit, text[-2000:])
    try:
        result = json.loads(text[text.index("{"):])
    except ValueError:
        raise AssertionError("the module printed no JSON result:\n%s" % text[-3000:])
    return result, usage.ru_maxrss * 1024, elapsed


@pytest.fixture(scope="module")
def idle_rss(tmp_path_factory):
    """Peak RSS of encedo_info against a device answering a well-formed status."""
    tmp = tmp_path_factory.mktemp("hostile-idle")
    with HostileDevice("ok", tmp_path=tmp) as dev:
        result, rss, dummy = run_module(tmp, "encedo_info", {"url": dev.url, "ca_path": dev.ca_file, "timeout": 10})
    assert not result.get("failed"), result
    return rss


def assert_clean_failure(result, *needles):
    """A normal failure of the collection: a message, no Python exception."""
    assert result.get("failed"), result
    assert "exception" not in result and "Traceback" not in result.get("msg", ""), result
    for needle in needles:
        assert needle in result["msg"], (needle, result["msg"])


# ---------------------------------------------------------------------------- size

@pytest.mark.parametrize("mode", ["huge", "huge_chunked", "gzip"])
def test_a_huge_or_compressed_answer_is_refused_within_the_memory_budget(tmp_path, idle_rss, mode):
    with HostileDevice(mode, size=300 * MB, tmp_path=tmp_path) as dev:
        result, rss, dummy = run_module(tmp_path, "encedo_info", {"url": dev.url, "ca_path": dev.ca_file, "timeout": 20})
        assert dev.requests, "the module never asked"
    assert rss - idle_rss < MEMORY_BUDGET, "peak %d MB, idle %d MB" % (rss // MB, idle_rss // MB)
    if mode == "gzip":
        assert_clean_failure(result, "GET /api/system/status", "compressed")
    else:
        assert_clean_failure(result, "GET /api/system/status", dev.url, "more than %d bytes" % MAX_ANSWER)
    assert all(r["headers"].get("Accept-Encoding") == "identity" for r in dev.requests), dev.requests


@pytest.mark.parametrize("mode", ["huge", "gzip"])
def test_the_plain_http_probe_is_bounded_too(tmp_path, idle_rss, mode):
    """Before any certificate is trusted: HTTPS refused, the plain-HTTP status probe meets the hostile answer."""
    with HostileDevice(mode, tls=False, size=300 * MB) as dev:
        result, rss, dummy = run_module(tmp_path, "encedo_info", {"url": "https://127.0.0.1:%d" % closed_port(),
                                                                  "http_url": dev.url, "timeout": 10})
        assert any(r["path"] == "/api/system/status" for r in dev.requests), "the probe never asked"
    assert rss - idle_rss < MEMORY_BUDGET, "peak %d MB, idle %d MB" % (rss // MB, idle_rss // MB)
    assert_clean_failure(result)


# ---------------------------------------------------------------------------- pace

@pytest.mark.parametrize("mode", ["drip", "drip_headers"])
def test_a_dripping_answer_ends_at_the_deadline(tmp_path, mode):
    """One byte every 0.25 s would take 100 s; each request ends at ``timeout`` (the status probe's own 4 s and the
    module's read, retries included, within 4 s), so the module fails within a few seconds of 2 x timeout, counted
    from its first connection (the module process's start-up, seconds on a loaded machine, is not the deadline's)."""
    timeout = 4
    with HostileDevice(mode, size=400, interval=0.25, tmp_path=tmp_path) as dev:
        before = time.monotonic()
        result, dummy, elapsed = run_module(tmp_path, "encedo_info", {"url": dev.url, "ca_path": dev.ca_file, "timeout": timeout,
                                                                      "http_url": "http://127.0.0.1:%d" % closed_port()}, limit=60)
        ended = before + elapsed
    assert_clean_failure(result, "GET /api/system/status", "within")
    assert dev.first_connection is not None and dev.first_connection >= before
    assert ended - dev.first_connection < 2 * timeout + 6, (ended - dev.first_connection, elapsed)


@pytest.mark.parametrize("mode", ["drip", "drip_headers"])
def test_one_request_has_one_deadline(tmp_path, mode):
    with HostileDevice(mode, size=400, interval=0.25, tmp_path=tmp_path) as dev:
        client = C.HemClient(dev.url, ca_path=dev.ca_file, timeout=3, retries=0)
        started = time.monotonic()
        with pytest.raises(E.HemError) as err:
            client.status()
        elapsed = time.monotonic() - started
    assert 2.5 < elapsed < 4.5, elapsed
    assert err.value.endpoint == "GET /api/system/status" and "within" in str(err.value)


def test_the_size_limit_is_a_parameter_of_the_request(tmp_path):
    """A request that needs more (a later capability) says so; the default stays small."""
    with HostileDevice("huge", size=MAX_ANSWER + 1000, tmp_path=tmp_path) as dev:
        client = C.HemClient(dev.url, ca_path=dev.ca_file, timeout=10, retries=0)
        with pytest.raises(E.HemError, match="more than %d bytes" % MAX_ANSWER):
            client.status()
        answer = client.get("/api/system/status", auth=False, limit=MAX_ANSWER + 1000)
    assert len(answer["hostname"]) > MAX_ANSWER


# ---------------------------------------------------------------------------- shape

@pytest.mark.parametrize("mode, needle", [("list", "a list where a JSON object was expected"),
                                          ("deep", "nested too deeply"),
                                          ("missing", None),
                                          ("wrong_types", None)])
def test_an_answer_of_the_wrong_shape_is_a_normal_failure(tmp_path, mode, needle):
    with HostileDevice(mode, tmp_path=tmp_path) as dev:
        result, dummy, dummy = run_module(tmp_path, "encedo_info", {"url": dev.url, "ca_path": dev.ca_file, "timeout": 10})
    if needle:
        assert_clean_failure(result, "GET /api/system/status", needle)
    else:
        # a status without its fields (or with others' types) is reported or refused, never a Python exception
        assert "exception" not in result and "Traceback" not in json.dumps(result), result


@pytest.mark.parametrize("mode", ["list", "deep", "missing", "wrong_types"])
def test_the_login_checks_the_shape_of_the_challenge(tmp_path, mode):
    with HostileDevice(mode, tmp_path=tmp_path) as dev:
        client = C.HemClient(dev.url, ca_path=dev.ca_file, passphrase=PASSPHRASE, timeout=10, retries=0)
        with pytest.raises(E.HemError) as err:
            client.get("/api/system/config")
    assert err.value.endpoint == "GET /api/auth/token", str(err.value)


def test_field_names_what_is_wrong():
    endpoint = "GET /api/system/status"
    assert E.field({"a": "x"}, "a", str, endpoint) == "x"
    assert E.field({}, "a", str, endpoint, required=False) is None
    for answer, kind, needle in (({}, str, "has no field a"), ({"a": 1}, str, "is a number, expected a string"),
                                 ({"a": True}, int, "is true or false, expected a number"), ([], str, "answered a list")):
        with pytest.raises(E.HemError) as err:
            E.field(answer, "a", kind, endpoint)
        assert needle in str(err.value) and str(err.value).startswith(endpoint)


# ---------------------------------------------------------------------------- plain HTTP

def test_credentials_never_go_over_plain_http_without_allow_plain_http(tmp_path):
    with HostileDevice("ok", tls=False) as dev:
        result, dummy, dummy = run_module(tmp_path, "encedo_login", {"url": dev.url, "passphrase": PASSPHRASE, "timeout": 10})
        refused = list(dev.requests)
        allowed, dummy, dummy = run_module(tmp_path, "encedo_login", {"url": dev.url, "passphrase": PASSPHRASE, "timeout": 10,
                                                                      "allow_plain_http": True})
        asked = dev.requests[len(refused):]
    assert_clean_failure(result, "allow_plain_http", "https://", "nothing was sent")
    assert not any(r["path"].startswith("/api/auth") or "Authorization" in r["headers"] for r in refused), refused
    # with the option, the login goes ahead (and meets this server's answer, which is no login challenge)
    assert any(r["path"] == "/api/auth/token" for r in asked), asked
    assert_clean_failure(allowed, "GET /api/auth/token")
    assert "plain http" in json.dumps(allowed.get("warnings", [])), allowed   # (2.19: structured warnings)


def test_an_https_url_on_a_plain_http_port_says_so():
    with HostileDevice("ok", tls=False) as dev:
        client = C.HemClient(dev.url.replace("http://", "https://"), timeout=5, retries=0)
        with pytest.raises(E.HemTlsError) as err:
            client.status()
    message = str(err.value)
    assert "answers plain HTTP" in message and "HTTPS port" in message
    assert "validate_certs to false" not in message


# ---------------------------------------------------------------------------- proxy credentials at -vvv

def test_a_proxy_password_is_shown_nowhere_at_vvv(emulator, tmp_path):
    emu = emulator(passphrase=PASSPHRASE, rtc_set=True)
    secret = "Pr0xyPw-%d-unseen" % os.getpid()
    with ConnectProxy() as proxy:
        proxy_url = proxy.url.replace("http://", "http://hemuser:%s@" % secret)
        runner = PlaybookRunner(emu, tmp_path / "vvv", devices=[0])
        play = [{"hosts": "hem", "gather_facts": False, "tasks": [
            {"name": "info through the proxy", "register": "info",
             "encedo.hem.encedo_info": {"url": "{{ hem_url }}", "ca_path": "{{ hem_ca_path }}", "passphrase": "{{ hem_passphrase }}",
                                        "proxy_url": proxy_url}},
            {"name": "show it", "ansible.builtin.debug": {"var": "info"}}]}]
        run = runner.run_playbook(play, verbosity=3, env=env_without_ca_overrides())
        auth = list(proxy.auth)
    run.assert_ok()
    assert proxy.tunnels, "the task did not go through the proxy"
    given = [base64.b64decode(line.split()[-1]).decode() for line in auth]
    assert "hemuser:%s" % secret in given, "the proxy was not given the credentials: %s" % auth
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in run.output, "-vvv did not print the module arguments"
    assert secret not in run.output
    for item in run.tasks:
        assert secret not in json.dumps(item.result)
