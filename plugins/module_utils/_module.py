# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils file is PRIVATE to the encedo.hem collection: its API may change
# at any time without notice. Do not use it from other collections.

"""The connection options shared by every encedo.hem module, the HemModule base, and
``device_model()`` (PPA or EPA from the device's own answers).

``hem_argument_spec()`` is documented one-to-one by the doc fragment
``encedo.hem.connection`` (a unit test keeps the two equal).
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule, env_fallback

from ansible_collections.encedo.hem.plugins.module_utils._client import TOKEN_PATH, HemClient, HemError

#: option name -> environment variable used when the task does not set the option.
ENV_VARS = {
    'url': 'ENCEDO_HEM_URL',
    'passphrase': 'ENCEDO_HEM_PASSPHRASE',
    'token': 'ENCEDO_HEM_TOKEN',
    'validate_certs': 'ENCEDO_HEM_VALIDATE_CERTS',
    'ca_path': 'ENCEDO_HEM_CA_PATH',
    'timeout': 'ENCEDO_HEM_TIMEOUT',
}


def hem_argument_spec():
    """The connection options (a fresh dict on every call)."""
    def env(name):
        return (env_fallback, [ENV_VARS[name]])

    return dict(
        url=dict(type='str', required=True, fallback=env('url')),
        passphrase=dict(type='str', no_log=True, fallback=env('passphrase')),
        token=dict(type='str', no_log=True, fallback=env('token')),
        validate_certs=dict(type='bool', default=True, fallback=env('validate_certs')),
        ca_path=dict(type='path', fallback=env('ca_path')),
        timeout=dict(type='int', default=30, fallback=env('timeout')),
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
    return None


def device_model(status, version):
    """'ppa' or 'epa', from the hardware version (GET /api/system/version) when it names the model,
    else from the fields only the PPA's MSC build has (status ``storage``, version ``uis``).

    Either answer may be None (not read): then None when the answers given do not decide the model.
    """
    hwv = str((version or {}).get('hwv', '')).upper()
    if 'PPA' in hwv:
        return 'ppa'
    if 'EPA' in hwv:
        return 'epa'
    if 'storage' in (status or {}) or 'uis' in (version or {}):
        return 'ppa'
    return 'epa' if status is not None and version is not None else None


#: Seconds one status poll may take (HemModule.poller): a poll that hangs longer is retried by the next one.
POLL_REQUEST_TIMEOUT = 5


class HemModule(AnsibleModule):
    """AnsibleModule with the connection options merged in.

    ``passphrase`` and ``token`` may be given together, each from the task or else from
    its environment variable: the token is used first, the passphrase logs in when there
    is no token, or once when the device refuses the token (HTTP 401). A module that had
    to replace the token it was given returns the new one as ``token`` in its result (the
    action plugin hides such a result; ``register`` still gets it). Not as a fact: facts go to
    the fact cache, which ansible-runner (so AWX) keeps on disk.
    """

    def __init__(self, argument_spec=None, **kwargs):
        spec = hem_argument_spec()
        spec.update(argument_spec or {})
        super(HemModule, self).__init__(argument_spec=spec, **kwargs)
        self._hem_client = None
        problem = validate_url(self.params['url'])
        if problem:
            self.fail_json(msg='option url: %r is not a device address (%s); expected e.g. https://my.ence.do' % (self.params['url'], problem))
        if self.params['timeout'] <= 0:
            self.fail_json(msg='option timeout: must be a positive number of seconds, got %d' % self.params['timeout'])
        ca_path = self.params['ca_path']
        if ca_path and not (os.path.exists(ca_path) and os.access(ca_path, os.R_OK)):
            self.fail_json(msg='option ca_path: %s does not exist or cannot be read; give a PEM file (or directory) with the CA that '
                               'signed the device certificate' % ca_path)

    def has_credentials(self):
        """True when a passphrase or a token is available."""
        return bool(self.params['passphrase'] or self.params['token'])

    def client(self):
        """The HemClient of this run (created once; warns once about insecure settings)."""
        if self._hem_client is None:
            params = self.params
            if not params['validate_certs'] and params['url'].lower().startswith('https:'):
                self.warn('validate_certs is false: the device certificate is not verified, so the connection can be intercepted. '
                          'Prefer ca_path with the CA that signed the device certificate.')
            if params['url'].lower().startswith('http:'):
                self.warn('url uses plain http: the bearer token travels unencrypted. Prefer https://.')
            self._hem_client = HemClient(
                params['url'],
                passphrase=params['passphrase'],
                token=params['token'],
                validate_certs=params['validate_certs'],
                ca_path=params['ca_path'],
                timeout=params['timeout'],
                warn=self.warn,
            )
        return self._hem_client

    def poller(self, url=None, timeout=POLL_REQUEST_TIMEOUT):
        """A client without credentials and without retries, for status polls and probes (waiting for a reboot,
        a wipe, a disk format, HTTPS to come up): ``url`` (default the module's), each request at most ``timeout``
        seconds and never longer than the ``timeout`` option."""
        params = self.params
        return HemClient(url or params['url'], validate_certs=params['validate_certs'], ca_path=params['ca_path'],
                         timeout=min(params['timeout'], timeout), retries=0)

    def run(self, fn):
        """Call ``fn(module, client)``, exit with its result dict; a HemError fails the task."""
        try:
            result = fn(self, self.client())
        except HemError as exc:
            extra = {}
            if exc.endpoint:
                extra['endpoint'] = exc.endpoint
            if exc.status is not None:
                extra['status'] = exc.status
            self.fail_json(msg=str(exc), **extra)
        result.setdefault('changed', False)
        renewed = self.renewed_token()
        if renewed:
            result['token'] = renewed
        self.exit_json(**result)

    def renewed_token(self):
        """The token that replaced the one given to the task after the device refused it, else None.

        None also when the new token contains a ``no_log`` value (Ansible would mask it in
        the result): the next task then logs in again by itself.
        """
        client = self._hem_client
        given = self.params['token']
        if client is None or not given or not client.token or client.token == given:
            return None
        if not any(status == 401 and path != TOKEN_PATH for dummy, path, status in client.requests):
            return None
        if any(secret and secret in client.token for secret in self.no_log_values):
            return None
        return client.token
