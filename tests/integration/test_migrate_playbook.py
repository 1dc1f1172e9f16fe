"""mailops.imap.migrate through a real ansible-playbook: check mode, diff, idempotence, refusals, no secret leaks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from harness import mail

MIGRATE_TASK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Migrate one account
      mailops.imap.migrate: "{{ migration }}"
      register: migrated
    - name: Show the result
      ansible.builtin.copy:
        content: "{{ migrated | to_json }}"
        dest: "{{ result_file }}"
        mode: "0600"
      check_mode: false
      diff: false
      changed_when: false
"""


def ansible_playbook() -> str:
    path = shutil.which("ansible-playbook")
    if path is None:
        pytest.fail("ansible-playbook is not on PATH: run the integration tests through `make integration`", pytrace=False)
    return path


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


def play(tmp_path: Path, data: dict, *args: str, watch_secret: str | None = None) -> tuple[subprocess.CompletedProcess, dict | None]:
    """Run the playbook with the migration passed as an extra-vars file (never on the command line)."""
    playbook = tmp_path / "migrate.yml"
    playbook.write_text(MIGRATE_TASK, encoding="utf-8")
    result_file = tmp_path / "result.json"
    if result_file.exists():
        result_file.unlink()
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps({"migration": data, "result_file": str(result_file)}), encoding="utf-8")
    os.chmod(extra, 0o600)
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="0", ANSIBLE_PYTHON_INTERPRETER=os.environ.get("PYTHON", ""))
    if not env["ANSIBLE_PYTHON_INTERPRETER"]:
        env["ANSIBLE_PYTHON_INTERPRETER"] = str(Path(ansible_playbook()).parent / "python")
    cmd = [ansible_playbook(), "-i", "localhost,", "-c", "local", str(playbook), "-e", f"@{extra}", *args]
    seen_in_args: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        needle = watch_secret.encode("utf-8") if watch_secret else None
        while needle and not stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as handle:
                        cmdline = handle.read()
                    with open(f"/proc/{pid}/environ", "rb") as handle:
                        environ = handle.read()
                except OSError:
                    continue
                if needle in cmdline or needle in environ:
                    seen_in_args.append(cmdline.replace(b"\0", b" ").decode("utf-8", "replace")[:200])
            stop.wait(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    finally:
        stop.set()
        watcher.join()
    assert not seen_in_args, f"a password appeared in a process's arguments or environment: {seen_in_args}"
    result = json.loads(result_file.read_text(encoding="utf-8")) if result_file.exists() else None
    return proc, result


def test_check_real_rerun_with_diff_and_no_secret_anywhere(account, tmp_path):
    srv = account.remote_server
    mail.seed(srv, account.remote_user, account.remote_password, "INBOX",
              [(mail.make_message(f"play {i}"), (b"\\Seen",), None) for i in range(4)])
    mail.seed(srv, account.remote_user, account.remote_password, "Projects/Alpha", [(mail.make_message("alpha"), (), None)])
    state_dir = tmp_path / "state"
    data = migration(account, state_dir)
    secrets = [account.remote_password, account.local_server.master_password]

    outputs = []
    proc, check = play(tmp_path, data, "--check", "--diff", "-vvv", watch_secret=account.remote_password)
    outputs.append(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert check["changed"] is True and check["check_mode"] is True
    assert check["totals"]["copied"] == 5 and check["totals"]["folders_created"] == 2
    assert "INBOX: 0 messages" in proc.stdout and "INBOX: 4 messages" in proc.stdout, "diff shows per-folder counts"
    assert not state_dir.exists()
    assert mail.snapshot(account.local_server, account.local_user, master=True)["INBOX"] == []

    proc, real = play(tmp_path, data, "--diff", "-vvv", watch_secret=account.remote_password)
    outputs.append(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert real["changed"] is True and real["status"] == "success"
    assert real["totals"]["copied"] == 5
    assert "changed=1" in proc.stdout
    local = mail.snapshot(account.local_server, account.local_user, master=True)
    remote = mail.snapshot(srv, account.remote_user, account.remote_password)
    assert local["INBOX"] == remote["INBOX"] and local["Projects.Alpha"] == remote["Projects/Alpha"]

    proc, again = play(tmp_path, data, "-vvv", watch_secret=account.remote_password)
    outputs.append(proc.stdout + proc.stderr)
    assert proc.returncode == 0
    assert again["changed"] is False and again["totals"]["copied"] == 0
    assert "changed=0" in proc.stdout

    for text in outputs:
        for secret in secrets:
            assert secret not in text
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
    proc, _result = play(tmp_path, data, "-vvv")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert phrase in out
    assert "Traceback" not in out
    assert account.remote_password not in out
    assert not state_dir.exists()
    assert mail.snapshot(account.local_server, account.local_user, master=True)["INBOX"] == []


def test_failure_is_classified_and_worded(account, tmp_path):
    data = migration(account, tmp_path / "state", remote_password="wrong'pässword")
    proc, _result = play(tmp_path, data)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "auth_failed" in out and "remote server" in out
    assert "wrong'pässword" not in out and "Traceback" not in out
