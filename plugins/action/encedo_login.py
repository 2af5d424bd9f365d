# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The action plugin of every encedo.hem module: runs the module, hides a result that holds a token.

encedo_login finds it by its name; every other module is routed to it by
``plugin_routing: modules: <name>: action_plugin: encedo.hem.encedo_login`` in
meta/runtime.yml, so there is one implementation (and the sanity test that wants a
module documenting each action plugin is satisfied).

A module cannot hide its own result (Ansible strips ``_ansible_*`` keys from module
results), so a bearer token in a result would show in the task output and with ``-vvv``.
The results that hold one (key ``token``) are encedo_login's, and those of a module that
logged in again because the device refused the token it was given. This plugin marks
such a result ``no_log``: callbacks show it censored, while ``register`` still receives
the token. Other results, and failures, stay visible.
"""

from __future__ import annotations

from ansible.plugins.action.normal import ActionModule as NormalAction


class ActionModule(NormalAction):

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        if result.get('token') and not result.get('failed'):
            result['_ansible_no_log'] = True
        return result
