# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""docs/fidelity.md covers what the collection uses, and the README's real-device claims agree with it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LEDGER = (ROOT / "docs" / "fidelity.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _plugin_sources():
    return {p: p.read_text(encoding="utf-8") for p in (ROOT / "plugins").rglob("*.py")}


def test_every_endpoint_the_collection_calls_is_in_the_ledger():
    paths = set()
    for text in _plugin_sources().values():
        paths.update(re.findall(r"['\"](/api/[a-z/_]+)['\"]", text))
    assert len(paths) >= 9, paths                       # status, version, token, init, config, attestation, ...
    missing = sorted(p for p in paths if p not in LEDGER)
    assert not missing, "endpoints used by plugins/ but absent from docs/fidelity.md: %s" % missing


def test_every_config_field_the_collection_sends_is_in_the_ledger():
    sys.path.insert(0, str(ROOT / "build" / "collections"))       # the collection link of `make link`
    from ansible_collections.encedo.hem.plugins.module_utils import _fields  # pylint: disable=import-outside-toplevel
    assert len(_fields.FIELDS) >= 14, "the field table moved?"
    missing = sorted(name for name in _fields.FIELDS if "`%s`" % name not in LEDGER)
    assert not missing, "configuration fields absent from docs/fidelity.md: %s" % missing


def _real_device_section():
    start = README.index("### Pointing it at a real device")
    return README[start:README.index("\n### ", start + 10)]


def test_readme_real_device_claims_name_options_the_ledger_and_modules_know():
    section = _real_device_section()
    assert "docs/fidelity.md" in section
    # Ansible's own variables (ansible_connection, ansible_host, ...) are not device options.
    not_options = {"mnemonic", "encedo_init", "encedo_info", "encedo_login", "encedo_tls", "ca_path", "validate_certs", "check",
                   "encedo_hem_url", "encedo_hem_backend_url", "encedo_hem_ca_path"}
    options = {name for name in re.findall(r"`([a-z][a-z0-9_]+)`", section) if not name.startswith("ansible_")} - not_options
    assert {"master_passphrase", "master_recovery_phrase", "allow_reformat", "enforce_validity", "tls_bundle"} <= options
    modules = "\n".join(t for p, t in _plugin_sources().items() if "/modules/" in str(p) or "doc_fragments" in str(p))
    for option in sorted(options):
        assert "`%s`" % option in LEDGER or option in LEDGER, "README option %s is not in docs/fidelity.md" % option
        assert re.search(r"^  %s:$" % option, modules, re.M), "README option %s is no module option" % option


def test_readme_and_ledger_agree_on_the_vendor_defaults():
    section = _real_device_section()
    for fact in ("192.168.7.1/24", "origin `*`"):
        assert fact in section and fact in LEDGER
    # The manager's default for trusted_backend/allow_keysearch differs from ours: both documents say ours stay off.
    assert "stay off" in section and "stay **false**" in LEDGER


def test_emulator_readme_links_the_ledger():
    assert "docs/fidelity.md" in (ROOT / "tests" / "emulator" / "README.md").read_text(encoding="utf-8")
