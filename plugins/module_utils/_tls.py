# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils file is PRIVATE to the encedo.hem collection: its API may change
# at any time without notice. Do not use it from other collections.

"""The device's TLS certificate as resources of the engine (``_engine``): encedo_tls and encedo_device.

- :class:`CsrResource` (``state=csr``): is a certificate due (none served, another issuer, fewer than
  ``remaining_days`` left, ``force``)? Then the device generates a CSR of its TLS key
  (``POST /api/system/config {"gen_csr": true}``), optionally written to ``csr_path``.
- :class:`CertificateResource` (``state=present``): the served certificate compared by DER with the one
  given; a different one is uploaded (``{"tls": {"crt": ...}}``, served after a reboot), never one that
  does not name the host of ``url`` (that would lock every later run out) or that is for another key.

Both read the served certificate from the TLS handshake of a request the client makes anyway
(``_x509.served_certificate``), or take it from ``served_certificate`` when the caller already has it.
"""

from __future__ import annotations

import os
import tempfile

from ansible.module_utils.common.text.converters import to_bytes, to_native

from ansible_collections.encedo.hem.plugins.module_utils import _x509
from ansible_collections.encedo.hem.plugins.module_utils._engine import Plan, Resource
from ansible_collections.encedo.hem.plugins.module_utils._errors import HemError, HemOutcomeUnknown, refused
from ansible_collections.encedo.hem.plugins.module_utils._login import b64
from ansible_collections.encedo.hem.plugins.module_utils._x509 import X509Error

CONFIG = '/api/system/config'


def input_error(msg, sent=False):
    """Bad task input or an unusable certificate: a HemError failing the task with ``changed`` false and
    ``sent``: ``['gen_csr']`` when a CSR was requested before it (``sent``), else none, and then the
    message says so (unless it already tells what was not done)."""
    if not sent and 'Nothing was' not in msg:
        msg = msg.rstrip('.') + '. Nothing was sent to the device.'
    return refused(msg, sent=['gen_csr'] if sent else [])


def _read_option_file(path, option):
    try:
        with open(path, 'rb') as f:
            return f.read()
    except (IOError, OSError) as exc:
        raise input_error('option %s: cannot read %s: %s' % (option, path, to_native(exc)))


def _checked(fn, *args, **kwargs):
    """``fn(*args)``, an X509Error becoming an input_error with the same message (or ``prefix`` + it)."""
    prefix = kwargs.pop('prefix', '')
    try:
        return fn(*args)
    except X509Error as exc:
        raise input_error(prefix + str(exc))


def _load_new_certificate(p, issuers):
    if p['certificate'] is not None:
        option, data = 'certificate', p['certificate']
    else:
        option, data = 'certificate_path', _read_option_file(p['certificate_path'], 'certificate_path')
    cert = _checked(_x509.load_certificate, data, prefix='option %s ' % option)
    if _x509.is_expired(cert):
        raise input_error('option %s: the certificate expired on %s; the device would serve an expired certificate'
                          % (option, _x509.certificate_facts(cert)['not_after']))
    if issuers[1] is not None and not _x509.issued_by_any(cert, issuers[1]):
        raise input_error('option %s: the certificate (issuer %s) is not issued by the CA in %s'
                          % (option, _x509.certificate_facts(cert)['issuer'], issuers[0]))
    return option, cert


def _existing_csr(path):
    """The CSR already in ``path`` (None when the file is empty or absent); refuses to overwrite anything else."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise input_error('option csr_path: the directory %s does not exist' % directory)
    if not os.path.exists(path):
        return None
    data = _read_option_file(path, 'csr_path')
    try:
        return _x509.load_csr(data) if data.strip() else None
    except X509Error as exc:
        raise input_error('option csr_path: %s exists and %s; refusing to overwrite it' % (path, exc))


def check_inputs(p):
    """Validate every option of encedo_tls before the first connection; -> the parsed inputs."""
    if not _x509.HAS_CRYPTOGRAPHY:
        from ansible.module_utils.basic import missing_required_lib
        raise HemError(missing_required_lib('cryptography'), result=dict(exception=str(_x509.CRYPTOGRAPHY_IMPORT_ERROR)))
    if p['state'] == 'csr':
        wrong = [name for name in ('certificate', 'certificate_path', 'key_import') if p.get(name) is not None]
    else:
        wrong = [name for name in ('csr_path', 'served_certificate') if p.get(name) is not None] + (['force'] if p.get('force') else [])
    if wrong:
        raise input_error('option %s: not used with state=%s' % (', '.join(wrong), p['state']))
    if p['remaining_days'] < 0:
        raise input_error('option remaining_days: must be 0 or more, got %d' % p['remaining_days'])
    _checked(_x509.parse_url, p['url'], prefix='option ')
    inputs = {'issuers': _checked(_x509.load_issuers, p)}
    if p.get('served_certificate') is not None:
        inputs['served'] = _checked(_x509.load_certificate, p['served_certificate'], prefix='option served_certificate ')
    if p['state'] == 'present':
        inputs['option'], inputs['cert'] = _load_new_certificate(p, inputs['issuers'])
        if p.get('key_import') is not None:
            inputs['key_import'] = _checked(_x509.validate_key_import, p['key_import']['emp'], p['key_import']['key'], prefix='option ')
    elif p.get('csr_path'):
        inputs['existing_csr'] = _existing_csr(p['csr_path'])
    return inputs


def device_csr(client, sent):
    """Ask the device for a CSR of its TLS key: (csr object, genuine token). ``sent`` records the request."""
    sent.append('gen_csr')
    answer = client.post(CONFIG, {'gen_csr': True})
    if not isinstance(answer, dict) or not answer.get('csr'):
        raise input_error('the device answered the CSR request without a csr (it may have failed to generate one)', sent=True)
    try:
        return _x509.load_csr(answer['csr']), answer.get('genuine')
    except X509Error as exc:
        raise input_error('the csr the device returned %s' % exc, sent=True)


def _write_csr(module, path, pem):
    data = to_bytes(pem)
    if os.path.exists(path):
        with open(path, 'rb') as f:
            if f.read() == data:
                return False
    if module.check_mode:
        return True
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix='.encedo_tls.')
    with os.fdopen(fd, 'wb') as f:
        f.write(data)
    module.atomic_move(tmp, path)
    return True


class _Served(Resource):
    """The certificate the device serves (parsed, or None), read from a TLS handshake the client makes anyway."""

    path = CONFIG

    def __init__(self, module, inputs=None):
        self.module = module
        self.params = module.params
        self.inputs = inputs
        self.sent = []

    def desired(self, params):
        if self.inputs is None:
            self.inputs = check_inputs(params)
        return self.inputs

    def read(self, client):
        if 'served' in self.inputs:
            return self.inputs['served']
        return _checked(_x509.served_certificate, client)


def due_reasons(served, issuers, remaining_days, force=False):
    """Why the device needs a new certificate (empty: it does not): none served, another issuer, too few days left."""
    reasons = []
    if served is None:
        reasons.append('the device serves no certificate')
    else:
        if issuers[1] is not None and not _x509.issued_by_any(served, issuers[1]):
            reasons.append('the served certificate is not issued by the CA in %s' % issuers[0])
        days = _x509.certificate_facts(served)['days_remaining']
        if days < remaining_days:
            reasons.append('the served certificate has %d days left, fewer than remaining_days (%d)' % (days, remaining_days))
    if force:
        reasons.append('force is true')
    return reasons


class CsrResource(_Served):
    """``state=csr``: a CSR from the device when a certificate is due; ``csr_path`` written when given."""

    def plan(self, current, want):
        p = self.params
        served, inputs = current, want
        self.served = served
        self.reasons = due_reasons(served, inputs['issuers'], p['remaining_days'], p.get('force'))
        existing = inputs.get('existing_csr')
        self.reuse = (self.reasons and existing is not None and not p.get('force') and served is not None
                      and existing.is_signature_valid and _x509.same_key(existing, served))
        if not self.reasons or self.reuse:
            return Plan()
        old = _x509.csr_pem(existing) if existing is not None else ''
        return Plan({'csr_path': old}, {'csr_path': '(a new CSR generated by the device)'}, body={'gen_csr': True}, sent=['gen_csr'])

    def write(self, client, plan, current):
        csr, genuine = device_csr(client, self.sent)
        if self.served is not None and not _x509.same_key(csr, self.served):
            self.module.warn('the device TLS key (in the new CSR) is not the key of the certificate it serves: '
                             'a key import is probably waiting for a reboot')
        self.new_pem = _x509.csr_pem(csr)
        return {'csr': self.new_pem, 'genuine': genuine}

    def diff(self, plan, after):
        path = self.params.get('csr_path')
        if not path:
            return None
        new = getattr(self, 'new_pem', None) or plan.after['csr_path']
        return {'before': plan.before, 'after': {'csr_path': new}, 'before_header': path, 'after_header': path}

    def result(self, plan, answer):
        p = self.params
        out = dict(certificate=_x509.certificate_facts(self.served) if self.served is not None else None,
                   csr_needed=bool(self.reasons), csr_reasons=self.reasons, csr=None, genuine=None, csr_path_changed=False)
        if self.reuse:
            out['csr'] = _x509.csr_pem(self.inputs['existing_csr'])
        elif plan and answer is None:
            out['csr_path_changed'] = bool(p.get('csr_path'))
        elif answer:
            out.update(csr=answer['csr'], genuine=answer['genuine'])
            if p.get('csr_path'):
                out['csr_path_changed'] = _write_csr(self.module, p['csr_path'], answer['csr'])
        return out


class CertificateResource(_Served):
    """``state=present``: the certificate given is what the device serves (uploaded when it is not)."""

    def plan(self, current, want):
        p = self.params
        served, inputs = current, want
        cert = inputs['cert']
        self.facts = _x509.certificate_facts(served) if served is not None else None
        if served is not None and _x509.cert_der(served) == _x509.cert_der(cert):
            return Plan()
        new_facts = _x509.certificate_facts(cert)
        self._refuse_name_mismatch(cert, inputs['option'])
        if _x509.is_not_yet_valid(cert):
            self.module.warn('the certificate is valid only from %s; until then clients will refuse it' % new_facts['not_before'])
        self.key_match = self._key_match(cert, served, inputs, new_facts)
        tls = dict(inputs.get('key_import') or {})
        tls['crt'] = b64(_x509.cert_der(cert))
        self.uploaded = new_facts
        return Plan({'certificate': self.facts}, {'certificate': new_facts}, body={'tls': tls},
                    sent=['tls.%s' % k for k in sorted(tls)], reboot_required=True)

    def _refuse_name_mismatch(self, cert, option):
        """Never lock the controller out: a certificate that does not name the host of url fails every later task."""
        mismatch = _checked(_x509.name_mismatch, cert, _checked(_x509.parse_url, self.params['url'])[0])
        if mismatch and not self.params.get('allow_name_mismatch'):
            raise input_error('option %s: %s. After the reboot that activates it, every task that reaches the device by this url '
                              'would fail TLS verification. Have a certificate issued that names it (the device puts its hostname '
                              'and ip configuration in its CSR), or set allow_name_mismatch=true if you will reach the device by '
                              "one of the certificate's names (then change url accordingly). Nothing was uploaded." % (option, mismatch))
        if mismatch:
            self.module.warn('allow_name_mismatch is true and %s: after the reboot, clients using this url will refuse the device'
                             % mismatch)

    def _key_match(self, cert, served, inputs, new_facts):
        """How the certificate's key is known to be the device's: key_import, the served certificate, or a fresh CSR."""
        mismatch = ('option %s: the certificate is for another key (SPKI sha256 %s) than the device TLS key (%%s, SPKI sha256 %%s). '
                    'The device would serve HTTPS with a certificate that does not match its key; have the device generate a CSR '
                    '(state=csr) and get that signed, or give key_import. Nothing was uploaded.' % (inputs['option'], new_facts['spki_sha256']))
        if inputs.get('key_import') is not None:
            return 'key_import'
        if served is not None and _x509.same_key(cert, served):
            return 'served'
        if self.module.check_mode:
            raise input_error(mismatch % ('the key of the served certificate; in check mode no fresh CSR is requested to read a '
                                          'pending key', self.facts['spki_sha256'] if self.facts else 'none'))
        csr, dummy = device_csr(self.client, self.sent)
        if not _x509.same_key(cert, csr):
            raise input_error(mismatch % ('read from a fresh CSR', _x509.spki_sha256(csr)), self.sent)
        return 'csr'

    def connect(self, client):
        self.client = client
        return client

    def outcome_unknown(self, exc, plan, now, want):
        return HemOutcomeUnknown('%s The device does not tell whether a certificate upload is pending: reboot it and run the task '
                                 'again (it uploads again only if the device does not serve the certificate)' % exc.msg,
                                 exc.endpoint, exc.status)

    def read_again(self, client):
        """No re-read after a lost answer: what the device serves changes only at the next boot."""
        return None

    def result(self, plan, answer):
        out = dict(certificate=self.facts)
        if plan:
            out.update(uploaded=self.uploaded, key_match=self.key_match)
        if answer is not None:
            out['reboot_required'] = bool(answer.get('reboot_required', True))
        return out
