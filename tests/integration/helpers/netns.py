# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test bed of PPAs behind servers: network namespaces on this machine (root only).

A PPA answers at ``https://my.ence.do`` / ``192.168.7.1`` only on the machine it is plugged
into. Each "server" here is a network namespace holding:

- an SSH server (its own config and host key, listening on the namespace's end of a veth
  pair; root logs in with a key made by the test bed), started in its OWN mount namespace
  where the server's home (/root), /tmp and /var/tmp are directories of the test bed, so that
  a test can search everything the play left on the server (``server.leftovers(...)``);
  the Python of the project's venv stays usable there (read-only);
- emulated PPAs (``server.emulator(...)``: the harness's ``Emulator``, run inside the
  namespace) bound to 192.168.7.1 (an address of the namespace's loopback), HTTPS on port
  443 (device i of one emulator on 443 + i), plain HTTP on 80 + i;
- ``my.ence.do`` -> 192.168.7.1 in the namespace's own hosts file (/etc/netns/<name>/hosts,
  which ``ip netns exec`` mounts over /etc/hosts): it resolves there only.

The controller (this process, the root namespace) reaches each server over its veth pair
only, on a /30 subnet that ``ip -4 addr`` and ``ip -4 route`` show unused here; a blackhole
route for 192.168.7.1 in the root namespace makes a task that wrongly runs on the
controller fail at once (EINVAL) instead of sending packets out of the default route. The
server namespaces have no route but their veth subnet: no packet leaves this machine.

    with TestBed(workdir) as bed:                  # TestBed.problem(): why it cannot run here (None: it can)
        srv = bed.server()                         # a namespace with sshd; srv.inventory_vars(): how Ansible reaches it
        emu = srv.emulator(devices=2)              # started; the harness API (log, state, fault, ...) works as usual
        emu.name_url(1)                            # "https://my.ence.do:444" (device 0: "https://my.ence.do")
        srv.call(fn, *args)                        # fn(*args) in a thread inside the namespace
        srv.leftovers({"CA key": pem, ...})        # [(path, label)] of the server's files holding any of them

Everything (processes by PID, namespaces, veth pairs, the route, /etc/netns/<name>) is
removed on exit, also after a failure; an ``atexit`` hook catches an interpreter exit.
"""

from __future__ import annotations

import atexit
import ctypes
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.emulator.harness import Emulator, EmulatorError

DEVICE_IP = "192.168.7.1"
DEVICE_NAME = "my.ence.do"
CANDIDATE_NETWORK = ipaddress.ip_network("10.213.0.0/16")   # veth /30 subnets are taken from it, if unused
SSH_PORT = 22
CLONE_NEWNET = 0x40000000
_COUNTER = iter(range(1, 1 << 30))
_LIVE = set()             # TestBeds not closed yet (atexit)


class TestBedError(RuntimeError):
    pass


def _ip(*args, check=True):
    return subprocess.run(["ip"] + list(args), check=check, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _used_networks():
    """IPv4 networks this machine uses: its addresses and the destinations of its routes (not the default)."""
    used = []
    text = _ip("-4", "addr").stdout + "\n" + _ip("-4", "route", "show", "table", "all").stdout
    for match in re.finditer(r"(?:^|\s|inet )(\d+\.\d+\.\d+\.\d+(?:/\d+)?)", text):
        try:
            used.append(ipaddress.ip_network(match.group(1), strict=False))
        except ValueError:
            continue
    return used


def free_subnet():
    """The first /30 of CANDIDATE_NETWORK that overlaps no address or route of this machine."""
    used = _used_networks()
    for subnet in CANDIDATE_NETWORK.subnets(new_prefix=30):
        if not any(subnet.overlaps(net) for net in used):
            return subnet
    raise TestBedError("no unused /30 left in %s" % CANDIDATE_NETWORK)


def _run_in_netns(netns_path, fn, args, kwargs):
    """fn(*args, **kwargs) in a new thread that joined the network namespace (setns affects that thread only)."""
    libc = ctypes.CDLL(None, use_errno=True)
    box = {}

    def target():
        try:
            fd = os.open(netns_path, os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, "setns(%s): %s" % (netns_path, os.strerror(err)))
            finally:
                os.close(fd)
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # pylint: disable=broad-except  # re-raised in the caller
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


class NetnsEmulator(Emulator):
    """The harness's Emulator started inside a server namespace, bound to 192.168.7.1 on fixed ports.

    Device i answers HTTPS on ``https_port + i`` (443: ``https://my.ence.do``), plain HTTP on
    ``http_port + i``; the stand-in check-in backend and the control interface (loopback of
    the namespace) on the ports after. Every control call runs inside the namespace."""

    def __init__(self, server, https_port=443, http_port=80, backend_port=8999, control_port=9000, **kwargs):
        kwargs.setdefault("tmp_path", server.workdir / ("emulator-%d" % next(_COUNTER)))
        Path(kwargs["tmp_path"]).mkdir(parents=True, exist_ok=True)
        super().__init__(bind=DEVICE_IP, **kwargs)
        self.server = server
        self.ports = {"port": https_port, "http_port": http_port, "backend_port": backend_port, "control_port": control_port}

    def start(self, attempts=1):
        if self.proc is not None:
            raise EmulatorError("already started")
        self._launch(["ip", "netns", "exec", self.server.name] + self._argv(self.ports))
        return self

    def name_url(self, i=0):
        """The device's URL by its name: https://my.ence.do (port 443) or https://my.ence.do:<port>."""
        port = self.ports["port"] + i
        return "https://%s%s" % (DEVICE_NAME, "" if port == 443 else ":%d" % port)

    def _control(self, method, path, body=None):
        return self.server.call(super()._control, method, path, body)

    def _reachable(self, i):
        return self.server.call(super()._reachable, i)


class Server:
    """One server namespace with its sshd (see the module docstring)."""

    def __init__(self, bed, index):
        self.bed = bed
        self.index = index
        tag = "%d%d" % (os.getpid() % 100000, next(_COUNTER))
        self.name = "hem-srv-" + tag
        self.veth_host, self.veth_server = "hv%sa" % tag, "hv%sb" % tag
        self.workdir = bed.workdir / ("server%d" % index)
        self.home, self.tmp, self.var_tmp = self.workdir / "home", self.workdir / "tmp", self.workdir / "var-tmp"
        self.sshd_dir = self.workdir / "sshd"
        self.client_key = self.workdir / "client" / "id_ed25519"
        self.subnet = None
        self.host_ip = self.server_ip = None
        self.sshd = None
        self.emulators = []
        self._netns_made = self._veth_made = self._hosts_made = False

    @property
    def netns_path(self):
        return "/run/netns/" + self.name

    # ------------------------------------------------------------------ set-up

    def start(self):
        for path in (self.home / ".ssh", self.home / ".pyenv", self.tmp, self.var_tmp, self.sshd_dir, self.client_key.parent):
            path.mkdir(parents=True, exist_ok=True)
        os.chmod(self.home, 0o700)
        os.chmod(self.home / ".ssh", 0o700)
        os.chmod(self.tmp, 0o1777)
        os.chmod(self.var_tmp, 0o1777)
        self._network()
        self._hosts_file()
        self._start_sshd()
        return self

    def _network(self):
        self.subnet = free_subnet()
        host_ip, server_ip = list(self.subnet.hosts())
        self.host_ip, self.server_ip = str(host_ip), str(server_ip)
        prefix = "/%d" % self.subnet.prefixlen
        _ip("netns", "add", self.name)
        self._netns_made = True
        _ip("link", "add", self.veth_host, "type", "veth", "peer", "name", self.veth_server)
        self._veth_made = True
        _ip("link", "set", self.veth_server, "netns", self.name)
        _ip("addr", "add", self.host_ip + prefix, "dev", self.veth_host)
        _ip("link", "set", self.veth_host, "up")
        for args in (("link", "set", "lo", "up"), ("addr", "add", DEVICE_IP + "/32", "dev", "lo"),
                     ("addr", "add", self.server_ip + prefix, "dev", self.veth_server),
                     ("link", "set", self.veth_server, "up")):
            _ip("-n", self.name, *args)

    def _hosts_file(self):
        hosts = Path("/etc/netns") / self.name / "hosts"
        hosts.parent.mkdir(parents=True, exist_ok=True)
        self._hosts_made = True
        hosts.write_text("127.0.0.1 localhost\n%s %s\n" % (DEVICE_IP, DEVICE_NAME))

    def _start_sshd(self):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hem-testbed-host", "-f",
                        str(self.sshd_dir / "host_ed25519")], check=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hem-testbed-client", "-f",
                        str(self.client_key)], check=True)
        keys = self.home / ".ssh" / "authorized_keys"
        shutil.copyfile(str(self.client_key) + ".pub", keys)
        os.chmod(keys, 0o600)
        # Inside the server's mount namespace the sshd directory is /mnt/hem-sshd (a tmpfs over
        # /mnt holds the mount point): the test bed's own directory is under /tmp, hidden there.
        (self.sshd_dir / "sshd_config").write_text("\n".join([
            "ListenAddress %s:%d" % (self.server_ip, SSH_PORT),
            "HostKey /mnt/hem-sshd/host_ed25519",
            "PidFile none",
            "PermitRootLogin prohibit-password",
            "AuthorizedKeysFile .ssh/authorized_keys",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "PrintMotd no",
            "Subsystem sftp /usr/lib/openssh/sftp-server",
            ""]))
        pyenv = Path("/root/.pyenv")
        script = ["set -e"]
        if pyenv.is_dir():
            # The project's venv Python lives under /root/.pyenv: keep it visible (read-only) under the new /root.
            script += ["mount --bind /root/.pyenv %s" % (self.home / ".pyenv"),
                       "mount -o remount,bind,ro %s" % (self.home / ".pyenv")]
        script += [
            "mount -t tmpfs -o mode=0755 hem-testbed /mnt",
            "mkdir /mnt/hem-sshd",
            "mount --bind %s /mnt/hem-sshd" % self.sshd_dir,
        ]
        venv = os.path.realpath(sys.prefix)
        hidden = any(venv.startswith(base + "/") for base in ("/tmp", "/var/tmp", "/root")) and not venv.startswith("/root/.pyenv/")
        if hidden:
            # A checkout under /tmp (mktemp) or /root: its venv Python would be hidden by the server's own mounts below.
            script += ["mkdir /mnt/hem-venv", "mount --bind %s /mnt/hem-venv" % venv]
        script += [
            "mount --rbind %s /root" % self.home,
            "mount --bind %s /var/tmp" % self.var_tmp,
            "mount --bind %s /tmp" % self.tmp,
        ]
        if hidden:
            script += ["mkdir -p %s" % venv, "mount --bind /mnt/hem-venv %s" % venv, "mount -o remount,bind,ro %s" % venv]
        script += [
            "exec %s -D -e -f /mnt/hem-sshd/sshd_config" % shutil.which("sshd", path="/usr/sbin:/usr/local/sbin:/sbin"),
        ]
        self.bed.privsep_dir()
        log = open(self.workdir / "sshd.log", "wb")   # pylint: disable=consider-using-with  # closed in stop()
        # ip netns exec and unshare exec their command: the PID is sshd's.
        self.sshd = subprocess.Popen(["ip", "netns", "exec", self.name, "unshare", "--mount", "--propagation", "private",
                                      "--", "/bin/sh", "-ec", "\n".join(script)],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._sshd_log = log
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.sshd.poll() is not None:
                raise TestBedError("sshd of %s exited (rc=%s): %s" % (self.name, self.sshd.returncode, self.sshd_log()))
            try:
                with socket.create_connection((self.server_ip, SSH_PORT), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise TestBedError("sshd of %s did not listen within 15 s: %s" % (self.name, self.sshd_log()))

    def sshd_log(self):
        path = self.workdir / "sshd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ------------------------------------------------------------------ use

    def emulator(self, **kwargs):
        """A started NetnsEmulator in this namespace (keyword arguments: NetnsEmulator's and the harness's)."""
        emu = NetnsEmulator(self, **kwargs)
        emu.start()
        self.emulators.append(emu)
        return emu

    def call(self, fn, *args, **kwargs):
        """fn(*args, **kwargs) run in a thread inside this namespace (sockets it opens are the namespace's)."""
        return _run_in_netns(self.netns_path, fn, args, kwargs)

    def inventory_vars(self, python=None):
        """Inventory variables of a device on this server: Ansible reaches the server over SSH (modules run there)."""
        return {
            "ansible_connection": "ssh",
            "ansible_host": self.server_ip,
            "ansible_port": SSH_PORT,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.client_key),
            # The test bed's host key is new on every run: nothing is written to the controller's known_hosts.
            "ansible_ssh_common_args": "-o UserKnownHostsFile=/dev/null -o GlobalKnownHostsFile=/dev/null "
                                       "-o StrictHostKeyChecking=no -o IdentitiesOnly=yes",
            "ansible_python_interpreter": python or sys.executable,
            # ssh's connection sockets: in the test bed, not in the controller's ~/.ansible/cp.
            "ansible_control_path_dir": str(self.bed.workdir / "cp"),
        }

    def files(self):
        """Every file under the server's home, /tmp and /var/tmp (paths as the test bed sees them)."""
        out = []
        for top in (self.home, self.tmp, self.var_tmp):
            for root, dirs, names in os.walk(top):
                if Path(root) == self.home:
                    dirs[:] = [d for d in dirs if d != ".pyenv"]     # the mount point of the read-only Python
                out.extend(Path(root) / name for name in names)
        return out

    def leftovers(self, needles):
        """[(path, label)] for each file of the server (files()) that holds needles[label] (str or bytes)."""
        found = []
        for path in self.files():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            for label, needle in needles.items():
                if (needle.encode() if isinstance(needle, str) else needle) in data:
                    found.append((str(path), label))
        return found

    # ------------------------------------------------------------------ tear-down

    def stop(self):
        errors = []
        for emu in reversed(self.emulators):
            try:
                emu.stop()
            except Exception as exc:  # pylint: disable=broad-except
                errors.append("emulator: %s" % exc)
        self.emulators = []
        if self._netns_made:
            # sshd, its sessions (the modules the play ran) and anything else left in the namespace, by PID.
            for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
                pids = self._pids()
                for pid in pids:
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
                deadline = time.monotonic() + wait
                while pids and self._pids() and time.monotonic() < deadline:
                    time.sleep(0.05)
        if self.sshd is not None:
            try:
                self.sshd.wait(5)
            except subprocess.TimeoutExpired:
                errors.append("sshd %d did not exit" % self.sshd.pid)
            self._sshd_log.close()
            self.sshd = None
        if self._netns_made:
            res = _ip("netns", "del", self.name, check=False)
            if res.returncode:
                errors.append("ip netns del %s: %s" % (self.name, res.stderr.strip()))
            self._netns_made = False
        if self._veth_made:
            # Deleting the namespace deleted the pair; this only matters if it failed halfway.
            if _ip("link", "show", self.veth_host, check=False).returncode == 0:
                _ip("link", "del", self.veth_host, check=False)
            self._veth_made = False
        if self._hosts_made:
            shutil.rmtree(Path("/etc/netns") / self.name, ignore_errors=True)
            self._hosts_made = False
        return errors

    def _pids(self):
        res = _ip("netns", "pids", self.name, check=False)
        return [int(p) for p in res.stdout.split() if p.isdigit()] if res.returncode == 0 else []


class TestBed:
    """Servers (network namespaces) + the blackhole route for the device address in the root namespace."""

    __test__ = False          # not a pytest test class

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.servers = []
        self._route_added = False
        self._made_dirs = []
        self._etc_netns_existed = Path("/etc/netns").exists()
        self._closed = False

    @staticmethod
    def problem():
        """Why this machine cannot build the test bed (None: it can)."""
        if not sys.platform.startswith("linux"):
            return "network namespaces need Linux"
        if os.geteuid() != 0:
            return "building network namespaces needs root (uid 0; this is uid %d)" % os.geteuid()
        for tool in ("ip", "unshare", "ssh", "ssh-keygen"):
            if shutil.which(tool) is None:
                return "%s is not installed" % tool
        if shutil.which("sshd", path="/usr/sbin:/usr/local/sbin:/sbin") is None:
            return "sshd is not installed (Debian/Ubuntu: apt-get install openssh-server)"
        probe = "hem-probe-%d" % os.getpid()
        res = _ip("netns", "add", probe, check=False)
        if res.returncode:
            return "ip netns add failed: %s" % res.stderr.strip()
        _ip("netns", "del", probe, check=False)
        return None

    def __enter__(self):
        _LIVE.add(self)
        try:
            self._blackhole()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        errors = self.close()
        if errors and exc[0] is None:
            raise TestBedError("test bed clean-up: " + "; ".join(errors))

    def server(self):
        """A new, started Server."""
        srv = Server(self, len(self.servers))
        self.servers.append(srv)
        srv.start()
        return srv

    def _blackhole(self):
        res = _ip("route", "add", "blackhole", DEVICE_IP + "/32", check=False)
        if res.returncode == 0:
            self._route_added = True
            return
        existing = _ip("-4", "route", "show", "exact", DEVICE_IP + "/32", check=False).stdout
        if "blackhole" not in existing:      # another test bed's blackhole serves as well; anything else does not
            raise TestBedError("cannot add a blackhole route for %s (%s): %s" % (DEVICE_IP, res.stderr.strip(), existing.strip()))

    def privsep_dir(self):
        """sshd's privilege separation directory (/run/sshd), made if missing (removed at the end when made here)."""
        path = Path("/run/sshd")
        if not path.is_dir():
            path.mkdir(mode=0o755, parents=True)
            self._made_dirs.append(path)

    def controller_connect(self, port=443, timeout=5.0):
        """Connect to the device address from the controller: the OSError it raises (None if it connected)."""
        try:
            with socket.create_connection((DEVICE_IP, port), timeout=timeout):
                return None
        except OSError as exc:
            return exc

    def close(self):
        if self._closed:
            return []
        self._closed = True
        _LIVE.discard(self)
        errors = []
        for srv in reversed(self.servers):
            errors.extend(srv.stop())
        if self._route_added:
            res = _ip("route", "del", "blackhole", DEVICE_IP + "/32", check=False)
            if res.returncode:
                errors.append("ip route del blackhole %s: %s" % (DEVICE_IP, res.stderr.strip()))
            self._route_added = False
        for path in self._made_dirs:
            try:
                path.rmdir()
            except OSError:
                pass
        if not self._etc_netns_existed:
            try:
                Path("/etc/netns").rmdir()          # only when empty (no other test bed's hosts file in it)
            except OSError:
                pass
        return errors


@atexit.register
def _close_leftovers():
    for bed in list(_LIVE):
        bed.close()
