# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""``module_available``: whether the controller can load a module by its name, without failing.

The role's TLS step signs with community.crypto, an optional dependency: the role asks first, so
that a missing collection is explained on every host before any other output (a task that used one
of its plugins would fail with Ansible's own "No filter named ..." error first). Documented in
module_available.yml next to this file.
"""

from __future__ import annotations

import importlib

from ansible.errors import AnsibleError
from ansible.plugins.loader import module_loader


def module_available(name):
    """True when the module ``name`` (fully qualified) resolves on the controller."""
    parts = str(name).split('.')
    if len(parts) < 3 or not all(parts):
        return False
    try:
        # The collection first: the plugin loader would warn about a collection it cannot import.
        importlib.import_module('ansible_collections.%s.%s' % (parts[0], parts[1]))
    except ImportError:
        return False
    try:
        return module_loader.has_plugin(str(name))
    except AnsibleError:  # e.g. a collection name that is not valid, or a module removed by a redirect
        return False


class FilterModule(object):
    def filters(self):
        return {'module_available': module_available}
