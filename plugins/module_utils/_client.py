# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils file is PRIVATE to the encedo.hem collection: its API may change
# at any time without notice. Do not use it from other collections.

"""HemClient: the one HTTP client every encedo.hem module uses (get one with
``HemModule.client()``).

It composes the transport (``_transport``: requests, TLS trust, proxies, one try per
call), the login (``_login``: the device's eJWT challenge-response and key derivation)
and the errors (``_errors``: ``HemError`` and the meaning of each status), and adds the
rules users rely on: reads retried with backoff within ``timeout`` (``Retry-After``
honoured), writes never repeated once sent (``HemOutcomeUnknown``), one new login when
the device refuses the token, errors that name the endpoint.

Other modules import ``HemError``, ``b64``, ``derive_keypair`` ... from the module that defines
them (``_errors``, ``_login``, ``_transport``); only ``HemClient`` lives here.
"""

from __future__ import annotations

import json
import random
import time

from urllib.parse import urlsplit

from ansible_collections.encedo.hem.plugins.module_utils._errors import (
    MAX_JSON_BODY,
    STATUS_MEANINGS,
    TOKEN_PATH,
    HemError,
    HemOutcomeUnknown,
    HemTlsError,
    field,
    kind_name,
    status_meaning,
)
from ansible_collections.encedo.hem.plugins.module_utils._login import (
    CHALLENGE_LIFETIME,
    TOKEN_LIFETIME,
    build_auth_jwt,
    derive_keypair,
    jwt_claims,
)
from ansible_collections.encedo.hem.plugins.module_utils._transport import (
    MAX_ANSWER,
    MAX_LOG_FILE,
    AnswerTooLarge,
    Transport,
    TransportError,
)

#: Retry-After values are clamped to this many seconds.
MAX_RETRY_AFTER = 10.0
#: First backoff delay in seconds; doubled on every further attempt, capped at MAX_BACKOFF.
BACKOFF_BASE = 0.5
MAX_BACKOFF = 8.0
#: Statuses that make a read (GET) worth another try.
RETRY_STATUSES = frozenset((409, 429, 500, 503))
#: What to do when a request needs credentials and the url is plain http://.
PLAIN_HTTP_REFUSED = ('the url %s is plain http://, and this request needs credentials (the bearer token or the login proof '
                      'would travel unencrypted, readable by anybody on the path); nothing was sent. Use the https:// url '
                      'of the device, or set allow_plain_http to true (environment ENCEDO_HEM_ALLOW_PLAIN_HTTP) to accept that')


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


class HemClient(object):
    """Client of one HEM device.

    ``get``/``post`` return the decoded JSON answer (``{}`` for an empty body) or raise
    ``HemError``. ``auth=True`` logs in lazily with the passphrase (or uses ``token``)
    and logs in again once on a 401 (``relogged`` tells afterwards).
    ``served_certificate()`` is the certificate the device presented in the last TLS
    handshake of any request.
    """

    def __init__(self, url, passphrase=None, token=None, validate_certs=True, ca_path=None,
                 timeout=30, retries=3, scope='system:config', warn=None, proxy_url=None, allow_plain_http=False):
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
        self.allow_plain_http = allow_plain_http
        #: True once the device refused the token it was given and a new login replaced it.
        self.relogged = False
        self.last_login = None
        self._keys = {}
        self._sleep = time.sleep
        self._url_path = urlsplit(self.url).path.rstrip('/')
        self._transport = Transport(self.url, validate_certs=validate_certs, ca_path=ca_path, proxy_url=proxy_url)

    # -- public API ------------------------------------------------------------------

    def get(self, path, auth=True, limit=MAX_ANSWER, with_status=False):
        """GET ``path``; retried on connection errors, timeouts, 409, 429, 500 and 503. ``limit``: bytes of the
        answer read at most (a larger answer fails the request).

        ``with_status``: return ``(HTTP status, answer)``, for endpoints whose 2xx statuses differ in
        meaning (a task started, running, done).
        """
        return self._call('GET', path, None, auth, limit=limit, with_status=with_status)

    def post(self, path, body=None, auth=True, limit=MAX_ANSWER):
        """POST ``body`` (a dict, sent as JSON) to ``path``; never retried once sent."""
        return self._call('POST', path, {} if body is None else body, auth, limit=limit)

    def download(self, path, sink, limit=MAX_LOG_FILE):
        """GET ``path`` and stream the answer's body into the binary file ``sink`` (not decoded), at most ``limit``
        bytes (HemError beyond); retried like :meth:`get` (``sink`` is emptied before every try)."""
        return self._call('GET', path, None, True, limit=limit, sink=sink)

    def delete(self, path, auth=True):
        """DELETE ``path`` (no body); never retried once sent, like a POST."""
        return self._call('DELETE', path, None, auth)

    def post_raw(self, path, data, headers=None, content_type='application/octet-stream', auth=True, timeout=None):
        """POST the bytes ``data`` as they are (a file upload) to ``path``; never retried once sent.

        ``headers``: further request headers (e.g. ``Content-Disposition``); ``Content-Length`` is always
        set (the device answers 411 to a chunked upload). The JSON body limit does not apply. ``timeout``:
        seconds for this request instead of the client's ``timeout`` (an upload may take longer).
        """
        raw = dict(headers or {}, **{'Content-Type': content_type, 'Content-Length': str(len(data))})
        return self._call('POST', path, None, auth, raw=(bytes(data), raw), timeout=timeout)

    def status(self):
        """``GET /api/system/status`` (no authentication)."""
        return self.get('/api/system/status', auth=False)

    def served_certificate(self):
        """The DER certificate the device presented in this client's last TLS handshake.

        Read from the requests the client made anyway: only when it has made none yet does
        it read the status (one request) to get it. HemError when the url is not https://.
        HemTlsError when the certificate does not verify (with ``validate_certs`` true); its
        ``served`` is then the certificate read once more without verification (or None), only
        to tell the user what the device serves.
        """
        if not self._transport.https:
            raise HemError('the url must be https:// to read the certificate the device serves, got %s' % self.url)
        if self._transport.peer_certificate is None:
            deadline = time.monotonic() + self.timeout
            delay = BACKOFF_BASE
            for attempt in range(self.retries + 1):
                try:
                    self._request('GET', '/api/system/status', None, auth=False, retries=0)
                except HemTlsError as exc:
                    # which certificate failed: a handshake alone, no request reaches an untrusted device
                    exc.served = self._transport.unverified_peer_certificate(min(self.timeout, 10.0))
                    raise
                except HemError:
                    # the handshake is what counts here: a device that then gives no usable answer still served it
                    if self._transport.peer_certificate is not None:
                        break
                    if attempt >= self.retries or time.monotonic() + delay >= deadline:
                        raise
                    self._sleep(delay)
                    delay = min(delay * 2, MAX_BACKOFF)
                    continue
                break
        return self._transport.peer_certificate

    def serves_tls(self):
        """Whether a TLS handshake alone, without verification and without a request, completes at the url:
        the device runs an HTTPS server, whatever its certificate. False when it fails or cannot be told
        (not https://, or a proxy stands between)."""
        return self._transport.unverified_peer_certificate(min(self.timeout, 10.0)) is not None

    def login(self, scope=None, lifetime=None):
        """Log in with the passphrase and return the bearer token.

        ``scope`` defaults to the client's scope; ``lifetime`` (seconds) asks for a
        token expiring that long after the device's current time (None: 8 hours, the
        device's default, asked for explicitly). The token becomes the client's token when ``scope`` is the
        client's scope. The PBKDF2 key is derived once per client and device identity.
        """
        if not self.passphrase:
            raise HemError('this needs credentials: set passphrase, or token with a token from encedo.hem.encedo_login', 'POST ' + TOKEN_PATH)
        self._check_plain_http('POST ' + TOKEN_PATH)
        scope = scope or self.scope
        attempts = 2
        for attempt in range(attempts):
            challenge = self._challenge()
            for name in ('eid', 'spk', 'jti'):
                field(challenge, name, str, 'GET ' + TOKEN_PATH)
            eid = challenge['eid']
            if eid not in self._keys:
                self._keys[eid] = derive_keypair(self.passphrase, eid)
            private_bytes, public_b64 = self._keys[eid]
            # Use the device's clock, not ours: the challenge expires 60 s after the device's now.
            now = int(challenge['exp']) - CHALLENGE_LIFETIME if isinstance(challenge.get('exp'), int) else int(time.time())
            # An explicit expiry, as every vendor client sends (OA reads 0 as 8 h only from firmware 1.2.2).
            exp = now + int(lifetime or TOKEN_LIFETIME)
            proof = build_auth_jwt(challenge, private_bytes, public_b64, scope, now, exp)
            try:
                answer = self._request('POST', TOKEN_PATH, {'auth': proof}, auth=False)
            except HemOutcomeUnknown:
                # A login changes nothing on the device: asking again (with a fresh challenge) is safe.
                if attempt + 1 < attempts:
                    continue
                raise
            break
        token = field(answer, 'token', str, 'POST ' + TOKEN_PATH)
        if not token:
            raise HemError('the device answered without a token', 'POST ' + TOKEN_PATH)
        expires = jwt_claims(token).get('exp') or exp
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

    def _check_plain_http(self, endpoint):
        """HemError before anything is sent when credentials would go over plain HTTP without allow_plain_http."""
        if not self._transport.https and not self.allow_plain_http:
            raise HemError(PLAIN_HTTP_REFUSED % self.url, endpoint)

    def _call(self, method, path, body, auth, **options):
        if auth and (self.token or self.passphrase):
            self._check_plain_http('%s %s' % (method, path))
        if auth and not self.token:
            self.login()
        try:
            return self._request(method, path, body, auth, **options)
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
        self.relogged = True
        return self._request(method, path, body, auth, **options)

    def _meaning(self, method, path, status, auth):
        """What ``status`` means here: with the url's path for a 404, the scopes for a 403 on an authenticated request."""
        scopes = None
        if status == 403 and auth and self.token:
            token_scope = jwt_claims(self.token).get('scope')
            if isinstance(token_scope, str) and token_scope and not token_scope.startswith(self.scope):
                scopes = (self.scope, token_scope)
        return status_meaning(method, path, status, bool(self.passphrase), url_path=self._url_path, scopes=scopes)

    def _request(self, method, path, body, auth, retry_statuses=RETRY_STATUSES, retries=None, limit=MAX_ANSWER, raw=None,
                 timeout=None, with_status=False, sink=None):
        """One call (retried as the rules say). ``limit``: bytes of the answer read at most; ``raw``: ``(bytes, headers)``
        sent instead of a JSON ``body``; ``timeout``: seconds instead of the client's; ``with_status``: -> ``(status, answer)``;
        ``sink``: a file the answer is streamed to (a download), instead of being decoded."""
        endpoint = '%s %s' % (method, path)
        data = None
        headers = {'Accept': 'application/json', 'Connection': 'close'}  # the device closes every connection (PROTOCOL.md, Transport)
        if sink is not None:
            headers['Accept'] = 'text/plain'
        if raw is not None:
            data = raw[0]
            headers.update(raw[1])
        elif body is not None:
            data = json.dumps(body, separators=(',', ':')).encode('utf-8')
            if len(data) > MAX_JSON_BODY:
                raise HemError('the request body is %d bytes, over the device limit of %d bytes for JSON bodies; nothing was sent'
                               % (len(data), MAX_JSON_BODY), endpoint)
            headers['Content-Type'] = 'application/json'
        if auth and self.token:
            headers['Authorization'] = 'Bearer ' + self.token

        retries = self.retries if retries is None else retries
        timeout = self.timeout if timeout is None else float(timeout)
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            delay = None
            # A read that may be retried gets half of what is left, so that a hung answer
            # leaves time for another try; a write (or the last try) gets all of it.
            wait = remaining / 2 if method == 'GET' and attempt < retries else remaining
            try:
                answer = self._send(method, path, data, headers, max(wait, min(remaining, 1.0), 0.1), limit=limit,
                                    **({'sink': sink} if sink is not None else {}))
            except AnswerTooLarge as exc:
                raise HemError('the device at %s answered with more than %d bytes, the limit for this answer; the rest was not read'
                               % (self.url, exc.limit), endpoint, exc.status)
            except TransportError as exc:
                if exc.tls and 'WRONG_VERSION_NUMBER' in exc.reason:
                    raise HemTlsError('%s answers plain HTTP, not TLS, on this port (%s): use the https:// url of the device\'s '
                                      'HTTPS port (e.g. https://<host> on port 443), or for a device without a TLS bundle see '
                                      'http_url and tls_bundle; validate_certs and ca_path do not change this'
                                      % (self.url, exc.reason), endpoint, reason=exc.reason)
                if exc.tls:
                    raise HemTlsError('TLS certificate verification or handshake failed with %s (%s). Set ca_path to the CA that signed '
                                      'the device certificate, or validate_certs to false (not recommended)' % (self.url, exc.reason), endpoint,
                                      reason=exc.reason)
                if exc.sent and method != 'GET':
                    if exc.timeout:
                        raise HemOutcomeUnknown('no answer within %.0f s after the request was sent: it may or may not have been applied; '
                                                'check the device state before trying again' % timeout, endpoint)
                    raise HemOutcomeUnknown('the connection was lost after the request was sent: it may or may not have been applied; '
                                            'check the device state before trying again (%s)' % exc.reason, endpoint)
                if exc.timeout:
                    error = HemError('no answer within the timeout of %.0f s (%s)' % (timeout, exc.reason), endpoint)
                else:
                    error = HemError('cannot reach the device at %s (%s)' % (self.url, exc.reason), endpoint)
            else:
                if 200 <= answer.status < 300:
                    decoded = self._decode(answer, endpoint)
                    return (answer.status, decoded) if with_status else decoded
                error = HemError(self._meaning(method, path, answer.status, auth), endpoint, answer.status)
                if method != 'GET' or answer.status not in retry_statuses:
                    raise error
                delay = _parse_retry_after(answer.headers.get('Retry-After'))

            attempt += 1
            if delay is None:
                delay = min(BACKOFF_BASE * (2 ** (attempt - 1)), MAX_BACKOFF)
                delay += random.uniform(0, delay / 10)
            remaining = deadline - time.monotonic()
            if attempt > retries or delay >= remaining:
                if attempt > 1:
                    error.msg += ' (gave up after %d attempts)' % attempt
                raise error
            self._sleep(delay)

    def _send(self, method, path, data, headers, timeout, limit=MAX_ANSWER, sink=None):
        """One request (the only place that touches the network); an Answer, or TransportError. ``sink``: see Transport.send."""
        if sink is None:
            return self._transport.send(method, path, data, headers, timeout, limit=limit)
        return self._transport.send(method, path, data, headers, timeout, limit=limit, sink=sink)

    @staticmethod
    def _decode(answer, endpoint):
        """The answer's JSON object ({} for an empty body); HemError naming the endpoint for anything else."""
        if not answer.body or not answer.body.strip():
            return {}
        try:
            decoded = json.loads(answer.body.decode('utf-8'))
        except ValueError:
            raise HemError('the device answered HTTP %d with a body that is not JSON' % answer.status, endpoint)
        except RecursionError:
            raise HemError('the device answered HTTP %d with JSON nested too deeply to read' % answer.status, endpoint)
        if not isinstance(decoded, dict):
            raise HemError('the device answered HTTP %d with %s where a JSON object was expected' % (answer.status, kind_name(decoded)),
                           endpoint)
        return decoded
