"""Progress while mailops.imap.migrate runs, through a real ansible-playbook, and the run log of an inline run.

The remote server is reached through a proxy that holds its traffic twice for a while, so that the migration spans
several polls at a short ``progress_interval`` whatever the speed of the machine.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import playbook
from harness import mail
from harness.proxy import CuttingProxy

from test_migrate_playbook import migration

LINE = re.compile(r"^localhost: (?P<account>.+?): (?:folder \d+ of \d+ \([^)]*\)|starting(?: \(\d+ folders\))?|done), (?P<done>\d+)(?: of (?P<total>\d+))? "
                  r"messages(?: \(\d+%\))?, [0-9.]+ \S+ copied", re.M)


def _stall(proxy: CuttingProxy, holds: int = 2, nbytes: int = 400_000, seconds: float = 2.5) -> threading.Thread:
    """Hold the remote's traffic ``holds`` times, ``seconds`` each, after every ``nbytes`` bytes it sends."""

    def run() -> None:
        for _hold in range(holds):
            proxy.pause_after(nbytes)
            if not proxy.wait_paused(60):
                return
            threading.Event().wait(seconds)
            proxy.resume()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _seed(account, count: int) -> None:
    mail.seed(account.remote_server, account.remote_user, account.remote_password, "INBOX",
              [(mail.make_message(f"progress {i}", size=20_000), (), None) for i in range(count)])


def _monotone(output: str, account: str) -> list[int]:
    counts = [int(m["done"]) for m in LINE.finditer(output) if account in m["account"]]
    assert counts == sorted(counts), output
    return counts


def test_inline_run_shows_progress_keeps_a_run_log_and_returns_the_same_result(account, tmp_path: Path):
    _seed(account, 60)
    state_dir = tmp_path / "state"
    secrets = (account.remote_password, account.local_server.master_password)
    with CuttingProxy(account.remote_server.host, account.remote_server.port) as proxy:
        stalls = _stall(proxy)
        data = migration(account, state_dir, remote_host=proxy.host, remote_port=proxy.port, progress_interval=0.5)
        played = playbook.play(tmp_path, [("mailops.imap.migrate", data)], secrets=secrets)
        stalls.join(5)
    result = played.result
    assert result["status"] == "success" and result["changed"] is True and result["totals"]["copied"] == 60
    assert "mailops_progress" not in result
    counts = _monotone(played.proc.stdout, account.remote_user)
    assert len(counts) >= 2 and any(0 < count < 60 for count in counts), played.proc.stdout
    assert all(m["total"] in ("60", None) for m in LINE.finditer(played.proc.stdout))
    assert not (state_dir / "jobs").exists() or not any((state_dir / "jobs").iterdir()), "the job's directory is removed"

    logs = list(state_dir.glob("runs/inline-*/*.log"))
    assert len(logs) == 1 and oct(logs[0].stat().st_mode & 0o777) == "0o600"
    text = logs[0].read_text(encoding="utf-8")
    assert f"inline run: {account.remote_user} at" in text and "status success: 60 messages copied" in text
    for secret in secrets:
        assert secret not in text

    # A run that ends within the first interval answers at once, as without progress (and keeps a second log).
    again = playbook.play(tmp_path, [("mailops.imap.migrate", migration(account, state_dir, progress_interval=30))],
                          secrets=secrets).result
    assert again["changed"] is False and again["totals"]["copied"] == 0 and again["status"] == "success"
    assert len(list(state_dir.glob("runs/inline-*/*.log"))) == 2


def test_bulk_run_shows_each_running_account(make_account, remote_server, local_server, tmp_path: Path):
    first, second = make_account(), make_account()
    for acc in (first, second):
        _seed(acc, 30)
    with CuttingProxy(remote_server.host, remote_server.port) as proxy:
        stalls = _stall(proxy, holds=1)
        data = {
            "accounts": [{"remote_user": a.remote_user, "remote_password": a.remote_password, "local_user": a.local_user}
                         for a in (first, second)],
            "remote_host": proxy.host, "remote_port": proxy.port, "ca_file": str(remote_server.cert_path),
            "parallel": 2, "progress_interval": 0.5, "state_dir": str(tmp_path / "state"),
            "target": {"host": local_server.host, "port": local_server.port, "ca_file": str(local_server.cert_path),
                       "master_user": local_server.master_user, "master_password": local_server.master_password},
        }
        played = playbook.play(tmp_path, [("mailops.imap.migrate", data)],
                               secrets=(first.remote_password, second.remote_password, local_server.master_password))
        stalls.join(5)
    result = played.result
    assert result["status"] == "success" and result["totals"]["copied"] == 60
    assert re.search(r"^localhost: [012] of 2 accounts done$", played.proc.stdout, re.M), played.proc.stdout
    for acc in (first, second):
        assert _monotone(played.proc.stdout, acc.remote_user), played.proc.stdout
