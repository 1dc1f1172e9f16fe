"""Runs against real Dovecot servers when the host's side fails: two runs into one account, a damaged state file,
a full or read-only state filesystem, unsafe directories and symbolic links, umask 000."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from harness.proxy import CuttingProxy
from test_imapsyncctl import Host, local_snapshot, remote_snapshot, seed_many, seed_remote

from ansible_collections.mailops.imap.plugins.module_utils import _migrate
from ansible_collections.mailops.imap.plugins.module_utils._engine import config, runner

FULL = "free space on the filesystem holding"


@pytest.fixture
def host(imapsyncctl, tmp_path) -> Host:
    return Host(imapsyncctl, tmp_path)


def inline(account, state_dir: Path, check_mode: bool = False, remote_user: str | None = None):
    """An inline ``migrate`` of the account, as the module runs it (inline and bulk accounts alike)."""
    server = account.local_server
    target = config.parse_target({
        "host": server.host, "port": server.port, "security": "starttls", "ca_file": str(server.cert_path),
        "master_user": server.master_user, "master_password": server.master_password,
    })
    task = config.parse_task({
        "local_user": account.local_user, "remote_user": remote_user or account.remote_user,
        "remote_password": account.remote_password, "remote_host": account.remote_server.host,
        "remote_port": account.remote_server.port, "remote_security": "starttls",
        "ca_file": str(account.remote_server.cert_path),
    })
    return _migrate.run_inline_account(task, target, str(state_dir), check_mode)


def assert_same_mail(account) -> None:
    """Every remote message once in the local account (a duplicate would make the lists differ)."""
    remote, local = remote_snapshot(account), local_snapshot(account)
    assert local["INBOX"] == remote["INBOX"] and local["Work.Projects"] == remote["Work/Projects"]


# -- 1. one run at a time into one account --------------------------------------------------------------------------


def test_two_tasks_and_an_inline_migrate_of_one_account_never_copy_at_once(account, host):
    seed_remote(account)
    with CuttingProxy(account.remote_server.host, account.remote_server.port) as proxy:
        first = host.define(account, name="t1", remote_port=proxy.port)
        other = host.define(account, name="t2")  # another name, another port: the same account
        proxy.pause()  # the first run holds its locks and waits for the remote's greeting until resumed
        running = host.popen("run", first, "--json")
        try:
            host.wait_running(first)
            second = host.ctl("run", other, "--json")
            assert second.returncode == 75, second.stdout + second.stderr
            skipped = json.loads(second.stdout)
            assert skipped["status"] == "skipped" and skipped["totals"]["copied"] == 0
            assert skipped["notices"] == [
                f"Another run into the account {account.remote_user} at {account.remote_server.host} -> "
                f"{account.local_user} is active (another task, or an inline migrate, of the same account); this run "
                "was skipped."]
            assert host.ctl("run", other, "--check", "--json").returncode == 75  # check mode honours it too

            # The module's state_dir is the store's: an inline migrate sees the lock (user names ignore case).
            outcome = inline(account, host.state_dir, remote_user=account.remote_user.upper())
            assert outcome.status == "skipped" and "Another run into the account" in outcome.notices[0]
        finally:
            proxy.resume()
        out, err = running.communicate(timeout=60)
    host.assert_clean(out + err)
    assert running.returncode == 0, err
    assert json.loads(out)["totals"]["copied"] == 5
    assert_same_mail(account)

    after = host.ctl("run", other, "--json")  # free again: it finds everything there, copies nothing
    assert after.returncode == 0 and json.loads(after.stdout)["totals"]["already_present"] == 5
    assert inline(account, host.state_dir).status == "success"
    assert_same_mail(account)


# -- 2. a damaged state file ----------------------------------------------------------------------------------------


def test_a_damaged_state_file_is_set_aside_and_the_run_matches_by_identity(account, host):
    seed_remote(account)
    name = host.define(account)
    assert host.ctl("run", name).returncode == 0
    path = Path(host.store.state_path(name))
    with open(path, "r+b") as handle:  # a disk that lost the end of the file
        handle.truncate(path.stat().st_size // 2)
        handle.seek(0)
        handle.write(b"\0" * 100)
    damaged = path.read_bytes()

    check = host.ctl("run", name, "--check", "--json")
    assert check.returncode == 0, check.stdout + check.stderr
    planned = json.loads(check.stdout)
    assert planned["totals"]["copied"] == 0 and planned["totals"]["already_present"] == 5
    assert any(f"The state file {path} is damaged" in n and "a real run sets it aside" in n for n in planned["notices"])
    assert sorted(os.listdir(path.parent)) == [path.name, f"{path.name}.lock"]  # check mode renamed nothing

    done = host.ctl("run", name, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    kept = [p for p in path.parent.iterdir() if p.name.startswith(f"{path.name}.corrupt-")]
    assert len(kept) == 1 and kept[0].read_bytes() == damaged  # kept for inspection
    assert result["status"] == "success" and result["totals"]["copied"] == 0 and result["totals"]["already_present"] == 5
    assert [n for n in result["notices"] if str(kept[0]) in n] and "writable" not in json.dumps(result)
    assert_same_mail(account)
    assert host.ctl("run", name, "--json").returncode == 0  # and the new state works from now on
    assert_same_mail(account)


# -- 3. a full or read-only state filesystem ---------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "1m"):
    """A small tmpfs mounted on ``path`` (root only), unmounted at the end whatever happens."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Fill the filesystem holding ``directory``; the filler file, to remove to free space again."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as handle:
        with contextlib.suppress(OSError):
            while True:
                handle.write(b"\0" * 4096)
    return filler


def test_a_full_state_filesystem_is_a_state_error_on_every_face(account, host):
    seed_many(account, 1500, size=512)
    name = host.define(account)
    with tmpfs(host.state_dir):
        filler = fill(host.state_dir)
        done = host.ctl("run", name, "--json")  # imapsyncctl: nothing can be written at all
        assert done.returncode == 1, done.stdout + done.stderr
        result = json.loads(done.stdout)
        assert result["status"] == "failed" and result["errors"][0]["kind"] == "state_error"
        assert f"{FULL} {host.state_dir}" in result["errors"][0]["detail"]
        assert "Traceback" not in done.stderr and "run as root" not in done.stdout + done.stderr

        outcome = inline(account, host.state_dir)  # an inline migrate
        assert outcome.status == "failed" and outcome.errors[0]["kind"] == "state_error"
        assert f"{FULL} {host.state_dir}" in outcome.errors[0]["detail"]
        filler.unlink()
    assert local_snapshot(account)["INBOX"] == []  # nothing was copied without its checkpoint

    # Only the state database's filesystem fills up (the run records are elsewhere): the builtin engine meets
    # SQLite's "database or disk is full" in the middle of the folder, and the last result is recorded.
    tasks_dir = Path(host.store.state_path(name)).parent
    with tmpfs(tasks_dir, size="160k"):
        done = host.ctl("run", name, "--json")
        assert done.returncode == 1, done.stdout + done.stderr
        result = json.loads(done.stdout)
        error = result["errors"][0]
        assert error["kind"] == "state_error" and f"{FULL} {tasks_dir}" in error["detail"], error
        assert 0 < result["folders"][0]["copied"] < 1500  # it stopped inside INBOX, after some checkpoints
        last = host.store.last_result(name)
        assert last["status"] == "failed" and last["errors"] == [error]
    done = host.ctl("run", name, "--json")  # space again (the state went with the tmpfs): nothing doubled
    assert done.returncode == 0, done.stdout + done.stderr
    assert remote_snapshot(account)["INBOX"] == local_snapshot(account)["INBOX"]


def test_a_read_only_state_filesystem_is_a_state_error_naming_the_fix(account, host):
    seed_remote(account)
    name = host.define(account)
    with tmpfs(host.state_dir):
        subprocess.run(["mount", "-o", "remount,ro", str(host.state_dir)], check=True)
        done = host.ctl("run", name, "--json")
        assert done.returncode == 1, done.stdout + done.stderr
        error = json.loads(done.stdout)["errors"][0]
        assert error["kind"] == "state_error"
        assert f"the filesystem holding {host.state_dir}" in error["detail"] and "is read-only; remount it read-write" in error["detail"]
        outcome = inline(account, host.state_dir)
        assert outcome.errors[0]["kind"] == "state_error" and "is read-only" in outcome.errors[0]["detail"]
    assert local_snapshot(account)["INBOX"] == []


# -- 12. modes and unsafe directories ----------------------------------------------------------------------------------


def test_under_umask_000_a_run_creates_nothing_others_can_write(account, host):
    seed_remote(account)
    name = host.define(account)
    previous = os.umask(0)
    try:
        assert runner.run_task(host.store, name).status == "success"
        assert inline(account, host.state_dir / "inline" / "deep").status == "success"
    finally:
        os.umask(previous)
    seen = 0
    for directory, _dirs, names in os.walk(host.state_dir):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700, directory
        for entry in names:
            assert stat.S_IMODE(os.stat(os.path.join(directory, entry)).st_mode) == 0o600, entry
            seen += 1
    assert seen >= 6  # state, lock, account lock, last result, log of the task; the inline state and its locks
    assert_same_mail(account)


@pytest.mark.parametrize("link", ["t1.sqlite", "t1.sqlite.lock"])
def test_a_symbolic_link_in_the_state_dir_is_refused_and_its_target_untouched(account, host, tmp_path, link):
    seed_remote(account)
    name = host.define(account)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"precious")
    os.chmod(elsewhere, 0o644)
    tasks_dir = Path(host.store.state_path(name)).parent
    tasks_dir.mkdir(parents=True, mode=0o700)
    (tasks_dir / link).symlink_to(elsewhere)
    done = host.ctl("run", name, "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    error = json.loads(done.stdout)["errors"][0]
    assert error["kind"] == "state_error" and f"{tasks_dir / link} is a symbolic link; remove it" in error["detail"]
    assert elsewhere.read_bytes() == b"precious" and stat.S_IMODE(elsewhere.stat().st_mode) == 0o644
    assert local_snapshot(account)["INBOX"] == []


def test_a_state_dir_others_can_write_is_refused_with_a_sentence(account, host):
    seed_remote(account)
    name = host.define(account)
    host.state_dir.mkdir(mode=0o700)
    os.chmod(host.state_dir, 0o777)
    done = host.ctl("run", name)
    assert done.returncode == 1
    assert (f"The directory {host.state_dir} can be written by other users (mode 0777); make it writable by its owner "
            f"only (chmod go-w {host.state_dir}) or choose another directory.") in done.stdout + done.stderr
    assert os.listdir(host.state_dir) == []
    outcome = inline(account, host.state_dir)
    assert outcome.status == "failed" and "can be written by other users" in outcome.errors[0]["detail"]
    assert os.listdir(host.state_dir) == [] and local_snapshot(account)["INBOX"] == []
