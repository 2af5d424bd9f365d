# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a module's ``main()`` in-process, and record or replay the HTTP exchanges it makes.

The seam is ``Transport.send`` (plugins/module_utils/_transport.py), the one place where a
HemClient touches the network: the recorder (record_fixtures.py) wraps it while a module
talks to the emulator; the player (the ``replay`` fixture of conftest.py) replaces it with
the recorded answers, in order. Everything above it (HemClient's retries and logins, the
modules' logic) runs unchanged.

A fixture file (tests/unit/fixtures/modules/<module>_<scenario>.json) holds:

- ``recorded``: how it was made (command, date, wall-clock ``epoch``, emulator options);
- ``module``, ``args`` (without secrets), ``secret_options`` (the names of the secrets the
  test supplies), ``files`` (option -> file content, e.g. ``ca_path``: written to a
  temporary file when replayed), ``check_mode``, ``diff``;
- ``exchanges``: for each request, ``t`` (seconds since the run started), ``url`` (of the
  client), ``method``, ``path``, ``request`` (the JSON body, proofs and keys replaced by
  placeholders; the bearer token is never recorded), then either ``status`` and ``json``
  (or ``text``) and ``headers``, or ``error`` (no answer came: TransportError's fields),
  and ``peer_certificate`` (a key of ``certificates``: the PEM the device served);
- ``result``: what the module returned when recorded (for the reader; tests assert their own).
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import sys
import time as _time
from pathlib import Path
from unittest import mock

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:     # ansible-core < 2.19 (make matrix): the module reads its arguments from basic._ANSIBLE_ARGS
    @contextlib.contextmanager
    def patch_module_args(args):
        from ansible.module_utils import basic
        with mock.patch.object(basic, "_ANSIBLE_ARGS", json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode()):
            yield

try:
    from ansible.module_utils import _internal as _ansible_internal
except ImportError:
    _ansible_internal = None

if hasattr(_ansible_internal, "is_controller"):      # ansible-core 2.19 and later
    def module_process():
        """A module runs in a process of its own, never in the controller's: once a test in this process has
        imported controller code (an action plugin, ansible-doc), module warnings would go to the controller's
        display instead of the result."""
        return mock.patch.object(_ansible_internal, "is_controller", False)
else:                   # ansible-core < 2.19: warnings collect in process-wide lists, fresh for each module run
    def module_process():
        from ansible.module_utils.common import warnings as _warnings
        return mock.patch.multiple(_warnings, _global_warnings=[], _global_deprecations=[])

try:
    from ansible_collections.encedo.hem.plugins.module_utils import _transport
except ImportError:  # run without the collection link on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "build" / "collections"))
    from ansible_collections.encedo.hem.plugins.module_utils import _transport

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "modules"
#: Request body fields that are proofs or wrapped keys: recorded as placeholders.
PLACEHOLDERS = {"auth": "<proof>", "userkey_hmac": "<proof>", "init": "<signed personalisation request>", "key": "<redacted>"}
#: The secrets a replayed task is given (the device that would check them is not there).
SECRETS = {"passphrase": "replayed-passphrase", "new_passphrase": "replayed-new-passphrase",
           "master_passphrase": "replayed-master-passphrase"}


def fixture_path(name):
    return FIXTURES / ("%s.json" % name)


def load(name):
    with open(fixture_path(name), encoding="utf-8") as fh:
        return json.load(fh)


def requests_from(name, first):
    """The "METHOD path" of fixture ``name``'s exchanges from the first one that is ``first`` on (for ``unused``)."""
    names = ["%s %s" % (e["method"], e["path"]) for e in load(name)["exchanges"]]
    return names[names.index(first):]


def redact(body):
    """The request body as recorded: proofs and wrapped keys replaced by placeholders (at any depth)."""
    if isinstance(body, dict):
        return dict((k, PLACEHOLDERS[k] if k in PLACEHOLDERS and isinstance(v, str) else redact(v)) for k, v in body.items())
    if isinstance(body, list):
        return [redact(v) for v in body]
    return body


def decode_body(data):
    """A request body (bytes or None) -> its JSON value (None when there is none)."""
    if data is None:
        return None
    try:
        return json.loads(data.decode("utf-8"))
    except ValueError:
        return data.decode("utf-8", "replace")


def run_main(module, args, check_mode=False, diff=False):
    """Run ``module.main()`` with ``args``; -> (result dict, failed)."""
    args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
    out = io.StringIO()
    with patch_module_args(args), contextlib.redirect_stdout(out), module_process():
        try:
            module.main()
        except SystemExit:
            pass
    text = out.getvalue()
    try:
        result = json.loads(text)
    except ValueError:
        raise AssertionError("the module printed no JSON result: %r" % text[-2000:])
    return result, bool(result.get("failed"))


def warnings(result):
    """The warning texts of a module result (ansible-core 2.19 gives each as a structured summary)."""
    texts = []
    for warning in result.get("warnings", []):
        if isinstance(warning, dict):
            warning = (warning.get("event") or {}).get("msg", warning.get("msg"))
        texts.append(warning)
    return texts


class VirtualTime(object):
    """The clock of a replay: wall time from the recording's ``epoch``; sleeps return at once and move
    it on; each replayed answer moves it to the moment the answer came when recorded."""

    def __init__(self, epoch):
        self.epoch = float(epoch)
        self.offset = 0.0

    def time(self):
        return self.epoch + self.offset

    def monotonic(self):
        return 100000.0 + self.offset

    def sleep(self, seconds):
        self.offset += max(0.0, float(seconds))

    def advance_to(self, offset):
        self.offset = max(self.offset, float(offset))

    def now(self, now=None):
        return now if now is not None else datetime.datetime.fromtimestamp(self.time(), datetime.timezone.utc)


def virtual_clock_patches(vt, modules, functions):
    """(object, attribute, value) triples that put ``vt`` in place of the time module in ``modules`` (those
    that import it as ``time``) and of time.monotonic/time.sleep in the default arguments of ``functions``."""
    patches = []
    for mod in modules:
        if getattr(mod, "time", None) is _time:
            patches.append((mod, "time", vt))
    swap = {_time.monotonic: vt.monotonic, _time.sleep: vt.sleep, _time.time: vt.time}
    for fn in functions:
        defaults = fn.__defaults__ or ()
        patches.append((fn, "__defaults__", tuple(swap.get(d, d) if callable(d) else d for d in defaults)))
    return patches


class Player(object):
    """Replays the exchanges of one fixture file in place of ``Transport.send``."""

    def __init__(self, fixture, clock):
        self.fixture = fixture
        self.exchanges = fixture["exchanges"]
        self.certificates = fixture.get("certificates", {})
        self.clock = clock
        self.position = 0
        #: what the module sent during the replay: dicts url, method, path, body (the JSON sent, unredacted).
        self.sent = []
        self.mismatch = None

    def send(self, transport, method, path, data, headers, timeout, limit=None):
        self.sent.append({"url": transport.url, "method": method, "path": path, "body": decode_body(data),
                          "auth": "Authorization" in headers})
        if self.position >= len(self.exchanges):
            self.mismatch = ("the module sent %s %s%s after all %d recorded exchanges were used"
                             % (method, transport.url, path, len(self.exchanges)))
            raise AssertionError(self.mismatch)
        want = self.exchanges[self.position]
        if (want["method"], want["url"], want["path"]) != (method, transport.url, path):
            self.mismatch = ("exchange %d: expected %s %s%s (recorded), the module sent %s %s%s"
                             % (self.position, want["method"], want["url"], want["path"], method, transport.url, path))
            raise AssertionError(self.mismatch)
        self.position += 1
        self.clock.advance_to(want.get("t", 0.0))
        cert = want.get("peer_certificate")
        transport.peer_certificate = _der(self.certificates[cert]) if cert else None
        if "error" in want:
            err = want["error"]
            transport.sent = err["sent"]
            raise _transport.TransportError(err["reason"], sent=err["sent"], timeout=err.get("timeout", False), tls=err.get("tls", False))
        transport.sent = True
        if "json" in want:
            body = json.dumps(want["json"]).encode("utf-8")
        else:
            body = want.get("text", "").encode("utf-8")
        return _transport.Answer(want["status"], body, _Headers(want.get("headers", {})))

    def unused(self):
        """The recorded exchanges not replayed, as "METHOD path" strings."""
        return ["%s %s" % (e["method"], e["path"]) for e in self.exchanges[self.position:]]

    def posts(self):
        return [s for s in self.sent if s["method"] == "POST"]


class _Headers(dict):
    """Case-insensitive ``get`` over the recorded headers (as requests' headers are)."""

    def get(self, key, default=None):
        for name, value in self.items():
            if name.lower() == key.lower():
                return value
        return default


def _der(pem):
    import base64
    lines = [line for line in pem.strip().splitlines() if not line.startswith("-----")]
    return base64.b64decode("".join(lines))
