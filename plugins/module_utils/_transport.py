# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils file is PRIVATE to the encedo.hem collection: its API may change
# at any time without notice. Do not use it from other collections.

"""The HTTP transport of HemClient: ``requests``, one session per client, one try per call.

- ``requests`` (and urllib3) are imported on the first request, not when a module starts:
  a module run that sends nothing does not pay their import.
- TLS: verification on unless ``validate_certs`` is false. Trust: ``ca_path`` (a PEM file
  or a hashed directory) when given, and then nothing else (no environment variable
  replaces it); without it, certifi's bundle (what requests trusts by default). No
  environment variable is read for trust: ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE`` and
  ``SSL_CERT_FILE`` can neither widen nor narrow it (the session does not trust the environment).
- Proxies: ``proxy_url`` when given (for every request, ``no_proxy`` does not apply), else
  the environment as requests reads it (``https_proxy``/``http_proxy``/``all_proxy``, http://
  or https:// proxies, ``no_proxy`` with host names, domains and CIDR blocks). ``.netrc``
  is never read (the bearer token is the only credential sent to a device).
- urllib3's own retries are off: HemClient's retry rules (reads only) are the only ones.
- Every request says ``Connection: close``: the device closes the connection after each
  answer (PROTOCOL.md "Transport"), so a connection is never reused; the one session per
  client keeps the TLS and proxy set-up in one place.
- Every answer is bounded: at most ``limit`` bytes are read (``MAX_ANSWER`` unless the caller
  needs more), a ``Content-Length`` above it is refused unread, and compression is neither
  asked for (``Accept-Encoding: identity``) nor accepted (an encoded answer is refused unread,
  so no decompression bomb can inflate). One deadline covers a request from connect to its
  last byte: ``timeout`` is the time for the whole answer, not for each read (a watchdog
  shuts the socket down when it runs out, also during the TLS handshake or the headers).
- The certificate the device presented is captured from every HTTPS handshake
  (``peer_certificate``), so reading it costs no connection of its own; and the transport
  knows whether a request was handed to the connection (``sent``), which decides whether a
  write whose answer was lost may have been applied.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import warnings

from urllib.parse import urlsplit

from ansible_collections.encedo.hem.plugins.module_utils._errors import HemError

#: Seconds a connection (TCP, proxy tunnel) may take to be set up, at most.
CONNECT_TIMEOUT = 10.0
#: Bytes of an answer read at most unless a request asks for another limit: the device answers small JSON
#: objects (the status, the configuration, a certificate: a few kilobytes; a request body is at most 7300 bytes).
MAX_ANSWER = 256 * 1024
#: Bytes asked of the connection per read of an answer.
READ_CHUNK = 64 * 1024
#: Bytes of one audit log file (``GET /api/logger/{file}``) a download accepts, at most: the file is
#: streamed to disk (``sink``), never held in memory, and a larger answer is refused rather than kept.
MAX_LOG_FILE = 64 * 1024 * 1024


class Answer(object):
    """A complete HTTP answer: ``status``, ``body`` (bytes), ``headers`` (case-insensitive mapping)."""
    __slots__ = ('status', 'body', 'headers')

    def __init__(self, status, body, headers):
        self.status = status
        self.body = body
        self.headers = headers


class TransportError(Exception):
    """No complete answer came. ``sent``: the request may have reached the device (False:
    the connection, proxy tunnel or TLS handshake failed first); ``timeout``: time ran out;
    ``tls``: the TLS handshake or certificate verification failed."""

    def __init__(self, reason, sent, timeout=False, tls=False):
        super().__init__(reason)
        self.reason = reason
        self.sent = sent
        self.timeout = timeout
        self.tls = tls


class AnswerTooLarge(TransportError):
    """The device answered with more than ``limit`` bytes: the rest was not read. ``status``: its HTTP status."""

    def __init__(self, limit, status):
        super().__init__('the answer is larger than %d bytes' % limit, sent=True)
        self.limit = limit
        self.status = status


class _Deadline(object):
    """Shuts down the connection's socket when ``timeout`` seconds have passed: one deadline for a
    request, from connect to the last byte of its answer, however slowly the other end sends."""

    def __init__(self, timeout):
        self.expired = False
        self._fds = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(timeout, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock):
        """Called with every socket the request opens (before TLS or a proxy tunnel is set up on it)."""
        with self._lock:
            self._fds.append(sock.fileno())
            if self.expired:
                raise socket.timeout('timed out')

    def _expire(self):
        with self._lock:
            self.expired = True
            for fd in self._fds:
                # by descriptor: the TLS layer takes the socket object's descriptor over (detach)
                try:
                    sock = socket.socket(fileno=fd)
                except OSError:
                    continue
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                finally:
                    sock.detach()

    def cancel(self):
        with self._lock:
            self._timer.cancel()
            self._fds = []


def reason(exc):
    """A short description of a connection error (host names and reasons only, never a secret)."""
    text = str(exc)
    ssl_reason = re.search(r'\[SSL: ([A-Z0-9_]+)\] ([^(\'"]*)', text)
    if ssl_reason:
        return '%s: %s' % (ssl_reason.group(1), ssl_reason.group(2).strip())
    for pattern in (r'\[Errno -?\d+\] [^\'")]*', r'timed out', r'Remote end closed connection without response',
                    r'Tunnel connection failed: [^\'")]*', r'Connection reset by peer', r'Connection refused'):
        found = re.search(pattern, text)
        if found:
            return found.group(0).strip()
    # urllib3 puts the proxy URL (with its credentials) into some messages: never repeat those.
    return re.sub(r'//[^/@\s]*@', '//', text)[:300] or type(exc).__name__


def check_ca_path(ca_path):
    """HemError unless ``ca_path`` loads as CA certificates (a PEM file, or a directory)."""
    import ssl
    try:
        if os.path.isdir(ca_path):
            ssl.create_default_context(capath=ca_path)
        else:
            ssl.create_default_context(cafile=ca_path)
    except (OSError, ValueError) as exc:
        raise HemError('ca_path %s cannot be read as a PEM CA bundle (%s)' % (ca_path, exc))


def default_trust():
    """The trust when no ``ca_path`` is given: True, i.e. certifi's bundle, requests' own default. Never
    from the environment (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``): a variable set for other tools
    (a corporate proxy CA in an execution environment, say) must not decide which devices are trusted."""
    return True


def _proxy_names(url):
    """The proxy's scheme and host of a proxy URL (never its credentials)."""
    parts = urlsplit(url if '://' in url else 'http://' + url)
    return '%s://%s' % (parts.scheme or '?', parts.hostname or '?')


class Transport(object):
    """Sends one request at a time to the device at ``url`` (its path prefixes every request path)."""

    def __init__(self, url, validate_certs=True, ca_path=None, proxy_url=None):
        self.url = url.rstrip('/')
        self.https = self.url.lower().startswith('https:')
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.proxy_url = proxy_url or None
        #: DER certificate the device presented in the last TLS handshake (None before any).
        self.peer_certificate = None
        #: whether the request being sent was handed to its connection (set by the connection).
        self.sent = False
        self._session = None
        self._verify = None
        self._deadline = None

    def close(self):
        if self._session is not None:
            self._session.close()
            self._session = None

    def unverified_peer_certificate(self, timeout):
        """The DER certificate the device presents, read by a TLS handshake alone with no verification and
        no HTTP request (only to tell a user which certificate failed verification); None when a proxy
        stands between (no direct handshake then) or the handshake fails."""
        if not self.https or self.proxies():
            return None
        import socket
        import ssl
        parts = urlsplit(self.url)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            with socket.create_connection((parts.hostname, parts.port or 443), timeout=timeout) as raw:
                with ctx.wrap_socket(raw, server_hostname=parts.hostname) as tls:
                    return tls.getpeercert(binary_form=True)
        except (OSError, ssl.SSLError, ValueError, UnicodeError):
            return None

    def proxies(self):
        """The proxies of this client's URL: ``proxy_url``, else the environment's (with no_proxy)."""
        if self.proxy_url:
            return {'http': self.proxy_url, 'https': self.proxy_url}
        if not any(name.lower().endswith('_proxy') for name in os.environ):
            return {}
        from requests.utils import get_environ_proxies
        return get_environ_proxies(self.url)

    def send(self, method, path, data, headers, timeout, limit=MAX_ANSWER, sink=None):
        """One request, all of it (connect, TLS, proxy tunnel, the whole answer) within ``timeout`` seconds, its
        answer at most ``limit`` bytes; an Answer, or TransportError when no complete answer came (AnswerTooLarge
        past the limit). ``sink``: a binary file that a 2xx answer's body is streamed into (emptied first; the
        Answer's body is then empty)."""
        if self._session is None:
            if self.https and self.validate_certs and self.ca_path:
                check_ca_path(self.ca_path)
            try:
                self._session = _new_session(self)
            except ImportError as exc:
                raise HemError('the Python library "requests" is required on the host that runs the module (pip install requests): %s' % exc)
            self._verify = (self.ca_path or default_trust()) if self.validate_certs else False
        import requests
        import urllib3
        self.sent = False
        proxies = self.proxies()
        headers = dict(headers, **{'Accept-Encoding': 'identity'})
        self._deadline = deadline = _Deadline(timeout)
        try:
            return self._exchange(method, path, data, headers, timeout, limit, proxies, sink)
        except AnswerTooLarge:
            raise
        except (TransportError, requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError, UnicodeError) as exc:
            if deadline.expired:
                raise TransportError('no complete answer within %.0f s' % timeout if self.sent else 'timed out connecting',
                                     sent=self.sent, timeout=True)
            if isinstance(exc, TransportError):
                raise
            raise self._failure(exc, proxies)
        finally:
            deadline.cancel()
            self._deadline = None

    def _exchange(self, method, path, data, headers, timeout, limit, proxies, sink=None):
        """The request and its answer, read in chunks up to ``limit`` bytes, never decoded."""
        with warnings.catch_warnings():
            # validate_certs: false is warned about once by the module, not at every request
            warnings.simplefilter('ignore')
            resp = self._session.request(method, self.url + path, data=data, headers=headers, verify=self._verify,
                                         proxies=proxies, timeout=(min(timeout, CONNECT_TIMEOUT), timeout),
                                         allow_redirects=False, stream=True)
            # The device closes the connection after its answer, whether or not it says so: never let
            # the pool reuse it (a request on a closed connection would make a write "outcome unknown").
            connection = getattr(resp.raw, 'connection', None)
            try:
                body = self._read(resp, limit, sink if 200 <= resp.status_code < 300 else None)
            finally:
                # no watchdog on a descriptor about to be closed (and perhaps reused)
                self._deadline.cancel()
                resp.close()
                if connection is not None:
                    connection.close()
        if self._deadline.expired:
            # the watchdog ended the connection: what was read may be cut short
            raise TransportError('timed out', sent=True, timeout=True)
        return Answer(resp.status_code, body, resp.headers)

    @staticmethod
    def _read(resp, limit, sink=None):
        encoding = resp.headers.get('Content-Encoding', '').strip().lower()
        if encoding not in ('', 'identity'):
            raise TransportError('the answer is compressed (Content-Encoding %s) although Accept-Encoding: identity asked for it '
                                 'uncompressed; it was not read' % encoding[:40], sent=True)
        length = resp.headers.get('Content-Length', '').strip()
        if length.isdigit() and int(length) > limit:
            raise AnswerTooLarge(limit, resp.status_code)
        if resp.raw is None:
            return b''
        chunks = []
        if sink is not None:
            sink.seek(0)
            sink.truncate()
        size = 0
        while True:
            chunk = resp.raw.read(READ_CHUNK, decode_content=False)
            if not chunk:
                if sink is not None:
                    sink.flush()
                return b''.join(chunks)
            size += len(chunk)
            if size > limit:
                raise AnswerTooLarge(limit, resp.status_code)
            if sink is not None:
                sink.write(chunk)
            else:
                chunks.append(chunk)

    def _failure(self, exc, proxies):
        """The TransportError (or HemError) for an exception of requests."""
        import requests
        import urllib3
        if isinstance(exc, requests.exceptions.SSLError):
            return TransportError(reason(exc), sent=False, tls=True)
        if isinstance(exc, requests.exceptions.ProxyError):
            proxy = _proxy_names(self.proxy_url or requests.utils.select_proxy(self.url, proxies) or '')
            return TransportError('the proxy %s failed (%s)' % (proxy, reason(exc)), sent=self.sent, tls='CERTIFICATE_VERIFY' in str(exc))
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return TransportError('timed out connecting', sent=False, timeout=True)
        if isinstance(exc, (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError)):
            return TransportError('timed out waiting for the answer' if self.sent else 'timed out connecting (%s)' % reason(exc),
                                  sent=self.sent, timeout=True)
        if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.InvalidProxyURL, requests.exceptions.MissingSchema,
                            requests.exceptions.InvalidSchema, UnicodeError)):
            return HemError('the url %s cannot be used (%s): check the host name (an internationalised name must be a valid '
                            'IDNA name) and the proxy settings' % (self.url, reason(exc)))
        return TransportError(reason(exc), sent=self.sent)


def _new_session(transport):
    """A requests Session for ``transport``: no environment reading, no urllib3 retries, and
    connections that tell the transport when a request is handed to them and which
    certificate the device presented."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    def watched(sock):
        if transport._deadline is not None:
            try:
                transport._deadline.watch(sock)
            except OSError:
                sock.close()
                raise
        return sock

    class Connection(HTTPConnection):
        def _new_conn(self):
            return watched(super(Connection, self)._new_conn())

        def request(self, *args, **kwargs):
            if self.sock is None:
                self.connect()          # plain HTTP connects lazily: a refused connection has sent nothing
            transport.sent = True
            return super(Connection, self).request(*args, **kwargs)

    class TlsConnection(HTTPSConnection):
        def _new_conn(self):
            return watched(super(TlsConnection, self)._new_conn())

        def connect(self):
            super(TlsConnection, self).connect()
            if transport.https:
                try:
                    transport.peer_certificate = self.sock.getpeercert(binary_form=True)
                except (AttributeError, ValueError, OSError):
                    transport.peer_certificate = None

        def request(self, *args, **kwargs):
            if self.sock is None:
                self.connect()
            transport.sent = True
            return super(TlsConnection, self).request(*args, **kwargs)

    class Pool(HTTPConnectionPool):
        ConnectionCls = Connection

    class TlsPool(HTTPSConnectionPool):
        ConnectionCls = TlsConnection

    pools = {'http': Pool, 'https': TlsPool}

    class Adapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            super(Adapter, self).init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = pools

        def proxy_manager_for(self, *args, **kwargs):
            manager = super(Adapter, self).proxy_manager_for(*args, **kwargs)
            manager.pool_classes_by_scheme = pools
            return manager

    session = requests.Session()
    session.trust_env = False           # proxies and trust are decided by Transport; never .netrc
    adapter = Adapter(max_retries=0)    # HemClient retries reads itself; writes are never repeated
    session.mount('https://', adapter)
    session.mount('http://', adapter)
    return session
