# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils file is PRIVATE to the encedo.hem collection: its API may change
# at any time without notice. Do not use it from other collections.

"""The resource engine: the one read -> plan -> check mode and diff -> write -> confirm -> result cycle.

A module declares the :class:`Resource` objects it manages and hands them to :func:`converge`;
everything else is done here, once, for every module:

1. ``resource.desired(params)``: what the task asks for, checked and normalised before any
   request (a bad value raises a HemError naming the option; nothing was sent).
2. ``resource.connect(client)``, then ``resource.read(client)``: what the device holds (one request).
3. ``resource.plan(current, want)``: the :class:`Plan`, the fields that differ with their
   ``before``/``after``, the body to send, ``reboot_required``; a request the device cannot
   honour raises (nothing was sent).
4. Nothing differs, or check mode: the result says what would change, and nothing is sent.
5. ``resource.write(client, plan, current)``: the one write. Its answer lost
   (``HemOutcomeUnknown``: it may or may not have been applied): the device is read again and
   ``resource.outcome_unknown`` says what it holds now. A write is never repeated blindly.
   A refused write: ``resource.refused`` turns the device's status into advice.
6. ``resource.settle(client, plan, answer)``: what the device does after accepting the write
   (a disk format to wait for); then the device is read again and every changed field is
   confirmed. A field the device reports otherwise than written is a warning naming the field
   and both values, and the result holds what the device reports (another writer may have
   changed it between the read and the write: one writer per device, see the docs).
7. The result: ``changed``, ``sent`` (field names, never values), ``reboot_required``, ``diff``
   (with ``--diff``; secrets masked) and the resource's state ``resource.shown(...)``.

Errors are raised (HemError), never turned into a failure here: ``HemModule.run`` is the one
place that fails a task.
"""

from __future__ import annotations

from ansible_collections.encedo.hem.plugins.module_utils._errors import HemError, HemOutcomeUnknown

MASK = '********'


class Plan(object):
    """What a resource would change.

    ``before``/``after``: the differing fields only (as the user reads them); ``body``: what to
    send (wire form); ``sent``: the field names the write carries (never values); ``secret``:
    names whose values are never shown; ``rotated``: secrets that change without a readable
    value (a passphrase rotation); ``reboot_required``: the change applies at the next boot;
    ``extra``: resource-specific facts of the plan (e.g. ``reformat``).
    """

    def __init__(self, before=None, after=None, body=None, sent=None, secret=(), rotated=(), reboot_required=False, **extra):
        self.before = dict(before or {})
        self.after = dict(after or {})
        self.body = dict(body if body is not None else self.after)
        self.rotated = tuple(rotated)
        self.secret = frozenset(secret) | frozenset(self.rotated)
        self.sent = sorted(sent if sent is not None else self.body)
        self.reboot_required = bool(reboot_required)
        self.extra = extra

    @property
    def fields(self):
        """The names of what changes (secrets rotated included)."""
        return sorted(set(self.after) | set(self.rotated))

    def __bool__(self):
        return bool(self.fields)

    __nonzero__ = __bool__

    def diff(self, after=None):
        """An Ansible diff of the changed fields (``after``: the values read back after the write, when known)."""
        before = dict(self.before)
        after = dict(self.after if after is None else after)
        for name in self.secret:
            for side in (before, after):
                if name in side:
                    side[name] = MASK
        for name in self.rotated:
            before[name] = MASK
            after[name] = MASK + ' (rotated)'
        return {'before': before, 'after': after}


def changed_fields(have, want, same=None):
    """The names in ``want`` whose value differs from ``have`` (a name missing from ``have`` differs), sorted.

    ``same(name, want_value, have_value)`` compares two normalised values (default ``==``).
    """
    same = same or (lambda name, a, b: a == b)
    return sorted(name for name in want if name not in have or not same(name, want[name], have[name]))


class Resource(object):
    """One thing on the device that a task reads and may change. Subclasses override what differs.

    ``name``: the result key the state goes to (``config``, ``certificate``...), or None.
    ``path``: the endpoint read with GET and written with POST (the defaults of :meth:`read`, :meth:`write`).
    """

    name = None
    path = None

    def desired(self, params):
        """What the task asks for, checked before any request; raise HemError on bad input."""
        return params

    def connect(self, client):
        """The client to read and write with (default ``client``; e.g. one logged in with a new passphrase)."""
        return client

    def read(self, client):
        return client.get(self.path)

    def plan(self, current, want):
        """The :class:`Plan` from what the device holds and what the task asks for."""
        raise NotImplementedError

    def write(self, client, plan, current):
        """The one request that applies ``plan``; -> the device's answer."""
        return client.post(self.path, plan.body)

    def reread(self, client):
        """What the device holds after a write whose answer was lost (default: :meth:`read`; None: nothing to read)."""
        return self.read(client)

    def refused(self, client, exc, plan):
        """The error to raise when the device refused the write (``exc``, HTTP status in ``exc.status``)."""
        return exc

    def outcome_unknown(self, exc, plan, now, want):
        """When the write's answer was lost (``now``: the device re-read, None if not readable): the error to raise, or
        a dict that stands for the answer when the re-read shows the write applied."""
        return exc

    def settle(self, client, plan, answer):
        """Result fields for what the device does after accepting the write (default: nothing to wait for)."""
        return {}

    def values(self, current):
        """The device's fields in the form ``plan.after`` uses (for the confirmation after a write)."""
        return current

    def same(self, name, written, have):
        """True when the device's value ``have`` is the value ``written`` (both as :meth:`values` gives them)."""
        return written == have

    def predict(self, current, plan):
        """What the device would hold after ``plan`` (check mode)."""
        merged = dict(current)
        merged.update(plan.body)
        return merged

    def diff(self, plan, after):
        """The Ansible diff (``after``: the changed fields as confirmed after the write, or the write's answer)."""
        return plan.diff(after)

    def shown(self, current):
        """The state to return under ``name`` (default: what was read)."""
        return current

    def result(self, plan, answer):
        """Resource-specific result fields besides ``changed``, ``sent``, ``reboot_required``, ``diff``."""
        return {}


def _confirm(module, resource, plan, after):
    """The changed fields as the device reports them after the write; warn for each that differs from what was written."""
    values = resource.values(after)
    confirmed = {}
    for name in sorted(plan.after):
        if name in plan.secret:
            continue
        have = values.get(name)
        confirmed[name] = have
        if not resource.same(name, plan.after[name], have):
            module.warn("%s: the device accepted %s=%r but now reports %r. Another writer may have changed it between this "
                        "task's read and its write (run one writer per device: throttle: 1 or serial), or the device stores "
                        "the value differently; the result shows what the device holds"
                        % (resource.name or 'write', name, plan.after[name], have))
    return confirmed


def converge(module, client, resource, want=None, current=None):
    """Bring ``resource`` to ``want`` (default: ``resource.desired(module.params)``); -> the result dict.

    ``current``: what the device holds, when the caller has read it already (no second read).
    """
    if want is None:
        want = resource.desired(module.params)
    client = resource.connect(client)
    if current is None:
        current = resource.read(client)
    plan = resource.plan(current, want)
    result = dict(changed=bool(plan), sent=plan.sent if plan else [], reboot_required=bool(plan) and plan.reboot_required)
    if plan and module._diff:
        _put_diff(result, resource.diff(plan, None))
    if not plan or module.check_mode:
        result.update(resource.result(plan, None))
        if resource.name:
            result[resource.name] = resource.shown(resource.predict(current, plan) if plan else current)
        return result
    try:
        answer = resource.write(client, plan, current)
    except HemOutcomeUnknown as exc:
        try:
            now = resource.reread(client)
        except HemError as again:
            raise HemError('outcome unknown: the update (%s) was sent but its answer was lost (%s), and the device could not be '
                           'read again (%s). Check the device before running the task again.'
                           % (', '.join(plan.fields), exc, again), exc.endpoint, result=dict(changed=True, sent=plan.sent))
        answer = resource.outcome_unknown(exc, plan, now, want)
        if isinstance(answer, Exception):
            raise answer
    except HemError as exc:
        raise resource.refused(client, exc, plan)
    answer = answer if isinstance(answer, dict) else {}
    result['reboot_required'] = plan.reboot_required or bool(answer.get('reboot_required'))
    result.update(resource.settle(client, plan, answer))
    result.update(resource.result(plan, answer))
    confirmed = None
    if resource.name:
        after = resource.read(client)
        confirmed = _confirm(module, resource, plan, after)
        result[resource.name] = resource.shown(after)
    if module._diff:
        _put_diff(result, resource.diff(plan, confirmed))
    return result


def _put_diff(result, diff):
    if diff is not None:
        result['diff'] = diff
