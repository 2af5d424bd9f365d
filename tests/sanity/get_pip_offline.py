"""Offline stand-in for the pip bootstrap script that ansible-test downloads.

ansible-test creates its sanity virtual environments without pip and then runs a
"get-pip" script fetched from the internet. This machine reaches only the package
registries, so `make sanity` places this file where ansible-test caches that script.
It does the same job with the standard library: it runs the pip wheel that Python
bundles (ensurepip's, straight from the wheel, as get-pip runs the pip it embeds) to
install what ansible-test asked for (its pinned pip) from the configured index.

ansible-test makes one bootstrap for each of its sanity environments (about ten for each
ansible-core version), and installing pip costs about 3 s of CPU here, most of it
unpacking and compiling the same files again. So the pinned pip is installed once for
each pip version and Python (in an environment of its own under ansible-test's cache
directory) and each new environment gets a copy of it: its files hard-linked (copied
where a link cannot be made), its scripts written for the environment's Python. The copy
is a whole installation (files, RECORD, scripts), so the `pip uninstall pip` ansible-test
runs at the end of a bootstrap removes it from that environment alone. A request other
than one pinned pip is installed directly, as before.
"""
from __future__ import annotations

import ensurepip
import fcntl
import glob
import os
import re
import shutil
import ssl
import subprocess
import sys
import sysconfig
import tempfile

GET_PIP_ONLY = ('--no-setuptools', '--no-wheel')
RUN_PIP = 'import sys; sys.path.insert(0, sys.argv.pop(1)); from pip._internal.cli.main import main; sys.exit(main())'
PINNED_PIP = re.compile(r'pip==[0-9][0-9.]*')
CACHE = os.path.expanduser('~/.ansible/test/cache/pip-bootstrap')


def bundled_pip():
    """The path of the pip wheel this Python's ensurepip bundles."""
    wheels = glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), '_bundled', 'pip-*.whl'))
    if len(wheels) != 1:
        raise SystemExit('get_pip_offline: expected one bundled pip wheel, found %r' % wheels)
    return wheels[0]


def install(python, args):
    """Install ``args`` (pip install arguments) into the environment of ``python`` with the bundled pip."""
    # ansible-test runs this with a reduced environment: point pip at the system CA
    # store so that a TLS-intercepting registry proxy keeps working.
    for cafile in (os.environ.get('PIP_CERT'), '/etc/ssl/certs/ca-certificates.crt', ssl.get_default_verify_paths().openssl_cafile):
        if cafile and os.path.isfile(cafile):
            args = ['--cert', cafile] + args
            break
    subprocess.check_call([python, '-c', RUN_PIP, bundled_pip(), 'install', '--upgrade', '--disable-pip-version-check'] + args)


def template(spec):
    """An environment of this Python with ``spec`` (pip==X) installed, made once: -> its path."""
    path = os.path.join(CACHE, '%s-py%d.%d' % (spec.replace('==', '-'), sys.version_info[0], sys.version_info[1]))
    os.makedirs(CACHE, exist_ok=True)
    with open(path + '.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)          # sanity runs of several ansible-core versions share the cache
        if not os.path.isdir(path):
            work = tempfile.mkdtemp(prefix=os.path.basename(path) + '.', dir=CACHE)
            base = getattr(sys, '_base_executable', sys.executable)
            subprocess.check_call([base, '-m', 'venv', '--without-pip', work])
            install(os.path.join(work, 'bin', 'python'), [spec])
            os.rename(work, path)
    return path


def copy_into_this_environment(source):
    """Copy the pip installation of environment ``source`` into this one (sys.prefix)."""
    site = sysconfig.get_paths()['purelib']
    source_site = os.path.join(source, os.path.relpath(site, sys.prefix))
    for name in os.listdir(source_site):
        if name == 'pip' or re.fullmatch(r'pip-[0-9.]+\.dist-info', name):
            shutil.copytree(os.path.join(source_site, name), os.path.join(site, name), copy_function=_link)
    scripts = sysconfig.get_paths()['scripts']
    for name in os.listdir(os.path.join(source, 'bin')):
        if re.fullmatch(r'pip[0-9.]*', name):
            with open(os.path.join(source, 'bin', name), encoding='utf-8') as fh:
                lines = fh.read().splitlines(True)
            target = os.path.join(scripts, name)
            with open(target, 'w', encoding='utf-8') as fh:
                fh.write('#!%s\n' % sys.executable)
                fh.writelines(lines[1:])
            os.chmod(target, 0o755)


def _link(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def main():
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
    wanted = [arg for arg in args if not arg.startswith('-')]
    options = [arg for arg in args if arg.startswith('-')]
    if len(wanted) == 1 and PINNED_PIP.fullmatch(wanted[0]) and set(options) <= {'--disable-pip-version-check'}:
        copy_into_this_environment(template(wanted[0]))
    else:
        install(sys.executable, args)


if __name__ == '__main__':
    main()
