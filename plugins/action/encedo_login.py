# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Action plugin of encedo.hem.encedo_login: runs the module, hides a successful result.

A module cannot hide its own result (Ansible strips ``_ansible_*`` keys from module
results), so the token would show in the task output and with ``-vvv``. The action
plugin marks a result that holds a token as ``no_log``: callbacks then show it censored,
while ``register`` still receives the token. Failures stay visible.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        result.update(self._execute_module(module_name='encedo.hem.encedo_login', module_args=self._task.args, task_vars=task_vars))
        if result.get('token'):
            result['_ansible_no_log'] = True
        return result
