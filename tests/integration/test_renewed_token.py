# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Issue 17 defect 4: a task that logged in again because its token died hides only the token.

A real ansible-playbook run against the emulator, and it stays one: what it proves is the token
guard (the action plugin, plugins/plugin_utils/token_guard.py) and ``register``: the result holding
the new token stays hidden (Ansible hides results only whole), but what the task changed is visible
(a warning with the diff's before and after, shown at -v), the token shows nowhere, and the later
tasks reuse the new token: one new login in all. The module's own re-login (no action plugin) is
proven in the unit tests (tests/unit/plugins/module_utils/test_hem_module.py test_renewed_token)."""

from __future__ import annotations

import re

PASSPHRASE = "integration-renewal-4242"
JWT_RE = re.compile(r"[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")


def token_requests(emu, i=0):
    return [(e["method"], e["path"]) for e in emu.log(i) if e["path"] == "/api/auth/token"]


def test_a_renewal_hides_the_token_but_not_the_change(emulator, hem_playbook, tmp_path):
    emu = emulator(passphrase=PASSPHRASE, rtc_set=True)
    renewed_file = tmp_path / "renewed"
    playbook = [{
        "name": "A change made with a renewed token", "hosts": "hem", "gather_facts": False,
        "module_defaults": {"group/encedo.hem.hem": {"url": "{{ hem_url }}", "ca_path": "{{ hem_ca_path }}"}},
        "tasks": [
            {"name": "Log in", "encedo.hem.encedo_login": {"passphrase": "{{ hem_passphrase }}"}, "register": "hem_login"},
            {"name": "The device forgets every token", "ansible.builtin.uri": {
                "url": "{{ hem_control_url }}/devices/{{ hem_index }}/faults", "method": "POST", "body_format": "json",
                "body": {"kind": "expire_tokens"}}},
            {"name": "Change the user with the dead token and the passphrase", "register": "renamed", "encedo.hem.encedo_config": {
                "token": "{{ hem_login.token }}", "passphrase": "{{ hem_passphrase }}", "user": "renewal-user"}},
            {"name": "Change the origin with the renewed token", "register": "second", "encedo.hem.encedo_config": {
                "token": "{{ renamed.token | default(hem_login.token) }}", "passphrase": "{{ hem_passphrase }}", "origin": "https://renewal.example"}},
            {"name": "Keep the renewed token for the test", "no_log": True, "ansible.builtin.copy": {
                "content": "{{ renamed.token }}", "dest": str(renewed_file), "mode": "0600"}},
        ],
    }]
    run = hem_playbook(emu).run_playbook(playbook, diff=True, verbosity=1)
    run.assert_ok()
    # one login at the start, one new login for the task that met the dead token, none after
    assert token_requests(emu) == [("GET", "/api/auth/token"), ("POST", "/api/auth/token")] * 2
    renamed = run.results(task="Change the user with the dead token and the passphrase")[0]
    assert renamed.censored and renamed.changed
    warning = [line for line in run.output.splitlines() if "logged in again" in line]
    assert warning, run.tail()
    text = run.output[run.output.index("logged in again"):]
    assert "It changed the device: user:" in " ".join(text.split()) and "renewal-user" in text
    second = run.results(task="Change the origin with the renewed token")[0]
    assert not second.censored and second.changed and "token" not in second.result
    renewed = renewed_file.read_text()
    assert JWT_RE.fullmatch(renewed)
    for secret in (PASSPHRASE, renewed, renewed.split(".")[2]):
        assert secret not in run.stdout and secret not in run.stderr
        for task in run.tasks:
            assert secret not in repr(task.result)
