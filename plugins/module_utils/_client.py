# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils file is PRIVATE to the encedo.hem collection: its API may change
# at any time without notice. Do not use it from other collections.

"""HemClient: the one HTTP client every encedo.hem module uses.

Transport: the standard library's ``http.client`` and ``ssl``, one fresh connection per
request (the device closes every connection), TLS verification on by default with the CA
chosen by the module (no environment variable such as ``REQUESTS_CA_BUNDLE`` or
``CURL_CA_BUNDLE`` replaces it), proxies from the environment; login as the device's eJWT
challenge-response; bounded retries for reads only; one error type, ``HemError``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import random
import re
import time

from importlib.util import find_spec
from urllib.parse import unquote, urlsplit

# cryptography (and http.client, ssl) are imported when first needed, not when a module
# starts: a module run that does not log in (or sends no API request) skips their import
# cost, which is paid once per task and host in a fleet. Whether it is installed is known up front.
HAS_CRYPTOGRAPHY = find_spec('cryptography') is not None
CRYPTOGRAPHY_IMPORT_ERROR = None if HAS_CRYPTOGRAPHY else ImportError('No module named cryptography')


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


def keypair_from_private(private_bytes):
    """``(private_bytes, public_b64)`` of a 32-byte X25519 secret (clamped by X25519 itself, as nacl does)."""
    x25519, serialization = _x25519()
    public = x25519.X25519PrivateKey.from_private_bytes(private_bytes).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return private_bytes, b64(public)


#: PBKDF2-HMAC-SHA512 rounds of a BIP39 seed (BIP39; the web manager's jsbip39 ``toSeed``).
BIP39_ROUNDS = 2048
#: Words of the recovery phrases the vendor's web manager makes (``Mnemonic.generate(256)``).
RECOVERY_PHRASE_WORDS = 24


def normalise_recovery_phrase(phrase, option='master_recovery_phrase'):
    """The recovery phrase as the web manager's ``toSeed`` reads it: words split on any white space,
    joined by single spaces, Unicode NFKD. Checked first (the ``mnemonic`` library's English word list and
    BIP39 checksum). Raises ValueError with a message that names ``option`` but never a word of the phrase.
    """
    try:
        from mnemonic import Mnemonic
    except ImportError:
        raise ValueError('option %s: the Python library "mnemonic" is needed to read a BIP39 recovery phrase and is not '
                         'installed on the host that runs the module: install it (pip install mnemonic) or use '
                         'master_passphrase' % option)
    words = [Mnemonic.normalize_string(word) for word in phrase.split()]
    if len(words) != RECOVERY_PHRASE_WORDS:
        # BIP39 also has 12- to 21-word phrases, but the web manager only makes 24-word ones (generate(256)):
        # a shorter phrase is a truncated one, and would give a master key the device does not have.
        raise ValueError('option %s: a recovery phrase of the Encedo web manager has %d words, this one has %d'
                         % (option, RECOVERY_PHRASE_WORDS, len(words)))
    mnemonic = Mnemonic('english')
    known = set(mnemonic.wordlist)
    for position, word in enumerate(words, 1):
        if word not in known:
            hint = ' (the words are lower case)' if word.lower() in known else ''
            raise ValueError('option %s: word %d is not in the BIP39 English word list%s' % (option, position, hint))
    joined = ' '.join(words)
    if not mnemonic.check(joined):
        raise ValueError('option %s: the BIP39 checksum does not match: a word is wrong, or two words are swapped '
                         '(every word is in the word list)' % option)
    return joined


def recovery_phrase_keypair(phrase, option='master_recovery_phrase'):
    """The master key the web manager derives from a 24-word BIP39 recovery phrase: ``(private_bytes, public_b64)``.

    seed = PBKDF2-HMAC-SHA512(normalised phrase, salt "mnemonic", 2048 rounds), 64 bytes, as lower-case hex
    (128 characters); the private key is the 32 bytes written by hex characters 1 to 64, i.e. starting at
    the SECOND hex digit (encedo-manager assets/build.js ``initFinal`` and ``handleMasterPassphrase``:
    ``fromHexString(seed.substr(1, 64))``), used as an X25519 secret (nacl ``box.keyPair.fromSecretKey``).
    """
    normalised = normalise_recovery_phrase(phrase, option)
    seed_hex = hashlib.pbkdf2_hmac('sha512', normalised.encode('utf-8'), b'mnemonic', BIP39_ROUNDS).hex()
    return keypair_from_private(bytes.fromhex(seed_hex[1:65]))


def master_keypair(eid, passphrase=None, recovery_phrase=None):
    """The master key ``(private_bytes, public_b64)``: from the web manager's recovery phrase when given,
    else from a master passphrase as the vendor's SDK derives it (like the user key, salted with ``eid``)."""
    if recovery_phrase:
        return recovery_phrase_keypair(recovery_phrase)
    return derive_keypair(passphrase, eid)


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


class _TransportError(Exception):
    """No complete answer came. ``sent``: the request may have reached the device (False:
    the connection or TLS handshake failed first); ``timeout``: time ran out; ``tls``: the
    TLS handshake or certificate verification failed."""

    def __init__(self, reason, sent, timeout=False, tls=False):
        super().__init__(reason)
        self.reason = reason
        self.sent = sent
        self.timeout = timeout
        self.tls = tls


def env_proxy(url):
    """The proxy the environment sets for url (``https_proxy``, ``http_proxy`` or ``all_proxy``,
    upper or lower case; none when ``no_proxy`` names the host), or None."""
    if not any(name.lower().endswith('_proxy') for name in os.environ):
        return None     # the common case, decided without importing urllib.request
    from urllib import request as urllib_request
    parts = urlsplit(url)
    if urllib_request.proxy_bypass_environment(parts.hostname or ''):
        return None
    proxies = urllib_request.getproxies_environment()
    return proxies.get(parts.scheme.lower()) or proxies.get('all') or None


def _default_ca_file():
    """certifi's CA bundle when certifi is installed (what Python HTTP clients commonly trust),
    else None: the system's trust store."""
    try:
        import certifi
    except ImportError:
        return None
    return certifi.where()


def tls_context(validate_certs=True, ca_path=None):
    """The TLS context of every connection to a device: verification on unless
    ``validate_certs`` is false; trust from ``ca_path`` (a PEM file or a hashed directory),
    else certifi's bundle, else the system store. Never from environment variables."""
    import ssl
    if not validate_certs:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    try:
        if ca_path and os.path.isdir(ca_path):
            return ssl.create_default_context(capath=ca_path)
        return ssl.create_default_context(cafile=ca_path or _default_ca_file())
    except (OSError, ValueError) as exc:
        raise HemError('ca_path %s cannot be read as a PEM CA bundle (%s)' % (ca_path or _default_ca_file(), exc))


def _hostport(host, port):
    return '[%s]:%d' % (host, port) if ':' in host else '%s:%d' % (host, port)


def open_connection(url, context, timeout, proxy=None):
    """A connected ``http.client`` connection to the host of url (for https, TLS handshake
    done with context), through the http:// proxy when one is given (CONNECT for https).
    Returns ``(connection, target_prefix, headers)``: what to put before each request path
    (the URL's own path, e.g. behind a reverse proxy), and the headers to add to each
    request. Connection errors propagate as raised."""
    import http.client
    parts = urlsplit(url)
    https = parts.scheme.lower() == 'https'
    host, port = parts.hostname, parts.port or (443 if https else 80)
    prefix, headers, tunnel = parts.path.rstrip('/'), {}, {}
    if proxy:
        proxy_parts = urlsplit(proxy if '://' in proxy else 'http://' + proxy)
        if proxy_parts.scheme.lower() != 'http' or not proxy_parts.hostname:
            # the proxy URL may hold credentials: name its scheme and host only
            raise HemError('the %s proxy %s set in the environment is not supported: only http:// proxies are (CONNECT for https)'
                           % (proxy_parts.scheme or '?', proxy_parts.hostname or '?'))
        if proxy_parts.username:
            credentials = '%s:%s' % (unquote(proxy_parts.username), unquote(proxy_parts.password or ''))
            tunnel['Proxy-Authorization'] = 'Basic ' + b64(credentials.encode('utf-8'))
        connect_to = (proxy_parts.hostname, proxy_parts.port or 80)
        if not https:
            prefix, headers = '%s://%s%s' % (parts.scheme.lower(), _hostport(host, port), prefix), tunnel
    else:
        connect_to = (host, port)
    if https:
        conn = http.client.HTTPSConnection(connect_to[0], connect_to[1], timeout=timeout, context=context)
        if proxy:
            conn.set_tunnel(host, port, headers=tunnel)
    else:
        conn = http.client.HTTPConnection(connect_to[0], connect_to[1], timeout=timeout)
    try:
        conn.connect()
    except BaseException:
        conn.close()
        raise
    return conn, prefix, headers


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
        self._context = None
        self._served_der = None

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

    def served_certificate(self):
        """The DER certificate the device presented on this client's last HTTPS connection, or None
        (no HTTPS request made yet): read from the request's own TLS handshake, no extra connection."""
        return self._served_der

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
            except _TransportError as exc:
                self.requests.append((method, path, None))
                if exc.tls:
                    raise HemError('TLS certificate verification or handshake failed with %s (%s). Set ca_path to the CA that signed '
                                   'the device certificate, or validate_certs to false (not recommended)' % (self.url, exc.reason), endpoint)
                if exc.sent and method != 'GET':
                    if exc.timeout:
                        raise HemOutcomeUnknown('no answer within %.0f s after the request was sent: it may or may not have been applied; '
                                                'check the device state before trying again' % self.timeout, endpoint)
                    raise HemOutcomeUnknown('the connection was lost after the request was sent: it may or may not have been applied; '
                                            'check the device state before trying again (%s)' % exc.reason, endpoint)
                if exc.timeout:
                    error = HemError('no answer within the timeout of %.0f s (%s)' % (self.timeout, exc.reason), endpoint)
                else:
                    error = HemError('cannot reach the device at %s (%s)' % (self.url, exc.reason), endpoint)
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
        """One request on a fresh connection; returns an _Answer or raises _TransportError."""
        import http.client
        import ssl
        if self._context is None and self.url.lower().startswith('https:'):
            self._context = tls_context(self.validate_certs, self.ca_path)
        try:
            conn, prefix, extra = open_connection(self.url, self._context, min(timeout, 10.0), env_proxy(self.url))
        except ssl.SSLError as exc:     # includes certificate verification failures
            raise _TransportError(_reason(exc), sent=False, tls=True)
        except TimeoutError:
            raise _TransportError('timed out connecting', sent=False, timeout=True)
        except (OSError, http.client.HTTPException) as exc:
            raise _TransportError(_reason(exc), sent=False)
        try:
            if self._context is not None:
                self._served_der = conn.sock.getpeercert(binary_form=True)
            conn.sock.settimeout(timeout)
            conn.request(method, prefix + path, body=data, headers=dict(headers, **extra))
            resp = conn.getresponse()
            return _Answer(resp.status, resp.read(), resp.headers)
        except TimeoutError:
            raise _TransportError('timed out waiting for the answer', sent=True, timeout=True)
        except (OSError, http.client.HTTPException) as exc:
            raise _TransportError(_reason(exc), sent=True)
        finally:
            conn.close()

    @staticmethod
    def _decode(answer, endpoint):
        if not answer.body or not answer.body.strip():
            return {}
        try:
            return json.loads(answer.body.decode('utf-8'))
        except ValueError:
            raise HemError('the device answered HTTP %d with a body that is not JSON' % answer.status, endpoint)


def _reason(exc):
    """A short description of a connection error (host names and reasons only, never a secret)."""
    text = str(exc)
    ssl_reason = re.search(r'\[SSL: ([A-Z0-9_]+)\] ([^(]*)', text)
    if ssl_reason:
        return '%s: %s' % (ssl_reason.group(1), ssl_reason.group(2).strip())
    return text[:300] or type(exc).__name__
