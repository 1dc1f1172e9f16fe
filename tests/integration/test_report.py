"""The migration report against real Dovecot servers: every reason a remote message is not on the local server, and
playbooks/report.yml writing it as CSV and Markdown for a fleet."""

from __future__ import annotations

import csv
import datetime
import io
import stat

from harness import mail
from test_playbooks import run_playbook, target_vars, workers_inventory, write_csv

from ansible_collections.mailops.imap.plugins.module_utils._engine import config, imap, report, sync
from ansible_collections.mailops.imap.plugins.module_utils._engine.store import Store

D1 = datetime.datetime(2024, 2, 3, 10, 0, 0, tzinfo=datetime.timezone.utc)
EXCLUDED = "=Junk|<b>x"  # a folder name a spreadsheet would run as a formula, that Markdown would render


def seed_mailbox(account, too_big: bool = True) -> None:
    """INBOX: three small messages, one the local quota (1M) refuses, one larger than the local limit (set to 2 MiB by
    the test); Projects: two; EXCLUDED: one."""
    srv, user, pw = account.remote_server, account.remote_user, account.remote_password
    inbox = [mail.make_message(f"ok {i}", date=D1) for i in range(3)]
    inbox.append(mail.make_message("over quota", size=1536 * 1024, date=D1))
    if too_big:
        inbox.append(mail.make_message("too big", size=2560 * 1024, date=D1))
    mail.seed(srv, user, pw, "INBOX", [(m, (), D1) for m in inbox])
    mail.seed(srv, user, pw, "Projects", [(mail.make_message(f"project {i}", date=D1), (), D1) for i in range(2)])
    mail.seed(srv, user, pw, EXCLUDED, [(mail.make_message("junk", date=D1), (), D1)])
    account.local_server.set_user_quota(account.local_user, "1M")


def task_fields(account) -> dict:
    return {"local_user": account.local_user, "remote_user": account.remote_user, "remote_password": account.remote_password,
            "remote_host": account.remote_server.host, "remote_port": account.remote_server.port,
            "remote_security": "starttls", "ca_file": str(account.remote_server.cert_path),
            "folders": "all_except", "exclude": ["^=Junk"]}


def target_fields(account) -> dict:
    local = account.local_server
    return {"host": local.host, "port": local.port, "security": "starttls", "ca_file": str(local.cert_path),
            "master_user": local.master_user, "master_password": local.master_password}


def test_report_says_why_each_missing_message_is_missing(account, tmp_path, monkeypatch):
    monkeypatch.setattr(imap, "MAX_MESSAGE", 2 * 1024 * 1024)
    seed_mailbox(account)
    task, target = config.parse_task(task_fields(account)), config.parse_target(target_fields(account))
    state_path = Store(state_dir=str(tmp_path)).inline_state_path(task, target)
    assert sync.run(task, target, state_path).status == "partial"
    # New on the remote since the run.
    mail.seed(account.remote_server, account.remote_user, account.remote_password, "Projects",
              [(mail.make_message("project late", date=D1), (), D1)])
    before = sorted(p.name for p in tmp_path.iterdir())
    local_before = mail.snapshot(account.local_server, account.local_user, master=True)

    got = report.account_report("acc", task, target, state_path)

    assert got["status"] == "incomplete" and got["kind"] is None, got
    folders = {f["folder"]: f for f in got["folders"]}
    inbox, projects, junk = folders["INBOX"], folders["Projects"], folders[EXCLUDED]
    assert (inbox["status"], inbox["remote_messages"], inbox["copied"], inbox["local_messages"]) == ("incomplete", 5, 3, 3)
    assert (inbox["missing"], inbox["refused"], inbox["too_big"], inbox["not_copied"], inbox["excluded"]) == (2, 1, 1, 0, 0)
    assert inbox["missing_bytes"] == 1536 * 1024 + 2560 * 1024 and inbox["remote_bytes"] > inbox["local_bytes"] > 0
    assert (projects["status"], projects["remote_messages"], projects["local_messages"], projects["not_copied"]) == (
        "incomplete", 3, 2, 1)
    assert (junk["status"], junk["excluded"], junk["local_messages"]) == ("excluded", 1, 0)
    assert got["totals"]["missing"] == 4 and got["totals"]["remote_messages"] == 9
    # Read-only: no state file, lock or folder created; nothing marked seen.
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert mail.snapshot(account.local_server, account.local_user, master=True) == local_before
    projects = mail.messages(account.remote_server, account.remote_user, account.remote_password, "Projects")
    assert projects and all(not m.flags for m in projects)


def test_an_account_that_cannot_log_in_is_reported_with_its_kind(account, tmp_path):
    fields = dict(task_fields(account), remote_password="wrong")
    task, target = config.parse_task(fields), config.parse_target(target_fields(account))
    got = report.account_report("acc", task, target, str(tmp_path / "none.sqlite"))
    assert got["status"] == "failed" and got["kind"] == "auth_failed", got
    assert "wrong" not in got["message"] and account.remote_user in got["message"]
    assert not list(tmp_path.iterdir())


# --- playbooks/report.yml ------------------------------------------------------------------------------------


def test_report_playbook_writes_csv_and_markdown_for_a_fleet(make_account, remote_server, local_server, tmp_path):
    """migrate.yml then report.yml on two hosts, each with its share of the accounts: one account migrated with a
    refused message, an excluded folder with a name a spreadsheet would run and a message new since the run; one
    account whose login is refused (migrate.yml's artifact names it with the kind and sentence of its failure)."""
    good, bad = make_account(), make_account()
    seed_mailbox(good, too_big=False)
    defaults = {"remote_host": remote_server.host, "remote_port": remote_server.port, "ca_file": str(remote_server.cert_path),
                "folders": "all_except", "exclude": ["^=Junk"]}
    accounts_csv = write_csv(tmp_path / "accounts.csv", ["local_user", "remote_user", "remote_password"], [
        [good.local_user, good.remote_user, good.remote_password], [bad.local_user, bad.remote_user, "not-the-password"]])
    extra = {"migrate_accounts_file": str(accounts_csv), "migrate_become": False, "migrate_state_dir": str(tmp_path / "state"),
             "migrate_defaults": defaults, "migrate_target": target_vars(local_server),
             "report_csv_file": str(tmp_path / "out" / "report.csv"), "report_markdown_file": "report.md"}
    (tmp_path / "out").mkdir()
    secrets = (good.remote_password, bad.remote_password, "not-the-password", local_server.master_password)
    inventory = workers_inventory(["worker-a", "worker-b"])

    migrated = run_playbook(tmp_path, "migrate.yml", inventory, extra, secrets=secrets, expect_rc=2)
    (failed,) = migrated.stats["mailops_imap_migrate"]["failed_accounts"]
    assert failed["account"] == f"{bad.remote_user} at {remote_server.host} -> {bad.local_user}" and failed["kind"] == "auth_failed"
    assert failed["message"].startswith(f"The remote server {remote_server.host}:{remote_server.port} refused the login")
    mail.seed(remote_server, good.remote_user, good.remote_password, "Projects", [(mail.make_message("late", date=D1), (), D1)])
    run = run_playbook(tmp_path, "report.yml", inventory, extra, secrets=secrets, cwd=tmp_path / "out",
                       env={"PWD": str(tmp_path / "out")})

    stats = run.stats["mailops_imap_report"]
    assert stats["status"] == "failed" and stats["summary"] == {"accounts": 2, "complete": 0, "incomplete": 1, "failed": 1}
    (reported_good,), (reported_bad,) = stats["hosts"]["worker-a"], stats["hosts"]["worker-b"]
    assert reported_bad["kind"] == "auth_failed" and bad.remote_user in reported_bad["message"]
    assert reported_good["totals"]["refused"] == 1 and reported_good["totals"]["not_copied"] == 1
    csv_path, md_path = tmp_path / "out" / "report.csv", tmp_path / "out" / "report.md"
    assert stat.S_IMODE(csv_path.stat().st_mode) == 0o600 and stat.S_IMODE(md_path.stat().st_mode) == 0o600
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text(encoding="utf-8"))))
    by_folder = {row["folder"]: row for row in rows if row["host"] == "worker-a"}
    assert by_folder["INBOX"]["refused"] == "1" and by_folder["INBOX"]["local_messages"] == "3"
    assert by_folder["INBOX"]["remote_messages"] == "4" and by_folder["INBOX"]["folder_status"] == "incomplete"
    assert by_folder["Projects"]["not_copied"] == "1"
    # The remote's folder name reaches the spreadsheet as text, not as a formula.
    assert by_folder["'" + EXCLUDED]["excluded"] == "1" and by_folder["'" + EXCLUDED]["folder_status"] == "excluded"
    (failed_row,) = [row for row in rows if row["host"] == "worker-b"]
    assert failed_row["account_status"] == "failed" and failed_row["error_kind"] == "auth_failed" and failed_row["folder"] == ""
    page = md_path.read_text(encoding="utf-8")
    assert "2 account(s): 0 complete, 1 incomplete, 1 failed." in page
    assert "| =Junk\\|&lt;b&gt;x |" in page
    assert "<b>" not in page
    assert f"| worker-b | {bad.remote_user} at" in page and "auth\\_failed: " in page
