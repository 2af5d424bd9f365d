# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Load: concurrent plays against one device, and a fleet under random faults.

1. Two ansible-playbook processes configure the same device at the same time, each
   declaring its own fields (play A: user, play B: ctx), each writing several times. A
   module that posted the whole configuration it read (instead of only the fields its
   task declares) would revert the other play's field: a lost update. Both plays must
   succeed, the device must end with both final values, and the request log must show
   that every write carried only its own play's field while the writes interleaved.
2. Twenty factory-fresh devices, three runs of playbooks/site.yml at forks 20, with
   faults chosen by a seeded random generator: busy bursts, 500s, dropped reads and slow
   answers in every run; in the first two runs also dropped writes (applied or not),
   token expiry and device reboots at random moments. After the third run every device
   is in its declared state, the emulator never crashed, and no configuration field was
   applied twice over the three runs.
"""

from __future__ import annotations

import random
import threading

from tests.integration.helpers.playbook import REPO_ROOT
from tests.reliability.support import (
    CONFIG, FleetRunner, TOKEN_PATH, applied_writes, assert_writes_declared, env_without_ca_overrides, field_counts, fields, start_emu,
    writes,
)

SITE = str(REPO_ROOT / "playbooks" / "site.yml")
SEED = 20251125
PW = "load-user-pass-1"
MASTER = "load-master-pass-1"
ROUNDS = 5


def _config_play(name, credentials, field, values, login=False):
    tasks = []
    if login:
        tasks.append({"name": "Log in once", "encedo.hem.encedo_login": {"passphrase": "{{ hem_passphrase }}"}, "register": "login"})
    for n, value in enumerate(values):
        tasks.append({"name": "%s write %d" % (name, n), "encedo.hem.encedo_config": dict(credentials, **{field: value})})
    return [{"name": name, "hosts": "hem0", "gather_facts": False,
             "module_defaults": {"group/encedo.hem.hem": {"url": "{{ hem_url }}", "ca_path": "{{ hem_ca_path }}"}},
             "tasks": tasks}]


def test_two_plays_at_once_lose_no_update(tmp_path_factory):
    # a realistic login delay makes the two processes overlap the way two operators would
    emu = start_emu(tmp_path_factory, "load-two-plays", devices=1, passphrase=PW, rtc_set=True, auth_delay=0.2)
    try:
        users = ["A-%d" % n for n in range(ROUNDS)] + ["A-final"]
        ctxs = list(range(1, ROUNDS + 1)) + [99]
        play_a = _config_play("play A", {"passphrase": "{{ hem_passphrase }}"}, "user", users)
        play_b = _config_play("play B", {"token": "{{ login.token }}"}, "ctx", ctxs, login=True)
        runners = [FleetRunner(tmp_path_factory.mktemp("play-%s" % n), {"hem0": (emu, 0, {})}) for n in "ab"]
        out = {}
        barrier = threading.Barrier(2)

        def go(key, runner, play):
            barrier.wait()
            out[key] = runner.run_playbook(play, env=env_without_ca_overrides())

        threads = [threading.Thread(target=go, args=("a", runners[0], play_a)), threading.Thread(target=go, args=("b", runners[1], play_b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        out["a"].assert_ok()
        out["b"].assert_ok()
        config = emu.state(0)["config"]
        assert (config["user"], config["ctx"]) == ("A-final", 99), config
        posts = [e for e in writes(emu.log(0)) if e["path"] == CONFIG]
        assert all(e["status"] == 200 for e in posts), posts
        assert sorted(set(tuple(e["keys"]) for e in posts)) == [("ctx",), ("user",)], "a write carried another play's field: %s" % posts
        order = "".join("A" if e["keys"] == ["user"] else "B" for e in posts)
        assert len(order) == 2 * (ROUNDS + 1), order
        # the plays really ran at the same time: their writes interleave
        assert "AB" in order and "BA" in order, order
    finally:
        emu.stop()


# ---------------------------------------------------------------------------- twenty devices, three runs, random faults

DEVICES = 20
READS = [("GET", "/api/system/status"), ("GET", "/api/system/version"), ("GET", CONFIG), ("GET", TOKEN_PATH),
         ("GET", "/api/system/config/attestation")]
DECLARED = frozenset({"init", "checked", "user", "ctx", "http_option_hsts"})


def declared_config(i):
    return {"user": "fleet-%d" % i, "ctx": 1000 + i, "http_option_hsts": True}


class FaultPlan:
    """Faults of one run, chosen by the seeded generator; returns the timers and what a dropped write did."""

    def __init__(self, rng, run):
        self.rng = rng
        self.run = run
        self.timers = []
        self.notes = []
        self.dropped_applied = {}      # device -> True when a dropped write of this run was applied first

    def inject(self, emu, i):
        rng = self.rng
        # distinct reads, at most 2 failures each: within the client's 3 retries, so every run can succeed
        for method, path in rng.sample(READS, rng.randint(1, 3)):
            kind = rng.choice(["busy", "error500", "drop", "latency"])
            count = rng.randint(1, 2)
            seconds = round(rng.uniform(0.3, 1.5), 2) if kind == "latency" else None
            emu.fault(i, kind, count=count, path=path, method=method, seconds=seconds)
            self.notes.append((i, kind, count, method, path))
        if self.run < 3:
            roll = rng.random()
            if roll < 0.25:
                path = rng.choice([CONFIG, "/api/auth/init"])
                applied = rng.random() < 0.5
                emu.fault(i, "drop", path=path, method="POST", after_apply=applied)
                self.dropped_applied[i] = applied
                self.notes.append((i, "drop-write", path, applied))
            elif roll < 0.40:
                when = round(rng.uniform(0.5, 25.0), 2)
                self.timers.append(threading.Timer(when, _quietly(emu.fault), args=(i, "expire_tokens")))
                self.notes.append((i, "expire_tokens at", when))
            elif roll < 0.55:
                when = round(rng.uniform(0.5, 25.0), 2)
                self.timers.append(threading.Timer(when, _quietly(emu.fault), args=(i, "reboot")))
                self.notes.append((i, "reboot at", when))

    def start(self):
        for timer in self.timers:
            timer.daemon = True
            timer.start()

    def stop(self):
        for timer in self.timers:
            timer.cancel()


def _quietly(fn):
    def call(*args):
        try:
            fn(*args)
        except OSError:
            pass
    return call


def test_twenty_devices_three_runs_with_random_faults(tmp_path_factory):
    rng = random.Random(SEED)
    emu = start_emu(tmp_path_factory, "load-fleet", devices=DEVICES, reboot_seconds=1.0)
    try:
        hosts = {}
        for i in range(DEVICES):
            hosts["hem%d" % i] = (emu, i, {
                "encedo_hem_url": "{{ hem_url }}", "encedo_hem_ca_path": "{{ hem_ca_path }}",
                "encedo_hem_passphrase": PW, "encedo_hem_master_passphrase": MASTER, "encedo_hem_backend_url": "{{ hem_backend_url }}",
                "encedo_hem_init": {"hostname": "hem%d.emulator.test" % i},
                "encedo_hem_config": declared_config(i),
                "encedo_hem_attestation_trust_anchor_path": "{{ hem_custody_ca_path }}",
            })
        runner = FleetRunner(tmp_path_factory.mktemp("load-fleet-runner"), hosts)
        logs = {i: [] for i in range(DEVICES)}
        applied = {i: [] for i in range(DEVICES)}
        history = []
        run = None
        for n in (1, 2, 3):
            plan = FaultPlan(rng, n)
            for i in range(DEVICES):
                plan.inject(emu, i)
            history.append(plan.notes)
            plan.start()
            try:
                run = runner.run_playbook(SITE, env=dict(env_without_ca_overrides(), ANSIBLE_FORKS="20"), timeout=900)
            finally:
                plan.stop()
            assert emu.returncode is None, "the emulator stopped during run %d" % n
            for i in range(DEVICES):
                assert emu.wait_up(i, timeout=30)
                emu.clear_faults(i)
                log = emu.log(i)
                emu.clear_log(i)
                logs[i] += log
                applied[i] += applied_writes(log, dropped_applied=plan.dropped_applied.get(i, False))
        context = "seed %d, faults per run: %s\n%s" % (SEED, history, run.tail())
        assert run.rc == 0, "the third run did not converge: %s" % context
        for i in range(DEVICES):
            state = emu.state(i)
            want = declared_config(i)
            assert state["personalised"] and state["rtc_set"], (i, state, context)
            assert {k: state["config"][k] for k in want} == want, (i, state["config"], context)
            assert_writes_declared(logs[i], DECLARED, "hem%d" % i)
            counts = field_counts(applied[i])
            twice = {k: v for k, v in counts.items() if v > 1 and k != "checked"}     # a check-in after each reboot is declared
            assert not twice, "hem%d applied %s more than once: %s" % (i, twice, [(e["path"], fields(e), e["status"]) for e in applied[i]])
        assert not [ln for ln in emu.stderr_lines if "internal error" in ln], emu.stderr_lines[-5:]
        # the generator really injected disruptive faults
        kinds = {note[1] for notes in history[:2] for note in notes}
        assert {"drop-write", "busy", "error500"} <= kinds, kinds
    finally:
        emu.stop()
