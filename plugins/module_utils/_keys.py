# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils file is PRIVATE to the encedo.hem collection: its API may change
# at any time without notice. Do not use it from other collections.

"""The key repository (``/api/keymgmt/*``): encedo_key, encedo_key_info, and ``ensure_keys`` for encedo_device.

A key is found by its ``kid``, else (import) by the kid its public key gives (SHA-1 of the raw public
key cut to 16 bytes), else by label and type. It is created or imported only when absent; its label and
description are updated in place; its type never changes; several keys under one label, or another
type, fail and name their kids. Keys the device and its paired phones and apps own are never touched:
the TLS key and certificate (``*_DER`` records), keys of paired phones (``ATT`` flag, descriptions
starting with ``EXTAID``) and of apps (descriptions holding ``ETSFTX``), as encedo-manager classifies them.

The device grants one scope per token (``keymgmt:list``, ``keymgmt:get``, ``keymgmt:gen``, ``keymgmt:upd``,
``keymgmt:imp``, ``keymgmt:del``): :class:`Scopes` logs in once per scope a run needs and keeps the tokens
for the whole run (the PBKDF2 key is derived once). A key run costs: the list login, the pages (15 keys
each), and one login for each further scope used: ``keymgmt:get`` (the public key of a key found),
``keymgmt:gen`` (create, and then the public key), ``keymgmt:upd``, ``keymgmt:imp``, ``keymgmt:del``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from ansible_collections.encedo.hem.plugins.module_utils._engine import Plan, Resource, converge
from ansible_collections.encedo.hem.plugins.module_utils._errors import HemError
from ansible_collections.encedo.hem.plugins.module_utils._login import b64, jwt_claims

PAGE = 15
LIST = '/api/keymgmt/list'
LABEL_MAX = 32
DESCR_MAX = 64
KID_RE = re.compile(r'^[0-9a-fA-F]{32}$')
MODES = {'ECDH': ('ECDH',), 'ExDSA': ('ExDSA',), 'ECDH,ExDSA': ('ECDH', 'ExDSA')}
#: type -> (kind, raw public key length or None); SECP* public keys are compressed X9.63 points.
EC_TYPES = {'SECP256R1': 'secp256r1', 'SECP384R1': 'secp384r1', 'SECP521R1': 'secp521r1', 'SECP256K1': 'secp256k1'}
RAW_TYPES = {'ED25519': ('ed25519', 32), 'ED448': ('ed448', 57), 'CURVE25519': ('x25519', 32), 'CURVE448': ('x448', 56)}
PQC_TYPES = {'MLKEM512': 800, 'MLKEM768': 1184, 'MLKEM1024': 1568, 'MLDSA44': 1312, 'MLDSA65': 1952, 'MLDSA87': 2592}
SECRET_TYPES = ('AES128', 'AES192', 'AES256', 'SHA2-256', 'SHA2-384', 'SHA2-512', 'SHA3-256', 'SHA3-384', 'SHA3-512')
IMPORT_TYPES = tuple(EC_TYPES) + tuple(RAW_TYPES) + tuple(PQC_TYPES)
KEY_TYPES = IMPORT_TYPES + SECRET_TYPES
#: Description markers of keys the device's pairing owns (encedo-manager assets/core2.js).
PAIRED_MARK = b'EXTAID'
APP_MARK = b'ETSFTX'


def _fail(name, problem):
    raise HemError('option %s: %s. Nothing was sent to the device.' % (name, problem), result=dict(changed=False))


def _b64decode(text):
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        return None


# ------------------------------------------------------------------ public keys

def _curve(ktype):
    from cryptography.hazmat.primitives.asymmetric import ec
    return getattr(ec, EC_TYPES[ktype].upper())()


def device_public_key(ktype, text, name='public_key'):
    """The public key ``text`` (PEM, or base64 of the device's raw form) as the raw bytes the device imports."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    text = text.strip()
    if text.startswith('-----BEGIN'):
        try:
            key = serialization.load_pem_public_key(text.encode('ascii'))
        except (ValueError, TypeError, UnicodeEncodeError) as exc:
            _fail(name, 'not a PEM public key (%s)' % exc)
        if ktype in EC_TYPES:
            if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != EC_TYPES[ktype]:
                _fail(name, 'the PEM key is not a %s key (type %s)' % (EC_TYPES[ktype], ktype))
            return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
        if ktype in RAW_TYPES and type(key).__name__.lower().startswith(RAW_TYPES[ktype][0]):
            return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        if ktype in PQC_TYPES and hasattr(key, 'public_bytes_raw') and len(key.public_bytes_raw()) == PQC_TYPES[ktype]:
            return key.public_bytes_raw()
        _fail(name, 'the PEM key (%s) is not a %s key' % (type(key).__name__.lstrip('_'), ktype))
    raw = _b64decode(text)
    if raw is None:
        _fail(name, 'neither PEM (-----BEGIN PUBLIC KEY-----) nor base64')
    if ktype in EC_TYPES:
        try:
            point = ec.EllipticCurvePublicKey.from_encoded_point(_curve(ktype), raw)
        except ValueError:
            _fail(name, 'not a %s point (compressed or uncompressed X9.63, base64)' % EC_TYPES[ktype])
        return point.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    size = RAW_TYPES[ktype][1] if ktype in RAW_TYPES else PQC_TYPES[ktype]
    if len(raw) != size:
        _fail(name, 'a raw %s public key is %d bytes, got %d' % (ktype, size, len(raw)))
    return raw


def import_kid(raw):
    """The kid the device gives an imported public key."""
    return hashlib.sha1(raw).hexdigest()[:32]


def shown_public_key(ktype, raw):
    """(public key as PEM where the type has one, else base64; its format), (None, None) without one."""
    if raw is None:
        return None, None
    if ktype not in EC_TYPES and ktype not in RAW_TYPES:
        return b64(raw), 'base64'
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, x448, x25519
    try:
        if ktype in EC_TYPES:
            key = ec.EllipticCurvePublicKey.from_encoded_point(_curve(ktype), raw)
        else:
            cls = {'ed25519': ed25519.Ed25519PublicKey, 'ed448': ed448.Ed448PublicKey, 'x25519': x25519.X25519PublicKey,
                   'x448': x448.X448PublicKey}[RAW_TYPES[ktype][0]]
            key = cls.from_public_bytes(raw)
    except ValueError:
        return b64(raw), 'base64'
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem.decode('ascii'), 'pem'


# ------------------------------------------------------------------ the device's records

def owner(entry):
    """Who a listed record belongs to: ``device`` (TLS key and certificate), ``phone``, ``app`` or ``user``."""
    flags = entry['type'].split(',')
    descr = entry.get('descr_raw') or b''
    if any(flag.endswith('_DER') for flag in flags):
        return 'device'
    if APP_MARK in descr:
        return 'app'
    if 'ATT' in flags or descr.startswith(PAIRED_MARK):
        return 'phone'
    return 'user'


def entry(item):
    """A list entry as the modules read it: ``algorithm`` (last part of ``type``), ``flags``, ``descr`` as text."""
    kind = str(item.get('type') or '')
    parts = kind.split(',')
    descr_raw = _b64decode(item.get('descr') or '') or b''
    out = dict(kid=str(item.get('kid', '')).lower(), label=item.get('label'), type=parts[-1], flags=parts[:-1],
               created=item.get('created'), updated=item.get('updated'),
               descr=descr_raw.decode('utf-8', 'backslashreplace'))
    out['owner'] = owner(dict(type=kind, descr_raw=descr_raw))
    return out


def list_keys(client):
    """Every key of the repository, page after page until ``offset`` reaches ``total`` (not ``listed``)."""
    keys, offset, total = [], 0, None
    while total is None or offset < total:
        page = client.get('%s/%d/%d' % (LIST, offset, PAGE))
        items = page.get('list') if isinstance(page, dict) else None
        total = page.get('total') if isinstance(page, dict) else None
        if not isinstance(items, list) or not isinstance(total, int):
            raise HemError('the device answered a key list without list and total', 'GET %s/%d/%d' % (LIST, offset, PAGE))
        if not items and offset < total:
            raise HemError('the device listed %d of its %d keys and then an empty page: the repository changed while it was '
                           'read (another writer?); run the task again' % (offset, total), 'GET %s/%d/%d' % (LIST, offset, PAGE))
        keys.extend(entry(item) for item in items if isinstance(item, dict))
        offset += len(items)
    return keys


class Scopes(object):
    """One token per scope for the whole run, on one client (its PBKDF2 key derived once).

    ``on(scope)`` -> the client, logged in for ``scope`` at its next request (or with the token already held).
    A ``token`` given by the user serves the scopes it covers (the device matches scopes by prefix); without a
    passphrase, a scope it does not cover fails before anything is sent for it.
    """

    def __init__(self, client):
        self.client = client
        self.saved = (client.scope, client.token)
        self.given = client.token
        self.given_scope = jwt_claims(client.token).get('scope') if client.token else None
        self.tokens = {}
        self.current = None

    def on(self, scope):
        client = self.client
        if self.current is not None:
            self.tokens[self.current] = client.token
        token = self.tokens.get(scope)
        if token is None and self.given and isinstance(self.given_scope, str) and self.given_scope.startswith(scope):
            token = self.given
        if token is None and not client.passphrase:
            raise HemError('this needs a token with the scope %s (the device grants one scope per token), but %s. Give '
                           'passphrase: the module then logs in once for each scope the run needs (keymgmt:list to find keys, '
                           'keymgmt:get or keymgmt:gen for public keys, keymgmt:gen, keymgmt:upd, keymgmt:imp or keymgmt:del '
                           'to change them)' % (scope, 'the token given has the scope %s' % self.given_scope if self.given
                                                else 'no token was given'), result=dict(changed=False))
        client.scope, client.token, self.current = scope, token, scope
        return client

    def close(self):
        """Give the client back its scope and token (the given token's replacement, if the device refused it)."""
        client = self.client
        if self.current is not None:
            self.tokens[self.current] = client.token
        client.scope, client.token = self.saved
        replaced = self.tokens.get(self.given_scope) if self.given else None
        if replaced:
            client.token = replaced
        self.current = None

    def get_scope(self):
        """The scope for reading a public key: ``keymgmt:gen`` when held already (it covers get), else ``keymgmt:get``."""
        held = set(self.tokens) | set([self.current])
        return 'keymgmt:gen' if 'keymgmt:gen' in held else 'keymgmt:get'


def public_key(scopes, key):
    """(public key shown, its format) of a listed key: one GET; none for secret keys."""
    if key['type'] in SECRET_TYPES or key['owner'] == 'device':
        return None, None
    answer = scopes.on(scopes.get_scope()).get('/api/keymgmt/get/%s' % key['kid'])
    raw = _b64decode(answer.get('pubkey') or '') if isinstance(answer, dict) else None
    return shown_public_key(key['type'], raw or None)


# ------------------------------------------------------------------ desired state

def _text(value, name, limit, printable):
    if not isinstance(value, str):
        _fail(name, 'must be a string')
    data = value.encode('utf-8')
    if printable and not (1 <= len(value) <= limit and all(' ' <= c <= '~' for c in value)):
        _fail(name, '%r must be 1 to %d printable ASCII characters' % (value, limit))
    if len(data) > limit:
        _fail(name, 'is %d bytes in UTF-8; the device keeps at most %d' % (len(data), limit))
    return data


def desired(params, prefix=''):
    """encedo_key's options checked before any request; -> the want dict (``descr`` as bytes, ``raw`` public key)."""
    def name(option):
        return prefix + option

    state = params.get('state') or 'present'
    if state not in ('present', 'absent'):
        _fail(name('state'), 'must be present or absent, got %r' % state)
    want = dict(state=state, kid=None, label=params.get('label'), type=params.get('type'), mode=params.get('mode'),
                descr=None, raw=None)
    if want['type'] is not None and want['type'] not in KEY_TYPES:
        _fail(name('type'), '%r is not a key type; allowed: %s' % (want['type'], ', '.join(KEY_TYPES)))
    if params.get('kid') is not None:
        if not KID_RE.match(str(params['kid'])):
            _fail(name('kid'), '%r is not a key id (32 hexadecimal digits)' % params['kid'])
        want['kid'] = params['kid'].lower()
    if want['label'] is not None:
        _text(want['label'], name('label'), LABEL_MAX, True)
    if params.get('descr') is not None:
        want['descr'] = _text(params['descr'], name('descr'), DESCR_MAX, False)
        if want['descr'].startswith(PAIRED_MARK) or APP_MARK in want['descr']:
            _fail(name('descr'), 'descriptions starting with EXTAID or holding ETSFTX mark the keys of paired phones and apps')
    if want['mode'] is not None:
        if want['mode'] not in MODES:
            _fail(name('mode'), '%r is not a mode; allowed: %s' % (want['mode'], ', '.join(MODES)))
        if want['type'] not in EC_TYPES:
            _fail(name('mode'), 'applies to the SECP* types only (type %s)' % want['type'])
    if params.get('public_key') is not None:
        if want['type'] not in IMPORT_TYPES:
            _fail(name('type'), 'importing public_key needs the type of the key, one of %s' % ', '.join(IMPORT_TYPES))
        want['raw'] = device_public_key(want['type'], params['public_key'], name('public_key'))
        if want['kid'] is not None and want['kid'] != import_kid(want['raw']):
            _fail(name('kid'), '%s is not the kid of public_key (%s)' % (want['kid'], import_kid(want['raw'])))
        want['kid'] = import_kid(want['raw'])
    if state == 'present' and want['kid'] is None:
        for option in ('label', 'type'):
            if want[option] is None:
                _fail(name(option), 'required to find or create a key (or give kid of an existing key)')
    if state == 'absent' and want['kid'] is None and want['label'] is None:
        _fail(name('label'), 'state=absent needs kid, public_key or label to name the one key to delete')
    if want['raw'] is not None and want['label'] is None:
        _fail(name('label'), 'required to import public_key')
    return want


# ------------------------------------------------------------------ the resource

def _kids(keys):
    return ', '.join('%s (%s, %s)' % (k['kid'], k['type'], k['owner'] if k['owner'] != 'user' else 'label %s' % k['label'])
                     for k in keys)


def _not_ours(key):
    what = {'device': "the device's TLS key or certificate", 'phone': 'the key of a paired phone', 'app': 'the key of a paired app'}
    raise HemError('key %s (label %r) is %s: encedo.hem never changes or deletes it; choose another label or kid. Nothing was '
                   'sent to the device.' % (key['kid'], key['label'], what[key['owner']]), result=dict(changed=False))


def find(keys, want):
    """The one key ``want`` names (None when absent); raises when it is not ours, ambiguous or of another type."""
    if want['kid'] is not None:
        found = [k for k in keys if k['kid'] == want['kid']]
        if found and found[0]['owner'] != 'user':
            _not_ours(found[0])
        if found or want['raw'] is None:
            return _check_type(found[0], want) if found else None
    same = [k for k in keys if want['label'] is not None and k['label'] == want['label']]
    theirs = [k for k in same if k['owner'] != 'user']
    if theirs:
        _not_ours(theirs[0])
    if want['raw'] is not None and same:
        raise HemError('label %r is held by %s; importing public_key (kid %s) would give it a second key. Delete it or choose '
                       'another label. Nothing was sent to the device.' % (want['label'], _kids(same), want['kid']),
                       result=dict(changed=False))
    if len(same) > 1:
        raise HemError('label %r names %d keys: %s. Give kid to choose one. Nothing was sent to the device.'
                       % (want['label'], len(same), _kids(same)), result=dict(changed=False))
    return _check_type(same[0], want) if same else None


def _check_type(key, want):
    if want['type'] is not None and key['type'] != want['type']:
        raise HemError('key %s (label %r) is of type %s, not %s: a key type never changes in place. Delete it first '
                       '(state=absent with kid %s) or choose another label. Nothing was sent to the device.'
                       % (key['kid'], key['label'], key['type'], want['type'], key['kid']), result=dict(changed=False))
    flags = tuple(f for f in key['flags'] if f in ('ECDH', 'ExDSA'))
    if want['mode'] is not None and flags != MODES[want['mode']]:
        raise HemError('key %s (label %r) has the mode %s, not %s: a key mode never changes in place. Delete it first or choose '
                       'another label. Nothing was sent to the device.' % (key['kid'], key['label'], ','.join(flags) or 'none',
                                                                           want['mode']), result=dict(changed=False))
    return key


def _fields(key):
    """The fields a task declares, as read from a listed key."""
    return dict(state='present', label=key['label'], type=key['type'], descr=key['descr'])


class KeyResource(Resource):
    """One key of the repository (encedo_key, and each key of encedo_device's list)."""

    name = 'key'

    def __init__(self, scopes):
        self.scopes = scopes
        self.key = None         # the key found (or made) on the device
        self.kid = None

    def read(self, client):
        return list_keys(self.scopes.on('keymgmt:list'))

    def plan(self, current, want):
        self.want = want
        self.key = find(current, want)
        self.kid = self.key['kid'] if self.key else want['kid']
        if want['state'] == 'absent':
            if self.key is None:
                return Plan()
            return Plan(dict(state='present', label=self.key['label'], type=self.key['type']), dict(state='absent'), body={},
                        sent=[], action='delete', scope='keymgmt:del')
        descr = want['descr'].decode('utf-8') if want['descr'] is not None else None
        if self.key is None:
            if want['kid'] is not None and want['raw'] is None:
                raise HemError('no key with kid %s on the device; a new key gets its kid from the device, so give label and '
                               'type (without kid) to create one. Nothing was sent to the device.' % want['kid'],
                               result=dict(changed=False))
            after = dict(state='present', label=want['label'], type=want['type'], descr=descr or '')
            body = dict(label=want['label'], type=want['type'])
            if want['mode'] is not None:
                body['mode'] = want['mode']
            if want['descr']:
                body['descr'] = b64(want['descr'])
            if want['raw'] is not None:
                body['pubkey'] = b64(want['raw'])
                return Plan(dict(state='absent'), after, body=body, action='import', scope='keymgmt:imp')
            return Plan(dict(state='absent'), after, body=body, action='create', scope='keymgmt:gen')
        have = _fields(self.key)
        after = dict((n, v) for n, v in (('label', want['label']), ('descr', descr)) if v is not None and v != have[n])
        if not after:
            return Plan()
        taken = [k for k in current if 'label' in after and k['label'] == after['label'] and k['kid'] != self.key['kid']]
        if taken:
            raise HemError('label %r is held by %s: renaming key %s to it would give the label a second key. Nothing was sent '
                           'to the device.' % (after['label'], _kids(taken), self.key['kid']), result=dict(changed=False))
        body = dict(kid=self.key['kid'], label=after.get('label', self.key['label']))
        if 'descr' in after:
            body['descr'] = b64(want['descr'])
        return Plan(dict((n, have[n]) for n in after), after, body=body, action='update', scope='keymgmt:upd')

    def write(self, client, plan, current):
        action = plan.extra['action']
        client = self.scopes.on(plan.extra['scope'])
        if action == 'delete':
            return client.delete('/api/keymgmt/delete/%s' % self.kid)
        answer = client.post('/api/keymgmt/%s' % action, plan.body)
        if action in ('create', 'import') and isinstance(answer, dict) and isinstance(answer.get('kid'), str):
            self.kid = answer['kid'].lower()
        return answer

    def outcome_unknown(self, exc, plan, now, want):
        found = [k for k in now if k['label'] == want['label']] if want['label'] is not None else []
        listed = _kids(found) or 'no key with this label'
        return HemError('outcome unknown: the %s of key %s was sent but its answer was lost (%s); the device now lists %s. Run '
                        'the task again: it finds the key by %s.'
                        % (plan.extra['action'], self.kid or want['label'], exc.msg, listed, 'kid' if want['kid'] else 'label and type'),
                        exc.endpoint, result=dict(changed=True, sent=plan.sent))

    def _now(self, keys):
        return next((k for k in keys if k['kid'] == self.kid), None)

    def values(self, current):
        key = self._now(current)
        return _fields(key) if key else dict(state='absent')

    def predict(self, current, plan):
        """The list as it would be after ``plan`` (check mode); a created key is not in it (its kid is the device's)."""
        action = plan.extra['action']
        if action == 'delete':
            return [k for k in current if k['kid'] != self.kid]
        if action == 'update':
            return [dict(k, **plan.after) if k['kid'] == self.kid else k for k in current]
        if action == 'import':
            made = dict(kid=self.kid, label=self.want['label'], type=self.want['type'], descr=plan.after['descr'], flags=None,
                        created=None, updated=None, owner='user')
            return current + [made]
        return current

    def shown(self, current):
        """The key as the device holds it (with its public key), None when absent (or, in check mode, not made yet)."""
        key = self._now(current) if current is not None else None
        if key is None:
            return None
        shown = dict(key)
        if self.want.get('raw') is not None and key['kid'] == self.want['kid']:
            shown['public_key'], shown['public_key_format'] = shown_public_key(key['type'], self.want['raw'])
        else:
            shown['public_key'], shown['public_key_format'] = public_key(self.scopes, key)
        return shown


def _result(result, want, resource):
    key = result.get('key')
    if key is None and want['state'] == 'present' and resource.key is None:   # check mode: to be made
        key = dict(kid=want['kid'], label=want['label'], type=want['type'], public_key=None, public_key_format=None)
    result['kid'] = key['kid'] if key else (resource.kid if want['state'] == 'absent' and result['changed'] else None)
    result['type'] = key['type'] if key else (resource.key['type'] if resource.key else None)
    result['public_key'] = key.get('public_key') if key else None
    result['key'] = key
    result['state'] = want['state']
    if want['state'] == 'absent':
        result['deleted'] = dict(kid=resource.key['kid'], label=resource.key['label'], type=resource.key['type']) \
            if result['changed'] else None
    return result


def require_https(url, name='url'):
    if not str(url).lower().startswith('https://'):
        raise HemError('option %s: the key repository (/api/keymgmt/*) answers over HTTPS only; %s is not https://. '
                       'Nothing was sent to the device.' % (name, url), result=dict(changed=False))


def ensure_key(module, client, want=None, scopes=None, current=None):
    """One key to ``want`` (default: encedo_key's options); -> the result (changed, sent, diff, kid, type, public_key, key)."""
    want = desired(module.params) if want is None else want
    own = scopes is None
    scopes = Scopes(client) if own else scopes
    try:
        resource = KeyResource(scopes)
        return _result(converge(module, client, resource, want, current=current), want, resource)
    finally:
        if own:
            scopes.close()


def check_keys(url, keys, option='keys'):
    """encedo_device's key step checked before any request: ``keys`` (dicts of encedo_key's options) -> the wants.

    An error names ``<option>[i].<field>``; a ``url`` that is not https:// is refused (the key repository is HTTPS-only).
    """
    require_https(url)
    if not isinstance(keys, list) or not all(isinstance(key, dict) for key in keys):
        _fail(option, 'must be a list of dicts with the options of encedo.hem.encedo_key')
    allowed = ('label', 'type', 'mode', 'descr', 'public_key', 'kid', 'state')
    for i, key in enumerate(keys):
        unknown = sorted(set(key) - set(allowed))
        if unknown:
            _fail('%s[%d]' % (option, i), 'unsupported field %s; allowed: %s' % (', '.join(unknown), ', '.join(allowed)))
    return [desired(dict(key), '%s[%d].' % (option, i)) for i, key in enumerate(keys)]


def ensure_keys(module, client, keys, option='keys', wants=None):
    """encedo_device's key step: every key of ``keys`` (dicts of encedo_key's options) to its state; -> [result, ...].

    ``wants``: what :func:`check_keys` returned for ``keys`` (called here when not given). The repository is listed
    once, and again only after a change; the logins are shared (one per scope) and the client gets its own scope and
    token back at the end. Each result is encedo_key's (changed, sent, diff with ``--diff``, kid, type, public_key,
    key, state, deleted); the first error raises (HemError), the keys before it stay done.
    """
    wants = check_keys(module.params['url'], keys, option) if wants is None else wants
    scopes = Scopes(client)
    results, current = [], None
    try:
        for want in wants:
            current = list_keys(scopes.on('keymgmt:list')) if current is None else current
            result = ensure_key(module, client, want, scopes, current)
            results.append(result)
            if result['changed'] and not module.check_mode:
                current = None
    finally:
        scopes.close()
    return results


# ------------------------------------------------------------------ encedo_key_info

def check_info(params):
    """encedo_key_info's options, checked before the client is made (so before any request)."""
    require_https(params['url'])
    if params['type'] is not None and params['type'] not in KEY_TYPES:
        _fail('type', '%r is not a key type; allowed: %s' % (params['type'], ', '.join(KEY_TYPES)))


def key_info(module, client):
    """encedo_key_info: every key (all pages), filtered; public keys on request."""
    p = module.params
    check_info(p)
    scopes = Scopes(client)
    try:
        keys = list_keys(scopes.on('keymgmt:list'))
        total = len(keys)
        keys = [k for k in keys if (p['label'] is None or k['label'] == p['label']) and (p['type'] is None or k['type'] == p['type'])
                and (p['descr'] is None or p['descr'] in k['descr'])]
        if p['public_keys']:
            for key in keys:
                key['public_key'], key['public_key_format'] = public_key(scopes, key)
    finally:
        scopes.close()
    return dict(changed=False, key_list=keys, total=total, matched=len(keys))
