# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils file is PRIVATE to the encedo.hem collection: its API may change
# at any time without notice. Do not use it from other collections.

"""A device without a TLS bundle (factory-fresh TLS): detect it, say what it needs, store a bundle.

The OpenAPI file (``POST /api/system/config``): on a factory-fresh device an
unauthenticated body with ``tls`` {emp, key, crt} is persisted as the initial TLS bundle
and the HTTPS server is started; ``GET /api/system/status`` over plain HTTP carries
``https`` (false until then). The vendor's web manager gets that bundle from the vendor
backend's domain registration (PROTOCOL.md "Factory-fresh TLS"); the collection never
talks to the vendor backend, the user brings the bundle (option ``tls_bundle``).

Flow of ``prepare(module)`` (encedo_info, encedo_init, encedo_factory_reset):
1. check the options before any request;
2. one HTTPS status read without retries; when it answers, that is all (no other request);
3. when the connection fails, and no TLS handshake completes at ``url`` (checked without
   verification: a device whose certificate fails verification has a bundle, whatever its
   status says), one plain-HTTP status read at ``http_url`` (default ``http://<host of url>``,
   port 80); ``https: false`` there means the device has no bundle;
4. with a bundle given and the device not personalised: POST it over plain HTTP (check
   mode: nothing is sent), wait until HTTPS answers and verifies with ``ca_path``, go on
   over HTTPS. The OpenAPI file says the HTTPS server starts when the bundle is stored; the
   vendor's rescue page reboots the device after storing one (core-rescue-final.js
   ``makeCheckin``). Both are handled: when HTTPS does not answer within
   ``HTTPS_START_WAIT`` and the plain-HTTP status still says ``https: false``, the device
   is rebooted over plain HTTP (unauthenticated on a device that is not personalised, as the
   rescue page does it; no credentials) and HTTPS is waited for again. Nothing else is ever sent over plain HTTP: no token, no passphrase; the
   bundle's private key is encrypted to the device (``emp``/``key``), the certificate is
   public.

``fresh_argument_spec()`` is documented by the doc fragment ``encedo.hem.fresh_tls``.
"""

from __future__ import annotations

import os
import time
from urllib.parse import urlsplit

from ansible.module_utils.basic import env_fallback

from ansible_collections.encedo.hem.plugins.module_utils._errors import HemError, HemOutcomeUnknown
from ansible_collections.encedo.hem.plugins.module_utils._login import b64
from ansible_collections.encedo.hem.plugins.module_utils._module import POLL

HTTP_URL_ENV = 'ENCEDO_HEM_HTTP_URL'
CONFIG = '/api/system/config'
POLL_INTERVAL = 0.5
PROBE_TIMEOUT = 10
#: Seconds a stored bundle may take to be served before the device is rebooted to serve it (the vendor's rescue page
#: reboots 4.9 s after storing one).
HTTPS_START_WAIT = 5.0
#: Seconds to wait for HTTPS after that reboot (at least; ``timeout`` when longer): the vendor's manager waits up to
#: about a minute for a device to come back from a reboot.
REBOOT_WAIT = 90
REBOOT = '/api/system/reboot'

NEEDED = ('It needs a TLS bundle: a certificate for the device (crt, for the name in url, issued by a CA in ca_path) and that '
          "certificate's private key encrypted to the device (emp and key, the form encedo.hem.encedo_tls key_import takes), "
          "as the vendor's web manager gets it from the vendor backend's domain registration. Give it as option tls_bundle of "
          'encedo.hem.encedo_info or encedo.hem.encedo_init (role encedo.hem.device: encedo_hem_tls_bundle); it is stored '
          'over plain HTTP, as the firmware requires, and the task goes on over HTTPS.')


def fresh_argument_spec(bundle=True):
    """``http_url`` (and ``tls_bundle`` unless bundle is false); a fresh dict on every call."""
    spec = dict(http_url=dict(type='str', fallback=(env_fallback, [HTTP_URL_ENV])))
    if bundle:
        spec['tls_bundle'] = dict(type='dict', no_log=False, required_together=[('emp', 'key')], options=dict(
            emp=dict(type='str'),
            key=dict(type='str', no_log=True),
            crt=dict(type='str', required=True),
        ))
    return spec


def plain_http_url(params):
    """The plain-HTTP address of the device: ``http_url``, else http://<host of url> (port 80)."""
    if params.get('http_url'):
        return params['http_url'].rstrip('/')
    host = urlsplit(params['url']).hostname or ''
    return 'http://%s' % ('[%s]' % host if ':' in host else host)


def check_inputs(params):
    """Check http_url and tls_bundle before any request. Returns the bundle to send ({emp, key, crt as
    base64 DER}, or None) and its certificate; raises ValueError naming the option."""
    http_url = params.get('http_url')
    if http_url:
        try:
            parts = urlsplit(http_url)
            parts.port
        except ValueError as exc:
            raise ValueError('option http_url: %r is not an address (%s); expected e.g. http://192.168.7.1' % (http_url, exc))
        if parts.scheme != 'http' or not parts.hostname or parts.query or parts.fragment:
            raise ValueError('option http_url: %r must be a plain http:// address of the device with a host and no query, '
                             'e.g. http://192.168.7.1' % http_url)
    given = params.get('tls_bundle')
    if not given:
        return None, None
    from ansible_collections.encedo.hem.plugins.module_utils import _x509
    if not _x509.HAS_CRYPTOGRAPHY:
        raise ValueError('option tls_bundle needs the Python library "cryptography": %s' % _x509.CRYPTOGRAPHY_IMPORT_ERROR)
    bundle = {}
    if given.get('emp') is not None:
        try:
            bundle.update(_x509.validate_key_import(given['emp'], given['key']))
        except _x509.X509Error as exc:
            raise ValueError('option %s' % str(exc).replace('key_import.', 'tls_bundle.', 1))
    try:
        cert = _x509.load_certificate(given['crt'])
    except _x509.X509Error as exc:
        raise ValueError('option tls_bundle.crt %s' % exc)
    facts = _x509.certificate_facts(cert)
    if _x509.is_expired(cert):
        raise ValueError('option tls_bundle.crt: the certificate expired on %s; the device would serve an expired certificate'
                         % facts['not_after'])
    if params.get('validate_certs', True):
        host = urlsplit(params['url']).hostname or ''
        if not _x509.tls_client_accepts_host(cert, host):
            raise ValueError('option tls_bundle.crt: the certificate names %s, not %s (the host in url), so HTTPS would not verify; '
                             'allowed: a certificate whose subjectAltName has the name or address in url'
                             % (', '.join(facts['subject_alt_names']) or 'nothing', host))
        ca_path = params.get('ca_path')
        if ca_path and os.path.isfile(ca_path):
            try:
                with open(ca_path, 'rb') as fh:
                    cas = _x509.load_certificates(fh.read())
            except (OSError, _x509.X509Error) as exc:
                raise ValueError('option ca_path: %s cannot be read as PEM CA certificates (%s)' % (ca_path, exc))
            if not _x509.issued_by_any(cert, cas):
                raise ValueError('option tls_bundle.crt: the certificate (issuer %s) is not issued by a CA in ca_path %s, so HTTPS '
                                 'would not verify once the device serves it; allowed: a certificate issued by a CA in ca_path'
                                 % (facts['issuer'], ca_path))
    bundle['crt'] = b64(_x509.cert_der(cert))
    return bundle, cert


class FreshTls(object):
    """What ``prepare`` found. ``status``: the status answer (over HTTPS when it answered, else the
    plain-HTTP one, else None); ``poller``: the client of that HTTPS status read, else None; ``https``: False when the device has no TLS bundle (and none was
    stored), True when HTTPS answers, None when unknown; ``missing``: the device has no bundle and
    this run did not store one; ``stored``: this run stored one (check mode: would store);
    ``message``: what the user needs to know, or None."""

    def __init__(self):
        self.status = None
        self.https = None
        self.missing = False
        self.stored = False
        self.message = None
        self.http_url = None
        self.poller = None      # the client whose HTTPS status read answered (its served certificate is known)

    def result(self):
        """The result fields every module returns about it."""
        out = dict(tls_bundle_stored=self.stored)
        if self.https is not None:
            out['https'] = self.https
        if self.missing:
            out['tls_bundle_needed'] = True
        return out


def plain_status(module):
    """GET /api/system/status over plain HTTP (no credentials, no retries); None when it does not answer."""
    try:
        return module.client(**dict(POLL, url=plain_http_url(module.params), timeout=PROBE_TIMEOUT)).status()
    except HemError:
        return None


def prepare(module, bundle=None):
    """Detect a device without a TLS bundle and store ``bundle`` (from ``check_inputs``) when one is given.

    Returns a FreshTls. Raises HemError when storing fails.
    """
    params = module.params
    found = FreshTls()
    found.http_url = plain_http_url(params)
    if not params['url'].lower().startswith('https:'):
        return found        # plain-HTTP url: the status itself says whether HTTPS runs
    try:
        found.poller = module.client(**dict(POLL, timeout=PROBE_TIMEOUT))
        found.status = found.poller.status()
        found.https = True
        return found
    except HemError as exc:
        if exc.status is not None:
            return found    # HTTPS answered (an HTTP error): not this module's business
        # An HTTPS server that completes a handshake (its certificate did not verify, say) means the device
        # has a TLS bundle whatever its plain-HTTP status says (a PPA has said https: false over working
        # HTTPS): a private key never goes over plain HTTP to it. The module's own requests report the error.
        if 'CERTIFICATE_VERIFY' in str(exc) or found.poller.serves_tls():
            return found
    plain = plain_status(module)
    if plain is None or plain.get('https') is not False:
        return found        # unreachable, rebooting or a TLS problem: the module's own requests report it
    found.status = plain
    found.https = False
    where = 'the device at %s has no TLS bundle, so its HTTPS server is off (plain-HTTP status at %s says https: false)' % (
        params['url'], found.http_url)
    if plain.get('inited') is not False:
        found.missing = True
        found.message = (where + ', and it is personalised: the firmware takes a bundle without a login only while the device is '
                         'not personalised, and this collection never sends a bearer token over plain HTTP. Store a bundle with '
                         "the vendor's web manager. Nothing was sent.")
        return found
    if bundle is None:
        found.missing = True
        found.message = where + '. ' + NEEDED + ' Nothing was sent.'
        return found
    found.stored = True
    if module.check_mode:
        found.message = where + ': the TLS bundle given in tls_bundle would be stored over plain HTTP (check mode: nothing was sent).'
        return found
    try:
        module.client(**dict(POLL, url=found.http_url, timeout=params['timeout'])).post(CONFIG, {'tls': bundle}, auth=False)
    except HemOutcomeUnknown:
        pass                # the answer was lost: whether HTTPS comes up with the bundle tells
    except HemError as exc:
        if exc.status in (400, 406):
            exc.msg = ('the device refused the TLS bundle given in tls_bundle (%s): emp and key must be encrypted to this '
                       "device and crt must be the certificate of that key; get a bundle made for this device. Nothing was stored"
                       % exc.msg)
        raise
    try:
        found.status, rebooted = start_https(module, found.http_url)
    except HemError as exc:
        raise HemError(str(exc), result=dict(changed=True, tls_bundle_stored=True))
    found.https = True
    found.message = where + ': the TLS bundle given in tls_bundle was stored over plain HTTP and HTTPS answers with it.'
    if rebooted:
        found.message += (' HTTPS did not start with the bundle, so the device was rebooted to serve it (as the vendor\'s '
                          'rescue page does); its clock is unset again until a check-in (encedo.hem.encedo_checkin).')
    return found


def start_https(module, http_url):
    """After a bundle was stored: HTTPS answering with it -> (status, rebooted). A device that serves it at once (the
    OpenAPI file) is read within HTTPS_START_WAIT s; one that still says ``https: false`` over plain HTTP then is
    rebooted over plain HTTP (no token: the device is not personalised) and waited for."""
    params = module.params
    status = wait_for_https(module, within=min(HTTPS_START_WAIT, params['timeout']), quiet=True)
    if status is not None:
        return status, False
    plain = plain_status(module)
    if plain is None or plain.get('https') is not False:
        # Not the "stored, served from the next boot" state: wait as before; the error says what HTTPS answers.
        return wait_for_https(module), False
    try:
        module.client(**dict(POLL, url=http_url, timeout=PROBE_TIMEOUT)).get(REBOOT, auth=False)
    except HemError as exc:
        # OpenAPI: the device answers 200 and closes the connection; an answer lost that way (no HTTP status) is no
        # failure: whether HTTPS comes up tells.
        if exc.status is not None:
            raise HemError('the TLS bundle was stored over plain HTTP, but HTTPS did not start with it and the device refused the '
                           'reboot that serves it (%s); reboot the device (power-cycle it), then run the task again: the '
                           'device then serves HTTPS and nothing is sent again' % exc)
    return wait_for_https(module, within=max(REBOOT_WAIT, params['timeout'])), True


def wait_for_https(module, within=None, quiet=False):
    """Poll the HTTPS status until it answers and verifies, for at most ``within`` seconds (default ``timeout``); the
    status answer. When the time is up: None with ``quiet``, else a HemError."""
    params = module.params
    within = params['timeout'] if within is None else within
    deadline = time.monotonic() + within
    poller = module.client(**POLL)
    while True:
        try:
            return poller.status()
        except HemError as exc:
            if 'CERTIFICATE_VERIFY_FAILED' in str(exc):
                raise HemError('the TLS bundle was stored, but the certificate the device now serves does not verify (%s): ca_path '
                               'must hold the CA that issued tls_bundle.crt' % exc)
            if time.monotonic() + POLL_INTERVAL >= deadline:
                if quiet:
                    return None
                raise HemError('the TLS bundle was sent over plain HTTP, but HTTPS at %s did not answer within %d s (%s); read the '
                               'plain-HTTP status (encedo.hem.encedo_info) to see whether the device took it' % (params['url'], within, exc))
        time.sleep(POLL_INTERVAL)


def run_with_tls_bundle(fn):
    """Wrap a module's ``run(module, client, status=None)`` (encedo_init): first ``prepare``; a device without a
    bundle and none given fails with what it needs; a stored bundle makes the result changed.
    """
    def wrapped(module, client):
        try:
            bundle = check_inputs(module.params)[0]
        except ValueError as exc:
            raise HemError(str(exc))
        found = prepare(module, bundle)
        if found.missing:
            raise HemError(found.message, result=dict(changed=False, **found.result()))
        if found.stored and module.check_mode:
            # Check mode reads only: the prediction is made from the plain-HTTP answers, with a client
            # that holds no credentials (nothing secret can go over plain HTTP).
            # (no credentials: nothing secret goes over plain HTTP)
            client = module.client(url=found.http_url, passphrase=None, token=None)
        try:
            # The status read while looking for HTTPS is the module's status read: no second request.
            result = fn(module, client, status=found.status)
        except HemError as exc:
            if not found.stored or module.check_mode:
                raise
            raise HemError('%s (the TLS bundle was stored first)' % exc, result=dict(changed=True, **found.result()))
        result.update(found.result())
        if found.stored:
            result['changed'] = True
            result['msg'] = found.message
        return result
    return wrapped
