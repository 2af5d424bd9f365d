# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Callback plugin of the integration harness: records every task result as JSON lines.

Enabled by tests/integration/helpers/playbook.py through ANSIBLE_CALLBACK_PLUGINS and
ANSIBLE_CALLBACKS_ENABLED; writes to the file named by HEM_RECORDER_FILE. It sees what
every callback sees: results of no_log tasks are already censored. The stdout callback
stays the configured one, so stdout is what a user would read.
"""

from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r'''
name: hem_recorder
type: aggregate
short_description: Record task results as JSON lines (encedo.hem integration tests)
description:
  - Appends one JSON object per task result and one per host at the end to the file named by the environment variable
    HEM_RECORDER_FILE.
requirements:
  - enabled in callbacks_enabled
'''


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'hem_recorder'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._path = os.environ.get('HEM_RECORDER_FILE')

    def _write(self, record):
        if not self._path:
            return
        with open(self._path, 'a', encoding='utf-8') as stream:
            stream.write(json.dumps(record, default=str, sort_keys=True) + '\n')

    def _record(self, result, status, **extra):
        data = getattr(result, 'result', None)
        if data is None:  # ansible-core < 2.19
            data = result._result  # pylint: disable=protected-access
        task = result.task if hasattr(result, 'task') else result._task  # pylint: disable=protected-access
        role = getattr(task, '_role', None)
        record = {
            'event': 'task',
            'host': result.host.get_name() if hasattr(result, 'host') else result._host.get_name(),  # pylint: disable=protected-access
            'task': task.name or task.action,      # without the role prefix
            'full_name': task.get_name(),
            'action': task.action,
            'role': role.get_name() if role is not None else None,
            'status': status,
            'changed': bool(data.get('changed', False)),
            'censored': 'censored' in data,
            'result': {k: v for k, v in data.items() if not k.startswith('_ansible_')},
        }
        record.update(extra)
        self._write(record)

    def v2_runner_on_ok(self, result):
        self._record(result, 'ok')

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, 'failed', ignored=bool(ignore_errors))

    def v2_runner_on_skipped(self, result):
        self._record(result, 'skipped')

    def v2_runner_on_unreachable(self, result):
        self._record(result, 'unreachable')

    def v2_playbook_on_stats(self, stats):
        for host in sorted(stats.processed):
            self._write({'event': 'stats', 'host': host, 'summary': stats.summarize(host)})
