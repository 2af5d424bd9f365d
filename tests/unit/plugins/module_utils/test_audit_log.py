# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_audit_log: the verification of a log file, the options refused before any request, the streamed download's cap.

The log files here are built by ``make_log`` from the description of a file (encedo-manager
``check_log_integrity``), not by the emulator; the integration tests verify the emulator's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

try:
    from ansible_collections.encedo.hem.plugins.module_utils import _transport
except ImportError:  # run without the collection link on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "build" / "collections"))
    from ansible_collections.encedo.hem.plugins.module_utils import _transport
from ansible_collections.encedo.hem.plugins.module_utils._audit_log import LogInvalid, event_name, verify_log
from ansible_collections.encedo.hem.plugins.modules import encedo_audit_log
from tests.unit.plugins.modules.replay import run_main


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_log(signer, events, line_key=b"k" * 32):
    """A log file: a seed line, then ``events`` (type, result) with counters 1, 2..."""
    lines = []
    rows = [(0, 0, b64u(line_key), b64u(signer.sign(line_key)))] + [(t, r, "U", "") for t, r in events]
    for counter, (kind, result, subject, data) in enumerate(rows):
        body = "%x|%08x|%x|%x|%s|%s|" % (counter, 1000 + counter, kind, result, subject, data)
        lines.append(body + b64u(hmac.new(line_key, body.encode(), hashlib.sha256).digest()[:16]))
    return "\n".join(lines) + "\n"


@pytest.fixture
def signer():
    return Ed25519PrivateKey.generate()


def raw(signer):
    return signer.public_key().public_bytes_raw()


def test_a_good_file_verifies_and_its_events_are_counted(signer):
    text = "# a comment line\n" + make_log(signer, [(1, 0), (13, 0), (13, 1), (18, 0), (99, 0)])
    assert verify_log(text, raw(signer)) == {"seed": 1, "power_up": 1, "token_password": 2, "config_updated": 1, "type_99": 1}
    assert event_name(16) == "type_16" and event_name(29) == "personalised"


@pytest.mark.parametrize("tamper,problem", [
    (lambda lines: lines[:2] + [lines[2].replace("|000003ea|", "|000003eb|")] + lines[3:], "line 3: the mac does not match"),
    (lambda lines: lines[:2] + lines[3:], "line 3: counter 3 follows 1"),
    (lambda lines: lines[:3] + [lines[2]] + lines[3:], "counter 2 follows 2"),
    (lambda lines: lines[1:], "line 1 comes before any seed line"),
    (lambda lines: lines[:1] + ["1|2|3"] + lines[2:], "line 2 has 3 fields, not 7"),
    (lambda lines: lines[:1] + ["z|0|1|0|U||AAAA"] + lines[2:], "not hexadecimal"),
    (lambda lines: lines[:1] + [lines[1].rsplit("|", 1)[0] + "|*?*"] + lines[2:], "not base64"),
    (lambda lines: [], "no seed line"),
])
def test_a_changed_file_does_not_verify(signer, tamper, problem):
    lines = make_log(signer, [(1, 0), (13, 0), (18, 0)]).splitlines()
    assert verify_log("\n".join(lines), raw(signer))
    with pytest.raises(LogInvalid, match=problem):
        verify_log("\n".join(tamper(lines)), raw(signer))


def test_a_seed_signed_by_another_key_does_not_verify(signer):
    text = make_log(Ed25519PrivateKey.generate(), [(1, 0)])
    with pytest.raises(LogInvalid, match="line 1: the seed .* is not signed by the logger key"):
        verify_log(text, raw(signer))


class Refuse:
    """Transport.send that fails the test: nothing may be sent."""

    calls = []

    def __call__(self, *args, **kwargs):
        self.calls.append(args)
        raise AssertionError("a request was sent")


@pytest.mark.parametrize("dest,record,words", [
    ("", None, "option dest: must be a directory path"),
    ("file", None, "exists and is not a directory"),
    ("dir", "{not json", "cannot be read"),
    ("dir", "[1, 2]", "is not a record of encedo_audit_log"),
])
def test_bad_dest_fails_before_any_request(monkeypatch, tmp_path, dest, record, words):
    refuse = Refuse()
    monkeypatch.setattr(_transport.Transport, "send", refuse)
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    if record is not None:
        (tmp_path / "dir" / "encedo-hem-audit.json").write_text(record)
    path = str(tmp_path / dest) if dest else ""
    result, failed = run_main(encedo_audit_log, {"url": "https://hem.example", "passphrase": "pw-123456", "dest": path})
    assert failed and words in result["msg"], result
    assert refuse.calls == []


class Resp:
    """An answer as requests streams it: status, headers and a body read in chunks (urllib3's raw.read)."""

    def __init__(self, data, status=200):
        self.status_code = status
        self.headers = {}
        self.raw = io.BytesIO(data)
        self.raw.read = lambda amount, decode_content=False, _read=self.raw.read: _read(amount)


def test_a_streamed_answer_goes_to_the_sink_within_its_cap(monkeypatch):
    monkeypatch.setattr(_transport, "READ_CHUNK", 10)
    sink = io.BytesIO(b"left over from a try before")
    assert _transport.Transport._read(Resp(b"a" * 25), 25, sink) == b""
    assert sink.getvalue() == b"a" * 25
    with pytest.raises(_transport.AnswerTooLarge, match="larger than 24 bytes"):
        _transport.Transport._read(Resp(b"a" * 25), 24, io.BytesIO())
    assert _transport.Transport._read(Resp(b"{}"), 25) == b"{}"          # no sink: the body as before
    assert _transport.MAX_LOG_FILE >= 16 * 1024 * 1024 > _transport.MAX_ANSWER


def test_the_record_is_json_with_the_key_and_the_files(tmp_path):
    from ansible_collections.encedo.hem.plugins.module_utils._audit_log import _load_state, _save_state
    path = str(tmp_path / "encedo-hem-audit.json")
    assert _load_state(path) == {"files": {}}
    _save_state(path, {"logger_key": "K", "files": {"00000001": {"verified": True, "events": {"seed": 1}}}})
    assert json.loads((tmp_path / "encedo-hem-audit.json").read_text())["logger_key"] == "K"
    assert _load_state(path)["files"]["00000001"]["verified"] is True
