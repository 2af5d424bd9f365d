# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils file is PRIVATE to the encedo.hem collection: its API may change
# at any time without notice. Do not use it from other collections.

"""What a device is: its status, version, configuration and served TLS certificate, read as encedo_info
returns them (``gather``), in pieces that any module reading a device's state uses too.

Plain functions of ``(module, client)`` or ``(params, ...)`` that return result fields or raise HemError.
The options they read are encedo_info's: gather_subset, return_token, issuer_ca, issuer_ca_path and the
options of ``_tls_bundle.fresh_argument_spec()``.
"""

from __future__ import annotations

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.encedo.hem.plugins.module_utils import _tls_bundle
from ansible_collections.encedo.hem.plugins.module_utils._errors import HemError
from ansible_collections.encedo.hem.plugins.module_utils._fields import device_model

VERSION = '/api/system/version'
CONFIG = '/api/system/config'
# One-time handshake values of GET /api/system/config: not configuration, not worth returning.
CONFIG_VOLATILE = ('nonce', 'spk')
#: The subsets of gather_subset; status is always read.
SUBSETS = ('status', 'version', 'config', 'certificate')


def chosen_subsets(requested):
    """The set of SUBSETS that gather_subset asks for; HemError naming the option and what is allowed."""
    wanted, left_out = set(), set()
    for item in requested:
        name = str(item).strip()
        excluded = name.startswith('!')
        name = name[1:] if excluded else name
        if name not in ('all',) + SUBSETS:
            raise HemError('option gather_subset: %r is not a subset; allowed: all, %s, each optionally preceded by ! to leave it out'
                           % (item, ', '.join(SUBSETS)))
        if excluded and name == 'status':
            raise HemError('option gather_subset: !status is not allowed, the status is always read (it tells whether the device '
                           'is personalised and serves HTTPS); use !all to read only the status')
        (left_out if excluded else wanted).add(name)
    if 'all' in left_out:
        wanted.discard('all')           # only what is named besides (as with Ansible's setup module)
    elif 'all' in wanted or not wanted:
        wanted = set(SUBSETS)
    return (wanted - left_out) | {'status'}


def check_options(params):
    """encedo_info's option checks before any request -> (subsets, TLS bundle or None); raises HemError."""
    subsets = chosen_subsets(params['gather_subset'])
    try:
        bundle = _tls_bundle.check_inputs(params)[0]
    except ValueError as exc:
        raise HemError(str(exc))
    if params['return_token'] and not params['passphrase']:
        raise HemError('option return_token: needs passphrase (or the environment variable ENCEDO_HEM_PASSPHRASE) to log in; '
                       'nothing was sent to the device')
    if issuer_given(params) and 'certificate' not in subsets:
        raise HemError('option issuer_ca/issuer_ca_path: used only with certificate in gather_subset; nothing was sent to the device')
    return subsets, bundle


def issuer_given(params):
    return params.get('issuer_ca') is not None or params.get('issuer_ca_path') is not None


def certificate_reader(params, reads_certificate):
    """-> (the _x509 module, issuer CA certificates or None) when the served certificate is read or an issuer is
    given, else (None, None). Imported only then: cryptography's import cost is paid per task and host in a fleet."""
    if not (reads_certificate or issuer_given(params)):
        return None, None
    from ansible_collections.encedo.hem.plugins.module_utils import _x509 as x509
    if not x509.HAS_CRYPTOGRAPHY:
        raise HemError(missing_required_lib('cryptography') + ' (for gather_subset certificate)')
    try:
        return x509, x509.load_issuers(params)[1]
    except x509.X509Error as exc:
        raise HemError('%s; nothing was sent to the device' % exc)


def read_status_version(module, client, fresh, over_https, with_version):
    """-> (status, version or None): over HTTPS with ``client``, else (no HTTPS server) over plain HTTP, unauthenticated."""
    if over_https:
        status = fresh.status if fresh.status is not None else client.status()
        version = client.get(VERSION, auth=False) if with_version else None
        return status, version
    version = None
    if with_version:
        version = module.client(url=fresh.http_url, passphrase=None, token=None).get(VERSION, auth=False)
    return fresh.status, version


def status_facts(status, version=None):
    """The result fields told by the status and the version (personalised, rtc_set, uptime, status, model, firmware)."""
    facts = dict(
        personalised=status.get('inited') is not False,
        rtc_set='time' in status or 'ts' in status,
        uptime=status.get('uptime'),
        status=status,
    )
    model = device_model(status, version)
    if model is not None:
        facts['model'] = model
    if version is not None:
        facts.update(firmware=version.get('fwv'), version=version)
    return facts


def served_certificate_facts(x509, reader, issuers, result):
    """The certificate the device serves (from ``reader``'s TLS handshake) as encedo_info returns it, or None.
    A failure carries ``result``."""
    try:
        served = x509.served_certificate(reader)
    except x509.X509Error as exc:
        raise HemError('gather_subset certificate: %s' % exc, result=result)
    if served is None:
        return None
    facts = dict(pem=x509.cert_pem(served), **x509.certificate_facts(served))
    if issuers is not None:
        facts['issued_by_ca'] = x509.issued_by_any(served, issuers)
    return facts


def read_config(module, client, over_https, personalised):
    """The configuration without its one-time values, or None (with a warning saying why) when it cannot be read."""
    if not over_https:
        module.warn('The device has no HTTPS server: the configuration was not read, credentials are never sent over plain HTTP.')
        return None
    if not personalised:
        module.warn('The device is not personalised yet: there is no configuration to read, credentials were not used.')
        return None
    config = client.get(CONFIG)
    return dict((k, v) for k, v in config.items() if k not in CONFIG_VOLATILE)


def gather(module, client):
    """encedo_info: what the device is, as gather_subset asks."""
    p = module.params
    subsets, bundle = check_options(p)
    reads_certificate = 'certificate' in subsets and p['url'].lower().startswith('https:')
    x509, issuers = certificate_reader(p, reads_certificate)
    fresh = _tls_bundle.prepare(module, bundle)
    over_https = fresh.https is not False and not (fresh.stored and module.check_mode)
    status, version = read_status_version(module, client, fresh, over_https, 'version' in subsets)
    result = dict(changed=fresh.stored, **status_facts(status, version))
    if reads_certificate and over_https:
        # From the status request's own TLS handshake (the client that read it), unless a bundle was just stored.
        reader = fresh.poller if fresh.poller is not None and fresh.https and not fresh.stored else client
        result['certificate'] = served_certificate_facts(x509, reader, issuers, result)
    result.update(fresh.result())
    if 'https' not in result and isinstance(status.get('https'), bool):
        result['https'] = status['https']       # url is plain http: the status says it
    if fresh.message:
        result['msg'] = fresh.message
        if fresh.missing:
            module.warn(fresh.message)
    if p['return_token'] and over_https and result['personalised'] and result['rtc_set']:
        result['token'] = module.login_token(client)
    if module.has_credentials() and 'config' in subsets:
        config = read_config(module, client, over_https, result['personalised'])
        if config is not None:
            result['config'] = config
    return result
