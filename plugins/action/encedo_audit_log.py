# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The action plugin of encedo_audit_log: the token guard of every encedo.hem module (plugins/plugin_utils/token_guard.py)."""

from __future__ import annotations

from ansible_collections.encedo.hem.plugins.plugin_utils.token_guard import ActionModule

__all__ = ['ActionModule']
