"""playbooks/migrate.yml, status.yml and deploy.yml through a real ansible-playbook, with an inventory of several
local-connection hosts, against real throwaway Dovecot servers.

Variables travel in an extra-vars file (mode 0600), never on a command line; while a playbook runs, a watcher
checks that no password shows up in any process's arguments or environment, and none may appear in the output.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from ansible_collections.mailops.imap.plugins.module_utils._engine import config, store
from harness import mail
from harness.secrets import SecretWatcher
from harness.systemd import SYSTEMD, UserManager

COLLECTION = Path(__file__).resolve().parents[2]
PLAYBOOKS = COLLECTION / "playbooks"
STATS_RE = re.compile(r"^\s*RUN: (\{.*\})\s*$", re.MULTILINE)


def ansible_bin(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on PATH: run the integration tests through `make integration`", pytrace=False)
    return path


def python_of_ansible() -> str:
    return str(Path(ansible_bin("ansible-playbook")).parent / "python")


class Run:
    """One ansible-playbook run: its output and the custom stats (set_stats) it printed."""

    def __init__(self, proc: subprocess.CompletedProcess) -> None:
        self.proc = proc
        self.output = proc.stdout + proc.stderr
        found = STATS_RE.findall(proc.stdout)
        self.stats = json.loads(found[-1]) if found else {}

    @property
    def rc(self) -> int:
        return self.proc.returncode


def run_playbook(tmp_path: Path, playbook: str, inventory: str, extra: dict, *args: str, secrets: tuple[str, ...] = (),
                 expect_rc: int | None = 0, wrapper: tuple[str, ...] = (), env: dict | None = None,
                 inventory_name: str = "inventory.ini", cwd: Path | None = None) -> Run:
    work = tmp_path / "run"
    work.mkdir(exist_ok=True)
    inventory_path = work / inventory_name
    inventory_path.write_text(inventory, encoding="utf-8")
    extra_path = work / "vars.json"
    extra_path.write_text(json.dumps(extra), encoding="utf-8")
    os.chmod(extra_path, 0o600)
    full_env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_SHOW_CUSTOM_STATS="1",
                    ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_HOST_KEY_CHECKING="0", ANSIBLE_RETRY_FILES_ENABLED="0",
                    ANSIBLE_PYTHON_INTERPRETER=python_of_ansible())
    full_env.update(env or {})
    cmd = [*wrapper, ansible_bin("ansible-playbook"), "-i", str(inventory_path), str(PLAYBOOKS / playbook),
           "-e", f"@{extra_path}", *args]
    with SecretWatcher(secrets) as watcher:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=300, check=False,
                              stdin=subprocess.DEVNULL, cwd=cwd)
    run = Run(proc)
    assert not watcher.seen, f"a password appeared in a process's arguments or environment: {watcher.seen}"
    assert "Traceback" not in run.output, run.output
    for secret in secrets:
        assert secret not in run.output, f"a password appeared in the output of {playbook} {args}"
    if expect_rc is not None:
        assert run.rc == expect_rc, run.output
    return run


def workers_inventory(names: list[str], group: str = "mailops_migration_workers", **host_vars: dict) -> str:
    lines = [f"[{group}]"]
    for name in names:
        extra = " ".join(f"{key}={value}" for key, value in host_vars.get(name, {}).items())
        lines.append(f"{name} ansible_connection=local ansible_python_interpreter={python_of_ansible()} {extra}".rstrip())
    return "\n".join(lines) + "\n"


def target_vars(local) -> dict:
    return {"host": local.host, "port": local.port, "ca_file": str(local.cert_path),
            "master_user": local.master_user, "master_password": local.master_password}


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows([header, *rows])
    path.write_text(buffer.getvalue(), encoding="utf-8")
    os.chmod(path, 0o600)
    return path


def state_file(remote, local, account) -> str:
    task = config.parse_task({"name": "x", "local_user": account.local_user, "remote_user": account.remote_user,
                              "remote_password": "x", "remote_host": remote.host, "remote_port": remote.port})
    return config.state_key(task, config.parse_target({"host": local.host})) + ".sqlite"


class FileWatcher:
    """Scans every file under some directories, while something runs, for secrets (as written, and as JSON escapes
    them); ``seen`` lists the files that held one. It sees a module's temporary payload on the host (ANSIBLE_REMOTE_TMP
    with pipelining off) while the module runs."""

    def __init__(self, roots: list[Path], secrets: list[str], interval: float = 0.02) -> None:
        self.roots = roots
        self.needles = {n.encode("utf-8") for s in secrets for n in (s, json.dumps(s)[1:-1], json.dumps(s, ensure_ascii=False)[1:-1])}
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def scan(self) -> None:
        for root in self.roots:
            for directory, _dirs, files in os.walk(root):
                for name in files:
                    path = os.path.join(directory, name)
                    try:
                        with open(path, "rb") as handle:
                            data = handle.read(16 << 20)
                    except OSError:
                        continue
                    if any(needle in data for needle in self.needles):
                        self.seen.add(path)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.scan()
            self._stop.wait(0.02)

    def __enter__(self) -> FileWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.scan()


# --- migrate.yml ---------------------------------------------------------------------------------------------


def test_migrate_shares_a_vault_csv_across_hosts_check_real_again(make_account, remote_server, local_server, tmp_path):
    # A password that looks like a template arrives as written: the CSV's values are never templated.
    # Each holds a token the file watcher below finds however a file encodes the rest (JSON, a module's payload).
    tokens = [f"pw{i}{uuid.uuid4().hex}" for i in range(5)]
    passwords = [f"{token}, 'with' \"quotes\" \u00e4 {{{{ {i} * 7 }}}}" for i, token in enumerate(tokens)]
    accounts = [make_account(remote_password=p) for p in passwords]
    for index, acc in enumerate(accounts):
        mail.seed(remote_server, acc.remote_user, acc.remote_password, "INBOX",
                  [(mail.make_message(f"shard {index} {i}"), (b"\\Seen",), None) for i in range(index + 1)])
        mail.seed(remote_server, acc.remote_user, acc.remote_password, "Archive/2025", [(mail.make_message(f"a{index}"), (), None)])
    (tmp_path / "migration").mkdir()
    accounts_csv = write_csv(tmp_path / "migration" / "accounts.csv", ["local_user", "remote_user", "remote_password"],
                             [[a.local_user, a.remote_user, a.remote_password] for a in accounts])
    vault_password = tmp_path / "vault-pass"
    vault_password.write_text("demo-vault-secret\n", encoding="utf-8")
    subprocess.run([ansible_bin("ansible-vault"), "encrypt", "--vault-password-file", str(vault_password), str(accounts_csv)],
                   check=True, capture_output=True)
    assert b"$ANSIBLE_VAULT" in accounts_csv.read_bytes()

    # Inventory order is not the sharding order: the sorted names are (worker-a, worker-b, worker-c).
    names = ["worker-c", "worker-a", "worker-b"]
    states = {name: tmp_path / f"state-{name}" for name in names}
    inventory = workers_inventory(names, **{n: {"migrate_state_dir": states[n]} for n in names})
    # A path relative to the current directory (an AWX project's checkout), in a directory: no warning about it.
    extra = {"migrate_accounts_file": "migration/accounts.csv", "migrate_become": False, "migrate_parallel": 2,
             "migrate_defaults": {"remote_host": remote_server.host, "remote_port": remote_server.port,
                                  "ca_file": str(remote_server.cert_path), "folders": "all"},
             "migrate_target": target_vars(local_server)}
    secrets = (*passwords, local_server.master_password)
    vault = ("--vault-password-file", str(vault_password))

    # No decrypted copy of the CSV on the controller or in the hosts' temporary directories, not even for a moment: the
    # passwords reach each host only as its migrate task's no_log arguments, piped to the module (pipelining, which
    # migrate.yml turns on for that task whatever the configuration says: ANSIBLE_PIPELINING is off here).
    temp = {name: tmp_path / name for name in ("local-tmp", "remote-tmp", "tmp")}
    for path in temp.values():
        path.mkdir()
    env = {"ANSIBLE_LOCAL_TEMP": str(temp["local-tmp"]), "ANSIBLE_REMOTE_TMP": str(temp["remote-tmp"]),
           "TMPDIR": str(temp["tmp"]), "ANSIBLE_PIPELINING": "0"}
    with FileWatcher([tmp_path], tokens) as files:
        check = run_playbook(tmp_path, "migrate.yml", inventory, extra, "--check", "--diff", *vault, secrets=secrets,
                             env=env, cwd=tmp_path)
    assert not files.seen, f"a password of the vaulted CSV was written to {sorted(files.seen)}"
    assert "[WARNING]" not in check.output, check.output
    stats = check.stats["mailops_imap_migrate"]
    assert stats["check_mode"] is True and stats["status"] == "success"
    assert stats["summary"] == {"accounts": 5, "success": 5, "partial": 0, "failed": 0, "skipped": 0}
    assert stats["totals"]["copied"] == (1 + 2 + 3 + 4 + 5) + 5
    assert {h: s["accounts"] for h, s in stats["hosts"].items()} == {"worker-a": 2, "worker-b": 2, "worker-c": 1}
    assert "Check mode: this is what a real run would do" in check.output
    for acc in accounts:
        assert mail.snapshot(local_server, acc.local_user, master=True).get("INBOX") == [], "check mode wrote nothing"
    assert not any(path.exists() for path in states.values()), "check mode wrote no state"

    with FileWatcher([tmp_path], tokens) as files:
        real = run_playbook(tmp_path, "migrate.yml", inventory, extra, *vault, secrets=secrets, env=env, cwd=tmp_path)
    assert not files.seen, f"a password of the vaulted CSV was written to {sorted(files.seen)}"
    assert "[WARNING]" not in real.output, real.output
    stats = real.stats["mailops_imap_migrate"]
    assert stats["check_mode"] is False and stats["status"] == "success" and stats["missing_hosts"] == []
    assert stats["summary"]["success"] == 5 and stats["totals"]["copied"] == 20
    assert stats["totals"]["folders_created"] == 5 * 2  # Archive and Archive.2025 for each account
    assert sum(s["totals"]["copied"] for s in stats["hosts"].values()) == 20
    # Each account exactly once, on the host of its slice (row index modulo 3 = index of the sorted host).
    sorted_hosts = sorted(names)
    for index, acc in enumerate(accounts):
        owner = sorted_hosts[index % 3]
        key = state_file(remote_server, local_server, acc)
        assert (states[owner] / key).exists(), f"account {index} was migrated by {owner}"
        assert [h for h in names if (states[h] / key).exists()] == [owner], "and by no other host"
        local = mail.snapshot(local_server, acc.local_user, master=True)
        remote = mail.snapshot(remote_server, acc.remote_user, acc.remote_password)
        assert local["INBOX"] == remote["INBOX"] and local["Archive.2025"] == remote["Archive/2025"]
    assert "20 message(s) copied" in real.output

    again = run_playbook(tmp_path, "migrate.yml", inventory, extra, "-vvv", *vault, secrets=secrets, env=env, cwd=tmp_path)
    stats = again.stats["mailops_imap_migrate"]
    assert stats["status"] == "success" and stats["totals"]["copied"] == 0 and stats["totals"]["already_present"] == 0
    assert re.search(r"worker-[abc]\s+: ok=\d+\s+changed=0 ", again.output), again.output
    assert "changed=1" not in again.output


def test_migrate_list_on_one_host_and_bad_entries_named_in_the_whole_list(make_account, remote_server, local_server, tmp_path):
    first, second, third = make_account(), make_account(), make_account()
    for acc in (first, second, third):
        mail.seed(remote_server, acc.remote_user, acc.remote_password, "INBOX", [(mail.make_message("list"), (), None)])
    listed = [{"local_user": a.local_user, "remote_user": a.remote_user, "remote_password": a.remote_password}
              for a in (first, second, third)]
    common = {"migrate_become": False, "migrate_state_dir": str(tmp_path / "state"), "migrate_target": target_vars(local_server),
              "migrate_defaults": {"remote_host": remote_server.host, "remote_port": remote_server.port,
                                   "ca_file": str(remote_server.cert_path)}}
    secrets = (first.remote_password, second.remote_password, third.remote_password, local_server.master_password)
    one_host = workers_inventory(["mailhost"], group="mailservers")  # no workers group: mailservers is the fallback

    # The master password as AWX's credential injects it; an empty remote password field of the credential is "not given".
    # migrate_defaults and migrate_target as the text of an AWX survey's textarea (YAML, JSON).
    target = json.dumps({k: v for k, v in common["migrate_target"].items() if k != "master_password"})
    defaults = f"remote_host: {remote_server.host}\nremote_port: {remote_server.port}\nca_file: {remote_server.cert_path}\n"
    credential = {"mailops_imap_master_password": local_server.master_password, "mailops_imap_remote_password": ""}
    done = run_playbook(tmp_path, "migrate.yml", one_host, dict(common, migrate_accounts=listed[:2], migrate_target=target,
                                                                migrate_defaults=defaults, **credential), "-vvv", secrets=secrets)
    assert done.stats["mailops_imap_migrate"]["summary"]["success"] == 2
    assert len(mail.snapshot(local_server, second.local_user, master=True)["INBOX"]) == 1

    # Entry 4 of the list lands on the second of two hosts as its entry 2: the message names the list's entry 4.
    bad = [*listed, dict(listed[1], local_user="x2", remote_security="tls")]
    two_hosts = workers_inventory(["w1", "w2"])
    refused = run_playbook(tmp_path, "migrate.yml", two_hosts, dict(common, migrate_accounts=bad), secrets=secrets, expect_rc=2)
    assert "migrate_accounts entry 4: value of remote_security must be one of" in refused.output, refused.output
    assert "accounts entry 2:" not in refused.output.replace("migrate_accounts entry", "")
    stats = refused.stats["mailops_imap_migrate"]
    assert stats["status"] == "failed" and stats["hosts"]["w2"]["status"] == "failed" and stats["hosts"]["w1"]["status"] == "success"


@pytest.mark.parametrize(("extra", "message"), [
    ({}, "either as migrate_accounts (a list) or as migrate_accounts_file"),
    ({"migrate_accounts": [{"local_user": "a"}], "migrate_accounts_file": "x.csv"}, "not both"),
    ({"migrate_accounts": [{"local_user": "a"}], "migrate_defaults": {"remote_hots": "x"}}, "unknown: remote_hots"),
    ({"migrate_accounts": [{"local_user": "a"}], "migrate_hosts": "nowhere"}, "No host of the inventory matches migrate_hosts 'nowhere'"),
    ({"migrate_accounts_file": "does-not-exist.csv"}, "does-not-exist.csv was not found on the controller"),
    ({"migrate_accounts": [{"local_user": "a"}], "migrate_parallel": "2\n"}, "migrate_parallel must be a whole number"),
])
def test_migrate_refuses_unusable_inputs_with_a_sentence(tmp_path, extra, message):
    run = run_playbook(tmp_path, "migrate.yml", workers_inventory(["w1"]), dict(extra, migrate_become=False), expect_rc=2)
    assert message in run.output, run.output
    assert "PLAY [Migrate mail accounts]" not in run.output


@pytest.mark.parametrize("hosts", [["w1"], ["w1", "w2"]], ids=["one host", "two hosts"])
def test_migrate_csv_structure_errors_stop_every_host(tmp_path, hosts):
    """A path relative to the current directory, through a playbook of one's own that imports the collection's (as
    an AWX project may). One host: the action plugin reads the CSV; two: the playbook reads it to share it out."""
    bad = write_csv(tmp_path / "bad.csv", ["local_user", "remote_user", "passwd"], [["a", "b", "secret-cell"]])
    site = tmp_path / "site" / "migrate.yml"
    site.parent.mkdir()
    site.write_text("- name: Migrate\n  ansible.builtin.import_playbook: mailops.imap.migrate\n", encoding="utf-8")
    run = run_playbook(tmp_path, str(site), workers_inventory(hosts), {"migrate_accounts_file": "bad.csv", "migrate_become": False},
                       "-vvv", secrets=("secret-cell",), expect_rc=2, cwd=tmp_path)
    assert f"accounts_file {bad} line 1: unknown column(s) 'passwd'" in run.output, run.output
    assert re.search(r"w1\s+: ok=\d+\s+changed=0\s+unreachable=0\s+failed=1", run.output), run.output


@pytest.mark.parametrize("hosts", [["w1"], ["w1", "w2"]], ids=["one host", "two hosts"])
def test_migrate_names_the_line_and_column_of_a_csv_byte_that_is_not_utf8(tmp_path, hosts):
    """One host: the action plugin reads the CSV; two: the playbook's reader. Both name the place and the fix."""
    bad = tmp_path / "latin.csv"
    bad.write_bytes("local_user,remote_user,remote_password\r\nälice,a@x,secret-cell\r\n".encode("utf-8")
                    + b"bob,b\xe9@x,secret-cell\r\n")
    run = run_playbook(tmp_path, "migrate.yml", workers_inventory(hosts), {"migrate_accounts_file": str(bad), "migrate_become": False},
                       secrets=("secret-cell",), expect_rc=2)
    assert f"accounts_file {bad} line 3, column 6: byte 0xE9 is not UTF-8 text; save the file as UTF-8" in run.output, run.output


def test_migrate_refuses_an_account_listed_twice_across_shares(tmp_path):
    """Entries 1 and 4 land on different hosts; each host's module would see only one of them."""
    accounts = [{"local_user": f"l{i}", "remote_user": f"r{i}", "remote_password": "pw"} for i in range(3)]
    accounts.append({"local_user": "l0", "remote_user": "r0", "remote_password": "other", "remote_host": "IMAP.example.org"})
    extra = {"migrate_accounts": accounts, "migrate_become": False, "migrate_defaults": {"remote_host": "imap.example.org"}}
    run = run_playbook(tmp_path, "migrate.yml", workers_inventory(["w1", "w2", "w3"]), extra, expect_rc=2)
    assert "migrate_accounts entry 4 repeats migrate_accounts entry 1" in run.output, run.output
    assert "TASK [Migrate this host's share of the accounts]" not in run.output


def test_migrate_refuses_a_csv_row_repeated_on_one_host(tmp_path):
    """One host and a CSV: the same check as across shares, naming the lines (the port defaults by the security)."""
    accounts_csv = write_csv(tmp_path / "accounts.csv", ["local_user", "remote_user", "remote_password", "remote_port"],
                             [["l0", "r0", "pw", ""], ["l1", "r1", "pw", ""], ["l0", "r0", "l4-other-pw", "993"]])
    extra = {"migrate_accounts_file": str(accounts_csv), "migrate_become": False,
             "migrate_defaults": {"remote_host": "imap.example.org", "remote_security": "ssl"}}
    run = run_playbook(tmp_path, "migrate.yml", workers_inventory(["w1"]), extra, secrets=("l4-other-pw",), expect_rc=2)
    assert f"accounts_file {accounts_csv} line 4 repeats accounts_file {accounts_csv} line 2" in run.output, run.output
    assert "TASK [Migrate this host's share of the accounts]" not in run.output


def test_migrate_the_credential_password_for_accounts_that_give_none(make_account, remote_server, local_server, tmp_path):
    """mailops_imap_remote_password (the AWX credential) before migrate_defaults.remote_password, in check mode."""
    shared = "sh4red 'pw', \"too\""
    first, second = make_account(remote_password=shared), make_account(remote_password=shared)
    listed = [{"local_user": a.local_user, "remote_user": a.remote_user} for a in (first, second)]
    extra = {"migrate_accounts": listed, "migrate_become": False, "migrate_target": target_vars(local_server),
             "migrate_state_dir": str(tmp_path / "state"), "mailops_imap_remote_password": shared,
             "migrate_defaults": {"remote_host": remote_server.host, "remote_port": remote_server.port,
                                  "ca_file": str(remote_server.cert_path), "remote_password": "not-this-one"}}
    run = run_playbook(tmp_path, "migrate.yml", workers_inventory(["w1", "w2"]), extra, "--check",
                       secrets=(shared, "not-this-one", local_server.master_password))
    stats = run.stats["mailops_imap_migrate"]
    assert stats["status"] == "success" and stats["summary"]["success"] == 2, run.output


# --- status.yml ----------------------------------------------------------------------------------------------


def define(config_dir: Path, account, task_name: str, **fields) -> None:
    local = account.local_server
    definitions = store.Store(str(config_dir), "/nonexistent")
    target = config.parse_target({"host": local.host, "port": local.port, "ca_file": str(local.cert_path),
                                  "master_user": local.master_user, "master_password": local.master_password})
    definitions.write("targets", "default", target.public(), local.master_password)
    task = config.parse_task({"name": task_name, "local_user": account.local_user, "remote_user": account.remote_user,
                              "remote_password": account.remote_password, "remote_host": account.remote_server.host,
                              "remote_port": account.remote_server.port, "ca_file": str(account.remote_server.cert_path),
                              **fields})
    definitions.write("tasks", task_name, task.public(), account.remote_password)


def test_status_prints_one_table_for_all_hosts_and_sets_stats(account, imapsyncctl, tmp_path):
    etc, var = tmp_path / "one-etc", tmp_path / "one-var"
    define(etc, account, "alpha", schedule="interval", interval_minutes=5)
    define(etc, account, "beta", folders="inbox", enabled=False)
    mail.seed(account.remote_server, account.remote_user, account.remote_password, "INBOX",
              [(mail.make_message(f"status {i}"), (b"\\Seen",), None) for i in range(2)])
    ran = subprocess.run([imapsyncctl, "run", "--config-dir", str(etc), "--state-dir", str(var), "alpha"],
                         capture_output=True, text=True, check=False)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    inventory = workers_inventory(["mail-one", "mail-two"], group="mailservers", **{
        "mail-one": {"status_config_dir": etc, "status_state_dir": var},
        "mail-two": {"status_config_dir": tmp_path / "two-etc", "status_state_dir": tmp_path / "two-var"},
    })
    secrets = (account.remote_password, account.local_server.master_password)

    run = run_playbook(tmp_path, "status.yml", inventory, {"status_become": False}, "--check", "-vvv", secrets=secrets)

    table = [line for line in run.output.splitlines() if line.startswith('        "')]
    header = next(line for line in table if "HOST" in line)
    assert re.search(r'"HOST\s+TASK\s+SCHEDULE\s+RUNNING\s+LAST RUN\s+FINISHED \(UTC\)\s+COPIED\s+ERRORS\s+NEXT RUN \(UTC\)"', header)
    alpha = next(line for line in table if " alpha " in line)
    assert re.search(r'"mail-one\s+alpha\s+every 5 min\s+no\s+success\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+2\s+0\s+-"', alpha), alpha
    beta = next(line for line in table if " beta " in line)
    assert re.search(r'"mail-one\s+beta\s+manual \(disabled\)\s+no\s+never\s+-\s+-\s+-\s+-"', beta), beta
    assert any(re.search(r'"mail-two\s+\(no task\)"', line) for line in table), table
    assert table.index(header) < table.index(alpha) < table.index(beta)

    stats = run.stats["mailops_imap_status"]
    assert stats["summary"] == {"hosts": 2, "tasks": 2, "enabled": 1, "scheduled": 0, "running": 0, "never_ran": 1,
                                "last_success": 1, "last_partial": 0, "last_failed": 0, "last_skipped": 0}
    assert stats["hosts"]["mail-two"] == [] and stats["missing_hosts"] == []
    first = stats["hosts"]["mail-one"][0]
    assert first["task"] == "alpha" and first["last_status"] == "success" and first["copied"] == 2 and first["next_run"] is None
    assert "changed=0" in run.output and "changed=1" not in run.output


# --- deploy.yml ----------------------------------------------------------------------------------------------


def user_manager_unavailable() -> str | None:
    """Why a private systemd user manager (harness.systemd) cannot run here, or None."""
    if os.geteuid() != 0:
        return "it needs root (a mount namespace)"
    for tool in ("unshare", "nsenter", "systemctl", SYSTEMD):
        if shutil.which(tool) is None:
            return f"{tool} is missing"
    return None


def test_deploy_check_mode_with_the_credential_passwords_writes_nothing(account, tmp_path):
    """The role over the group mailservers in check mode; the passwords come as AWX's credential injects them."""
    reason = user_manager_unavailable()
    if reason is not None:
        pytest.skip(f"a private systemd user manager cannot run: {reason}")
    if not (COLLECTION / "roles" / "imapsync" / "tasks" / "main.yml").exists():
        pytest.skip("the imapsync role is not there yet")
    local, remote = account.local_server, account.remote_server
    group_vars = {
        "imapsync_scope": "user",
        "imapsync_target": {"host": local.host, "port": local.port, "ca_file": str(local.cert_path), "master_user": local.master_user},
        "imapsync_tasks": [{"name": "inbox-one", "local_user": account.local_user, "remote_user": account.remote_user,
                            "remote_host": remote.host, "remote_port": remote.port, "ca_file": str(remote.cert_path),
                            "folders": "inbox", "schedule": "interval", "interval_minutes": 5}],
    }
    inventory = json.dumps({"mailservers": {"hosts": {"mail-one": {
        "ansible_connection": "local", "ansible_python_interpreter": python_of_ansible()}}, "vars": group_vars}})
    credential = {"mailops_imap_master_password": local.master_password, "mailops_imap_remote_password": account.remote_password}
    secrets = (local.master_password, account.remote_password)
    with UserManager() as manager:
        env = [f"{key}={manager.env[key]}" for key in ("HOME", "XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS")]
        wrapper = ("env", *env, "nsenter", "--target", str(manager.pid), "--mount")

        check = run_playbook(tmp_path, "deploy.yml", inventory, dict(credential, deploy_become=False), "--check", "--diff",
                             "-vvv", secrets=secrets, wrapper=wrapper, inventory_name="inventory.json")
        assert "PLAY [Deploy the sync tasks to the mail servers]" in check.output
        assert re.search(r"mail-one\s+: ok=\d+\s+changed=[1-9]\d*\s+unreachable=0\s+failed=0", check.output), check.output
        written = [str(p.relative_to(manager.home)) for p in manager.home.rglob("*") if not str(p.relative_to(manager.home)).startswith(".ansible")]
        assert written == [], f"check mode wrote {written}"

        # A target given as an extra variable cannot be given the credential's password: a sentence says so.
        refused = run_playbook(tmp_path, "deploy.yml", inventory,
                               dict(credential, deploy_become=False, imapsync_target=group_vars["imapsync_target"]), "--check",
                               secrets=secrets, wrapper=wrapper, inventory_name="inventory.json", expect_rc=2)
        assert "cannot be added to imapsync_target or imapsync_tasks given as extra variables" in refused.output, refused.output
