# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils file is PRIVATE to the encedo.hem collection: its API may change
# at any time without notice. Do not use it from other collections.

"""A whole device brought to its declared state in one module run (encedo_device), from the same
resources and steps the single modules use:

1. the status (unauthenticated; a device without a TLS bundle gets the one given, as encedo_info does);
   a device that is not set up (factory-fresh, or its clock unset) stops here with ``ready`` false:
   check-in and personalisation are their own modules (the role runs them, then this module again);
2. one login, when a later step needs one (the client logs in at its first authenticated request);
3. the attestation (encedo_attestation's verification), when a trust anchor is given;
4. the configuration (``_config.ConfigResource`` through the engine), when one is declared;
5. whether the TLS certificate is due (``_tls.CsrResource``: none served, another issuer, too few days
   left); then the device generates a CSR, returned for signing on the controller;
6. the keys declared (``_keys.ensure_keys``: encedo_key for each, one login per key-management scope).

Each step sees the module through a :class:`View`: its own options (the sub-options of the step)
over the connection options, the rest (check mode, diff, warnings, the client) the module's own.
The configuration read serves both the attestation's genuine_id check and the configuration step,
so a device with nothing to change costs five requests: status, login challenge and answer,
attestation, configuration.
"""

from __future__ import annotations

import time

from ansible_collections.encedo.hem.plugins.module_utils import _attestation, _tls_bundle, _status as _status_facts
from ansible_collections.encedo.hem.plugins.module_utils._config import ConfigResource
from ansible_collections.encedo.hem.plugins.module_utils._engine import converge
from ansible_collections.encedo.hem.plugins.module_utils._errors import HemError
from ansible_collections.encedo.hem.plugins.module_utils._fields import options_of
from ansible_collections.encedo.hem.plugins.module_utils._module import ENV_VARS

#: Seconds two boot times (now - uptime) may differ and still be the same boot (whole-second uptime, request time).
SAME_BOOT_SLACK = 5


class View(object):
    """The module as one step sees it: ``params`` are the step's options over the connection options."""

    def __init__(self, module, params):
        self._module = module
        self.params = dict((name, module.params.get(name)) for name in ENV_VARS)
        self.params.update(params)

    def __getattr__(self, name):
        return getattr(self._module, name)

    def has_credentials(self):
        return bool(self.params.get('passphrase') or self.params.get('token'))


def _pending(record, status):
    """-> result fields: ``boot_time`` (of the device now), ``reboot_pending`` (the reboot left to the operator in
    ``record`` while the device has not booted since, else None), ``reboot_record_done`` (a record was given and the
    device has booted since: the record can go)."""
    uptime = status.get('uptime') if isinstance(status, dict) else None
    known = isinstance(uptime, int) and not isinstance(uptime, bool)
    boot = int(time.time() - uptime) if known else None
    given = isinstance(record, dict) and isinstance(record.get('boot'), int)
    same = known and given and abs(record['boot'] - boot) < SAME_BOOT_SLACK
    pending = dict(since=record.get('since'), reasons=list(record.get('reasons') or [])) if same else None
    return dict(boot_time=boot, reboot_pending=pending, reboot_record_done=bool(given and known and not same))


def _status(module, result, bundle):
    """Step 1 (encedo_info's status read, and its TLS bundle for a device without one). -> (FreshTls, status)."""
    found = _tls_bundle.prepare(module, bundle)
    if found.missing:
        raise HemError(found.message, result=dict(changed=False, ready=False, **found.result()))
    over_https = found.https is not False and not (found.stored and module.check_mode)
    status = _status_facts.read_status_version(module, module.client(passphrase=None, token=None), found, over_https, False)[0]
    result.update(found.result())
    result.update(_status_facts.status_facts(status), changed=found.stored, **_pending(module.params.get('reboot_record'), status))
    result.setdefault('model', None)
    if found.message:
        result['msg'] = found.message
    return found, status


def _served(found):
    """The certificate the status read's TLS handshake brought, or False when there is none to reuse (the TLS step reads it)."""
    from ansible_collections.encedo.hem.plugins.module_utils import _x509
    if found.poller is None or not found.https or found.stored:
        return False
    return _x509.served_certificate(found.poller)


#: encedo_config's options besides the table's fields that the ``config`` option takes, with their defaults.
CONFIG_EXTRAS = dict(allow_reformat=False, format_timeout=300)


def _config_step(module, config):
    allowed = sorted([field.name for field in options_of('config')] + list(CONFIG_EXTRAS))
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        raise HemError('option config: unsupported field%s %s; allowed: %s. Nothing was sent to the device.'
                       % ('s' if len(unknown) > 1 else '', ', '.join(unknown), ', '.join(allowed)), result=dict(changed=False))
    view = View(module, dict(CONFIG_EXTRAS, full_config=False, new_passphrase=None, **config))
    resource = ConfigResource(view)
    return view, resource, resource.desired(view.params)


def _tls_step(module, tls):
    from ansible_collections.encedo.hem.plugins.module_utils._tls import CsrResource
    view = View(module, dict(tls, state='csr', force=False, csr_path=None, served_certificate=None, issuer_ca=None))
    resource = CsrResource(view)
    return view, resource, resource.desired(view.params)


def _attestation_step(module, options):
    view = View(module, dict(options, trust_anchor=None, fail_on_invalid=True, skip_checks=[], state='verified'))
    _attestation.check_options(view.params)
    _attestation.load_trust_anchors(None, options['trust_anchor_path'])
    return view


def check(module):
    """Every step's input checked before the first request; -> the steps to run ({name: prepared step})."""
    p = module.params
    steps = {}
    if p['attestation']:
        steps['attestation'] = _attestation_step(module, p['attestation'])
    if p['config']:
        steps['configuration'] = _config_step(module, p['config'])
    if p['tls']:
        steps['certificate'] = _tls_step(module, p['tls'])
    if p['keys']:
        from ansible_collections.encedo.hem.plugins.module_utils import _keys
        steps['keys'] = _keys.check_keys(p['url'], p['keys'])
    return steps


def _steps(module, client, steps, found, status, result):
    """Steps 3-5 on a device that is set up."""
    config = client.get(ConfigResource.path) if 'configuration' in steps or 'attestation' in steps else None
    if 'attestation' in steps:
        result['attestation'] = _attestation.attest(steps['attestation'], client, status=status, config=config)
    if 'configuration' in steps:
        view, resource, want = steps['configuration']
        result['configuration'] = converge(view, client, resource, want, current=config)
    if 'certificate' in steps:
        view, resource, want = steps['certificate']
        served = _served(found)
        if served is not False:
            want['served'] = served
        result['certificate'] = converge(view, client, resource, want)
    if 'keys' in steps:
        from ansible_collections.encedo.hem.plugins.module_utils import _keys
        result['key_results'] = _keys.ensure_keys(module, client, module.params['keys'], wants=steps['keys'])


REASONS = (('configuration', 'configuration'), ('certificate', 'TLS certificate'))


def bring(module, client):
    """encedo_device: the whole device to its declared state; -> the result."""
    steps = check(module)
    try:
        bundle = _tls_bundle.check_inputs(module.params)[0]
    except ValueError as exc:
        raise HemError(str(exc))
    result = dict(changed=False, ready=False, reboot_required=False, reboot_reasons=[])
    found, status = _status(module, result, bundle)
    result['ready'] = result['personalised'] and result['rtc_set'] and not (found.stored and module.check_mode)
    if not result['ready']:
        return result
    _steps(module, client, steps, found, status, result)
    diffs = []
    for key in result.get('key_results', []):
        result['changed'] = result['changed'] or bool(key.get('changed'))
        if key.get('diff'):
            diffs.append(dict(key.pop('diff'), before_header='key %s' % key.get('kid'), after_header='key %s' % key.get('kid')))
    for key, reason in REASONS:
        step = result.get(key) or {}
        result['changed'] = result['changed'] or bool(step.get('changed'))
        if step.get('reboot_required'):
            result['reboot_reasons'].append(reason)
        if step.get('diff'):
            diffs.append(dict(step.pop('diff'), before_header=key, after_header=key))
    result['reboot_required'] = bool(result['reboot_reasons'])
    if diffs:
        result['diff'] = diffs
    return result
