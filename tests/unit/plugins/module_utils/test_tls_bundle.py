# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of _tls_bundle (a device without a TLS bundle): spec <-> doc fragment, http_url, input checks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

try:
    from ansible_collections.encedo.hem.plugins.module_utils import _tls_bundle as F
except ImportError:  # run without the collection link on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "build" / "collections"))
    from ansible_collections.encedo.hem.plugins.module_utils import _tls_bundle as F
from ansible_collections.encedo.hem.plugins.doc_fragments.fresh_tls import ModuleDocFragment


def _compare(spec, docs):
    assert sorted(docs) == sorted(spec)
    for name, option in spec.items():
        doc = docs[name]
        assert doc["type"] == option["type"], name
        assert bool(doc.get("required", False)) == bool(option.get("required", False)), name
        if "options" in option:
            _compare(option["options"], doc["suboptions"])


BOTH = (ModuleDocFragment.DOCUMENTATION, ModuleDocFragment.HTTP_URL)


@pytest.mark.parametrize("fragments, bundle", [(BOTH, True), ((ModuleDocFragment.HTTP_URL,), False)])
def test_doc_fragment_matches_argument_spec(fragments, bundle):
    # encedo_info and encedo_init use both fragments, encedo_factory_reset only HTTP_URL.
    docs = {}
    for fragment in fragments:
        docs.update(yaml.safe_load(fragment)["options"])
    _compare(F.fresh_argument_spec(bundle=bundle), docs)


def test_only_the_encrypted_key_is_no_log():
    spec = F.fresh_argument_spec()
    assert spec["tls_bundle"]["options"]["key"]["no_log"] is True
    assert not spec["tls_bundle"].get("no_log") and not spec["tls_bundle"]["options"]["crt"].get("no_log")
    assert spec["http_url"]["fallback"][1] == ["ENCEDO_HEM_HTTP_URL"]


@pytest.mark.parametrize("url, http_url, expected", [
    ("https://my.ence.do", None, "http://my.ence.do"),
    ("https://192.168.7.1:8443/api", None, "http://192.168.7.1"),
    ("https://[fe80::1]:443", None, "http://[fe80::1]"),
    ("https://127.0.0.1:9443", "http://127.0.0.1:9080/", "http://127.0.0.1:9080"),
])
def test_plain_http_url(url, http_url, expected):
    assert F.plain_http_url({"url": url, "http_url": http_url}) == expected


@pytest.mark.parametrize("http_url", ["https://127.0.0.1", "ftp://x", "http://", "http://h/?q=1", "http://h:99999"])
def test_bad_http_url_is_refused_naming_the_option(http_url):
    with pytest.raises(ValueError, match="option http_url"):
        F.check_inputs({"url": "https://h", "http_url": http_url, "tls_bundle": None})


def test_no_bundle_checks_nothing_else():
    assert F.check_inputs({"url": "https://h", "http_url": None, "tls_bundle": None}) == (None, None)
