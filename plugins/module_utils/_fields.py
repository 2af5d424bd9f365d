# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils file is PRIVATE to the encedo.hem collection. It may change or
# disappear without notice; do not import it from outside the collection.
"""The one table of the device's configuration and personalisation fields, and the model (PPA/EPA).

Every field ``encedo_config`` and ``encedo_init`` set or compare is described once, in
:data:`FIELDS`: its type, the values and lengths allowed with their source (each limit is a
row of docs/fidelity.md, "Field limits"), the models that have it, whether it is write-only,
settable after personalisation, needs a reboot or a reformat. Both modules build their
argument spec (:func:`argument_spec`) and their validation (:func:`check`) from it, so a
value one refuses the other refuses too, with the same message.

To add a field: add a :class:`Field` here (with ``source``), a row to docs/fidelity.md, and the
option's documentation to the module(s) named in ``options``; tests/unit/plugins/module_utils/
test_fields.py checks that the documentation agrees and lists where the emulator differs.

Pure logic, no I/O.
"""

from __future__ import annotations

import ipaddress
import re

#: The six storage_mode values the vendor web manager sends (build.js layeredStorageEncrSet [disk 0 shown]
#: [disk 0 mode][disk 1 encryption]; labels from index.html: "Show regular disk on start", "Regular disk on
#: start: Read-only/Writable", "Storage encryption mode: CTR/XTS").
STORAGE_MODES = {
    'shown_readonly_ctr': 0x51,     # 81
    'shown_readonly_xts': 0xA1,     # 161
    'shown_writable_ctr': 0x53,     # 83
    'shown_writable_xts': 0xA3,     # 163
    'hidden_ctr': 0x50,             # 80
    'hidden_xts': 0xA0,             # 160
}
STORAGE_MODE_NAMES = dict((v, k) for k, v in STORAGE_MODES.items())

#: Sectors of 512 bytes in one GiB: the vendor manager's unit for storage_disk0size (build.js: size in GiB x 2097152).
SECTORS_PER_GIB = 2097152

#: An unsigned 32-bit number: the ctx limit (kept to protect the user, see the ctx row).
UINT32_MAX = 4294967295

PPA = ('ppa',)
BOTH = ('ppa', 'epa')


class Field(object):
    """One field of ``cfg`` (POST /api/auth/init) and/or of POST /api/system/config.

    kind: ``str``, ``email``, ``hostname``, ``ip``, ``bool``, ``int``, ``storage_mode`` or ``key`` (write-only key material),
    the name of its :class:`Kind` in KINDS. slack: how far an int read back may differ and still be the same value;
    below_minimum: the message (with %d) for a value under ``minimum``, when the range alone does not say enough.
    min_length/max_length, minimum/maximum: the limits the modules enforce; ``source`` says where each comes from.
    models: the models that have the field as a setting (PPA = the MSC build).
    write_only: never read back (GET /api/system/config does not report it).
    settable: can be changed after personalisation (POST /api/system/config).
    reboot: a change applies at the next boot.  reformat: a change formats the storage.
    options: the modules with an option of that name (``config``, ``init``).
    init_default / init_required: encedo_init's default and whether it is required (None: sent only when set,
    or for the PPA fields ``ppa_default``).
    ppa_default: what encedo_init sends for a PPA field whose option is unset, also taken as the value of a
    factory-fresh PPA (for the check-mode reboot prediction); ``ppa_default_source`` says where it comes from.
    allowed: what a message says is allowed.
    """

    __slots__ = ('name', 'kind', 'min_length', 'max_length', 'minimum', 'maximum', 'models', 'write_only', 'settable', 'reboot',
                 'reformat', 'options', 'init_default', 'init_required', 'allowed', 'source', 'ppa_default', 'ppa_default_source',
                 'slack', 'below_minimum')

    def __init__(self, name, kind, allowed, source, min_length=None, max_length=None, minimum=None, maximum=None, models=BOTH,
                 write_only=False, settable=True, reboot=False, reformat=False, options=('config', 'init'), init_default=None,
                 init_required=False, ppa_default=None, ppa_default_source=None, slack=0, below_minimum=None):
        self.name = name
        self.kind = kind
        self.allowed = allowed
        self.source = source
        self.min_length = min_length
        self.max_length = max_length
        self.minimum = minimum
        self.maximum = maximum
        self.models = models
        self.write_only = write_only
        self.settable = settable
        self.reboot = reboot
        self.reformat = reformat
        self.options = options
        self.init_default = init_default
        self.init_required = init_required
        self.ppa_default = ppa_default
        self.ppa_default_source = ppa_default_source
        self.slack = slack
        self.below_minimum = below_minimum

    @property
    def kind_of(self):
        """The field's :class:`Kind`: how its values are checked, normalised, compared and sent."""
        return KINDS[self.kind]

    @property
    def option_type(self):
        """The Ansible option type of the field."""
        return self.kind_of.option_type

    def __repr__(self):
        return 'Field(%r)' % self.name


#: Where the PPA defaults come from: the vendor web manager's personalisation (build.js ``initFinal`` and its init
#: form); no source gives the values of a factory-fresh device, taken as the same (as the emulator does).
_MGR_INIT = "web manager build.js initFinal and its init form"

_TEXT = 'printable characters (no tabs, line breaks or other control or invisible characters)'
FIELDS = dict((f.name, f) for f in (
    Field('user', 'str', min_length=1, max_length=32, init_required=True,
          allowed='1 to 32 ' + _TEXT,
          source='OpenAPI POST /api/system/config user maxLength 32; not empty and printable protect the user (an unset '
                 'variable, a copy-and-paste accident; the device shows the label in its pages and login challenges)'),
    Field('email', 'email', max_length=63, init_default='',
          allowed="an e-mail address such as admin@example.com (one @, no blanks) of at most 63 characters, or ''",
          source="web manager index.html e-mail field maxlength 63 and type=email; kept to protect the user (a longer "
                 "value may be refused or stored shortened)"),
    Field('origin', 'str', max_length=63, init_default='*',
          allowed="a CORS allow-list such as '*', 'https://app.example.com' or '*.example.com', at most 63 " + _TEXT
                  + ", or '' (no browser page may call the API)",
          source="web manager settings form maxlength 63; same reason as email"),
    Field('hostname', 'hostname', min_length=1, max_length=253, settable=False, init_required=True,
          allowed='a DNS name such as hem1.example.com: labels of 1 to 63 letters a-z, digits and hyphens (not at the start or '
                  'end of a label) separated by dots, at most 253 characters',
          source='RFC 1035 / RFC 1123; OpenAPI: not settable after personalisation'),
    Field('ip', 'ip', models=PPA, settable=False, reboot=True, ppa_default='192.168.7.1/24',
          ppa_default_source=_MGR_INIT + '; the OpenAPI "Factory-default device IP"',
          allowed='an IPv4 host address with a prefix of 8 to 30, such as 192.168.7.1/24',
          source='OpenAPI "CIDR, e.g. 192.168.7.1/24", on MSC builds only, not settable after personalisation; the prefix '
                 'range and the host-address rule protect the user (a /31 or /32 leaves no address for the computer on the '
                 'USB link)'),
    Field('trusted_ts', 'bool', allowed='a boolean', init_default=True, source='OpenAPI type; the web manager sends true'),
    Field('trusted_backend', 'bool', allowed='a boolean', init_default=False,
          source='OpenAPI type; default false, safer than the web manager'),
    Field('allow_keysearch', 'bool', allowed='a boolean', init_default=False,
          source='OpenAPI type; default false, safer than the web manager'),
    Field('ctx', 'int', minimum=0, maximum=UINT32_MAX, allowed='an integer from 0 to 4294967295',
          source='OpenAPI: an integer, no range; kept within 32 bits to protect the user (a value the device stores '
                 'differently would report a change at every run)'),
    Field('http_option_hsts', 'bool', allowed='a boolean', options=('config',), source='OpenAPI type'),
    Field('http_option_dosprot_mode', 'int', minimum=0, maximum=4, options=('config',),
          allowed='an integer from 0 (off) to 4 (request timeout in 0.5 s steps)', source='OpenAPI minimum 0, maximum 4'),
    Field('dnsd', 'bool', models=PPA, reboot=True, ppa_default=False, ppa_default_source=_MGR_INIT, allowed='a boolean',
          source='OpenAPI type; MSC builds only'),
    # Disk 0 visibility and mode apply "on start" (index.html labels): a reboot. A change of the disk 1 encryption
    # formats the storage (the manager warns so): encedo_config's plan_update treats that part as a reformat.
    Field('storage_mode', 'storage_mode', models=PPA, reboot=True, ppa_default=STORAGE_MODES['shown_readonly_ctr'],
          ppa_default_source=_MGR_INIT + ' (0x51, the first radio buttons)',
          allowed='one of ' + ', '.join('%s (%d, 0x%02X)' % (n, v, v) for n, v in STORAGE_MODES.items()),
          source='the six values of the web manager; the OpenAPI says only "integer"'),
    # A new size is applied by a disk format the device starts at once (OpenAPI: "change triggers a reformat").
    # A device may read back one sector less than was written: the vendor's own sample holds 8388607 where the web
    # manager writes whole GiB (4 x 2097152 = 8388608; it compares rounded GiB itself). A one-sector difference counts
    # as the same size (slack), so that no run reformats the disk for it.
    Field('storage_disk0size', 'int', minimum=0, models=PPA, reformat=True, ppa_default=4 * SECTORS_PER_GIB, slack=1,
          below_minimum='a number of 512-byte sectors cannot be negative, got %d (1 GiB = 2097152)',
          ppa_default_source=_MGR_INIT + ' (slider default 4 GiB)',
          allowed="an integer >= 0 (sectors of 512 bytes, 2097152 per GiB), at most the device's storage capacity",
          source='OpenAPI "change triggers a reformat"; at most storage_capacity (config) or the status slot sum (init)'),
    Field('gen_csr', 'bool', write_only=True, options=('init',), init_default=False, allowed='a boolean',
          source='OpenAPI; encedo_tls posts it to POST /api/system/config'),
    Field('userkey', 'key', write_only=True, options=(), allowed='32 bytes, base64',
          source='OpenAPI; at personalisation, and with userkey_hmac/userkey_nonce to rotate the passphrase (PROTOCOL.md)'),
    Field('masterkey', 'key', write_only=True, settable=False, options=(), allowed='32 bytes, base64',
          source='OpenAPI POST /api/auth/init'),
    Field('tls', 'key', write_only=True, options=(), reboot=True, allowed='crt (and emp, key)',
          source='OpenAPI POST /api/system/config tls; served after a reboot'),
))

#: The fields only the PPA (MSC build) has.
PPA_ONLY = tuple(name for name, f in FIELDS.items() if f.models == PPA)

#: What encedo_init sends for an unset PPA option (each field's ``ppa_default``).
PPA_DEFAULTS = dict((name, FIELDS[name].ppa_default) for name in PPA_ONLY)

#: The personalisation fields whose value, when it differs from a factory-fresh device's, needs a reboot (or a
#: format, which the device runs at its next start): the PPA fields the table marks ``reboot`` or ``reformat``
#: (OpenAPI POST /api/auth/init: "network/storage settings require a reboot").
INIT_REBOOT_FIELDS = tuple(name for name in PPA_ONLY if FIELDS[name].reboot or FIELDS[name].reformat)


def options_of(module):
    """The fields that are options of ``module`` ('config' or 'init'), in table order."""
    return [f for f in FIELDS.values() if module in f.options]


def argument_spec(module):
    """The argument spec entries of the table's options of ``module`` ('config' or 'init')."""
    spec = {}
    for field in options_of(module):
        entry = dict(type=field.option_type)
        if module == 'init':
            if field.init_required:
                entry['required'] = True
            elif field.init_default is not None:
                entry['default'] = field.init_default
        spec[field.name] = entry
    return spec


# ---------------------------------------------------------------------------- the model

#: Keys only an MSC build (PPA) reports in GET /api/system/config.
MSC_CONFIG_MARKERS = ('storage_mode', 'storage_disk0size', 'storage_capacity', 'genuine_id')


def device_model(status=None, version=None, config=None):
    """'ppa' or 'epa': the one place the model is decided.

    From the hardware version (GET /api/system/version ``hwv``, "PPA rev 2.2") when it names the model, else
    from the fields only the PPA's MSC build has: status ``storage``, version ``uis``, or the storage and
    secure-element fields of GET /api/system/config.

    An answer not read is None. None is returned when the answers given do not decide the model: no
    ``hwv`` naming it, no PPA-only field, and neither the configuration nor both status and version read
    (an EPA is told by what its answers lack, so it takes enough of them).
    """
    hwv = str((version or {}).get('hwv', '')).upper()
    if 'PPA' in hwv:
        return 'ppa'
    if 'EPA' in hwv:
        return 'epa'
    if 'storage' in (status or {}) or 'uis' in (version or {}) or any(key in (config or {}) for key in MSC_CONFIG_MARKERS):
        return 'ppa'
    return 'epa' if config is not None or (status is not None and version is not None) else None


# ---------------------------------------------------------------------------- validation

CHAR_NAMES = {'\t': 'a tab', '\n': 'a line break', '\r': 'a carriage return', ' ': 'a space', '\x00': 'a NUL'}


def describe_char(char):
    """How a message names one character: 'a tab (U+0009)', "'_'", 'the control character U+001B'."""
    if char in CHAR_NAMES:
        return '%s (U+%04X)' % (CHAR_NAMES[char], ord(char))
    if char.isprintable():
        return repr(char)
    return 'the invisible or control character U+%04X' % ord(char) if ord(char) >= 0x80 else 'the control character U+%04X' % ord(char)


class FieldError(ValueError):
    """A value the table refuses; the text names the option, the problem and what is allowed."""


_EMAIL_RE = re.compile(r'^[^@\s]+@[^@\s]+$')


def _span(field):
    if field.min_length:
        return '%d to %d' % (field.min_length, field.max_length)
    return 'at most %d' % field.max_length


def _text(field, value, why):
    """Lengths, then no control or invisible character (a space is fine)."""
    name = field.name
    if field.min_length and not value:
        raise FieldError('option %s: must be %s characters (%s), got an empty string' % (name, _span(field), why))
    if len(value) > field.max_length:
        raise FieldError('option %s: must be %s characters (%s), got %d characters' % (name, _span(field), why, len(value)))
    for position, char in enumerate(value, 1):
        if not char.isprintable():
            raise FieldError('option %s: character %d is %s; allowed: %s' % (name, position, describe_char(char), field.allowed))


_WHY = {
    'user': 'at most 32 per the OpenAPI file; empty is refused as a likely unset variable',
    'email': "the limit of the web manager's e-mail field",
    'origin': "the limit of the web manager's origin field",
}


def _hostname(value):
    if not value:
        raise FieldError('option hostname: must not be empty; give a DNS name such as my.ence.do')
    if len(value) > 253:
        raise FieldError('option hostname: a DNS name has at most 253 characters, got %d' % len(value))
    for position, char in enumerate(value, 1):
        if not (char.isascii() and (char.isalnum() or char in '-.')):
            raise FieldError('option hostname: character %d is %s; allowed: letters a-z, digits, hyphens and dots (a DNS name '
                             'such as hem1.example.com)' % (position, describe_char(char)))
    for number, label in enumerate(value.split('.'), 1):
        if not label:
            raise FieldError('option hostname: label %d is empty (a dot at the start or the end, or two dots in a row); '
                             'write it as labels separated by single dots, such as hem1.example.com' % number)
        if len(label) > 63:
            raise FieldError('option hostname: label %d has %d characters; a DNS label has at most 63' % (number, len(label)))
        if label.startswith('-') or label.endswith('-'):
            raise FieldError('option hostname: label %d starts or ends with a hyphen, which a DNS name does not allow' % number)
    return value


def canonical_cidr(value):
    """The canonical form of an IPv4 host address with a prefix of 8 to 30. Raises FieldError."""
    if '/' not in value:
        raise FieldError('option ip: %r needs a prefix length, for example 192.168.7.1/24' % value)
    try:
        iface = ipaddress.IPv4Interface(value)
    except ValueError as exc:
        raise FieldError('option ip: %r is not an IPv4 address with a prefix, such as 192.168.7.1/24 (%s)' % (value, exc))
    if not 8 <= iface.network.prefixlen <= 30:
        raise FieldError('option ip: the prefix length must be 8 to 30, got %d (a /31 or /32 network leaves no address for '
                         'the computer on the USB link; under /8 it would cover other networks)' % iface.network.prefixlen)
    if iface.ip in (iface.network.network_address, iface.network.broadcast_address):
        raise FieldError('option ip: %s is the %s address of %s, not a host address; give one such as %s/%d'
                         % (iface.ip, 'network' if iface.ip == iface.network.network_address else 'broadcast',
                            iface.network, iface.network.network_address + 1, iface.network.prefixlen))
    return str(iface)


def storage_mode_value(value, option='storage_mode'):
    """The number of a storage_mode given by name or number (decimal or 0x-hex), one of STORAGE_MODES.

    Raises FieldError naming ``option`` and listing the allowed values: the firmware's type is an integer,
    but only these six values are documented (by the web manager); what another would do is unknown.
    """
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if text in STORAGE_MODES:
            return STORAGE_MODES[text]
        for base in (0, 10):
            try:
                number = int(text, base)
                break
            except ValueError:
                pass
    if number not in STORAGE_MODE_NAMES:
        raise FieldError('option %s: %r is not one of the storage modes the Encedo web manager sets: %s. Other values are '
                         'refused because their meaning is not documented'
                         % (option, value, ', '.join('%s (%d, 0x%02X)' % (n, v, v) for n, v in STORAGE_MODES.items())))
    return number


class Invalid(ValueError):
    """A value that does not convert to the field's type; its text says what is wrong with it."""


_TRUE = frozenset(('1', 'true', 'yes', 'on', 'y', 't'))
_FALSE = frozenset(('0', 'false', 'no', 'off', 'n', 'f'))
_INT_RE = re.compile(r'^\s*[+-]?\d+\s*$')


def to_bool(value):
    """yes/"true"/True/1/"on" -> True, their opposites -> False; anything else raises Invalid."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, float) and value in (0.0, 1.0):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise Invalid('is %r, not a boolean' % (value,))


def to_int(value):
    """2, "2", " 2 ", 2.0 -> 2; booleans and anything else raise Invalid."""
    if isinstance(value, bool):
        raise Invalid('is a boolean (%r), not an integer' % (value,))
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT_RE.match(value):
        return int(value)
    raise Invalid('is %r, not an integer' % (value,))


def to_str(value):
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict, tuple, set)):
        raise Invalid('is %r, not a string' % (value,))
    return value if isinstance(value, str) else str(value)


class Kind(object):
    """One kind of field: the one place that says how its values are checked (:meth:`check`, the value to send or
    FieldError naming the option and what is allowed), normalised (:meth:`normalise`, the canonical form of a value as
    the device would store it, or Invalid), compared (:meth:`same`) and sent (:meth:`wire`)."""

    option_type = 'str'
    #: encedo_config reads the spellings Ansible's own types accept ("yes", " 2 ") before the check.
    spellings = False

    def check(self, field, value, module):
        return value

    def normalise(self, value):
        return to_str(value)

    def same(self, field, desired, current):
        return desired == current

    def wire(self, value):
        return value


class Text(Kind):
    spellings = True

    def check(self, field, value, module):
        _text(field, value, _WHY[field.name])
        return value


class Email(Text):
    def check(self, field, value, module):
        Text.check(self, field, value, module)
        if value and ' ' in value:
            raise FieldError('option email: character %d is a space (U+0020); an e-mail address has none' % (value.index(' ') + 1))
        if value and not _EMAIL_RE.match(value):
            raise FieldError('option email: %r is not an e-mail address of the form name@domain (the web manager checks '
                             'the same form)' % value)
        return value


class Hostname(Kind):
    """encedo_config compares a hostname ignoring case and one trailing dot (the DNS root); it is never sent then."""

    def check(self, field, value, module):
        if module == 'config':
            return _hostname(value[:-1] if value.endswith('.') else value).lower()
        return _hostname(value)

    def normalise(self, value):
        return to_str(value).strip().lower().rstrip('.')


class Ip(Kind):
    """encedo_config takes an address without a prefix to compare the address only (it is never sent then)."""

    def check(self, field, value, module):
        if module == 'config' and '/' not in value:
            try:
                return str(ipaddress.IPv4Address(value))
            except ValueError:
                raise FieldError('option ip: %r is not an IPv4 address (with an optional prefix, such as 192.168.7.1/24)' % value)
        canonical = canonical_cidr(value)
        if module == 'init' and canonical != value:
            raise FieldError('option ip: write %r as %r' % (value, canonical))
        return canonical

    def normalise(self, value):
        text = to_str(value).strip()
        try:
            if '/' in text:
                return ipaddress.ip_interface(text)
            return ipaddress.ip_address(text)
        except ValueError:
            raise Invalid('is %r, not an IP address (with an optional /prefix)' % (text,))

    def same(self, field, desired, current):
        interfaces = (ipaddress.IPv4Interface, ipaddress.IPv6Interface)
        if not isinstance(desired, interfaces) and isinstance(current, interfaces):
            return current.ip == desired        # a bare address leaves the prefix length alone
        return desired == current

    def wire(self, value):
        return str(value)


class Bool(Kind):
    option_type = 'bool'
    spellings = True

    def normalise(self, value):
        return to_bool(value)


class Int(Kind):
    option_type = 'int'
    spellings = True

    def check(self, field, value, module):
        if field.below_minimum and field.minimum is not None and value < field.minimum:
            raise FieldError('option %s: %s' % (field.name, field.below_minimum % value))
        if field.minimum is not None and field.maximum is not None and not field.minimum <= value <= field.maximum:
            raise FieldError('option %s: must be %s, got %d' % (field.name, field.allowed.replace('an integer from ', ''), value))
        return value

    def normalise(self, value):
        return to_int(value)

    def same(self, field, desired, current):
        if isinstance(desired, int) and isinstance(current, int):
            return abs(desired - current) <= field.slack
        return desired == current


class StorageMode(Kind):
    option_type = 'raw'

    def check(self, field, value, module):
        return storage_mode_value(value, field.name)

    def normalise(self, value):
        try:
            return storage_mode_value(value)
        except ValueError:
            raise Invalid("is %r, not a storage mode name or number the vendor's clients use" % (value,))


KINDS = {'str': Text(), 'email': Email(), 'hostname': Hostname(), 'ip': Ip(), 'bool': Bool(), 'int': Int(),
         'storage_mode': StorageMode(), 'key': Kind()}


def check(name, value, module='init'):
    """The value to send for option ``name`` of ``module`` ('config' or 'init'), or FieldError (the field kind's rules,
    the same for both modules; the only differences are comparisons, see Hostname and Ip)."""
    field = FIELDS[name]
    return field.kind_of.check(field, value, module)


def check_all(params, module):
    """Check every table option of ``module`` that is set in ``params``; -> name -> value to send.

    Raises FieldError listing every bad option (one per line of the message, joined with '; ').
    """
    values, problems = {}, []
    for field in options_of(module):
        value = params.get(field.name)
        if value is None:
            continue
        try:
            values[field.name] = check(field.name, value, module)
        except FieldError as exc:
            problems.append(str(exc))
    if problems:
        raise FieldError('; '.join(problems))
    return values
