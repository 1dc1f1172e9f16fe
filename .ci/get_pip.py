"""Offline stand-in for the get-pip.py script that ansible-test downloads.

ansible-test creates its virtual environments without pip and bootstraps pip in them by
running ~/.ansible/test/cache/get_pip_<version>.py, which it downloads from a host that is
not reachable here (only PyPI is). `make sanity` installs this file under that name. Like
get-pip.py, it takes pip install arguments plus --no-setuptools / --no-wheel, and installs
them (normally the pinned pip itself) from PyPI, running the pip wheel that ships with
Python's ensurepip, without installing that older pip.
"""
# mailops.imap: offline get-pip stand-in (the Makefile looks for this line)

from __future__ import annotations

import ensurepip
import glob
import os
import sys


def main() -> None:
    """Install the requested packages with the pip wheel bundled with ensurepip."""
    bundled = sorted(glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), '_bundled', 'pip-*.whl')))

    if not bundled:
        sys.exit('get_pip: no pip wheel bundled with ensurepip in %s' % sys.prefix)

    sys.path.insert(0, bundled[-1])

    from pip._internal.cli.main import main as pip_main  # pylint: disable=import-outside-toplevel

    args = [arg for arg in sys.argv[1:] if arg not in ('--no-setuptools', '--no-wheel')]

    sys.exit(pip_main(['install', '--upgrade', '--force-reinstall'] + args))


if __name__ == '__main__':
    main()
