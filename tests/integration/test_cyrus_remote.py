"""Cyrus IMAP 3.6 as the remote, in Debian's configuration and with upstream's defaults (issue 10, items 1 and 4).

Alice's migration must copy her own folders and nothing else: not the shared folder ``Announcements`` (readable by
anyone), not bob's folder shared with her (docs/spec.md "Folders", docs/sync-engine.md "Folders"). With Debian's
configuration the shared namespace has an EMPTY prefix (``(("INBOX." ".")) (("user." ".")) (("" "."))``), so only
INBOX and ``INBOX.*`` are alice's; with upstream's defaults the other namespaces are ``Other Users/`` and
``Shared Folders/``. One Cyrus per layout serves the whole module (harness/cyrus.py; started in a tenth of a second).
"""

from __future__ import annotations

import datetime
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from imapclient import imap_utf7
from imapclient.exceptions import LoginError

from conftest import LOCAL_PASSWORD_BASE, unique_name
from harness import mail
from harness.cyrus import CyrusServer, find_cyrus, find_saslpasswd2
from harness.dovecot import DovecotServer

from ansible_collections.mailops.imap.plugins.module_utils._engine import config, sync

D1 = datetime.datetime(2023, 5, 17, 9, 30, 12, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
D2 = datetime.datetime(2024, 1, 2, 23, 59, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=-5)))
ALICE_PASSWORD = "Al\u00efce's \"pw\"\\"
BOB_PASSWORD = "b\u00f6b-pw"
LOCAL_DEFAULTS = ("Drafts", "Junk", "Sent", "Trash")
# Alice's own folders (as parts under her personal namespace; () is INBOX) -> the local name the migration gives
# them (the local Dovecot's separator is "."). "Sent copies" has Cyrus's SPECIAL-USE \Sent and a name that is no
# well-known one (folders.WELL_KNOWN): only SPECIAL-USE puts it into the local Sent. "Shared" is a personal folder
# whose name a fixed exclusion such as ^Shared(/.*)?$ would wrongly drop; "user" mimics Debian's other-users prefix.
ALICE_FOLDERS: dict[tuple[str, ...], str] = {
    (): "INBOX",
    ("Sent copies",): "Sent",
    ("Work",): "Work",
    ("Work", "Projects"): "Work.Projects",
    ("Priv\u00e9",): "Priv\u00e9",
    ("Shared",): "Shared",
    ("user",): "user",
}


@dataclass(frozen=True)
class Scenario:
    """A seeded Cyrus: alice's folder names (as she sees them) -> local names, and the names of what she must not get."""

    server: CyrusServer
    alice_folders: dict[str, str]
    foreign_folders: tuple[str, ...]


def _message(subject: str, date: datetime.datetime) -> tuple[bytes, tuple[bytes, ...], datetime.datetime]:
    return (mail.make_message(subject, date=date, body=f"{subject}: {uuid.uuid4().hex}\n"), (b"\\Seen",), date)


def _seed(server: CyrusServer) -> Scenario:
    server.add_user("alice", ALICE_PASSWORD)
    server.add_user("bob", BOB_PASSWORD)
    alice_folders = {}
    for index, (parts, local) in enumerate(ALICE_FOLDERS.items()):
        name = server.personal(*parts)
        if local == "Sent":
            server.create_folder("alice", name, special_use="\\Sent")
        date = D1 if index % 2 else D2
        mail.seed(server, "alice", ALICE_PASSWORD, name, [_message(f"alice {local} {n}", date) for n in range(index % 3 + 1)])
        alice_folders[name] = local
    # Bob's own mail, and his folder "Shared" that alice may read.
    mail.seed(server, "bob", BOB_PASSWORD, "INBOX", [_message("bob private", D1)])
    mail.seed(server, "bob", BOB_PASSWORD, server.personal("Shared"), [_message(f"bob shared {n}", D2) for n in range(2)])
    server.set_acl("bob", server.personal("Shared"), "alice", "lr")
    announcements = server.create_shared_folder("Announcements", {"anyone": "lr"},
                                                [_message(f"announcement {n}", D1) for n in range(2)])
    foreign = (announcements, server.other_users("bob", "Shared"))
    with server.user_session("alice") as client:
        listed = {name for _flags, _sep, name in client.list_folders()}
        for name in foreign:  # subscribed, as a user reading them would be: a subscription must not make them hers
            client.subscribe_folder(name)
    assert listed == set(alice_folders) | set(foreign), "the seeded Cyrus should show alice exactly these folders"
    return Scenario(server, alice_folders, foreign)


@pytest.fixture(scope="module", params=["debian", "upstream"])
def cyrus(request: pytest.FixtureRequest) -> Iterator[Scenario]:
    """A seeded Cyrus remote per layout, shared by the module's tests (they only read it)."""
    if find_cyrus() is None or find_saslpasswd2() is None:
        pytest.fail("Cyrus IMAP is required for these tests and was not found: run `make deps` as root "
                    "(tests/install_cyrus.sh) or set CYRUS_ROOT", pytrace=False)
    with CyrusServer(request.param) as server:
        yield _seed(server)


def _task(scenario: Scenario, local_user: str, **overrides: str) -> config.Task:
    server = scenario.server
    return config.parse_task({
        "local_user": local_user, "remote_user": "alice", "remote_password": ALICE_PASSWORD,
        "remote_host": server.host, "remote_port": server.port, "remote_security": "none", **overrides,
    })


def _target(local: DovecotServer) -> config.Target:
    return config.parse_target({
        "host": local.host, "port": local.port, "security": "starttls", "ca_file": str(local.cert_path),
        "master_user": local.master_user, "master_password": local.master_password,
    })


def _local_user(local: DovecotServer) -> str:
    return local.add_user(unique_name("cyrus"), LOCAL_PASSWORD_BASE + uuid.uuid4().hex[:4])


def test_builtin_engine_copies_alice_s_folders_and_no_shared_or_other_users_mail(cyrus: Scenario, local_server, tmp_path):
    """Check mode plans exactly alice's folders; the run copies exactly her messages; a re-run copies nothing."""
    local_user = _local_user(local_server)
    task, target, state = _task(cyrus, local_user), _target(local_server), str(tmp_path / "task.sqlite")
    remote = mail.snapshot(cyrus.server, "alice", ALICE_PASSWORD)
    assert all(remote[name] for name in cyrus.foreign_folders), "alice should be able to read the foreign folders"
    expected = {name: [] for name in LOCAL_DEFAULTS} | {local: remote[name] for name, local in cyrus.alice_folders.items()}

    plan = sync.run(task, target, state, check_mode=True).as_dict()
    assert plan["status"] == "success", plan["errors"]
    assert {f["remote"]: f["local"] for f in plan["folders"]} == cyrus.alice_folders
    assert {f["remote"]: f["copied"] for f in plan["folders"]} == {name: len(remote[name]) for name in cyrus.alice_folders}

    first = sync.run(task, target, state).as_dict()
    assert first["status"] == "success", first["errors"]
    assert {f["remote"] for f in first["folders"]} == set(cyrus.alice_folders)
    assert first["totals"]["copied"] == sum(len(remote[name]) for name in cyrus.alice_folders)
    local = mail.snapshot(local_server, local_user, master=True)
    assert local == expected, "the local account must hold exactly alice's own messages, in her folders"

    again = sync.run(task, target, state).as_dict()
    assert again["status"] == "success", again["errors"]
    assert again["totals"]["copied"] == 0
    assert mail.snapshot(local_server, local_user, master=True) == expected


def test_imapsync_excludes_drop_every_foreign_folder_and_none_of_alice_s(cyrus: Scenario, local_server):
    """engine: imapsync renders --exclude regexes from the remote's NAMESPACE: they match exactly what is not alice's,
    as imapsync sees the names (modified UTF-7, as LIST sends them)."""
    # pylint: disable-next=import-outside-toplevel
    from ansible_collections.mailops.imap.plugins.module_utils._engine import engine_imapsync, imapsync_cmd

    task = _task(cyrus, _local_user(local_server), engine="imapsync")
    namespace = engine_imapsync.read_namespace(task, _target(local_server))
    patterns = [re.compile(regex) for regex in imapsync_cmd.namespace_excludes(namespace)]
    with cyrus.server.user_session("alice") as client:
        client.folder_encode = False
        listed = {_text(name) for _flags, _sep, name in client.list_folders()}
    alice_raw = {_modified_utf7(name) for name in cyrus.alice_folders}
    foreign_raw = {_modified_utf7(name) for name in cyrus.foreign_folders}
    assert listed == alice_raw | foreign_raw
    for name in sorted(foreign_raw):
        assert any(p.search(name) for p in patterns), f"{name!r} is not alice's and no --exclude drops it"
    for name in sorted(alice_raw):
        assert not any(p.search(name) for p in patterns), f"{name!r} is alice's and an --exclude drops it"


def _text(name: str | bytes) -> str:
    return name.decode("ascii") if isinstance(name, bytes) else name


def _modified_utf7(name: str) -> str:
    """*name* in IMAP's modified UTF-7 (RFC 3501 section 5.1.3), as servers send it."""
    return _text(imap_utf7.encode(name))


def test_cyrus_checks_passwords_and_stop_leaves_no_process():
    """The harness's promises: a wrong password is refused (a real password check), the administrator logs in as
    a user (AUTHENTICATE PLAIN with an authorization identity), stop() ends every process."""
    with CyrusServer("debian") as server:
        server.add_user("carol", "right pw")
        with pytest.raises(LoginError):
            mail.login(server, "carol", "wrong pw")
        mail.seed(server, "carol", "right pw", "INBOX", [mail.make_message("for carol")])
        with mail.session(server, "carol") as client:  # as the administrator, for carol
            assert client.select_folder("INBOX", readonly=True)[b"EXISTS"] == 1
        assert server.processes()
    assert not server.processes()
    assert not server.root.exists()
