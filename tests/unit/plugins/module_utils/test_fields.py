# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one field table (_fields): the modules' specs and documentation agree with it, encedo_config and
encedo_init refuse the same values, the model is decided in one function, and the places where the
emulator's own rules (tests/emulator/device.py) differ from the table are each explained in the ledger."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
try:
    from ansible_collections.encedo.hem.plugins.module_utils import _fields as F
except ImportError:  # run without the collection link on sys.path
    sys.path.insert(0, str(ROOT / "build" / "collections"))
    from ansible_collections.encedo.hem.plugins.module_utils import _fields as F
from ansible_collections.encedo.hem.plugins.modules import encedo_config, encedo_init
from tests.emulator import device as EMU

MODULES = {"config": encedo_config, "init": encedo_init}
LEDGER = (ROOT / "docs" / "fidelity.md").read_text(encoding="utf-8")


# ------------------------------------------------------------------ the modules are built from the table

class _Captured(Exception):
    pass


@pytest.mark.parametrize("name", sorted(MODULES))
def test_each_module_builds_its_argument_spec_from_the_table(monkeypatch, name):
    seen = {}

    def capture(argument_spec=None, **kwargs):
        seen.update(argument_spec)
        raise _Captured()

    monkeypatch.setattr(MODULES[name], "HemModule", capture)
    with pytest.raises(_Captured):
        MODULES[name].main()
    for field, entry in F.argument_spec(name).items():
        assert seen[field] == entry, field
    assert sorted(f.name for f in F.options_of(name)) == sorted(set(seen) & set(F.FIELDS))


@pytest.mark.parametrize("name", sorted(MODULES))
def test_each_module_documentation_agrees_with_the_table(name):
    options = yaml.safe_load(MODULES[name].DOCUMENTATION)["options"]
    for field in F.options_of(name):
        doc = options[field.name]
        spec = F.argument_spec(name)[field.name]
        assert doc["type"] == spec["type"], field.name
        assert doc.get("default") == spec.get("default"), field.name
        assert bool(doc.get("required")) == bool(spec.get("required")), field.name
        assert "choices" not in doc, field.name
        text = " ".join(doc["description"])
        for limit in (field.max_length, field.maximum):
            if limit is not None:
                assert str(limit) in text, "%s: the documented limit %s is not in the description of %s" % (name, limit, field.name)
        if field.models == F.PPA and (name == "init" or field.settable):     # encedo_config compares ip on any model
            assert "PPA" in text, field.name
    assert [f.name for f in F.FIELDS.values() if f.name in options and name not in f.options] == []


def test_every_table_field_has_a_source_and_is_in_the_ledger():
    for field in F.FIELDS.values():
        assert field.source and field.allowed, field.name
        assert "`%s`" % field.name in LEDGER, field.name


# ------------------------------------------------------------------ one rule for both modules

BAD = [("user", ""), ("user", "x" * 33), ("user", "tab\there"), ("user", "zero\u200bwidth"), ("user", "no\u00a0break"),
       ("email", "a" * 52 + "@example.com"), ("email", "a b@example.com"), ("email", "no-at"), ("email", "x@y\n"),
       ("origin", "https://" + "o" * 56), ("origin", "*\x1b"),
       ("hostname", "bad_name.example"), ("hostname", "-lead.example"), ("hostname", "a" * 64 + ".example"),
       ("hostname", ".".join(["a" * 63] * 4)), ("hostname", "a..b"), ("hostname", ""), ("hostname", "h\u00e9.example"),
       ("ip", "10.0.0.1/31"), ("ip", "10.0.0.1/7"), ("ip", "fe80::1/64"), ("ip", "192.168.7.0/24"), ("ip", "192.168.7.300/24"),
       ("ctx", -1), ("ctx", 2 ** 32), ("storage_mode", 0), ("storage_mode", "shown"), ("storage_disk0size", -5)]


@pytest.mark.parametrize("name,value", BAD)
def test_a_value_one_module_refuses_the_other_refuses_with_the_same_message(name, value):
    messages = []
    for module in ("config", "init"):
        with pytest.raises(F.FieldError) as err:
            F.check(name, value, module)
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert messages[0].startswith("option %s: " % name)


@pytest.mark.parametrize("value,position,what", [("tab\there", 4, "a tab (U+0009)"), ("zero\u200bwidth", 5, "U+200B"),
                                                 ("bell\x07", 5, "the control character U+0007")])
def test_the_message_names_the_character_and_what_is_allowed(value, position, what):
    # Issue 17 defect 7: "must be 1 to 32 printable characters, got 7" did not say which character is wrong.
    with pytest.raises(F.FieldError) as err:
        F.check("user", value)
    assert "character %d is " % position in str(err.value) and what in str(err.value)
    assert "allowed: 1 to 32 printable characters" in str(err.value)


def test_the_only_module_differences_are_comparisons():
    # encedo_config compares hostname ignoring case and the root's trailing dot, and an ip without a prefix by address.
    assert F.check("hostname", "HEM1.Example.com.", "config") == "hem1.example.com"
    with pytest.raises(F.FieldError):
        F.check("hostname", "HEM1.Example.com.", "init")
    assert F.check("ip", "192.168.7.1", "config") == "192.168.7.1"
    with pytest.raises(F.FieldError, match="needs a prefix"):
        F.check("ip", "192.168.7.1", "init")
    assert F.check("ip", "10.0.0.1/255.255.255.0", "config") == "10.0.0.1/24"
    with pytest.raises(F.FieldError, match="write '10.0.0.1/255.255.255.0' as '10.0.0.1/24'"):
        F.check("ip", "10.0.0.1/255.255.255.0", "init")


def test_check_all_names_every_bad_option_at_once():
    with pytest.raises(F.FieldError) as err:
        F.check_all({"user": "", "ctx": -1, "email": "x"}, "config")
    for name in ("user", "ctx", "email"):
        assert "option %s:" % name in str(err.value)


# ------------------------------------------------------------------ the model

@pytest.mark.parametrize("status,version,config,model", [
    ({}, {"hwv": "PPA rev 2.2"}, None, "ppa"),
    ({"storage": ["1:rw"]}, {"hwv": "EPA rev 1"}, None, "epa"),     # the hardware version wins
    ({"storage": ["1:rw"]}, {}, None, "ppa"),
    ({}, {"uis": "x"}, None, "ppa"),
    (None, None, {"storage_capacity": 5}, "ppa"),
    (None, None, {"user": "x"}, "epa"),
    ({}, {}, None, "epa"),
    ({}, {"hwv": "epa"}, None, "epa"),
    ({"storage": ["1:rw"]}, {"hwv": "rev 3"}, None, "ppa"),         # no model in hwv: MSC-only fields
    # an answer not read: a model only when the answers given decide it
    ({"storage": ["1:rw"]}, None, None, "ppa"),                     # only the PPA's MSC build reports storage
    ({}, None, None, None),                                         # an EPA, or a PPA whose hwv would say so
    (None, {"hwv": "EPA rev 1.0"}, None, "epa"),
    (None, {"hwv": "rev 3"}, None, None),                           # the status could still show storage
])
def test_the_model_is_decided_in_one_function(status, version, config, model):
    assert F.device_model(status, version, config) == model


# ------------------------------------------------------------------ where the emulator's rules differ

def _table_rules(field, endpoint):
    rules = {"msc": field.models == F.PPA}
    if field.kind in ("str", "email"):
        rules.update(length=(field.min_length or 0, field.max_length), printable=True, form=field.kind == "email")
    elif field.kind == "hostname":
        rules.update(form="dns")
    elif field.kind == "ip":
        rules.update(form="ipv4 host address, prefix 8-30")
    elif field.kind == "int":
        high = EMU.STORAGE_CAPACITY if field.name == "storage_disk0size" else field.maximum   # "the device's capacity"
        rules.update(range=(field.minimum, high))
    elif field.kind == "storage_mode":
        rules.update(values="the six")
    if endpoint == "config":
        rules.pop("form", None) if field.kind in ("hostname", "ip") else None
    return rules


def _emulator_rules(field, endpoint):
    """The emulator's rule for ``field`` in the same shape, or None when the emulator does not take it there."""
    if endpoint == "config":
        if field.name not in EMU.CONFIG_FIELDS:
            return None
        kind, bounds, msc = EMU.CONFIG_FIELDS[field.name]
    else:
        if field.name not in EMU.INIT_FIELDS:
            return None
        kind, bounds = EMU.INIT_FIELDS[field.name]
        msc = field.name in EMU.INIT_REQUIRED_MSC
    rules = {"msc": msc}
    if field.kind in ("str", "email"):
        rules.update(length=bounds or (0, None), printable=False, form=False)
    elif field.kind == "hostname":
        rules.update(form="any string")
    elif field.kind == "ip":
        rules.update(form="a.b.c.d/n")
    elif field.kind == "int":
        rules.update(range=bounds or (0, None))
    elif field.kind == "storage_mode":
        rules.update(values="any integer")
    return rules


#: (field, endpoint, rule) -> the sentence of docs/fidelity.md ("Where the field table and the emulator differ") that explains it.
EXPLAINED = {
    ("user", "config", "length"): "`user` not empty",
    ("user", "init", "length"): "`user` not empty",
    ("user", "config", "printable"): "printable characters only",
    ("user", "init", "printable"): "printable characters only",
    ("email", "config", "length"): "`email` and `origin` at most 63",
    ("email", "init", "length"): "`email` and `origin` at most 63",
    ("origin", "config", "length"): "`email` and `origin` at most 63",
    ("origin", "init", "length"): "`email` and `origin` at most 63",
    ("email", "config", "printable"): "printable characters only",
    ("email", "init", "printable"): "printable characters only",
    ("origin", "config", "printable"): "printable characters only",
    ("origin", "init", "printable"): "printable characters only",
    ("email", "config", "form"): "`email` of the form",
    ("email", "init", "form"): "`email` of the form",
    ("hostname", "init", "form"): "`hostname` a DNS name",
    ("ip", "init", "form"): "`ip` a host address with a prefix of 8 to 30",
    ("ctx", "config", "range"): "`ctx` within 32 bits",
    ("ctx", "init", "range"): "`ctx` within 32 bits",
    ("storage_mode", "config", "values"): "`storage_mode` one of the six",
    ("storage_mode", "init", "values"): "`storage_mode` one of the six",
}


def test_every_difference_between_the_table_and_the_emulator_is_explained_in_the_ledger():
    found = {}
    for field in F.FIELDS.values():
        for endpoint in ("config", "init"):
            emulator = _emulator_rules(field, endpoint)
            if emulator is None:
                continue
            table = _table_rules(field, endpoint)
            for rule in sorted(set(table) | set(emulator)):
                if table.get(rule) != emulator.get(rule):
                    found[(field.name, endpoint, rule)] = (table.get(rule), emulator.get(rule))
    unexplained = sorted(set(found) - set(EXPLAINED))
    assert not unexplained, "differences with no explanation in docs/fidelity.md: %s" % ", ".join(
        "%s %s %s (table %r, emulator %r)" % (k + found[k]) for k in unexplained)
    assert sorted(set(EXPLAINED) - set(found)) == [], "explained differences that no longer exist: remove them"
    section = LEDGER[LEDGER.index("### Where the field table and the emulator differ"):]
    section = section[:section.index("\n## ")]
    for sentence in set(EXPLAINED.values()):
        assert sentence in section, sentence


# ------------------------------------------------------------------ the role declares the same options

ROLE_SPEC = Path(__file__).resolve().parents[4] / "roles" / "device" / "meta" / "argument_specs.yml"


@pytest.mark.parametrize("variable, name", [("encedo_hem_config", "config"), ("encedo_hem_init", "init")])
def test_the_role_lists_the_tables_options_with_their_types(variable, name):
    """The role's encedo_hem_config / encedo_hem_init list exactly the table's options of encedo_config /
    encedo_init with the same types; any other option of theirs is one of the module's own (not a field)."""
    entry_points = yaml.safe_load(ROLE_SPEC.read_text())["argument_specs"].values()
    found = [spec["options"][variable]["options"] for spec in entry_points if variable in spec.get("options", {})]
    assert len(found) == 1, variable
    options = found[0]
    table = dict((f.name, f.option_type) for f in F.options_of(name))
    assert dict((k, v["type"]) for k, v in options.items() if k in F.FIELDS) == table
    module_options = yaml.safe_load(MODULES[name].DOCUMENTATION)["options"]
    for extra in set(options) - set(table):
        assert extra in module_options and options[extra]["type"] == module_options[extra]["type"], extra
