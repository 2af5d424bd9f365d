# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Contract hook: every 200 JSON answer the emulator tests receive is checked against the
response schema of its operation in the device OpenAPI file.

The spec is looked up at `../shared/reference/hem-api-1.2.2.yaml` relative to the repository
root (override: environment variable HEM_API_SPEC). When it is absent the hook only records,
and tests/emulator_tests/test_contract.py skips with the reason.

Validation is strict on top of the spec: objects may not carry properties the spec does not
list (the spec itself leaves `additionalProperties` open), so the emulator cannot invent fields.
"""

from __future__ import annotations

import base64
import binascii
import copy
import os
import re
import threading

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC_PATH = os.environ.get("HEM_API_SPEC") or os.path.normpath(
    os.path.join(REPO_ROOT, "..", "shared", "reference", "hem-api-1.2.2.yaml"))

# 200 answers the spec documents as empty in some modes (fresh-device tls upload, wipeout).
EMPTY_200_ALLOWED = {("POST", "/api/system/config")}

TEXT = "text/plain"     # operations() value of a 200 documented as text (an audit-log file)
RECORDED = []          # dicts: method, path, operation, status, validated
_LOCK = threading.Lock()
_SPEC = {"loaded": False, "ops": None, "error": None}


def spec_available() -> bool:
    return os.path.isfile(SPEC_PATH)


def _resolve(node, root):
    if isinstance(node, dict):
        if "$ref" in node:
            target = root
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            return _resolve(target, root)
        return {k: _resolve(v, root) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, root) for v in node]
    return node


def _strict(schema):
    """Close every object schema that lists properties (additionalProperties: false)."""
    schema = copy.deepcopy(schema)
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return schema


def operations():
    """{(METHOD, path template): 200 JSON schema, TEXT (text/plain) or None (200 without body)}; None if no spec."""
    if not _SPEC["loaded"]:
        _SPEC["loaded"] = True
        if spec_available():
            import yaml
            with open(SPEC_PATH, encoding="utf-8") as fh:
                root = yaml.safe_load(fh)
            ops = {}
            for path, item in root["paths"].items():
                for method, op in item.items():
                    if method not in ("get", "post", "delete"):
                        continue
                    ok = op.get("responses", {}).get("200") or op.get("responses", {}).get(200)
                    if ok is None:
                        continue
                    ok = _resolve(ok, root)
                    content = ok.get("content", {})
                    schema = content.get("application/json", {}).get("schema")
                    ops[(method.upper(), path)] = _strict(schema) if schema else TEXT if "text/plain" in content else None
            _SPEC["ops"] = ops
    return _SPEC["ops"]


def match(method, path):
    ops = operations() or {}
    if (method, path) in ops:
        return (method, path)
    for m, template in ops:
        if m != method or "{" not in template:
            continue
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path):
            return (m, template)
    return None


def _format_checker():
    import jsonschema
    checker = jsonschema.FormatChecker()

    @checker.checks("byte", raises=(binascii.Error, ValueError))
    def _is_b64(value):
        if not isinstance(value, str):
            return True
        base64.b64decode(value, validate=True)
        return True

    return checker


def validate(method, path, body):
    """Raise AssertionError when `body` does not match the 200 schema of (method, path)."""
    import jsonschema
    op = match(method, path)
    assert op is not None, "no 200 answer documented for %s %s" % (method, path)
    schema = operations()[op]
    if schema is None:
        assert body is None, "%s %s: documented without a body, got %r" % (method, path, body)
        return op
    if body is None and op in EMPTY_200_ALLOWED:
        return op
    assert body is not None, "%s %s: a JSON body was expected" % (method, path)
    try:
        jsonschema.validate(body, schema, format_checker=_format_checker())
    except jsonschema.ValidationError as exc:
        raise AssertionError("%s %s answer violates the OpenAPI schema: %s" % (method, path, exc.message)) from exc
    return op


def record(method, path, answer):
    """Called by the test client for every answer; validates 200s when the spec is present."""
    if answer.status != 200 or not path.startswith("/api/"):
        return
    entry = {"method": method, "path": path, "operation": None, "validated": False}
    if operations() is not None and operations().get(match(method, path)) == TEXT:
        assert answer.headers.get("Content-Type", "").startswith("text/plain"), "%s %s: not text/plain" % (method, path)
        entry.update(operation=match(method, path), validated=True)
    elif operations() is not None:
        body = answer.json if answer.raw else None
        assert answer.raw == b"" or answer.json is not None, "%s %s: 200 body is not JSON" % (method, path)
        entry["operation"] = validate(method, path, body)
        entry["validated"] = True
    with _LOCK:
        RECORDED.append(entry)
