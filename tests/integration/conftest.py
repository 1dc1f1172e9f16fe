"""Pytest fixtures for the mailops.imap integration tests: throwaway Dovecot servers and fresh accounts."""

from __future__ import annotations

import importlib.metadata
import itertools
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.dovecot import DovecotServer, find_dovecot
from harness.oauth import OAuthServer

REMOTE_PASSWORD_BASE = "p\u00e4'ss\"w\u00f6rd\\x"
LOCAL_PASSWORD_BASE = "l\u00f6cal'pw\"\\"
_counter = itertools.count(1)


@dataclass(frozen=True)
class Account:
    """A fresh remote user and local user, created for one test.

    The local user is normally reached through the master user (``local_server.master_user`` /
    ``master_password``); its own password works too.
    """

    remote_server: DovecotServer
    local_server: DovecotServer
    remote_user: str
    remote_password: str
    local_user: str
    local_password: str


def _require_dovecot() -> None:
    if find_dovecot() is None:
        pytest.fail(
            "the dovecot binary is required for the integration tests and was not found "
            "(install dovecot-imapd, dovecot-lmtpd and dovecot-sieve, or set DOVECOT_BIN)",
            pytrace=False,
        )


# The files that take longest (pytest --durations=0), longest first; every other file follows in its usual order.
# make integration runs the files in two pytest-xdist workers (--dist loadfile --no-loadscope-reorder), each taking
# the next file in this order when it is almost done with its last: the long ones first, so that both workers finish
# at about the same time instead of one starting a long file when the other is done. test_demo.py mostly waits (for
# a timer to fire) and so runs early, beside files that keep a core busy.
SLOWEST_FIRST = ("test_role.py", "test_demo.py", "test_definitions_playbook.py", "test_playbooks.py",
                 "test_bulk_and_info_playbook.py", "test_managed_host.py", "test_migrate_playbook.py",
                 "test_imapsync_engine.py", "test_engine.py", "test_progress_playbook.py", "test_report.py",
                 "test_collection_build.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the files of SLOWEST_FIRST first, in that order (a stable sort: tests keep their order within a file)."""
    rank = {name: index for index, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def remote_server() -> Iterator[DovecotServer]:
    """The session's "remote" Dovecot: separator '/', STARTTLS + IMAPS with a self-signed certificate."""
    _require_dovecot()
    with DovecotServer("remote") as server:
        yield server


@pytest.fixture(scope="session")
def oauth_server() -> Iterator[OAuthServer]:
    """The session's OAuth2 authorization server on loopback (harness/oauth.py): Entra ID and Google token
    endpoints over HTTPS (CA in ``ca_path``) and the introspection endpoint Dovecot asks."""
    with OAuthServer() as server:
        yield server


@pytest.fixture(scope="session")
def oauth_remote_server(oauth_server: OAuthServer) -> Iterator[DovecotServer]:
    """A "remote" Dovecot like ``remote_server`` (STARTTLS, IMAPS, ``cert_path``) that also accepts OAuth2 tokens of
    ``oauth_server`` with XOAUTH2 and OAUTHBEARER (passwords keep working)."""
    _require_dovecot()
    with DovecotServer("remote", oauth2_introspection_url=oauth_server.introspection_url) as server:
        yield server


@pytest.fixture(scope="session")
def local_server() -> Iterator[DovecotServer]:
    """The session's "local" Dovecot: separator '.', special-use folders, master user, Sieve, LMTP."""
    _require_dovecot()
    with DovecotServer("local") as server:
        yield server


def unique_name(prefix: str) -> str:
    """A user name unique within this test session (lowercase, Dovecot-safe)."""
    return f"{prefix}{next(_counter)}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def account(remote_server: DovecotServer, local_server: DovecotServer) -> Account:
    """Fresh, empty users on both servers for one test (unique names, so they are simply left behind)."""
    remote_user = remote_server.add_user(unique_name("ruser"), REMOTE_PASSWORD_BASE + uuid.uuid4().hex[:4])
    local_user = local_server.add_user(unique_name("luser"), LOCAL_PASSWORD_BASE + uuid.uuid4().hex[:4])
    return Account(
        remote_server=remote_server,
        local_server=local_server,
        remote_user=remote_user,
        remote_password=remote_server.users[remote_user],
        local_user=local_user,
        local_password=local_server.users[local_user],
    )


@pytest.fixture(scope="session")
def imapsyncctl(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The path of a launcher named ``imapsyncctl`` that runs the engine's command line of this checkout.

    Like the one the role installs: ``#!<python>``, the collection's build path on ``sys.path``, then ``cli.main()``.
    """
    from ansible_collections.mailops.imap.plugins.module_utils._engine import cli  # pylint: disable=import-outside-toplevel

    # .../<build>/ansible_collections/mailops/imap/plugins/module_utils/_engine/cli.py
    build = os.path.abspath(cli.__file__).rsplit(os.sep + "ansible_collections" + os.sep, 1)[0]
    bin_dir = tmp_path_factory.mktemp("bin")
    launcher = bin_dir / "imapsyncctl"
    launcher.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.path.insert(0, {build!r})\n"
        "from ansible_collections.mailops.imap.plugins.module_utils._engine.cli import main\n"
        "sys.exit(main())\n",
        encoding="utf-8",
    )
    launcher.chmod(0o755)
    return str(launcher)


@pytest.fixture
def make_account(remote_server: DovecotServer, local_server: DovecotServer) -> Callable[..., Account]:
    """A factory of fresh, empty users on both servers (as the ``account`` fixture, as many as a test needs).

    ``make(remote_password=...)`` chooses the remote password (a CSV test wants commas and quotes in it).
    """

    def make(remote_password: str | None = None) -> Account:
        password = remote_password or REMOTE_PASSWORD_BASE + uuid.uuid4().hex[:4]
        remote_user = remote_server.add_user(unique_name("ruser"), password)
        local_user = local_server.add_user(unique_name("luser"), LOCAL_PASSWORD_BASE + uuid.uuid4().hex[:4])
        return Account(remote_server=remote_server, local_server=local_server, remote_user=remote_user,
                       remote_password=remote_server.users[remote_user], local_user=local_user,
                       local_password=local_server.users[local_user])

    return make


@pytest.fixture
def make_oauth_account(oauth_remote_server: DovecotServer, local_server: DovecotServer) -> Callable[[str], Account]:
    """A factory of fresh users for OAuth2 tests: ``make(domain)`` gives a remote user ``NAME@DOMAIN`` on
    ``oauth_remote_server`` (an app-only token of the tenant whose domain is DOMAIN opens it; its password works
    too) and a local user as ``account`` has."""

    def make(domain: str) -> Account:
        remote_user = oauth_remote_server.add_user(f"{unique_name('ruser')}@{domain}",
                                                   REMOTE_PASSWORD_BASE + uuid.uuid4().hex[:4])
        local_user = local_server.add_user(unique_name("luser"), LOCAL_PASSWORD_BASE + uuid.uuid4().hex[:4])
        return Account(remote_server=oauth_remote_server, local_server=local_server, remote_user=remote_user,
                       remote_password=oauth_remote_server.users[remote_user], local_user=local_user,
                       local_password=local_server.users[local_user])

    return make


def download_wheels(directory: Path, requirements: list[str], deps: bool = False) -> Path:
    """``directory`` (made readable to every user: an SSH test's user installs from it) holding the wheels of
    ``requirements`` (and of their dependencies with ``deps``), for the role's offline install (imapsync_pip_wheel_dir)."""
    os.chmod(directory, 0o755)
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                           *(() if deps else ("--no-deps",)), "--only-binary=:all:", "--dest", str(directory),
                           *requirements], capture_output=True, text=True, check=False, timeout=300)
    if proc.returncode != 0 or not list(directory.glob("*.whl")):
        pytest.fail(f"cannot download the wheels of {requirements} for the role's offline install: {proc.stderr[-2000:]}")
    return directory


@pytest.fixture(scope="session")
def wheel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with the imapclient wheel the tests use, downloaded once per session."""
    return download_wheels(tmp_path_factory.mktemp("wheels"), [f"imapclient=={importlib.metadata.version('imapclient')}"])
