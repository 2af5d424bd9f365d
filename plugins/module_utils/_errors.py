# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils file is PRIVATE to the encedo.hem collection: its API may change
# at any time without notice. Do not use it from other collections.

"""The one error type of the collection (``HemError``, the only one that reaches
``HemModule.run``) and what each HTTP status means to the user."""

from __future__ import annotations

#: JSON request bodies above this size are refused by the device (413); checked before sending.
MAX_JSON_BODY = 7300

TOKEN_PATH = '/api/auth/token'

CHECKIN_HINT = ('the device clock is not set (it resets at every power-up or reboot): run a check-in first '
                '(encedo.hem.encedo_checkin, or encedo.hem.encedo_reboot with checkin enabled)')

# What a status means for the user, whatever the endpoint.
STATUS_MEANINGS = {
    400: 'the device rejected the request as malformed (a field is missing, unknown or has a wrong value)',
    401: 'the bearer token was rejected: it expired, or the device rebooted since it was issued',
    403: "forbidden: the token's scope or role does not allow this, or the device's state does not allow it now",
    404: 'this endpoint does not exist on this device (EPA devices and older firmware lack some endpoints)',
    405: 'the device does not accept this method on this endpoint',
    406: 'the device could not perform the operation',
    409: ('the device is busy or in the wrong state (not personalised yet, self-test fault latched, '
          'firmware install or disk format in progress)'),
    411: 'the request had no Content-Length (client bug, please report it)',
    412: "CORS: the request's Origin header does not match the device's allowed origins (the origin setting)",
    413: 'the request body is too large: the device accepts JSON bodies of at most %d bytes' % MAX_JSON_BODY,
    418: 'this endpoint requires TLS: use an https:// url',
    429: 'too many requests: the device asks to slow down',
    500: 'internal device error',
    503: 'the device is unavailable (rebooting or busy)',
}


class HemError(Exception):
    """The one error type of the collection; ``str()`` is the user-facing message.

    ``endpoint`` is ``"METHOD /path"`` (or None), ``status`` the HTTP status (or None
    when the device gave no answer). ``result``: further fields of the failed task's
    result (e.g. ``changed``, ``sent``, a partial result); ``HemModule.run`` merges them
    into the failure after ``endpoint`` and ``status``, so they may also set those two
    without naming them in the message.
    """

    def __init__(self, msg, endpoint=None, status=None, result=None):
        super().__init__(msg)
        self.msg = msg
        self.endpoint = endpoint
        self.status = status
        self.result = dict(result or {})

    def failure(self):
        """The fields of the failed task's result besides ``msg``."""
        extra = {}
        if self.endpoint:
            extra['endpoint'] = self.endpoint
        if self.status is not None:
            extra['status'] = self.status
        extra.update(self.result)
        return extra

    def __str__(self):
        where = self.endpoint or ''
        if self.status is not None:
            where = '%s answered HTTP %d' % (where, self.status) if where else 'HTTP %d' % self.status
        return '%s: %s' % (where, self.msg) if where else self.msg


def refused(msg, **result):
    """A HemError that fails the task with ``msg`` and the ``result`` fields: ``changed`` (false) and
    ``sent`` (none) unless given, e.g. bad input refused before any request, or a device's refusal."""
    result.setdefault('changed', False)
    result.setdefault('sent', [])
    return HemError(msg, result=result)


class HemOutcomeUnknown(HemError):
    """A write was sent but its answer was lost: it may or may not have been applied."""


class HemTlsError(HemError):
    """The TLS handshake or the verification of the device certificate failed (nothing was sent).

    ``reason``: the TLS library's reason; ``served``: the certificate the device serves
    (DER), when it was read without verification to say so.
    """

    def __init__(self, msg, endpoint=None, reason=None):
        super().__init__(msg, endpoint)
        self.reason = reason
        self.served = None


#: Names of the JSON types for messages about the shape of an answer.
_KINDS = {dict: 'an object', list: 'a list', str: 'a string', int: 'a number', float: 'a number', bool: 'true or false'}


def kind_name(value):
    """How an answer's value is named in a message (its JSON type, never its content)."""
    if value is None:
        return 'null'
    return _KINDS.get(type(value), type(value).__name__)


def field(answer, name, kind, endpoint, required=True):
    """``answer[name]`` when it is of type ``kind`` (a type or a tuple of types); None when it is absent and not
    ``required``; else HemError naming the endpoint, the field and what it holds. The one check of an answer's
    shape before code indexes it (booleans are not numbers here)."""
    if not isinstance(answer, dict):
        raise HemError('the device answered %s where an object was expected' % kind_name(answer), endpoint)
    value = answer.get(name)
    if value is None and not required:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds):
        return value
    if name not in answer:
        raise HemError('the answer has no field %s' % name, endpoint)
    raise HemError('the field %s of the answer is %s, expected %s' % (name, kind_name(value), ' or '.join(
        sorted(set(_KINDS.get(k, k.__name__) for k in kinds)))), endpoint)


def status_meaning(method, path, status, have_passphrase=False, url_path='', scopes=None):
    """The user-facing meaning of ``status`` for ``method path``.

    ``url_path``: the path of the ``url`` option (a 404 then names it as the likely cause);
    ``scopes``: ``(scope the request needs, scope of the token)`` for a 403 on an
    authenticated request, when both are known and differ.
    """
    if path == TOKEN_PATH:
        if status == 403:
            return CHECKIN_HINT
        if status == 409:
            return 'the device is not personalised yet (run encedo.hem.encedo_init) or it is busy'
        if status == 401 and method == 'POST':
            return 'login refused: the passphrase is wrong (or the login challenge expired)'
    if status == 401:
        if have_passphrase:
            return STATUS_MEANINGS[401] + '; logging in again did not help'
        return STATUS_MEANINGS[401] + ': log in again (encedo.hem.encedo_login) or give passphrase'
    if status == 404 and url_path:
        return ('this endpoint does not exist at %s%s: the url has the path %s, and every request goes below it. The device serves '
                'its API at the root: give url without a path (e.g. https://my.ence.do), unless a reverse proxy serves the device '
                'under that path' % (url_path, path, url_path))
    if status == 403 and scopes and scopes[0] and scopes[1] and scopes[0] != scopes[1]:
        return ("forbidden: this needs a token with scope %s, and the token given has scope %s. Get a token with scope %s "
                "(encedo.hem.encedo_login scope), or give passphrase so that the task logs in with the scope it needs"
                % (scopes[0], scopes[1], scopes[0]))
    meaning = STATUS_MEANINGS.get(status)
    if meaning is None:
        meaning = 'unexpected answer from the device'
    return meaning
