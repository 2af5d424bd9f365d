# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils file is PRIVATE to the encedo.hem collection: its API may change
# at any time without notice. Do not use it from other collections.

"""The audit log of a device (``/api/logger/*``, scope ``logger:get``) as a :class:`Resource`.

The "resource" is the directory ``dest`` on the host that runs the module: the device's closed log
files that are not there yet are fetched (streamed to disk), verified, and kept (``<id>.log``) or put
apart (``quarantine/<id>.log``). ``encedo-hem-audit.json`` in ``dest`` records the logger key seen at
the first fetch and, per file, the outcome and its event counts, so a file is never fetched twice.

A log file is verified as the vendor's web manager does (encedo-manager ``check_log_integrity``):
lines ``counter|time|type|result|subject|data|mac``; a seed line (type 0, result 0) holds the line key
(subject) and its Ed25519 signature by the logger key (data); every line's mac is the first 16 bytes of
HMAC-SHA256 keyed with the line key over the line up to its last ``|``; counters go up by one (here a
repeated counter fails too). The logger key is the one ``GET /api/logger/key`` serves, and the device
proves it holds it by signing a nonce of its own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re

from ansible_collections.encedo.hem.plugins.module_utils._engine import Plan, Resource
from ansible_collections.encedo.hem.plugins.module_utils._errors import HemError

SCOPE = 'logger:get'
STATE_FILE = 'encedo-hem-audit.json'
QUARANTINE = 'quarantine'
LIST_PATH = '/api/logger/list'
KEY_PATH = '/api/logger/key'
FILE_ID = re.compile(r'^[0-9a-f]{8}$')

#: Event type -> name, in the order of the vendor manager's ``logger_types`` (None: unused numbers).
EVENT_NAMES = (
    'seed', 'power_up', 'reboot', 'shutdown', 'firmware_upgraded', 'entropy_test_failed', 'tls_error', 'selftest_passed',
    'not_secure', 'logs_listed', 'log_deleted', 'log_read', 'scope_check_failed', 'token_password', 'token_mobile',
    'mobile_paired', None, None, 'config_updated', 'clock_set', 'key_generated', 'key_deleted', 'key_imported', 'key_token',
    'key_integrity_failed', 'key_attributes_changed', 'key_derived', None, None, 'personalised', 'hash', 'hash_verify',
    'exdsa_sign', 'exdsa_verify', 'wrap', 'unwrap', 'encrypt', 'decrypt', 'ecdh',
)


class LogInvalid(Exception):
    """A log file that does not verify (the message says where and why)."""


def event_name(kind):
    name = EVENT_NAMES[kind] if 0 <= kind < len(EVENT_NAMES) else None
    return name or 'type_%d' % kind


def _b64(text):
    """base64url or standard base64, padding optional (as the manager decodes)."""
    text = text.replace('-', '+').replace('_', '/')
    return base64.b64decode(text + '=' * (-len(text) % 4), validate=True)


def _public_key(raw):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    return Ed25519PublicKey.from_public_bytes(raw)


def _signed(public, signature, message):
    from cryptography.exceptions import InvalidSignature
    try:
        public.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def _parse(number, line):
    fields = line.split('|')
    if len(fields) != 7:
        raise LogInvalid('line %d has %d fields, not 7' % (number, len(fields)))
    try:
        return fields, int(fields[0], 16), int(fields[2], 16), int(fields[3], 16)
    except ValueError:
        raise LogInvalid('line %d: the counter, type or result is not hexadecimal' % number)


def verify_log(text, logger_key):
    """-> {event name: count} of a log file's lines (``logger_key``: the raw 32-byte Ed25519 key); LogInvalid otherwise."""
    public = _public_key(logger_key)
    line_key, previous, counts = None, None, {}
    for number, line in enumerate(text.split('\n'), 1):
        if not line or line.startswith('#') or len(line) < 3:       # what the manager skips
            continue
        fields, counter, kind, result = _parse(number, line)
        try:
            if kind == 0 and result == 0:
                key = _b64(fields[4])
                if not _signed(public, _b64(fields[5]), key):
                    raise LogInvalid('line %d: the seed (line key) is not signed by the logger key' % number)
                line_key = key
            mac = _b64(fields[6])
        except (binascii.Error, ValueError):
            raise LogInvalid('line %d: a key, signature or mac is not base64' % number)
        if line_key is None:
            raise LogInvalid('line %d comes before any seed line' % number)
        if previous is not None and counter != previous + 1:
            raise LogInvalid('line %d: counter %d follows %s (a line is missing or repeated)' % (number, counter, previous))
        previous = counter
        body = line[:line.rindex('|') + 1].encode('utf-8')
        if not hmac.compare_digest(hmac.new(line_key, body, hashlib.sha256).digest()[:16], mac):
            raise LogInvalid('line %d: the mac does not match (the line was changed)' % number)
        counts[event_name(kind)] = counts.get(event_name(kind), 0) + 1
    if line_key is None:
        raise LogInvalid('the file has no seed line')
    return counts


def add_counts(total, counts):
    for name, count in counts.items():
        total[name] = total.get(name, 0) + count
    return total


class AuditLogResource(Resource):
    """The closed log files of the device, kept verified in ``dest``."""

    def __init__(self, module):
        self.module = module
        self.dest = None
        self.current = None

    # ------------------------------------------------------------------ options and reads

    def desired(self, params):
        dest = params['dest']
        if not dest or not dest.strip():
            raise HemError('option dest: must be a directory path (where the log files are kept), got an empty string')
        dest = os.path.abspath(os.path.expanduser(dest))
        if os.path.exists(dest) and not os.path.isdir(dest):
            raise HemError('option dest: %s exists and is not a directory; give a directory for the log files' % dest)
        state = os.path.join(dest, STATE_FILE)
        if os.path.exists(state):
            _load_state(state)      # unreadable: fail before any request
        self.dest = dest
        return {'dest': dest}

    def connect(self, client):
        return self.module.client(scope=SCOPE)

    def read(self, client):
        key = client.get(KEY_PATH)
        try:
            raw = _b64(key['key'])
            proven = _signed(_public_key(raw), _b64(key['nonce_signed']), _b64(key['nonce']))
        except (KeyError, TypeError, AttributeError, binascii.Error, ValueError):
            raise HemError('the logger key answer lacks a readable key, nonce or nonce_signed', 'GET ' + KEY_PATH)
        if not proven:
            raise HemError('the device did not prove that it holds the logger key: its nonce_signed does not verify with the key '
                           'it serves', 'GET ' + KEY_PATH)
        state = _load_state(os.path.join(self.dest, STATE_FILE))
        current = dict(key=key['key'], raw_key=raw, supported=True, ids=[], state=state, quarantined=self._quarantined())
        try:
            current['ids'] = _list(client)
        except HemError as exc:
            if exc.status != 404:
                raise
            current['supported'] = False        # an EPA serves the key only (no log files)
        self.current = current
        return current

    def _quarantined(self):
        folder = os.path.join(self.dest, QUARANTINE)
        if not os.path.isdir(folder):
            return []
        return sorted(name[:-4] for name in os.listdir(folder) if name.endswith('.log'))

    # ------------------------------------------------------------------ plan and fetch

    def plan(self, current, want):
        recorded = current['state'].get('logger_key')
        if recorded and recorded != current['key']:
            raise HemError('the device logger key is not the one recorded in %s at the first fetch (%s, now %s): the device was '
                           'factory reset or replaced, or this is another device. Nothing was fetched; keep %s as the evidence of '
                           'the old key and give a new dest' % (os.path.join(self.dest, STATE_FILE), recorded, current['key'], self.dest))
        have = sorted(current['state'].get('files', {}))
        closed = current['ids'][:-1]            # the last listed is the current boot's file (locked, 406)
        fetch = [i for i in closed if i not in current['state'].get('files', {})]
        if not fetch:
            return Plan()
        return Plan(before={'files': have}, after={'files': sorted(have + fetch)}, body={}, fetch=fetch)

    def write(self, client, plan, current):
        os.makedirs(self.dest, mode=0o750, exist_ok=True)
        state = current['state']
        state['logger_key'] = current['key']
        done = dict(files=[], verified=[], failed={}, locked=[], events={})
        for file_id in plan.extra['fetch']:
            self._fetch(client, file_id, current['raw_key'], state, done)
            _save_state(os.path.join(self.dest, STATE_FILE), state)
        return done

    def _fetch(self, client, file_id, raw_key, state, done):
        part = os.path.join(self.dest, '.%s.part' % file_id)
        try:
            with open(part, 'w+b') as sink:
                client.download('/api/logger/' + file_id, sink)
                sink.seek(0)
                data = sink.read()
        except HemError as exc:
            _remove(part)
            if exc.status == 406:               # locked: a file of the running boot after all
                done['locked'].append(file_id)
                return
            raise
        try:
            counts = verify_log(data.decode('utf-8'), raw_key)
        except (LogInvalid, UnicodeDecodeError) as exc:
            os.makedirs(os.path.join(self.dest, QUARANTINE), mode=0o750, exist_ok=True)
            os.replace(part, os.path.join(self.dest, QUARANTINE, file_id + '.log'))
            state.setdefault('files', {})[file_id] = {'verified': False, 'problem': str(exc)}
            done['failed'][file_id] = str(exc)
        else:
            os.replace(part, os.path.join(self.dest, file_id + '.log'))
            state.setdefault('files', {})[file_id] = {'verified': True, 'events': counts}
            done['verified'].append(file_id)
            add_counts(done['events'], counts)
        done['files'].append(file_id)

    # ------------------------------------------------------------------ result

    def diff(self, plan, after):
        return plan.diff()

    def result(self, plan, answer):
        current = self.current
        files = current['state'].get('files', {})
        out = dict(supported=current['supported'], dest=self.dest, logger_key=current['key'],
                   locked=current['ids'][-1:], files=[], verified=[], events={})
        if answer is None:                      # check mode, or nothing to fetch
            out['files'] = list(plan.extra.get('fetch', [])) if plan else []
        else:
            out.update(files=answer['files'], verified=answer['verified'], events=answer['events'],
                       locked=sorted(set(out['locked'] + answer['locked'])))
        out['quarantined'] = sorted(set(self._quarantined()) | set(i for i, f in files.items() if not f.get('verified')))
        out['verified_total'] = sum(1 for f in files.values() if f.get('verified'))
        out['problems'] = dict((i, files[i].get('problem', 'kept in quarantine')) for i in out['quarantined'] if i in files)
        return out


def quarantine_failure(result):
    """The HemError for a result whose ``dest`` holds files that did not verify, else None."""
    if not result['quarantined']:
        return None
    problems = '; '.join('%s: %s' % item for item in sorted(result['problems'].items())) or ', '.join(result['quarantined'])
    return HemError('%d audit log file(s) did not verify and are kept in %s (%s). The log may have been changed on the device or on '
                    'the way; keep the files as evidence. The task fails while they are there'
                    % (len(result['quarantined']), os.path.join(result['dest'], QUARANTINE), problems), result=result)


def _list(client):
    """All file ids, in the order the device lists them (pages of up to 128)."""
    ids = []
    while True:
        page = client.get(LIST_PATH if not ids else '%s/%d' % (LIST_PATH, len(ids)))
        if not isinstance(page, dict) or not isinstance(page.get('id'), list) or not isinstance(page.get('total'), int):
            raise HemError('the log file list has no id list or total', 'GET ' + LIST_PATH)
        for file_id in page['id']:
            if not isinstance(file_id, str) or not FILE_ID.match(file_id.lower()):
                raise HemError('the log file list holds %r, not a file id (8 hexadecimal digits)' % (file_id,), 'GET ' + LIST_PATH)
            ids.append(file_id.lower())
        if not page['id'] or len(ids) >= page['total']:
            return ids


def _load_state(path):
    if not os.path.exists(path):
        return {'files': {}}
    try:
        with open(path) as handle:
            state = json.load(handle)
    except (OSError, ValueError) as exc:
        raise HemError('option dest: %s cannot be read (%s); it records the files fetched and the logger key' % (path, exc))
    if not isinstance(state, dict) or not isinstance(state.get('files', {}), dict):
        raise HemError('option dest: %s is not a record of encedo_audit_log' % path)
    state.setdefault('files', {})
    return state


def _save_state(path, state):
    tmp = path + '.tmp'
    with open(tmp, 'w') as handle:
        json.dump(state, handle, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass
