# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the connection options: spec <-> doc fragment, url checks, env precedence."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import pytest
import yaml

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core < 2.19 (make matrix): the module arguments are a module global there
    from ansible.module_utils import basic

    @contextlib.contextmanager
    def patch_module_args(args):
        saved = basic._ANSIBLE_ARGS
        basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode()
        try:
            yield
        finally:
            basic._ANSIBLE_ARGS = saved

try:
    from ansible_collections.encedo.hem.plugins.module_utils import _module as M
except ImportError:  # run without the collection link on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "build" / "collections"))
    from ansible_collections.encedo.hem.plugins.module_utils import _module as M
from ansible_collections.encedo.hem.plugins.doc_fragments.connection import ModuleDocFragment


def fragment_options():
    return yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]


def test_doc_fragment_matches_argument_spec():
    spec = M.hem_argument_spec()
    docs = fragment_options()
    assert sorted(docs) == sorted(spec)
    for name, option in spec.items():
        doc = docs[name]
        assert doc["type"] == option["type"], name
        assert doc.get("default") == option.get("default"), name
        assert bool(doc.get("required", False)) == bool(option.get("required", False)), name
        assert doc.get("choices") == option.get("choices"), name
        # every option falls back to its documented environment variable
        strategy, args = option["fallback"]
        assert strategy is M.env_fallback and args == [M.ENV_VARS[name]]
        assert "E(%s)" % M.ENV_VARS[name] in " ".join(doc["description"]), name


def test_secrets_are_no_log_and_nothing_else():
    spec = M.hem_argument_spec()
    # proxy_url: it may carry the proxy's user and password (https://user:pass@proxy)
    assert {name for name, option in spec.items() if option.get("no_log")} == {"passphrase", "token", "proxy_url"}


def test_argument_spec_is_a_fresh_copy():
    spec = M.hem_argument_spec()
    spec["url"]["required"] = True
    spec["timeout"]["default"] = 1
    assert "required" not in M.hem_argument_spec()["url"] and M.hem_argument_spec()["timeout"]["default"] == 30


@pytest.mark.parametrize("url", ["https://my.ence.do", "https://127.0.0.1:8443", "http://192.168.7.1/", "https://[::1]:443"])
def test_valid_urls(url):
    assert M.validate_url(url) is None


@pytest.mark.parametrize("url,reason", [
    ("my.ence.do", "scheme"), ("ftp://my.ence.do", "scheme"), ("https://", "host"),
    ("https://host:99999", "range"), ("https://host/?a=1", "query"), ("https://host:abc", "port"),
    ("https://host/api", "without a path"), ("https://host/api/", "without a path"), ("https://host/api/system", "without a path"),
])
def test_invalid_urls(url, reason):
    problem = M.validate_url(url)
    assert problem and reason in problem.lower()


def run_module(args, capsys, env=None, monkeypatch=None):
    """Build a HemModule from args; return (module or None, exit json or None)."""
    for name in M.ENV_VARS.values():
        monkeypatch.delenv(name, raising=False)
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    with patch_module_args(args):
        module = M.HemModule(argument_spec={}, supports_check_mode=True)
        try:
            module.check_connection_options()
        except M.HemError:
            # a bad option fails the task through run, before the function (and any request) runs
            with pytest.raises(SystemExit):
                module.run(lambda mod, client: pytest.fail('run called the function despite a bad option'))
            return None, json.loads(capsys.readouterr().out)
        return module, None


def test_bad_url_fails_naming_the_option(capsys, monkeypatch):
    module, out = run_module({"url": "my.ence.do"}, capsys, monkeypatch=monkeypatch)
    assert out["failed"] and out["msg"].startswith("option url:")


def test_a_missing_url_fails_naming_the_option_and_where_to_set_it(capsys, monkeypatch):
    module, out = run_module({}, capsys, monkeypatch=monkeypatch)
    assert out["failed"] and out["msg"].startswith("option url is required:")
    assert "module_defaults" in out["msg"] and "ENCEDO_HEM_URL" in out["msg"]


def test_url_is_not_required_in_the_spec_so_ansible_lint_accepts_it_from_module_defaults():
    """Issue 30: ansible-lint's args rule checks a task's own arguments against the spec; a required url in
    module_defaults gave "missing required arguments: url" on every task. The module checks it itself (above)."""
    assert not M.hem_argument_spec()["url"].get("required")


def test_url_from_environment(capsys, monkeypatch):
    module, out = run_module({}, capsys, env={"ENCEDO_HEM_URL": "https://from-env.test", "ENCEDO_HEM_TIMEOUT": "7",
                                              "ENCEDO_HEM_VALIDATE_CERTS": "false"}, monkeypatch=monkeypatch)
    assert out is None
    assert module.params["url"] == "https://from-env.test"
    assert module.params["timeout"] == 7 and module.params["validate_certs"] is False


def test_passphrase_and_token_on_the_task_go_together(capsys, monkeypatch):
    """The token is used first; the passphrase only logs in again when the device refuses it."""
    module, out = run_module({"url": "https://h", "passphrase": "secret-pass", "token": "secret-token"}, capsys, monkeypatch=monkeypatch)
    assert out is None
    assert module.params["token"] == "secret-token" and module.params["passphrase"] == "secret-pass"
    client = module.client()
    assert client.token == "secret-token" and client.passphrase == "secret-pass"
    assert {"secret-pass", "secret-token"} <= module.no_log_values


def test_url_with_the_api_path_is_refused_before_any_request(capsys, monkeypatch):
    module, out = run_module({"url": "https://my.ence.do/api"}, capsys, monkeypatch=monkeypatch)
    assert out["failed"] and "option url" in out["msg"] and "without a path" in out["msg"] and "/api/api/system/status" in out["msg"]


def test_client_overrides_make_a_new_client_from_the_same_options(capsys, monkeypatch):
    module, out = run_module({"url": "https://h", "passphrase": "pw", "token": "tok", "timeout": 30, "ca_path": __file__,
                              "proxy_url": "http://proxy:3128"}, capsys, monkeypatch=monkeypatch)
    assert out is None
    main = module.client()
    assert module.client() is main and main.passphrase == "pw" and main._transport.proxy_url == "http://proxy:3128"
    poller = module.client(**M.POLL)
    assert poller is not main and module.client() is main
    assert (poller.passphrase, poller.token, poller.retries, poller.timeout) == (None, None, 0, 5.0)
    assert (poller.url, poller.ca_path, poller._transport.proxy_url) == ("https://h", __file__, "http://proxy:3128")
    other = module.client(**{**M.POLL, "url": "http://h:8080", "timeout": 10})
    assert (other.url, other.timeout) == ("http://h:8080", 10.0)
    trial = module.client(passphrase="new-pw", token=None)
    assert (trial.passphrase, trial.token, trial.retries) == ("new-pw", None, 3)
    module.params["timeout"] = 3                       # never longer than the timeout option
    assert module.client(**M.POLL).timeout == 3.0


@pytest.mark.parametrize("proxy_url", ["proxy:3128", "socks5://proxy:1080", "http://:3128", "http://u:secretpw@proxy:99999"])
def test_bad_proxy_url_fails_naming_the_option(capsys, monkeypatch, proxy_url):
    module, out = run_module({"url": "https://h", "proxy_url": proxy_url}, capsys, monkeypatch=monkeypatch)
    assert out["failed"] and out["msg"].startswith("option proxy_url: not a proxy address")
    assert "secretpw" not in out["msg"]


def test_proxy_url_from_environment(capsys, monkeypatch):
    module, out = run_module({"url": "https://h"}, capsys, env={"ENCEDO_HEM_PROXY_URL": "http://envproxy:3128"}, monkeypatch=monkeypatch)
    assert out is None and module.client()._transport.proxy_url == "http://envproxy:3128"


def test_task_token_falls_back_to_environment_passphrase(capsys, monkeypatch):
    module, out = run_module({"url": "https://h", "token": "tok"}, capsys, env={"ENCEDO_HEM_PASSPHRASE": "envpw"},
                             monkeypatch=monkeypatch)
    assert out is None
    assert module.params["token"] == "tok" and module.params["passphrase"] == "envpw"
    assert "envpw" in module.no_log_values


def test_task_passphrase_falls_back_to_environment_token(capsys, monkeypatch):
    module, out = run_module({"url": "https://h", "passphrase": "pw"}, capsys, env={"ENCEDO_HEM_TOKEN": "envtok"},
                             monkeypatch=monkeypatch)
    assert out is None
    assert module.params["passphrase"] == "pw" and module.params["token"] == "envtok"


def test_task_values_win_over_environment(capsys, monkeypatch):
    module, out = run_module({"url": "https://h", "passphrase": "pw", "token": "tok"}, capsys,
                             env={"ENCEDO_HEM_PASSPHRASE": "envpw", "ENCEDO_HEM_TOKEN": "envtok"}, monkeypatch=monkeypatch)
    assert (module.params["passphrase"], module.params["token"]) == ("pw", "tok")


def test_empty_task_value_keeps_the_environment_out(capsys, monkeypatch):
    """The role's status step sets both to "" so that it never logs in, whatever the environment holds."""
    module, out = run_module({"url": "https://h", "passphrase": "", "token": ""}, capsys,
                             env={"ENCEDO_HEM_PASSPHRASE": "envpw", "ENCEDO_HEM_TOKEN": "envtok"}, monkeypatch=monkeypatch)
    assert (module.params["passphrase"], module.params["token"]) == ("", "")
    assert module.has_credentials() is False


class _Client:
    """What HemModule.renewed_token reads from a HemClient: its token and whether it replaced a refused one."""

    def __init__(self, token, relogged):
        self.token = token
        self.relogged = relogged


REFUSED = True


@pytest.mark.parametrize("given,client_token,relogged,expected", [
    ("old-token", "new-token", REFUSED, "new-token"),                       # refused, logged in again: returned
    ("old-token", "old-token", False, None),                                 # token worked
    (None, "new-token", False, None),                                        # no token given: the task's own login
    ("old-token", "new-token", False, None),                                 # a login without a refusal (encedo_init)
    ("old-token", None, REFUSED, None),                                      # token dropped (encedo_reboot)
    ("old-token", "new-secret-pass-token", REFUSED, None),                   # would be masked by Ansible: not returned
])
def test_renewed_token(capsys, monkeypatch, given, client_token, relogged, expected):
    args = {"url": "https://h", "passphrase": "secret-pass"}
    if given:
        args["token"] = given
    module, out = run_module(args, capsys, monkeypatch=monkeypatch)
    module._hem_client = _Client(client_token, relogged)
    assert module.renewed_token() == expected


def test_run_returns_the_renewed_token(capsys, monkeypatch):
    for name in M.ENV_VARS.values():
        monkeypatch.delenv(name, raising=False)
    with patch_module_args({"url": "https://h", "passphrase": "pw", "token": "old-token"}):
        module = M.HemModule(argument_spec={}, supports_check_mode=True)
        module._hem_client = _Client("new-token", REFUSED)
        with pytest.raises(SystemExit):
            module.run(lambda mod, client: {"config": {"user": "u"}})
    result = json.loads(capsys.readouterr().out)
    assert result["token"] == "new-token" and "ansible_facts" not in result   # facts would reach the fact cache
    assert result["config"] == {"user": "u"} and result["changed"] is False


def test_environment_credentials_apply_when_the_task_sets_none(capsys, monkeypatch):
    module, out = run_module({"url": "https://h"}, capsys, env={"ENCEDO_HEM_PASSPHRASE": "envpw"}, monkeypatch=monkeypatch)
    assert module.params["passphrase"] == "envpw"
    assert "envpw" in module.no_log_values


def test_validate_certs_false_warns_once(capsys, monkeypatch):
    module, out = run_module({"url": "https://h", "validate_certs": False}, capsys, monkeypatch=monkeypatch)
    warnings = []
    monkeypatch.setattr(module, "warn", warnings.append)
    first = module.client()
    assert module.client() is first
    assert len(warnings) == 1 and "validate_certs is false" in warnings[0]
    assert first.validate_certs is False


def test_run_turns_hem_error_into_one_failure(capsys, monkeypatch):
    for name in M.ENV_VARS.values():
        monkeypatch.delenv(name, raising=False)

    def boom(mod, client):
        raise M.HemError("the device is busy", "GET /api/system/config", 409)

    with patch_module_args({"url": "https://h"}):
        module = M.HemModule(argument_spec={}, supports_check_mode=True)
        with pytest.raises(SystemExit):
            module.run(boom)
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] is True
    assert result["msg"] == "GET /api/system/config answered HTTP 409: the device is busy"
    assert result["status"] == 409 and result["endpoint"] == "GET /api/system/config"


def test_run_exits_with_the_result(capsys, monkeypatch):
    for name in M.ENV_VARS.values():
        monkeypatch.delenv(name, raising=False)
    with patch_module_args({"url": "https://h"}):
        module = M.HemModule(argument_spec={}, supports_check_mode=True)
        with pytest.raises(SystemExit):
            module.run(lambda mod, client: {"model": "ppa"})
    result = json.loads(capsys.readouterr().out)
    assert result["changed"] is False and result["model"] == "ppa" and "failed" not in result


def test_construction_never_fails_the_task(capsys, monkeypatch):
    """Bad connection options fail in run, not in HemModule(): run is the one failure path."""
    for name in M.ENV_VARS.values():
        monkeypatch.delenv(name, raising=False)
    with patch_module_args({"url": "my.ence.do", "timeout": 0}):
        module = M.HemModule(argument_spec={}, supports_check_mode=True)
    assert capsys.readouterr().out == ""
    with pytest.raises(M.HemError, match="^option url:"):
        module.check_connection_options()


def test_run_checks_the_options_before_the_module_check_and_the_function(capsys, monkeypatch):
    for name in M.ENV_VARS.values():
        monkeypatch.delenv(name, raising=False)
    calls = []

    def check(params):
        calls.append(("check", params["url"]))
        raise M.HemError("option x: wrong")

    with patch_module_args({"url": "https://h", "timeout": 0}):
        module = M.HemModule(argument_spec={}, supports_check_mode=True)
        with pytest.raises(SystemExit):
            module.run(lambda mod, client: calls.append("fn"), check=check)
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] and result["msg"] == "option timeout: must be a positive number of seconds, got 0" and calls == []
    assert module._hem_client is None
    with patch_module_args({"url": "https://h"}):
        module = M.HemModule(argument_spec={}, supports_check_mode=True)
        with pytest.raises(SystemExit):
            module.run(lambda mod, client: calls.append("fn"), check=check)
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] and result["msg"] == "option x: wrong" and calls == [("check", "https://h")]
    assert module._hem_client is None


#: Exception classes of the collection that never reach HemModule.run, each with the reason.
INTERNAL_ERRORS = {
    "_transport.TransportError": "one failed try of the transport; HemClient turns it into a HemError (with the endpoint) "
                                 "or retries",
    "_transport.AnswerTooLarge": "a TransportError: an answer over its size limit; HemClient turns it into a HemError naming the "
                                 "device and the limit",
    "_fields.FieldError": "a ValueError of one field's check; _config.validate and encedo_init's validate collect them "
                          "into one message (ConfigError, or encedo_init's HemError of HemModule.run's check)",
    "_fields.Invalid": "a ValueError of a value conversion; plan_update/validate turn it into a ConfigError message",
    "_audit_log.LogInvalid": "a log file that does not verify; the file goes to quarantine and its reason into the result "
                             "(quarantine_failure raises the HemError)",
}


def _collection_error_classes():
    """Every Exception subclass defined in plugins/module_utils and plugins/modules, as ("module.Class", class)."""
    import importlib
    import inspect
    import pkgutil

    from ansible_collections.encedo.hem.plugins import module_utils, modules

    found = []
    for package in (module_utils, modules):
        for info in pkgutil.iter_modules(package.__path__):
            mod = importlib.import_module("%s.%s" % (package.__name__, info.name))
            for name, obj in vars(mod).items():
                if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == mod.__name__:
                    found.append(("%s.%s" % (info.name, name), obj))
    return found


def test_every_error_of_the_collection_is_a_hem_error():
    """One error type reaches HemModule.run: what the collection raises is a HemError (or internal, listed above)."""
    classes = dict(_collection_error_classes())
    # the introspection sees the errors it must see
    assert {"_errors.HemError", "_x509.X509Error", "_attestation.AttestationError", "_config.ConfigError",
            "_attestation.AttestationFailure"} <= set(classes)
    assert set(INTERNAL_ERRORS) <= set(classes), "an internal error listed here no longer exists"
    strays = sorted(name for name, cls in classes.items() if not issubclass(cls, M.HemError) and name not in INTERNAL_ERRORS)
    assert strays == []
    assert not any(issubclass(classes[name], M.HemError) for name in INTERNAL_ERRORS), "listed as internal but a HemError"


def test_run_fails_with_the_result_fields_a_hem_error_carries(capsys, monkeypatch):
    for name in M.ENV_VARS.values():
        monkeypatch.delenv(name, raising=False)

    def boom(mod, client):
        raise M.HemError("the update was refused", "POST /api/system/config", 400,
                         result=dict(changed=True, sent=["user"], config={"user": "u"}))

    with patch_module_args({"url": "https://h"}):
        module = M.HemModule(argument_spec={}, supports_check_mode=True)
        with pytest.raises(SystemExit):
            module.run(boom)
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] is True
    assert result["msg"] == "POST /api/system/config answered HTTP 400: the update was refused"
    assert (result["endpoint"], result["status"]) == ("POST /api/system/config", 400)
    assert result["changed"] is True and result["sent"] == ["user"] and result["config"] == {"user": "u"}


def test_result_fields_may_name_endpoint_and_status_without_prefixing_the_message(capsys, monkeypatch):
    for name in M.ENV_VARS.values():
        monkeypatch.delenv(name, raising=False)

    def boom(mod, client):
        raise M.HemError("neither passphrase is accepted. Nothing was sent.", result=dict(status=401, endpoint="POST /api/auth/token"))

    with patch_module_args({"url": "https://h"}):
        module = M.HemModule(argument_spec={}, supports_check_mode=True)
        with pytest.raises(SystemExit):
            module.run(boom)
    result = json.loads(capsys.readouterr().out)
    assert result["msg"] == "neither passphrase is accepted. Nothing was sent."
    assert (result["status"], result["endpoint"]) == (401, "POST /api/auth/token") and "changed" not in result
