"""mailops.imap.migrate through a real ansible-playbook: check mode, diff, idempotence, refusals, no secret leaks."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import playbook
from harness import mail


def migration(account, state_dir: Path, **overrides) -> dict:
    local = account.local_server
    data = {
        "local_user": account.local_user,
        "remote_user": account.remote_user,
        "remote_password": account.remote_password,
        "remote_host": account.remote_server.host,
        "remote_port": account.remote_server.port,
        "ca_file": str(account.remote_server.cert_path),
        "state_dir": str(state_dir),
        "target": {
            "host": local.host, "port": local.port, "ca_file": str(local.cert_path),
            "master_user": local.master_user, "master_password": local.master_password,
        },
    }
    data.update(overrides)
    return data


def play(tmp_path: Path, data: dict, *args: str, secrets: tuple[str, ...] = ()) -> tuple[subprocess.CompletedProcess, dict]:
    """Run one migrate task (arguments in a 0600 extra-vars file, never on the command line): process and result."""
    played = playbook.play(tmp_path, [("mailops.imap.migrate", data)], *args, secrets=secrets)
    return played.proc, played.result


def test_check_real_rerun_with_diff_and_no_secret_anywhere(account, tmp_path):
    srv = account.remote_server
    mail.seed(srv, account.remote_user, account.remote_password, "INBOX",
              [(mail.make_message(f"play {i}"), (b"\\Seen",), None) for i in range(4)])
    mail.seed(srv, account.remote_user, account.remote_password, "Projects/Alpha", [(mail.make_message("alpha"), (), None)])
    state_dir = tmp_path / "state"
    data = migration(account, state_dir)
    secrets = (account.remote_password, account.local_server.master_password)

    proc, check = play(tmp_path, data, "--check", "--diff", "-vvv", secrets=secrets)
    assert check["changed"] is True and check["check_mode"] is True
    assert check["totals"]["copied"] == 5 and check["totals"]["folders_created"] == 2
    assert "INBOX: 0 messages" in proc.stdout and "INBOX: 4 messages" in proc.stdout, "diff shows per-folder counts"
    assert not state_dir.exists()
    assert mail.snapshot(account.local_server, account.local_user, master=True)["INBOX"] == []

    proc, real = play(tmp_path, data, "--diff", "-vvv", secrets=secrets)
    assert real["changed"] is True and real["status"] == "success"
    assert real["totals"]["copied"] == 5
    assert "changed=1" in proc.stdout
    local = mail.snapshot(account.local_server, account.local_user, master=True)
    remote = mail.snapshot(srv, account.remote_user, account.remote_password)
    assert local["INBOX"] == remote["INBOX"] and local["Projects.Alpha"] == remote["Projects/Alpha"]

    proc, again = play(tmp_path, data, "-vvv", secrets=secrets)
    assert again["changed"] is False and again["totals"]["copied"] == 0
    assert "changed=0" in proc.stdout

    for path in state_dir.rglob("*"):
        if path.is_file():
            for secret in secrets:
                assert secret.encode("utf-8") not in path.read_bytes()


@pytest.mark.parametrize("overrides,phrase", [
    ({"remote_port": 70000}, "remote_port"),
    ({"remote_security": "tls"}, "remote_security"),
    ({"exclude": ["Good", "([unclosed"]}, "([unclosed"),
    ({"folders": "everything"}, "folders"),
    ({"target": {"port": 0, "master_password": "x"}}, "port"),
])
def test_bad_input_is_refused_before_anything_is_written(account, tmp_path, overrides, phrase):
    mail.seed(account.remote_server, account.remote_user, account.remote_password, "INBOX", [(mail.make_message("x"), (), None)])
    state_dir = tmp_path / "state"
    data = migration(account, state_dir, **overrides)
    _proc, result = play(tmp_path, data, "-vvv", secrets=(account.remote_password,))
    assert result["failed"] is True
    assert phrase in result["msg"]
    assert not state_dir.exists()
    assert mail.snapshot(account.local_server, account.local_user, master=True)["INBOX"] == []


def test_failure_is_classified_and_worded(account, tmp_path):
    data = migration(account, tmp_path / "state", remote_password="wrong'pässword")
    _proc, result = play(tmp_path, data, secrets=("wrong'pässword",))
    assert result["failed"] is True
    assert result["errors"][0]["kind"] == "auth_failed" and "remote server" in result["msg"]
