# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The token guard: the action plugin of every encedo.hem module. It runs the module, and hides a result that holds a token.

Each module's action plugin (plugins/action/<module>.py, named like the module as Ansible and ansible-test's
action-plugin-docs want) is this class, imported: one implementation, no routing and no sanity ignore.

A module cannot hide its own result (Ansible strips ``_ansible_*`` keys from module
results), so a bearer token in a result would show in the task output and with ``-vvv``.
The results that hold one (key ``token``) are encedo_login's, encedo_info's with
``return_token``, and those of a module that logged in again because the device refused
the token it was given. This plugin marks
such a result ``no_log``: callbacks show it censored, while ``register`` still receives
the token, so that the later tasks reuse it (one new login in all). Other results, and
failures, stay visible.

While the module runs, the play context says ``no_log``: connection plugins print a module's
raw output with ``-vvv`` (ssh does, for a module on a server) unless it does, and the result is
marked only once it is back. The result itself is shown or hidden as said above.

Why the token travels in the censored result and nowhere else: Ansible hides a result
only whole (``no_log``; no key can be hidden on its own), and the only other ways a value
reaches later tasks are facts (``ansible_facts``: the fact cache, which ansible-runner and
so AWX keep on disk), ``add_host`` (shown in the result, and it replaces ``changed``) or
files (a secret on disk). So for a module that logged in again, what the censored result
would hide of the change - ``changed`` stays visible by itself - is told in a warning
(Ansible keeps warnings of a censored result): the fields changed, with the diff's before
and after when the task runs with ``--diff`` (the modules mask secrets in their diff).
"""

from __future__ import annotations

import json

from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action.normal import ActionModule as NormalAction

#: Characters of one value shown in the warning about a hidden change.
MAX_SHOWN = 200


def _shown(value):
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + '...'


def change_record(result):
    """What a result records of a change, as text without the token: the differing keys of its
    diff with before and after, else the fields it sent; '' when it records none."""
    diff = result.get('diff')
    lines = []
    if isinstance(diff, dict) and isinstance(diff.get('before'), dict) and isinstance(diff.get('after'), dict):
        before, after = diff['before'], diff['after']
        for key in sorted(set(before) | set(after)):
            if key != 'token' and before.get(key) != after.get(key):
                lines.append('%s: %s -> %s' % (key, _shown(before.get(key)), _shown(after.get(key))))
    if not lines and isinstance(result.get('sent'), list) and result['sent']:
        lines.append('sent: %s' % ', '.join(str(name) for name in result['sent']))
    return '; '.join(lines)


class ActionModule(NormalAction):

    TRANSFERS_FILES = False

    def _token_asked_for(self):
        """Whether the token is the result the task asked for (encedo_login, encedo_info's return_token), not a re-login."""
        name = self._task.action.rpartition('.')[2]
        return name == 'encedo_login' or (name == 'encedo_info' and boolean(self._task.args.get('return_token', False), strict=False))

    def run(self, tmp=None, task_vars=None):
        # A connection plugin prints a module's raw output at -vvv (ssh: "(rc, stdout, stderr)") unless the play
        # context says no_log; a result with a token is marked no_log only once it is back, too late for that line.
        # So while the module runs the play context says no_log (its result is marked below, or shown as it is).
        # (The connection has a play context of its own, a copy made for the task.)
        contexts = [c for c in (self._play_context, getattr(self._connection, '_play_context', None)) if c is not None]
        saved = [c.no_log for c in contexts]
        for context in contexts:
            context.no_log = True
        try:
            result = super(ActionModule, self).run(tmp, task_vars)
        finally:
            for context, no_log in zip(contexts, saved):
                context.no_log = no_log
        if result.get('token') and not result.get('failed'):
            result['_ansible_no_log'] = True
            if not self._token_asked_for():
                msg = ('the device refused the token given to this task (it expired, or the device rebooted) and the task logged in '
                       'again; its result is hidden because it holds the new token (register it and give it as token to the next '
                       'tasks, they then need no new login)')
                if result.get('changed'):
                    record = change_record(result)
                    msg += '. It changed the device: %s' % (record or 'see the registered result')
                result.setdefault('warnings', []).append(msg)
        return result
