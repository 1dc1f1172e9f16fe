"""The managed host as a user meets it: reached over SSH with become, its Python, and the engine's environment.

- playbooks/migrate.yml against a host reached over SSH (a throwaway sshd and user, harness/sshd.py) that becomes
  root with sudo: the host has no imapclient in its interpreter, so the play prepares the engine's virtual
  environment with the role's entry point ``venv`` (offline, from a wheel directory) and runs the module in it.
  Check mode first writes nothing and does not fail; the real run copies the mail; preparing again (``--tags
  migrate_prepare``) changes nothing.
- The engine (``imapsyncctl``) on the oldest and the newest Python the collection declares (3.9 and 3.13, from
  ~/.pyenv/versions or PATH; a missing one skips its test, naming it), in virtual environments built like the
  role's, copying real mail.
- On Python 3.8, imapsyncctl and the migrate module refuse with one sentence naming the version and the fix,
  before connecting; a module whose interpreter lacks imapclient names the library and the role that installs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from ansible_collections.mailops.imap.plugins.module_utils._engine import cli, config, pyversion, store as store_mod
from harness import mail, sshd
from playbook import play

COLLECTION = Path(__file__).resolve().parents[2]
ENGINE = Path(cli.__file__).resolve().parent
RECAP_RE = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


def find_python(version: str) -> str | None:
    """The interpreter of Python ``version`` (3.9, 3.13...) under ~/.pyenv/versions, else on PATH, else None."""
    versions = Path.home() / ".pyenv" / "versions"
    for candidate in sorted(versions.glob(f"{version}.*"), reverse=True):
        executable = candidate / "bin" / f"python{version}"
        if executable.is_file() and re.fullmatch(rf"{re.escape(version)}\.\d+", candidate.name):
            return str(executable)
    return shutil.which(f"python{version}")


def require_python(version: str) -> str:
    executable = find_python(version)
    if executable is None:
        pytest.skip(f"Python {version} is not installed (looked in ~/.pyenv/versions and on PATH)")
    return executable


def ansible_bin(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on PATH: run the integration tests through `make integration`", pytrace=False)
    return path


def engine_venv(python: str, where: Path, wheel_dir: Path) -> Path:
    """A virtual environment of ``python`` with imapclient from ``wheel_dir`` and the engine installed as the role
    installs it (package mailops_imap_engine); returns a launcher that runs imapsyncctl like the role's.

    Fast: no pip in the environment (ensurepip takes seconds); imapclient's wheel is pure Python, unpacked into the
    environment's site-packages as pip would install it.
    """
    venv = where / "venv"
    subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True, timeout=120)
    site = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    for wheel in wheel_dir.glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(site)
    lib = where / "lib"
    shutil.copytree(ENGINE, lib / "mailops_imap_engine", ignore=shutil.ignore_patterns("__pycache__"))
    launcher = where / "imapsyncctl"
    launcher.write_text(f"#!{venv / 'bin' / 'python'} -I\nimport sys\nsys.path.insert(0, {str(lib)!r})\n"
                        "from mailops_imap_engine.cli import main\nsys.exit(main())\n", encoding="utf-8")
    launcher.chmod(0o755)
    return launcher


def define(account, root: Path) -> dict[str, str]:
    """The target and the task ``t1`` of ``account`` in a store under ``root``; the environment imapsyncctl reads."""
    store = store_mod.Store(str(root / "etc"), str(root / "var"))
    local = account.local_server
    target = config.parse_target({"host": local.host, "port": local.port, "ca_file": str(local.cert_path),
                                  "master_user": local.master_user, "master_password": local.master_password})
    store.write("targets", "default", target.public(), target.master_password)
    task = config.parse_task({"name": "t1", "local_user": account.local_user, "remote_user": account.remote_user,
                              "remote_password": account.remote_password, "remote_host": account.remote_server.host,
                              "remote_port": account.remote_server.port, "ca_file": str(account.remote_server.cert_path)})
    store.write("tasks", "t1", task.public(), task.remote_password)
    return dict(os.environ, MAILOPS_IMAP_CONFIG_DIR=str(root / "etc"), MAILOPS_IMAP_STATE_DIR=str(root / "var"))


def seed(account, count: int = 3) -> None:
    mail.seed(account.remote_server, account.remote_user, account.remote_password, "INBOX",
              [(mail.make_message(f"managed host {i}"), (b"\\Seen",) if i % 2 else (), None) for i in range(count)])
    mail.seed(account.remote_server, account.remote_user, account.remote_password, "Projects/Hosts",
              [(mail.make_message("in a folder"), (b"\\Flagged",), None)])


def same_mail(account) -> bool:
    """Whether every remote message (bytes, flags, date) is on the local server, once."""
    remote = mail.snapshot(account.remote_server, account.remote_user, account.remote_password)
    local = mail.snapshot(account.local_server, account.local_user, master=True)
    return sorted(r for recs in remote.values() for r in recs) == sorted(r for recs in local.values() for r in recs)


def python_version(python: str) -> str:
    return subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True,
                          text=True, check=True).stdout.strip()


# --- migrate.yml over SSH with become --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ssh_host():
    reason = sshd.unavailable()
    if reason is not None:
        pytest.skip(f"no throwaway SSH host: {reason}")
    with sshd.SshHost() as host:
        yield host
        leftover = host.end_connections()
    assert not leftover, f"processes of the SSH user were left running: {leftover}"


def run_migrate(work: Path, host: sshd.SshHost, extra: dict, *args: str) -> tuple[str, dict[str, int]]:
    inventory = {"all": {"children": {"mailops_migration_workers": {"hosts": {"managed": host.inventory_vars()}}}}}
    (work / "inventory.json").write_text(json.dumps(inventory), encoding="utf-8")
    extra_path = work / "vars.json"
    extra_path.write_text(json.dumps(extra), encoding="utf-8")
    os.chmod(extra_path, 0o600)
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_LOCALHOST_WARNING="0")
    env.pop("ANSIBLE_PYTHON_INTERPRETER", None)  # the host's own discovery, as for a user
    started = time.monotonic()
    proc = subprocess.run([ansible_bin("ansible-playbook"), "-i", str(work / "inventory.json"),
                           str(COLLECTION / "playbooks" / "migrate.yml"), "-e", f"@{extra_path}", *args],
                          capture_output=True, text=True, env=env, timeout=300, check=False, stdin=subprocess.DEVNULL)
    output = proc.stdout + proc.stderr
    print(f"migrate.yml {' '.join(args)}: {time.monotonic() - started:.1f} s")
    assert proc.returncode == 0, output
    assert "Traceback" not in output, output
    recaps = {m[0]: {"ok": int(m[1]), "changed": int(m[2]), "unreachable": int(m[3]), "failed": int(m[4])}
              for m in RECAP_RE.findall(proc.stdout)}
    return output, recaps["managed"]


def test_migrate_playbook_prepares_a_fresh_host_over_ssh_with_become(ssh_host, account, wheel_dir, tmp_path):
    seed(account)
    opt = tmp_path / "opt"  # the role's install dir (the default /opt/mailops-imap is the machine's)
    python = find_python("3.9") or "python3"  # the oldest Python the engine supports, when this machine has it
    extra = {
        "migrate_accounts": [{"local_user": account.local_user, "remote_user": account.remote_user,
                              "remote_password": account.remote_password}],
        "migrate_defaults": {"remote_host": account.remote_server.host, "remote_port": account.remote_server.port,
                             "ca_file": str(account.remote_server.cert_path)},
        "migrate_target": {"host": account.local_server.host, "port": account.local_server.port,
                           "ca_file": str(account.local_server.cert_path), "master_user": account.local_server.master_user,
                           "master_password": account.local_server.master_password},
        "migrate_state_dir": str(tmp_path / "state"),
        "imapsync_install_dir": str(opt), "imapsync_pip_wheel_dir": str(wheel_dir), "imapsync_python": python,
    }
    secrets = (account.remote_password, account.local_server.master_password)

    output, recap = run_migrate(tmp_path, ssh_host, extra, "--check")
    assert not opt.exists() and not (tmp_path / "state").exists(), "check mode wrote on the host"
    assert "has no engine environment yet" in output and "--tags migrate_prepare" in output, output
    assert recap["failed"] == 0 and recap["unreachable"] == 0, output

    output, recap = run_migrate(tmp_path, ssh_host, extra)
    assert recap["failed"] == 0 and recap["changed"] > 0, output
    assert same_mail(account), "the mail did not arrive on the local server"
    venv_python = str(opt / "venv" / "bin" / "python")
    assert python_version(venv_python) == python_version(python), "the environment is not built from imapsync_python"
    assert subprocess.run([venv_python, "-c", "import imapclient"], check=False).returncode == 0
    assert os.stat(opt / "venv").st_uid == 0, "the environment was not built as root (become)"

    # Preparing again changes nothing (the migration's own repeatability is tested with local hosts).
    output, recap = run_migrate(tmp_path, ssh_host, extra, "--tags", "migrate_prepare")
    assert recap["changed"] == 0 and recap["failed"] == 0, f"preparing again changed something:\n{output}"
    assert "Migrate this host's share" not in output, "--tags migrate_prepare ran the migration"
    for secret in secrets:
        assert secret not in output


# --- the engine on the Pythons it supports, and the refusal of an older one ------------------------------------


@pytest.mark.parametrize("version", [".".join(map(str, pyversion.MINIMUM_PYTHON)),
                                     ".".join(map(str, pyversion.NEWEST_TESTED_PYTHON))])
def test_imapsyncctl_migrates_on_the_oldest_and_newest_python(version, account, wheel_dir, tmp_path):
    launcher = engine_venv(require_python(version), tmp_path, wheel_dir)
    seed(account)
    env = define(account, tmp_path)
    done = subprocess.run([str(launcher), "run", "t1", "--json"], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["totals"]["copied"] == 4, done.stdout
    assert same_mail(account)
    again = subprocess.run([str(launcher), "run", "t1", "--json"], env=env, capture_output=True, text=True, timeout=120,
                           check=False)
    assert again.returncode == 0 and json.loads(again.stdout)["totals"]["copied"] == 0, again.stdout + again.stderr


def test_an_older_python_is_refused_with_its_version_and_the_fix(account, wheel_dir, tmp_path):
    python38 = require_python("3.8")
    launcher = engine_venv(python38, tmp_path, wheel_dir)
    seed(account, 1)
    env = define(account, tmp_path)
    done = subprocess.run([str(launcher), "run", "t1"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == cli.EXIT_FAILED, done.stdout + done.stderr
    assert "Python 3.8." in done.stderr and "3.9 or later" in done.stderr and "imapsync_python" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "var").exists(), "it went further than the version check"

    # The migrate module: on 3.8 the same sentence; where imapclient is missing, the library and the role that
    # installs it. Neither connects (the account stays empty).
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, capture_output=True, timeout=60)
    args = {"remote_host": account.remote_server.host, "remote_port": account.remote_server.port,
            "remote_user": account.remote_user, "remote_password": account.remote_password,
            "ca_file": str(account.remote_server.cert_path), "local_user": account.local_user,
            "state_dir": str(tmp_path / "module-state"),
            "target": {"host": account.local_server.host, "port": account.local_server.port,
                       "ca_file": str(account.local_server.cert_path),
                       "master_password": account.local_server.master_password}}
    played = play(tmp_path, [
        ("mailops.imap.migrate", args, {"vars": {"ansible_python_interpreter": str(tmp_path / "venv" / "bin" / "python")}}),
        ("mailops.imap.migrate", args, {"vars": {"ansible_python_interpreter": str(bare / "bin" / "python")}}),
    ], secrets=(account.remote_password, account.local_server.master_password))
    too_old, no_library = played.results
    assert too_old["failed"] and "Python 3.8." in too_old["msg"] and "3.9 or later" in too_old["msg"], too_old
    assert no_library["failed"] and "imapclient" in no_library["msg"], no_library
    assert "mailops.imap.imapsync" in no_library["msg"] and "ansible_python_interpreter" in no_library["msg"], no_library
    assert not (tmp_path / "module-state").exists()
    assert mail.snapshot(account.local_server, account.local_user, master=True).get("INBOX", []) == []
