"""The remote master-user login (issue 10, item 7), as NethServer 8 migrates a whole NethServer without the users'
passwords: ``remote_user: USER*vmail`` with the MASTER's password, against a remote Dovecot with
``auth_master_user_separator = *`` and a master passdb. The builtin engine, ``engine: imapsync`` (the fake imapsync
of harness/fakeimapsync.py logs in with the rendered ``--user1 USER*vmail``) and playbooks/migrate.yml with a CSV in
which every row has the same master login form and password and only the users differ.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ansible_collections.mailops.imap.plugins.module_utils._engine import config, sync
from conftest import LOCAL_PASSWORD_BASE, REMOTE_PASSWORD_BASE, Account, unique_name
from harness import mail
from harness.dovecot import DovecotServer
from harness.secrets import SecretWatcher
from test_imapsync_engine import Host
from test_playbooks import run_playbook, target_vars, workers_inventory, write_csv

MASTER = "vmail"
# The remote's master password: quotes, a backslash, a comma, non-ASCII; not the local server's.
REMOTE_MASTER_PASSWORD = "R\u00e9m\u00f6te \"m\u00e4ster\", 'pw'\\ 7"


@pytest.fixture(scope="module")
def nethserver() -> Iterator[DovecotServer]:
    """A remote Dovecot playing a NethServer: users log in as themselves, or as USER*vmail with the master password."""
    with DovecotServer("remote", master_user=MASTER, master_password=REMOTE_MASTER_PASSWORD) as server:
        yield server


def remote_user(server: DovecotServer, prefix: str, domain: str = "") -> str:
    """A fresh user of the remote (its own password is never given to the migration)."""
    return server.add_user(unique_name(prefix) + domain, REMOTE_PASSWORD_BASE + prefix)


def seed(server: DovecotServer, user: str, subjects: dict[str, list[str]]) -> None:
    for folder, names in subjects.items():
        mail.seed(server, user, server.users[user], folder, [(mail.make_message(name), (), None) for name in names])


def master_login(user: str) -> str:
    return f"{user}*{MASTER}"


def written(directory: Path) -> list[bytes]:
    """Every file under ``directory`` (state, logs, results), as bytes."""
    return [path.read_bytes() for path in directory.rglob("*") if path.is_file()]


def assert_no_secret(*texts: str | bytes) -> None:
    for text in texts:
        data = text if isinstance(text, bytes) else text.encode("utf-8")
        assert REMOTE_MASTER_PASSWORD.encode("utf-8") not in data


def test_builtin_engine_reads_the_users_own_account_through_the_master_login(nethserver, local_server, tmp_path):
    alice = remote_user(nethserver, "alice", "@example.org")  # the user@example.org*vmail form
    bob = remote_user(nethserver, "bob")  # another account on the same server: none of it may arrive
    seed(nethserver, alice, {"INBOX": ["a1", "a2", "a3"], "Archive/2025": ["a-old"]})
    seed(nethserver, bob, {"INBOX": ["b1"]})
    local = local_server.add_user(unique_name("alice-local"), LOCAL_PASSWORD_BASE + "m")
    task = config.parse_task({
        "local_user": local, "remote_user": master_login(alice), "remote_password": REMOTE_MASTER_PASSWORD,
        "remote_host": nethserver.host, "remote_port": nethserver.port, "ca_file": str(nethserver.cert_path),
    })
    target = config.parse_target({"host": local_server.host, "port": local_server.port, "ca_file": str(local_server.cert_path),
                                  "master_user": local_server.master_user, "master_password": local_server.master_password})
    state = str(tmp_path / "state" / "task.sqlite")
    (tmp_path / "state").mkdir()

    with SecretWatcher([REMOTE_MASTER_PASSWORD]) as watcher:
        first = sync.run(task, target, state).as_dict()
        again = sync.run(task, target, state).as_dict()
    assert not watcher.seen

    assert first["status"] == "success" and first["totals"]["copied"] == 4, first
    copied = mail.snapshot(local_server, local, master=True)
    remote = mail.snapshot(nethserver, alice, nethserver.users[alice])
    assert copied["INBOX"] == remote["INBOX"] and copied["Archive.2025"] == remote["Archive/2025"]
    assert [m.subject for m in mail.messages(local_server, local, None, "INBOX", master=True)] == ["a1", "a2", "a3"]
    assert again["status"] == "success" and again["totals"]["copied"] == 0
    assert_no_secret(json.dumps(first), json.dumps(again), *written(tmp_path / "state"))
    # The same mailbox through alice's own login (another state, as an inline migration keys it by remote_user):
    # the copies already there are recognised, nothing is copied twice.
    own = config.parse_task(dict(task.public(), remote_user=alice, remote_password=nethserver.users[alice]))
    switched = sync.run(own, target, str(tmp_path / "state" / "own.sqlite")).as_dict()
    assert switched["status"] == "success" and switched["totals"]["copied"] == 0, switched
    assert mail.snapshot(local_server, local, master=True) == copied

    # INBOX retrieval through the master login marks the copied messages \Seen in alice's own remote INBOX.
    carol = remote_user(nethserver, "carol")
    seed(nethserver, carol, {"INBOX": ["c1", "c2"]})
    carol_local = local_server.add_user(unique_name("carol-local"), LOCAL_PASSWORD_BASE + "c")
    inbox_task = config.parse_task(dict(task.public(), local_user=carol_local, remote_user=master_login(carol),
                                        remote_password=REMOTE_MASTER_PASSWORD, folders="inbox"))
    result = sync.run(inbox_task, target, str(tmp_path / "state" / "inbox.sqlite")).as_dict()
    assert result["status"] == "success" and result["totals"]["copied"] == 2, result
    assert [m.subject for m in mail.messages(local_server, carol_local, None, "INBOX", master=True)] == ["c1", "c2"]
    assert all("\\Seen" in m.flags for m in mail.messages(nethserver, carol, nethserver.users[carol], "INBOX"))


def test_engine_imapsync_logs_in_as_user_star_master(nethserver, local_server, imapsyncctl, tmp_path):
    alice = remote_user(nethserver, "alice")
    seed(nethserver, alice, {"INBOX": ["a1", "a2"], "Projects/Alpha": ["p1"]})
    local = local_server.add_user(unique_name("alice-local"), LOCAL_PASSWORD_BASE + "i")
    account = Account(remote_server=nethserver, local_server=local_server, remote_user=master_login(alice),
                      remote_password=REMOTE_MASTER_PASSWORD, local_user=local, local_password=local_server.users[local])
    host = Host(imapsyncctl, tmp_path, account, login=True)
    name = host.define(remote_security="ssl", remote_port=nethserver.ssl_port)  # --ssl1 (starttls: test_imapsync_engine)
    with SecretWatcher(host.passwords) as watcher:
        done = host.ctl("run", name, "--json")  # asserts no password in what imapsyncctl printed
    assert not watcher.seen
    assert done.returncode == 0, done.stdout + done.stderr
    record = host.record()
    argv = record["argv"]
    assert argv[argv.index("--user1") + 1] == f"{alice}*vmail"
    assert record["passfile1"]["content"] == REMOTE_MASTER_PASSWORD + "\n"
    # imapsync's LOGIN as alice*vmail with the master password reached alice's own account.
    assert record["host1"]["ok"] is True and record["host1"]["user"] == f"{alice}*vmail"
    assert record["host1"]["security"] == "ssl"
    assert record["host1"]["folders"] == ["INBOX", "Projects", "Projects/Alpha", "Sent Items"]
    assert record["host1"]["inbox_messages"] == 2
    assert record["host2"]["ok"] is True and record["host2"]["user"] == local
    assert json.loads(done.stdout)["status"] == "success"
    host.assert_clean(host.everything_written())


def test_migrate_playbook_with_a_csv_of_master_logins(nethserver, local_server, tmp_path):
    users = {remote_user(nethserver, name): unique_name(f"{name}2-") for name in ("alice", "bob")}
    for index, (remote, local) in enumerate(users.items()):
        seed(nethserver, remote, {"INBOX": [f"{remote} {i}" for i in range(index + 1)], "Archive/2025": [f"{remote} old"]})
        local_server.add_user(local, LOCAL_PASSWORD_BASE + "p")
    accounts_csv = write_csv(tmp_path / "accounts.csv", ["local_user", "remote_user", "remote_password"],
                             [[local, master_login(remote), REMOTE_MASTER_PASSWORD] for remote, local in users.items()])
    extra = {"migrate_accounts_file": str(accounts_csv), "migrate_become": False,
             "migrate_defaults": {"remote_host": nethserver.host, "remote_port": nethserver.port,
                                  "ca_file": str(nethserver.cert_path)},
             "migrate_target": target_vars(local_server), "migrate_state_dir": str(tmp_path / "state")}
    run = run_playbook(tmp_path, "migrate.yml", workers_inventory(["worker"]), extra, "-vvv",
                       secrets=(REMOTE_MASTER_PASSWORD, local_server.master_password))
    stats = run.stats["mailops_imap_migrate"]
    assert stats["status"] == "success" and stats["summary"]["success"] == 2, run.output
    assert stats["totals"]["copied"] == (1 + 1) + (2 + 1)
    for remote, local in users.items():
        copied = mail.snapshot(local_server, local, master=True)
        source = mail.snapshot(nethserver, remote, nethserver.users[remote])
        assert copied["INBOX"] == source["INBOX"] and copied["Archive.2025"] == source["Archive/2025"], local
    assert len(list((tmp_path / "state").glob("*.sqlite"))) == 2  # one state per account, in the given directory
    assert_no_secret(*written(tmp_path / "state"))
