# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.
"""Device lifecycle helpers shared by encedo_checkin and encedo_reboot.

- the check-in options (vendor backend URL and its own TLS settings) and the check-in
  itself: device ``check`` -> backend -> device ``checked``, blobs forwarded untouched;
- waiting for a reboot with proof that the device really restarted.
"""

from __future__ import annotations

import time

from ansible.module_utils.basic import env_fallback

from ansible_collections.encedo.hem.plugins.module_utils._errors import HemError, HemOutcomeUnknown
from ansible_collections.encedo.hem.plugins.module_utils._module import check_ca_path

DEFAULT_BACKEND_URL = "https://api.encedo.com"

# Management actions a check-in reply can make the device execute (OpenAPI POST /api/system/checkin
# "status": the executed action; the device executes one only while its trusted-backend option is on).
# "OK" (none) and "R" (report) change nothing on the device; any other answer fails the task.
CHECKIN_ACTIONS = {
    "OK": "none",
    "R": "report (nothing changed on the device)",
    "L": "user key erased",
    "W": "wiped (factory reset) and rebooting",
    "B": "web servers stopped (soft-brick)",
    "U": "firmware upgrade forced",
}
HARMLESS_ACTIONS = ("OK", "R")
# After these the device does not answer any more (W and U reboot it, B stops its web servers).
GONE_ACTIONS = ("W", "B", "U")

# What the device did and what to do next, per executed action (never "check in again": that is the step
# that made the device do it).
CHECKIN_ACTION_ADVICE = {
    "L": "it erased its user key: logins with the user passphrase now fail (HTTP 401). Log in with the master "
         "key instead (give the master passphrase as passphrase) and set a new user passphrase with "
         "encedo.hem.encedo_config new_passphrase, or re-personalise the device",
    "W": "it wiped itself (every key and the personalisation are gone) and is rebooting. When it is back it is "
         "factory-fresh: run the role encedo.hem.device (or encedo.hem.encedo_init) to personalise it again",
    "B": "it stopped its web servers (soft-brick) and answers no request until it is power-cycled. Unplug and "
         "re-plug it (PPA) or switch it off and on (EPA); ask the backend's operator why it ordered this before the "
         "device checks in again",
    "U": "it was forced to upgrade its firmware and is rebooting into the bootloader. Wait until it answers "
         "again, then check its firmware (encedo.hem.encedo_info, version fwv) before using it",
}


class NotRebooted(HemError):
    """The device kept answering after the reboot request and its uptime never went back: it did not reboot."""


# Seconds of slack when comparing the device uptime (whole seconds) with the wall clock.
UPTIME_SLACK = 2


def checkin_argument_spec():
    """Options of the vendor check-in backend (documented in each module that uses them)."""
    return dict(
        backend_url=dict(type="str", default=DEFAULT_BACKEND_URL, fallback=(env_fallback, ["ENCEDO_HEM_BACKEND_URL"])),
        backend_validate_certs=dict(type="bool", default=True, fallback=(env_fallback, ["ENCEDO_HEM_BACKEND_VALIDATE_CERTS"])),
        backend_ca_path=dict(type="path", fallback=(env_fallback, ["ENCEDO_HEM_BACKEND_CA_PATH"])),
    )


def clock_is_set(status):
    """The device status carries ``time``/``ts`` only while its clock (RTC) is set."""
    return isinstance(status, dict) and ("time" in status or "ts" in status)


def check_backend_options(params):
    """Refuse unusable backend options before the first request to the device (raises HemError)."""
    url = (params.get("backend_url") or "").rstrip("/")
    if not url.startswith(("https://", "http://")):
        raise HemError("option backend_url: must be an http:// or https:// URL, got %r" % url)
    check_ca_path("backend_ca_path", params.get("backend_ca_path"), "a PEM file with the CA of the check-in backend")


def backend_client(module):
    """A client for the vendor backend: its own URL and TLS settings, never the device's CA."""
    params = module.params
    url = (params.get("backend_url") or "").rstrip("/")
    if url.startswith("https://") and not params.get("backend_validate_certs"):
        module.warn("backend_validate_certs is false: the check-in backend's TLS certificate is not verified.")
    # proxy_url is the device's proxy: the backend is reached like any web site (the environment's proxies)
    return module.client(url=url, validate_certs=params.get("backend_validate_certs"), ca_path=params.get("backend_ca_path"),
                         passphrase=None, token=None, retries=0, proxy_url=None)


def checkin(client, backend, check_mode=False, status=None):
    """Run one check-in. Returns the result dict of encedo_checkin (without ``changed`` logic for callers to alter).

    ``status`` is a GET /api/system/status answer read just before, when the caller has one.
    """
    if status is None:
        status = client.status()
    was_set = clock_is_set(status)
    result = dict(changed=not was_set, clock_was_set=was_set)
    if check_mode:
        # Nothing is posted in check mode: report what would happen.
        return result

    check = client.get("/api/system/checkin", auth=False).get("check")
    if not isinstance(check, str) or not check:
        raise HemError("the device answered without a check-in token (check)", endpoint="GET /api/system/checkin")
    try:
        reply = backend.post("/checkin", {"check": check}, auth=False)
    except HemError as exc:
        raise backend_error(backend, exc)
    checked = reply.get("checked") if isinstance(reply, dict) else None
    if not isinstance(checked, str) or not checked:
        raise HemError("the check-in backend %s answered without a reply token (checked)" % backend.url, endpoint="POST /checkin")

    try:
        answer = client.post("/api/system/checkin", {"checked": checked}, auth=False)
        lost = False
    except HemOutcomeUnknown:
        answer, lost = {}, True
    if not isinstance(answer, dict):
        answer = {}
    action = answer.get("status")
    result["status"] = action if action is not None else ("unknown" if lost else None)
    result["action"] = describe_action(result["status"])
    for key in ("newfws", "newuis", "newcrt"):
        if key in answer:
            result[key] = answer[key]
    if action in GONE_ACTIONS:
        # The device set its clock and then went away (reboot or stopped web servers): nothing more to read.
        result["changed"] = True
        return result
    after = client.status()
    if not clock_is_set(after):
        if lost:
            raise HemError("the answer to the check-in was lost and the device clock is still unset; run the check-in again",
                           endpoint="POST /api/system/checkin")
        raise HemError("the device accepted the check-in but its clock is still unset", endpoint="POST /api/system/checkin")
    result["time"] = after.get("time")
    result["ts"] = after.get("ts")
    if action not in HARMLESS_ACTIONS + (None,) or answer.get("newcrt") == "OK":
        result["changed"] = True
    return result


def describe_action(status):
    """A short description of the executed action (RV ``action``)."""
    if status == "unknown":
        return "unknown (the device's answer was lost)"
    if status in CHECKIN_ACTIONS:
        return CHECKIN_ACTIONS[status]
    return "not recognised by the device (%s)" % status


def checkin_failure(result):
    """The failure message when the device executed an action other than OK or R, else None."""
    action = result.get("status")
    if action in HARMLESS_ACTIONS or action in (None, "unknown"):
        return None
    if action in CHECKIN_ACTION_ADVICE:
        return "the check-in backend ordered action %s and the device executed it: %s" % (action, CHECKIN_ACTION_ADVICE[action])
    return ("the device answered the check-in with action %r, which it did not recognise: its clock is set, no known "
            "action ran. Make sure backend_url points at the vendor backend (or one the device trusts)" % action)


def checkin_warnings(result):
    """User-facing warnings about what the backend made the device do (the failing actions are in the message)."""
    warnings = []
    if result.get("newcrt") == "OK":
        warnings.append("the check-in backend pushed a TLS certificate and the device installed it (newcrt: OK): the device "
                        "serves the new certificate from its next reboot on, so ca_path must then hold the CA that issued it "
                        "(the backend's CA)")
    if result.get("newcrt") == "ERROR":
        warnings.append("the check-in backend pushed a TLS certificate and the device failed to install it (newcrt: ERROR); "
                        "the device keeps serving its current certificate")
    if result.get("status") == "unknown":
        warnings.append("the answer to the check-in was lost; the device clock is set, the backend's action is unknown")
    return warnings


def backend_error(backend, exc):
    """Reword a transport error of the backend client so that it names the backend, not "the device"."""
    if exc.status is not None:
        return HemError("the check-in backend %s refused the device's check-in token (HTTP %d); the device may not be genuine, "
                        "or backend_url does not point at the vendor backend" % (backend.url, exc.status), endpoint="POST /checkin")
    reason = exc.msg.replace("cannot reach the device at %s" % backend.url, "cannot reach it")
    return HemError("the check-in backend %s failed: %s" % (backend.url, reason), endpoint="POST /checkin")


def rebooted(uptime_before, seen_before, uptime_now, seen_now, requested_at, slack=UPTIME_SLACK):
    """Proof of a restart since the reboot request, from the device uptime (whole seconds).

    Both must hold: the uptime is lower than it would be had the device kept running
    (``uptime_before`` answered at ``seen_before``), and the device booted after the reboot
    request was sent (``requested_at``), so a slow answer cannot pass for a restart.
    ``seen_*`` and ``requested_at`` are monotonic controller times.
    """
    if not isinstance(uptime_now, (int, float)) or not isinstance(uptime_before, (int, float)):
        return False
    went_back = uptime_now + slack < uptime_before + (seen_now - seen_before)
    booted_since_request = uptime_now <= (seen_now - requested_at) + slack
    return went_back and booted_since_request


def uptime_baseline(read_status, status, seen, clock=time.monotonic, sleep=time.sleep):
    """The status to compare the polls with: one whose uptime can prove a restart.

    A device up for ``UPTIME_SLACK`` seconds or less gives no proof (a restart of a few seconds
    would bring its uptime back to about where it would be anyway), so wait until it has been up
    ``UPTIME_SLACK + 1`` seconds and read the status again. Returns ``(status, seen)``.
    """
    uptime = status.get("uptime") if isinstance(status, dict) else None
    if isinstance(uptime, (int, float)) and uptime <= UPTIME_SLACK:
        sleep(UPTIME_SLACK + 1 - uptime)
        status = read_status()
        seen = clock()
    return status, seen


def wait_for_reboot(poll_status, uptime_before, seen_before, delay, timeout, interval, requested_at=None,
                    clock=time.monotonic, sleep=time.sleep):
    """Wait until ``poll_status()`` answers with an uptime that proves a restart.

    ``poll_status`` returns the status dict or raises HemError. Returns ``(status, waited)``,
    ``waited`` counted from the call. Raises HemError when the device never comes back, or
    comes back without having restarted.
    """
    start = clock()
    if requested_at is None:
        requested_at = start
    deadline = start + timeout
    sleep(min(delay, timeout))
    last_error = None
    last_uptime = None
    while True:
        try:
            status = poll_status()
            seen = clock()
            uptime = status.get("uptime") if isinstance(status, dict) else None
            if rebooted(uptime_before, seen_before, uptime, seen, requested_at):
                return status, seen - start
            last_error, last_uptime = None, uptime
        except HemError as exc:
            last_error, last_uptime = str(exc), None
        now = clock()
        if now >= deadline:
            break
        sleep(max(0.0, min(interval, deadline - now)))
    waited = clock() - start
    if last_error is None and last_uptime is not None:
        raise NotRebooted("the device did not reboot: it kept answering for %.0f s after the reboot request and its uptime "
                          "never went back (%s s now, %s s just before the request)" % (waited, last_uptime, uptime_before))
    raise HemError("the device did not come back within %.0f s after the reboot request (timeout %s s); last error: %s"
                   % (waited, timeout, last_error))
