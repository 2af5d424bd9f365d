# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of _status's pure logic (encedo_info's gathering): which subsets gather_subset asks for, the facts
told by a status and a version (the requests are proven by tests/integration/test_info_login.py against the emulator)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

try:
    from ansible_collections.encedo.hem.plugins.module_utils import _status as M
except ImportError:  # run without the collection link on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "build" / "collections"))
    from ansible_collections.encedo.hem.plugins.module_utils import _status as M

ALL = {"status", "version", "config", "certificate"}


@pytest.mark.parametrize("requested, chosen", [
    (["all"], ALL),
    (["status"], {"status"}),
    (["!all"], {"status"}),
    (["status", "certificate"], {"status", "certificate"}),
    (["version"], {"status", "version"}),
    (["!config"], ALL - {"config"}),                      # only exclusions: from all
    (["all", "!config", "!version"], {"status", "certificate"}),
    (["!all", "certificate"], {"status", "certificate"}),  # !all: only what is named, as with Ansible's setup module
    ([" config "], {"status", "config"}),
])
def test_chosen_subsets(requested, chosen):
    assert M.chosen_subsets(requested) == chosen


@pytest.mark.parametrize("requested, words", [
    (["facts"], ["option gather_subset", "'facts' is not a subset", "allowed: all, status, version, config, certificate"]),
    (["!status"], ["!status is not allowed", "!all"]),
    (["!!version"], ["'!!version' is not a subset"]),
])
def test_chosen_subsets_refuses(requested, words):
    with pytest.raises(M.HemError) as err:
        M.chosen_subsets(requested)
    for word in words:
        assert word in str(err.value)


def test_status_facts():
    status = {"inited": True, "uptime": 7, "time": 1, "storage": ["8388608:rw"]}
    facts = M.status_facts(status, {"fwv": "1.2.2", "hwv": "PPA rev 2.2"})
    assert facts == dict(personalised=True, rtc_set=True, uptime=7, status=status, model="ppa", firmware="1.2.2",
                         version={"fwv": "1.2.2", "hwv": "PPA rev 2.2"})
    assert M.status_facts({"inited": False}) == dict(personalised=False, rtc_set=False, uptime=None, status={"inited": False})


@pytest.mark.parametrize("over, words", [
    (dict(gather_subset=["facts"]), "option gather_subset: 'facts' is not a subset"),
    (dict(return_token=True), "option return_token: needs passphrase"),
    (dict(gather_subset=["!all"], issuer_ca="x"), "option issuer_ca/issuer_ca_path: used only with certificate"),
])
def test_check_options_refuses_before_any_request(over, words):
    params = dict(gather_subset=["all"], return_token=False, passphrase=None, issuer_ca=None, issuer_ca_path=None,
                  url="https://my.ence.do", tls_bundle=None, http_url=None, ca_path=None)
    params.update(over)
    with pytest.raises(M.HemError) as err:
        M.check_options(params)
    assert words in str(err.value)
