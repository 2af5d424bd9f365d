# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils file is PRIVATE to the encedo.hem collection: its API may change
# at any time without notice. Do not use it from other collections.

"""The connection options shared by every encedo.hem module and the HemModule base (the one
way a module gets a HemClient: ``HemModule.client(**overrides)``).

``hem_argument_spec()`` is documented one-to-one by the doc fragment
``encedo.hem.connection`` (a unit test keeps the two equal).
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule, env_fallback

from ansible_collections.encedo.hem.plugins.module_utils._client import HemClient
from ansible_collections.encedo.hem.plugins.module_utils._errors import HemError

#: option name -> environment variable used when the task does not set the option.
ENV_VARS = {
    'url': 'ENCEDO_HEM_URL',
    'passphrase': 'ENCEDO_HEM_PASSPHRASE',
    'token': 'ENCEDO_HEM_TOKEN',
    'validate_certs': 'ENCEDO_HEM_VALIDATE_CERTS',
    'ca_path': 'ENCEDO_HEM_CA_PATH',
    'timeout': 'ENCEDO_HEM_TIMEOUT',
    'proxy_url': 'ENCEDO_HEM_PROXY_URL',
    'allow_plain_http': 'ENCEDO_HEM_ALLOW_PLAIN_HTTP',
}


def hem_argument_spec():
    """The connection options (a fresh dict on every call)."""
    def env(name):
        return (env_fallback, [ENV_VARS[name]])

    # url is required, but checked in check_connection_options, not here: ansible-lint's args rule validates
    # a task's own arguments against this spec, so a required url set in module_defaults (the usual way)
    # would be reported as missing on every task.
    return dict(
        url=dict(type='str', fallback=env('url')),
        passphrase=dict(type='str', no_log=True, fallback=env('passphrase')),
        token=dict(type='str', no_log=True, fallback=env('token')),
        validate_certs=dict(type='bool', default=True, fallback=env('validate_certs')),
        ca_path=dict(type='path', fallback=env('ca_path')),
        timeout=dict(type='int', default=30, fallback=env('timeout')),
        # no_log: a proxy URL may carry the proxy's user and password (Ansible shows a no_log value nowhere)
        proxy_url=dict(type='str', no_log=True, fallback=env('proxy_url')),
        allow_plain_http=dict(type='bool', default=False, fallback=env('allow_plain_http')),
    )


def validate_url(url):
    """None when ``url`` is a usable device address, else the reason it is not."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ('https', 'http'):
        return 'the scheme must be https:// (or http://)'
    if not parts.hostname:
        return 'it has no host name'
    if parts.query or parts.fragment:
        return 'it must not have a query or fragment'
    if port == 0:
        return 'port 0 is not valid'
    path = parts.path.rstrip('/')
    if path == '/api' or path.startswith('/api/'):
        return ('its path %s would come before every API path (%s/api/system/status): give the device address without a path, '
                'the collection adds /api/... itself' % (parts.path, path))
    return None


def validate_proxy_url(proxy_url):
    """None when ``proxy_url`` is a usable proxy address, else the reason it is not (never repeating its credentials)."""
    try:
        parts = urlsplit(proxy_url)
        parts.port
    except ValueError as exc:
        return str(exc).replace(proxy_url, '...')
    if parts.scheme not in ('http', 'https'):
        return 'the scheme must be http:// or https://'
    if not parts.hostname:
        return 'it has no host name'
    return None


#: Seconds one status poll may take: a poll that hangs longer is retried by the next one.
POLL_REQUEST_TIMEOUT = 5
#: ``module.client(**POLL)``: a client for status polls and probes (waiting for a reboot, a wipe, a disk format,
#: HTTPS to come up): no credentials, no retries, each request at most POLL_REQUEST_TIMEOUT seconds.
POLL = dict(passphrase=None, token=None, retries=0, timeout=POLL_REQUEST_TIMEOUT)


def check_ca_path(option, path, what, result=None):
    """Fail (HemError naming ``option``) when ``path`` is given but does not exist or cannot be read; ``what``: what to give."""
    if path and not (os.path.exists(path) and os.access(path, os.R_OK)):
        raise HemError('option %s: %s does not exist or cannot be read; give %s' % (option, path, what), result=result)


class HemModule(AnsibleModule):
    """AnsibleModule with the connection options merged in.

    ``passphrase`` and ``token`` may be given together, each from the task or else from
    its environment variable: the token is used first, the passphrase logs in when there
    is no token, or once when the device refuses the token (HTTP 401). A module that had
    to replace the token it was given returns the new one as ``token`` in its result (the
    action plugin takes it out of the shown result, see plugins/plugin_utils/token_guard.py).
    Not as a fact: facts go to the fact cache, which ansible-runner (so AWX) keeps on disk.
    """

    def __init__(self, argument_spec=None, **kwargs):
        spec = hem_argument_spec()
        spec.update(argument_spec or {})
        super(HemModule, self).__init__(argument_spec=spec, **kwargs)
        self._hem_client = None

    def check_connection_options(self):
        """Refuse unusable connection options (raises HemError); ``run`` calls it before the first request."""
        if not self.params['url']:
            raise HemError('option url is required: the base URL of the device, e.g. https://my.ence.do; set it on the task, '
                           'in module_defaults (group/encedo.hem.hem) or in the environment variable ENCEDO_HEM_URL')
        problem = validate_url(self.params['url'])
        if problem:
            raise HemError('option url: %r is not a device address (%s); expected e.g. https://my.ence.do' % (self.params['url'], problem))
        if self.params['timeout'] <= 0:
            raise HemError('option timeout: must be a positive number of seconds, got %d' % self.params['timeout'])
        check_ca_path('ca_path', self.params['ca_path'], 'a PEM file (or directory) with the CA that signed the device certificate')
        problem = self.params['proxy_url'] and validate_proxy_url(self.params['proxy_url'])
        if problem:
            raise HemError('option proxy_url: not a proxy address (%s); expected e.g. http://proxy.example:3128' % problem)

    def has_credentials(self):
        """True when a passphrase or a token is available."""
        return bool(self.params['passphrase'] or self.params['token'])

    def client(self, **overrides):
        """The way a module gets a HemClient.

        Without arguments: the client of this run, made once from the connection options
        (warns once about insecure settings). With ``overrides`` (HemClient arguments: ``url``,
        ``passphrase``, ``token``, ``validate_certs``, ``ca_path``, ``timeout``, ``retries``,
        ``proxy_url``): a new client from the same options with those replaced, e.g.
        ``client(**POLL)`` for status polls, ``client(passphrase=new)`` for a trial login,
        ``client(url=backend, ...)`` for the check-in backend. A ``timeout`` override never
        exceeds the ``timeout`` option.
        """
        if not overrides and self._hem_client is not None:
            return self._hem_client
        params = self.params
        settings = dict(url=params['url'], passphrase=params['passphrase'], token=params['token'],
                        validate_certs=params['validate_certs'], ca_path=params['ca_path'], timeout=params['timeout'],
                        proxy_url=params['proxy_url'], allow_plain_http=params['allow_plain_http'], warn=self.warn)
        if 'timeout' in overrides:
            overrides['timeout'] = min(overrides['timeout'], params['timeout'])
        settings.update(overrides)
        if overrides:
            return HemClient(**settings)
        if not params['validate_certs'] and params['url'].lower().startswith('https:'):
            self.warn('validate_certs is false: the device certificate is not verified, so the connection can be intercepted. '
                      'Prefer ca_path with the CA that signed the device certificate.')
        if params['url'].lower().startswith('http:') and params['allow_plain_http'] and self.has_credentials():
            self.warn('url uses plain http and allow_plain_http is true: the bearer token and the login travel unencrypted. '
                      'Prefer https://.')
        self._hem_client = HemClient(**settings)
        return self._hem_client

    def run(self, fn, check=None):
        """Check the options, call ``fn(module, client)``, exit with its result dict; a HemError fails the task (the one
        place that turns an error of the collection into a failure: its message, endpoint, status and result fields).

        ``check(params)``: the module's own option checks (raise HemError), run after the connection options' and
        before the client is made, so before any request.
        """
        try:
            self.check_connection_options()
            if check is not None:
                check(self.params)
            result = fn(self, self.client())
        except HemError as exc:
            self.fail_json(**dict(exc.failure(), msg=str(exc)))
        result.setdefault('changed', False)
        renewed = self.renewed_token()
        if renewed:
            result['token'] = renewed
        self.exit_json(**result)

    def login_token(self, client, scope=None, lifetime=None):
        """Log ``client`` in with its passphrase and return the new token (for encedo_login, and encedo_info's return_token).

        Ansible masks every ``no_log`` value wherever it appears in a result, even inside another string: a token
        that happens to contain a short passphrase would come back damaged, so such a token is replaced by a new login.
        """
        for dummy in range(3):
            token = client.login(scope=scope, lifetime=lifetime)
            if not any(secret and secret in token for secret in self.no_log_values):
                return token
        raise HemError('the passphrase is so short that it appears inside every token obtained, which Ansible would mask; '
                       'use a longer passphrase')

    def renewed_token(self):
        """The token that replaced the one given to the task after the device refused it, else None.

        None also when the new token contains a ``no_log`` value (Ansible would mask it in
        the result): the next task then logs in again by itself.
        """
        client = self._hem_client
        given = self.params['token']
        if client is None or not given or not client.relogged or not client.token or client.token == given:
            return None
        if any(secret and secret in client.token for secret in self.no_log_values):
            return None
        return client.token
