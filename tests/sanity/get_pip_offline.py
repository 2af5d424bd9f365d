"""Offline stand-in for the pip bootstrap script that ansible-test downloads.

ansible-test creates its sanity virtual environments without pip and then runs a
"get-pip" script fetched from the internet. This machine reaches only the package
registries, so `make sanity` places this file where ansible-test caches that script.
It does the same job with the standard library: bootstrap pip with ensurepip, then let
pip install what ansible-test asked for (e.g. its pinned pip) from the configured index.
"""
from __future__ import annotations

import ensurepip
import os
import ssl
import subprocess
import sys

GET_PIP_ONLY = ('--no-setuptools', '--no-wheel')


def main():
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
    ensurepip.bootstrap(upgrade=True)
    # ansible-test runs this with a reduced environment: point pip at the system CA
    # store so that a TLS-intercepting registry proxy keeps working.
    for cafile in (os.environ.get('PIP_CERT'), '/etc/ssl/certs/ca-certificates.crt', ssl.get_default_verify_paths().openssl_cafile):
        if cafile and os.path.isfile(cafile):
            args = ['--cert', cafile] + args
            break
    subprocess.check_call([sys.executable, '-m', 'pip', 'install', '--upgrade'] + args)


if __name__ == '__main__':
    main()
