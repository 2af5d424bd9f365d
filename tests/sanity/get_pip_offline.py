"""Offline stand-in for the pip bootstrap script that ansible-test downloads.

ansible-test creates its sanity virtual environments without pip and then runs a
"get-pip" script fetched from the internet. This machine reaches only the package
registries, so `make sanity` places this file where ansible-test caches that script.
It does the same job with the standard library: it runs the pip wheel that Python
bundles (ensurepip's, straight from the wheel, as get-pip runs the pip it embeds) to
install what ansible-test asked for (its pinned pip) from the configured index. Nothing
else is installed first: ansible-test asks for no setuptools and no wheel, and the
bundled pip is not installed only to be replaced (a bootstrap costs about 4.6 s of CPU
that way, and ansible-test makes one for each of its sanity environments).
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


def main():
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
    # ansible-test runs this with a reduced environment: point pip at the system CA
    # store so that a TLS-intercepting registry proxy keeps working.
    for cafile in (os.environ.get('PIP_CERT'), '/etc/ssl/certs/ca-certificates.crt', ssl.get_default_verify_paths().openssl_cafile):
        if cafile and os.path.isfile(cafile):
            args = ['--cert', cafile] + args
            break
    subprocess.check_call([sys.executable, '-c', RUN_PIP, bundled_pip(), 'install', '--upgrade', '--disable-pip-version-check'] + args)


if __name__ == '__main__':
    main()
