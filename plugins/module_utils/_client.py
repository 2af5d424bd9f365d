# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils file is PRIVATE to the encedo.hem collection: its API may change
# at any time without notice. Do not use it from other collections.

"""HemClient: the one HTTP client every encedo.hem module uses.

Transport: ``requests``, one fresh connection per request (the device closes every
connection), TLS verification on by default and never overridden by
``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``; login as the device's eJWT
challenge-response; bounded retries for reads only; one error type, ``HemError``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import re
import time
import warnings

from importlib.util import find_spec

# requests and cryptography are imported when first needed, not when a module starts: a
# module run that sends no API request (or does not log in) skips their import cost, which
# is paid once per task and host in a fleet. Whether they are installed is known up front.
HAS_REQUESTS = find_spec('requests') is not None
REQUESTS_IMPORT_ERROR = None if HAS_REQUESTS else ImportError('No module named requests')
HAS_CRYPTOGRAPHY = find_spec('cryptography') is not None
CRYPTOGRAPHY_IMPORT_ERROR = None if HAS_CRYPTOGRAPHY else ImportError('No module named cryptography')


def _requests():
    """The ``requests`` module (imported on first use)."""
    import requests
    return requests


def _x25519():
    """``cryptography``'s X25519 and serialization modules (imported on first use); HemError when missing."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import x25519
    except ImportError as exc:
        raise HemError('the Python library "cryptography" is required to log in: %s' % exc)
    return x25519, serialization


#: JSON request bodies above this size are refused by the device (413); checked before sending.
MAX_JSON_BODY = 7300
#: PBKDF2 iterations of the login key derivation.
PBKDF2_ITERATIONS = 600000
#: Retry-After values are clamped to this many seconds.
MAX_RETRY_AFTER = 10.0
#: First backoff delay in seconds; doubled on every further attempt, capped at MAX_BACKOFF.
BACKOFF_BASE = 0.5
MAX_BACKOFF = 8.0
#: Statuses that make a read (GET) worth another try.
RETRY_STATUSES = frozenset((409, 429, 500, 503))
#: The exact header bytes of the login proof JWT (the device expects this form).
JWT_HEADER = b'{"ecdh":"x25519","alg":"HS256","typ":"JWT"}'
#: The login challenge is valid for this long after the device issues it.
CHALLENGE_LIFETIME = 60

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
    when the device gave no answer).
    """

    def __init__(self, msg, endpoint=None, status=None):
        super().__init__(msg)
        self.msg = msg
        self.endpoint = endpoint
        self.status = status

    def __str__(self):
        where = self.endpoint or ''
        if self.status is not None:
            where = '%s answered HTTP %d' % (where, self.status) if where else 'HTTP %d' % self.status
        return '%s: %s' % (where, self.msg) if where else self.msg


class HemOutcomeUnknown(HemError):
    """A write was sent but its answer was lost: it may or may not have been applied."""


def status_meaning(method, path, status, have_passphrase=False):
    """The user-facing meaning of ``status`` for ``method path``."""
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
    meaning = STATUS_MEANINGS.get(status)
    if meaning is None:
        meaning = 'unexpected answer from the device'
    return meaning


def b64(data):
    """Standard base64 with padding (the device's form for JSON fields)."""
    return base64.b64encode(data).decode('ascii')


def b64url(data):
    """base64url without padding (JWT segments)."""
    return base64.urlsafe_b64encode(data).rstrip(b'=').decode('ascii')


def b64decode_any(text):
    """Decode standard or URL-safe base64, padded or not."""
    if isinstance(text, str):
        text = text.encode('ascii')
    text = text.replace(b'-', b'+').replace(b'_', b'/')
    return base64.b64decode(text + b'=' * (-len(text) % 4), validate=True)


def derive_seed(passphrase, eid):
    """PBKDF2-HMAC-SHA256 of the passphrase, salted with the eid as its base64 text."""
    return hashlib.pbkdf2_hmac('sha256', passphrase.encode('utf-8'), eid.encode('utf-8'), PBKDF2_ITERATIONS, 32)


def derive_keypair(passphrase, eid):
    """The X25519 key of a passphrase on a device: ``(private_bytes, public_b64)``."""
    x25519, serialization = _x25519()
    seed = derive_seed(passphrase, eid)
    public = x25519.X25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return seed, b64(public)


def x25519_shared(private_bytes, peer_public_b64):
    """X25519(private, peer public given as base64)."""
    x25519 = _x25519()[0]
    private = x25519.X25519PrivateKey.from_private_bytes(private_bytes)
    return private.exchange(x25519.X25519PublicKey.from_public_bytes(b64decode_any(peer_public_b64)))


def build_auth_jwt(challenge, private_bytes, public_b64, scope, iat, exp):
    """The login proof ``header.payload.signature`` for a ``GET /api/auth/token`` challenge."""
    payload = {
        'jti': challenge['jti'],
        'aud': challenge['spk'],
        'exp': int(exp),
        'iat': int(iat),
        'iss': public_b64,
        'scope': scope,
    }
    shared = x25519_shared(private_bytes, challenge['spk'])
    signing_input = b64url(JWT_HEADER) + '.' + b64url(json.dumps(payload, separators=(',', ':')).encode('utf-8'))
    signature = hmac.new(shared, signing_input.encode('ascii'), hashlib.sha256).digest()
    return signing_input + '.' + b64url(signature)


def jwt_claims(token):
    """The claims of a JWT without checking its signature; {} when unreadable."""
    try:
        claims = json.loads(b64decode_any(token.split('.')[1]))
    except (ValueError, IndexError, AttributeError, TypeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def _parse_retry_after(value):
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            from email.utils import parsedate_to_datetime
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return max(0.0, min(seconds, MAX_RETRY_AFTER))


def _connect_failed(exc):
    """True when a connection error happened before any byte of the request was sent."""
    from urllib3.exceptions import MaxRetryError, NewConnectionError
    if isinstance(exc, _requests().exceptions.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, NewConnectionError)


class _Answer(object):
    __slots__ = ('status', 'body', 'headers')

    def __init__(self, status, body, headers):
        self.status = status
        self.body = body
        self.headers = headers


class HemClient(object):
    """Client of one HEM device.

    ``get``/``post`` return the decoded JSON answer (``{}`` for an empty body) or raise
    ``HemError``. ``auth=True`` logs in lazily with the passphrase (or uses ``token``)
    and logs in again once on a 401. ``requests`` records ``(method, path, status)``
    of every request sent (status None when no answer came), never a secret.
    """

    def __init__(self, url, passphrase=None, token=None, validate_certs=True, ca_path=None,
                 timeout=30, retries=3, scope='system:config', warn=None):
        if not HAS_REQUESTS:
            raise HemError('the Python library "requests" is required: %s' % REQUESTS_IMPORT_ERROR)
        self.url = url.rstrip('/')
        self.passphrase = passphrase
        self.token = token
        self.token_expires = jwt_claims(token).get('exp') if token else None
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.scope = scope
        self.warn = warn
        self.requests = []
        self.last_login = None
        self._keys = {}
        self._sleep = time.sleep

    # -- public API ------------------------------------------------------------------

    def get(self, path, auth=True):
        """GET ``path``; retried on connection errors, timeouts, 409, 429, 500 and 503."""
        return self._call('GET', path, None, auth)

    def post(self, path, body=None, auth=True):
        """POST ``body`` (a dict, sent as JSON) to ``path``; never retried once sent."""
        return self._call('POST', path, {} if body is None else body, auth)

    def status(self):
        """``GET /api/system/status`` (no authentication)."""
        return self.get('/api/system/status', auth=False)

    def login(self, scope=None, lifetime=None):
        """Log in with the passphrase and return the bearer token.

        ``scope`` defaults to the client's scope; ``lifetime`` (seconds) asks for a
        token expiring that long after the device's current time (None: the device
        default of 8 hours). The token becomes the client's token when ``scope`` is the
        client's scope. The PBKDF2 key is derived once per client and device identity.
        """
        if not self.passphrase:
            raise HemError('this needs credentials: set passphrase, or token with a token from encedo.hem.encedo_login', 'POST ' + TOKEN_PATH)
        scope = scope or self.scope
        attempts = 2
        for attempt in range(attempts):
            challenge = self._challenge()
            for field in ('eid', 'spk', 'jti'):
                if not isinstance(challenge.get(field), str):
                    raise HemError('the login challenge has no %s field' % field, 'GET ' + TOKEN_PATH)
            eid = challenge['eid']
            if eid not in self._keys:
                self._keys[eid] = derive_keypair(self.passphrase, eid)
            private_bytes, public_b64 = self._keys[eid]
            # Use the device's clock, not ours: the challenge expires 60 s after the device's now.
            now = int(challenge['exp']) - CHALLENGE_LIFETIME if isinstance(challenge.get('exp'), int) else int(time.time())
            exp = now + int(lifetime) if lifetime else 0
            proof = build_auth_jwt(challenge, private_bytes, public_b64, scope, now, exp)
            try:
                answer = self._request('POST', TOKEN_PATH, {'auth': proof}, auth=False)
            except HemOutcomeUnknown:
                # A login changes nothing on the device: asking again (with a fresh challenge) is safe.
                if attempt + 1 < attempts:
                    continue
                raise
            break
        token = answer.get('token')
        if not isinstance(token, str) or not token:
            raise HemError('the device answered without a token', 'POST ' + TOKEN_PATH)
        expires = jwt_claims(token).get('exp') or (now + (int(lifetime) if lifetime else 8 * 3600))
        if scope == self.scope:
            self.token = token
            self.token_expires = expires
        self.last_login = {'scope': scope, 'expires': expires}
        return token

    # -- internals -------------------------------------------------------------------

    def _challenge(self):
        try:
            return self._request('GET', TOKEN_PATH, None, auth=False, retry_statuses=RETRY_STATUSES - {409})
        except HemError as exc:
            if exc.status != 409:
                raise
        # 409: not personalised (no point in waiting) or busy (worth retrying).
        status = self._request('GET', '/api/system/status', None, auth=False)
        if status.get('inited') is False:
            raise HemError('the device is not personalised yet: run encedo.hem.encedo_init first', 'GET ' + TOKEN_PATH, 409)
        return self._request('GET', TOKEN_PATH, None, auth=False)

    def _call(self, method, path, body, auth):
        if auth and not self.token:
            self.login()
        try:
            return self._request(method, path, body, auth)
        except HemError as exc:
            if not (auth and exc.status == 401 and self.passphrase):
                raise
        # The token was refused (expired, or the device rebooted): one new login, one repeat.
        # A 401 is answered before the request is applied, so repeating a POST is safe.
        self.token = None
        try:
            self.login()
        except HemError as exc:
            # e.g. the clock is unset after a reboot: say why a login was tried at all
            exc.msg += ' (logging in again because %s %s refused the bearer token: %s)' % (method, path, STATUS_MEANINGS[401].split(': ', 1)[1])
            raise
        return self._request(method, path, body, auth)

    def _request(self, method, path, body, auth, retry_statuses=RETRY_STATUSES):
        endpoint = '%s %s' % (method, path)
        data = None
        headers = {'Accept': 'application/json', 'Connection': 'close'}
        if body is not None:
            data = json.dumps(body, separators=(',', ':')).encode('utf-8')
            if len(data) > MAX_JSON_BODY:
                raise HemError('the request body is %d bytes, over the device limit of %d bytes for JSON bodies; nothing was sent'
                               % (len(data), MAX_JSON_BODY), endpoint)
            headers['Content-Type'] = 'application/json'
        if auth and self.token:
            headers['Authorization'] = 'Bearer ' + self.token

        errors = _requests().exceptions
        deadline = time.monotonic() + self.timeout
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            delay = None
            # A read that may be retried gets half of what is left, so that a hung answer
            # leaves time for another try; a write (or the last try) gets all of it.
            wait = remaining / 2 if method == 'GET' and attempt < self.retries else remaining
            try:
                answer = self._send(method, path, data, headers, max(wait, min(remaining, 1.0), 0.1))
            except errors.SSLError as exc:
                self.requests.append((method, path, None))
                raise HemError('TLS certificate verification or handshake failed with %s (%s). Set ca_path to the CA that signed '
                               'the device certificate, or validate_certs to false (not recommended)' % (self.url, _reason(exc)), endpoint)
            except errors.Timeout as exc:
                self.requests.append((method, path, None))
                if method != 'GET' and not _connect_failed(exc):
                    raise HemOutcomeUnknown('no answer within %.0f s after the request was sent: it may or may not have been applied; '
                                            'check the device state before trying again' % self.timeout, endpoint)
                error = HemError('no answer within the timeout of %.0f s (%s)' % (self.timeout, _reason(exc)), endpoint)
            except errors.ConnectionError as exc:
                self.requests.append((method, path, None))
                if method != 'GET' and not _connect_failed(exc):
                    raise HemOutcomeUnknown('the connection was lost after the request was sent: it may or may not have been applied; '
                                            'check the device state before trying again (%s)' % _reason(exc), endpoint)
                error = HemError('cannot reach the device at %s (%s)' % (self.url, _reason(exc)), endpoint)
            except errors.RequestException as exc:
                self.requests.append((method, path, None))
                raise HemError('request failed (%s)' % _reason(exc), endpoint)
            else:
                self.requests.append((method, path, answer.status))
                if 200 <= answer.status < 300:
                    return self._decode(answer, endpoint)
                error = HemError(status_meaning(method, path, answer.status, bool(self.passphrase)), endpoint, answer.status)
                if method != 'GET' or answer.status not in retry_statuses:
                    raise error
                delay = _parse_retry_after(answer.headers.get('Retry-After'))

            attempt += 1
            if delay is None:
                delay = min(BACKOFF_BASE * (2 ** (attempt - 1)), MAX_BACKOFF)
                delay += random.uniform(0, delay / 10)
            remaining = deadline - time.monotonic()
            if attempt > self.retries or delay >= remaining:
                if attempt > 1:
                    error.msg += ' (gave up after %d attempts)' % attempt
                raise error
            self._sleep(delay)

    def _send(self, method, path, data, headers, timeout):
        """One request on a fresh connection; returns an _Answer."""
        requests = _requests()
        from urllib3.exceptions import InsecureRequestWarning
        session = requests.Session()
        # trust_env=False: REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE must not replace the CA chosen here,
        # and ~/.netrc must not replace the Authorization header. Proxies from the environment
        # are still honoured, explicitly.
        session.trust_env = False
        url = self.url + path
        verify = (self.ca_path or True) if self.validate_certs else False
        try:
            proxies = requests.utils.get_environ_proxies(url)
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', InsecureRequestWarning)
                resp = session.request(method, url, data=data, headers=headers, verify=verify, proxies=proxies,
                                       timeout=(min(timeout, 10.0), timeout), allow_redirects=False)
            content = resp.content
            return _Answer(resp.status_code, content, resp.headers)
        finally:
            session.close()

    @staticmethod
    def _decode(answer, endpoint):
        if not answer.body or not answer.body.strip():
            return {}
        try:
            return json.loads(answer.body.decode('utf-8'))
        except ValueError:
            raise HemError('the device answered HTTP %d with a body that is not JSON' % answer.status, endpoint)


def _reason(exc):
    """A short description of a requests exception (URLs and reasons only, never a secret)."""
    text = str(exc)
    ssl_reason = re.search(r'\[SSL: ([A-Z0-9_]+)\] ([^(]*)', text)
    if ssl_reason:
        return '%s: %s' % (ssl_reason.group(1), ssl_reason.group(2).strip())
    # requests wraps urllib3 errors ("... (Caused by X(...))"): keep the innermost part.
    if 'Caused by ' in text:
        text = text.split('Caused by ', 1)[1].rstrip(')')
    return text[:300]
