# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``replay`` fixture: unit tests of each module's ``main()`` driven by recorded device answers.

Mock HTTP, deliberately and only here: these are small unit tests of module logic (what a
module concludes from what the device answers), and the answers they replay are real ones,
recorded from the emulator (tests/emulator) by record_fixtures.py into
tests/unit/fixtures/modules/. The behaviour against a device is proven by the integration
tests, which talk to the emulator over real HTTPS. Re-record after a change of what a module
sends (docs/development.md, "Unit tests of main()")::

    python -m tests.unit.plugins.modules.record_fixtures [name ...]

``replay.run(name, check_mode=None, diff=None, unused=(), shift=0, **args)`` runs the fixture's module
with the recorded arguments (``args`` replaces some; a value of None removes one), the
secrets it names filled in by the test, and ``Transport.send`` answering from the recording:
every request must be the next recorded one (method, url, path), or the test fails saying
what was expected and what was sent. It returns ``(result, failed, sent)``, ``sent`` being
what the module sent (method, path, body, auth); afterwards every recorded exchange must have
been used, except those listed in ``unused`` ("METHOD path", in order). Time is virtual
(replay.VirtualTime): waits return at once, and the clock reads as when recorded (plus ``shift``
seconds: a replay later than the recording).
"""

from __future__ import annotations

import importlib
import os

import pytest

from tests.unit.plugins.modules import replay as R

from ansible_collections.encedo.hem.plugins.module_utils import _attestation, _client, _config, _lifecycle, _tls_bundle, _transport, _x509


class Replay(object):
    """Runs a module against one fixture file; ``fixture`` and ``player`` hold the last run's."""

    def __init__(self, monkeypatch, tmp_path):
        self.monkeypatch = monkeypatch
        self.tmp_path = tmp_path
        self.player = None
        self.fixture = None

    def run(self, name, check_mode=None, diff=None, unused=(), shift=0, **args):
        fixture = self.fixture = R.load(name)
        module = importlib.import_module("ansible_collections.encedo.hem.plugins.modules." + fixture["module"])
        clock = R.VirtualTime(fixture["recorded"]["epoch"] + shift)
        player = self.player = R.Player(fixture, clock)
        mp = self.monkeypatch
        for var in list(os.environ):
            if var.startswith("ENCEDO_HEM_"):
                mp.delenv(var)

        def send(transport, *request, **kwargs):
            return player.send(transport, *request, **kwargs)

        mp.setattr(_transport.Transport, "send", send)
        for obj, attr, value in R.virtual_clock_patches(clock, (module, _attestation, _client, _tls_bundle),
                                                        (_lifecycle.uptime_baseline, _lifecycle.wait_for_reboot,
                                                         _config.wait_for_format)):
            mp.setattr(obj, attr, value)
        mp.setattr(_x509, "_now", clock.now)

        task = dict(fixture["args"])
        for option, content in fixture.get("files", {}).items():
            path = self.tmp_path / ("%s.pem" % option)
            path.write_text(content)
            task[option] = str(path)
        for option in fixture.get("secret_options", []):
            task[option] = R.SECRETS[option]
        for option, value in args.items():
            if value is None:
                task.pop(option, None)
            else:
                task[option] = value
        result, failed = R.run_main(module, task, fixture["check_mode"] if check_mode is None else check_mode,
                                    fixture["diff"] if diff is None else diff)
        assert player.mismatch is None, player.mismatch
        assert player.unused() == list(unused), "recorded exchanges not used: %s (expected unused: %s)" % (player.unused(), list(unused))
        return result, failed, player.sent


@pytest.fixture
def replay(monkeypatch, tmp_path):
    """Run a module's main() against recorded device answers (see the module docstring)."""
    return Replay(monkeypatch, tmp_path)
