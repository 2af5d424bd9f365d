"""Offline stand-in for the pip bootstrap script that ansible-test downloads.

ansible-test creates its sanity virtual environments without pip and then runs a
"get-pip" script fetched from the internet. This machine reaches only the package
registries, so `make sanity` places this file where ansible-test caches that script.
It does the same job with the standard library: it runs the pip wheel that Python
bundles (ensurepip's, straight from the wheel, as get-pip runs the pip it embeds) to
install what ansible-test asked for (its pinned pip) from the configured index. Nothing
else is installed first: ansible-test asks for no setuptools and no wheel, and the
bundled pip is not installed only to be replaced (a bootstrap costs about 4.6 s of CPU
that way, and ansible-test makes one for each of its sanity environments). The
environment gets a pip.conf of its own (pip's "site" configuration, in the venv only)
that installs without byte-compiling: ansible-test's venvs are made for one run of a
sanity tool, which compiles what it imports as it imports it.
"""
from __future__ import annotations

import ensurepip
import glob
import os
import ssl
import subprocess
import sys

GET_PIP_ONLY = ('--no-setuptools', '--no-wheel')
RUN_PIP = 'import sys; sys.path.insert(0, sys.argv.pop(1)); from pip._internal.cli.main import main; sys.exit(main())'


def bundled_pip():
    """The path of the pip wheel this Python's ensurepip bundles."""
    wheels = glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), '_bundled', 'pip-*.whl'))
    if len(wheels) != 1:
        raise SystemExit('get_pip_offline: expected one bundled pip wheel, found %r' % wheels)
    return wheels[0]


SITE_CONFIG = '[global]\ndisable-pip-version-check = true\n\n[install]\ncompile = false\n'


def main():
    with open(os.path.join(sys.prefix, 'pip.conf'), 'w') as config:
        config.write(SITE_CONFIG)
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
    # ansible-test runs this with a reduced environment: point pip at the system CA
    # store so that a TLS-intercepting registry proxy keeps working.
    for cafile in (os.environ.get('PIP_CERT'), '/etc/ssl/certs/ca-certificates.crt', ssl.get_default_verify_paths().openssl_cafile):
        if cafile and os.path.isfile(cafile):
            args = ['--cert', cafile] + args
            break
    subprocess.check_call([sys.executable, '-c', RUN_PIP, bundled_pip(), 'install', '--upgrade', '--disable-pip-version-check', '--no-compile'] + args)


if __name__ == '__main__':
    main()
