# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils file is PRIVATE to the encedo.hem collection. It may change or
# disappear without notice; do not import it from outside the collection.
"""The read-compare-write engine of encedo_config, encedo_tls and encedo_init.

Each of those modules reads what the device holds, normalises it, and compares it with what
the task asks for; only then, and only for what differs, does it write, in one request. What
they share lives here:

- :class:`Change`: the fields that differ (``before``/``after``), with the diff Ansible shows,
  secrets masked;
- :func:`write`: nothing when nothing differs or in check mode; otherwise the one request, and,
  when its answer is lost (``HemOutcomeUnknown``: the request may or may not have been applied),
  a re-read of the device handed to the module, which tells the user what the device holds now.
  A write is never repeated blindly.

The modules keep their options and their own steps (a passphrase rotation, a storage format, a
key check of a certificate, the personalisation signature).
"""

from __future__ import annotations

from ansible_collections.encedo.hem.plugins.module_utils._errors import HemError, HemOutcomeUnknown

MASK = "********"


def changed_fields(have, want, same=None):
    """The names in ``want`` whose value differs from ``have`` (a name missing from ``have`` differs), sorted.

    ``same(name, want_value, have_value)`` compares two normalised values (default ``==``).
    """
    same = same or (lambda name, a, b: a == b)
    return sorted(name for name in want if name not in have or not same(name, want[name], have[name]))


class Change(object):
    """What a task changes: ``before`` and ``after`` of the differing fields only.

    ``secret``: names whose values are never shown (masked in :meth:`diff`); a secret that changes
    without a readable value (a passphrase rotation) is given in ``rotated``.
    """

    def __init__(self, before, after, secret=(), rotated=()):
        self.before = dict(before)
        self.after = dict(after)
        self.secret = frozenset(secret) | frozenset(rotated)
        self.rotated = tuple(rotated)

    @property
    def fields(self):
        return sorted(set(self.after) | set(self.rotated))

    def __bool__(self):
        return bool(self.fields)

    __nonzero__ = __bool__

    def diff(self, after=None):
        """An Ansible diff of the changed fields (``after``: the values read back after the write, when known)."""
        before = dict(self.before)
        after = dict(self.after if after is None else after)
        for name in self.secret:
            if name in before:
                before[name] = MASK
            if name in after:
                after[name] = MASK
        for name in self.rotated:
            before[name] = MASK
            after[name] = MASK + " (rotated)"
        return {"before": before, "after": after}


def write(module, change, send, reread=None, unknown=None):
    """Send the one write of ``change``; -> the device's answer, or None when nothing was sent.

    Nothing is sent when ``change`` is empty or in check mode. ``send()`` makes the request.
    When its answer is lost, ``reread()`` (if given) reads the device again and
    ``unknown(exc, now)`` decides: it raises a HemError saying what the re-read shows,
    or returns what stands for the answer. Without ``unknown`` the HemOutcomeUnknown is raised
    again. A failed re-read raises a HemError that says the outcome is unknown and what to check.
    """
    if not change or module.check_mode:
        return None
    try:
        return send()
    except HemOutcomeUnknown as exc:
        now = None
        if reread is not None:
            try:
                now = reread()
            except HemError as again:
                raise HemError('outcome unknown: the update (%s) was sent but its answer was lost (%s), and the device could '
                               'not be read again (%s). Check the device before running the task again.'
                               % (', '.join(change.fields), exc, again), exc.endpoint)
        if unknown is None:
            raise
        return unknown(exc, now)
