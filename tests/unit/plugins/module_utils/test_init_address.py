# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""encedo_init's `ip`: where the device answers from the reboot that applies it, and the refusal of an address
the controller could not reach it at (issue 25 item 1). Route look-ups only: no packet is sent."""

from __future__ import annotations

import pytest

from ansible_collections.encedo.hem.plugins.module_utils import _init
from ansible_collections.encedo.hem.plugins.module_utils._errors import HemError


@pytest.mark.parametrize("url, ip, moved", [
    ("https://my.ence.do", "192.168.7.1/24", None),                          # the vendor's address: stays
    ("https://127.0.0.1:8443", "127.0.0.1/8", None),                         # the address url names already
    ("https://my.ence.do", "192.168.7.5/24", "https://192.168.7.5"),
    ("https://127.0.0.1:8443/", "127.0.0.9/8", "https://127.0.0.9:8443"),
    ("http://hem.example:8080", "10.1.2.3/8", "http://10.1.2.3:8080"),
])
def test_moved_url(url, ip, moved):
    assert _init.moved_url(url, ip) == moved


def params(**over):
    out = dict(url="https://127.0.0.1:8443", ip=None, proxy_url=None)
    out.update(over)
    return out


def test_another_loopback_address_is_reachable_over_the_same_link():
    _init.check_address(params(ip="127.0.0.9/8"))        # no refusal


def test_an_address_outside_the_link_is_refused_before_any_request():
    # 10.9.9.9 is reached through the default route here (another source address than 127.0.0.1), or not at all
    with pytest.raises(HemError) as err:
        _init.check_address(params(ip="10.9.9.9/8"))
    msg = str(err.value)
    assert msg.startswith("option ip: 10.9.9.9/8 moves the device to https://10.9.9.9:8443")
    assert "next run could not reach" in msg and "Nothing was sent" in msg


def test_no_route_is_named(monkeypatch):
    monkeypatch.setattr(_init, "source_address", lambda address, port=443: None if address == "10.9.9.9" else "127.0.0.1")
    assert _init.unreachable("https://127.0.0.1:8443", "https://10.9.9.9:8443") == "the controller has no route to 10.9.9.9"


def test_no_check_without_ip_through_a_proxy_or_at_the_factory_address():
    _init.check_address(params())
    _init.check_address(params(ip="10.9.9.9/8", proxy_url="http://proxy.example:3128"))
    _init.check_address(params(url="https://my.ence.do", ip="192.168.7.1/24"))


def test_validate_runs_the_check(monkeypatch):
    seen = []
    monkeypatch.setattr(_init, "check_address", seen.append)
    with pytest.raises(Exception):
        _init.validate({"ip": "10.9.9.9/8"})
    assert seen and seen[0]["ip"] == "10.9.9.9/8"
