"""``make demo``: the collection at work on this machine, start to finish, in about a minute.

What it does, each step printed as it happens:

1. starts two throwaway Dovecot servers on loopback: an "old" server (the remote) and a "new" one (the local
   server, with a master user and Sieve), each in a temporary directory;
2. fills a sample account on the old server: a few folders, a Sent folder, unread mail in INBOX;
3. runs ``playbooks/migrate.yml`` in check mode (nothing is written), for real, and again (nothing to do);
4. deploys, with ``playbooks/deploy.yml`` (the ``mailops.imap.imapsync`` role, ``imapsync_scope: user``), a
   task that fetches the unread INBOX mail every minute, under a private systemd user manager;
5. waits until the timer fires and the new mail arrives, filed by the user's Sieve script;
6. prints ``imapsyncctl status``, the run log and ``playbooks/status.yml``'s table, then removes everything:
   servers, user manager, temporary files (also when a step fails or on Ctrl-C).

Run it through ``make demo`` (which installs what it needs first), as root: the Dovecot servers run as the
``dovecot`` user and the user manager needs a private mount namespace. Passwords travel in files of mode 0600,
never on a command line. ``--verbose`` prints the whole output of every ansible-playbook run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
COLLECTION = HERE.parents[1]
sys.path.insert(0, str(COLLECTION / "tests" / "integration"))

from harness import mail  # noqa: E402  pylint: disable=wrong-import-position
from harness.dovecot import DovecotServer, find_dovecot  # noqa: E402  pylint: disable=wrong-import-position
from harness.systemd import SYSTEMD, UserManager  # noqa: E402  pylint: disable=wrong-import-position

PLAYBOOKS = COLLECTION / "playbooks"
REMOTE_USER = "alice@old.example"
REMOTE_PASSWORD = "d\u00e9mo 'pass\" word,1"
LOCAL_USER = "alice"
TASK = "inbox-alice"
TIMER = f"mailops-imapsync@{TASK}.timer"
FIRE_TIMEOUT_S = 60
SIEVE_SCRIPT = 'require ["fileinto", "mailbox"];\nif header :contains "subject" "invoice" { fileinto :create "Invoices"; }\n'
DAY = datetime.timedelta(days=1)
NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


class DemoError(Exception):
    """A step failed; the message says which and why (the output of the failed command follows it)."""


class Demo:
    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.step_number = 0
        self.work = Path(tempfile.mkdtemp(prefix="mailops-demo-"))
        os.chmod(self.work, 0o700)
        self.remote: DovecotServer | None = None
        self.local: DovecotServer | None = None
        self.manager: UserManager | None = None
        self.python = sys.executable
        self.remote_total = 0
        self.deploy_inventory = self.deploy_vars = self.work
        self.ansible_playbook = shutil.which("ansible-playbook") or str(Path(sys.executable).parent / "ansible-playbook")

    # -- output ----------------------------------------------------------------------------------------------

    def step(self, title: str) -> None:
        self.step_number += 1
        print(f"\n[{self.step_number}/6] {title}", flush=True)

    @staticmethod
    def say(text: str = "") -> None:
        print(f"  {text}" if text else "", flush=True)

    # -- ansible-playbook ------------------------------------------------------------------------------------

    def write_private(self, name: str, text: str) -> Path:
        path = self.work / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        return path

    def playbook(self, playbook: str, inventory: Path, variables: Path, *args: str, in_manager: bool = False) -> str:
        shown = " ".join(["ansible-playbook", "-i", inventory.name, f"playbooks/{playbook}", "-e", f"@{variables.name}", *args])
        self.say(f"$ {shown}")
        env = {"ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_SHOW_CUSTOM_STATS": "1",
               "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_RETRY_FILES_ENABLED": "0", "ANSIBLE_PYTHON_INTERPRETER": self.python}
        argv = [self.ansible_playbook, "-i", str(inventory), str(PLAYBOOKS / playbook), "-e", f"@{variables}", *args]
        started = time.monotonic()
        if in_manager:
            assert self.manager is not None
            proc = self.manager.run(argv, check=False, env=env, timeout=600)
        else:
            proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600, stdin=subprocess.DEVNULL,
                                  env=dict(os.environ, **env))
        output = proc.stdout + proc.stderr
        if self.verbose:
            print(re.sub(r"(?m)^", "    | ", output.rstrip()), flush=True)
        if proc.returncode != 0:
            raise DemoError(f"ansible-playbook {playbook} {' '.join(args)} failed (exit code {proc.returncode}):\n{output}")
        self.say(f"  done in {time.monotonic() - started:.1f} s")
        return output

    @staticmethod
    def debug_lines(output: str, task: str) -> list[str]:
        """The lines of the ``msg`` list that the debug task ``task`` printed."""
        block = output.split(f"TASK [{task}]", 1)
        if len(block) < 2:
            return []
        lines = []
        for line in block[1].splitlines()[1:]:
            match = re.match(r'^\s+(".*")\s*,?$', line)
            if match:
                lines.append(json.loads(match.group(1)))
            elif line.startswith("}"):
                break
        return lines

    @staticmethod
    def recap(output: str) -> dict[str, dict[str, int]]:
        found = {}
        for host, counts in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.MULTILINE):
            found[host] = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", counts)}
        return found

    @staticmethod
    def stats(output: str) -> dict:
        found = re.findall(r"^\s*RUN: (\{.*\})\s*$", output, re.MULTILINE)
        return json.loads(found[-1]) if found else {}

    # -- mailboxes -------------------------------------------------------------------------------------------

    def local_counts(self) -> dict[str, int]:
        assert self.local is not None
        return {name: len(records) for name, records in mail.snapshot(self.local, LOCAL_USER, master=True).items()}

    def show_folders(self, counts: dict[str, int], note: dict[str, str] | None = None) -> None:
        for name, count in sorted(counts.items()):
            extra = f"   {note[name]}" if note and name in note else ""
            self.say(f"  {name:<20} {count} message(s){extra}")

    # -- the steps -------------------------------------------------------------------------------------------

    def servers(self) -> None:
        self.step("Two throwaway Dovecot servers on loopback")
        self.remote = DovecotServer("remote").start()
        self.local = DovecotServer("local").start()
        self.remote.add_user(REMOTE_USER, REMOTE_PASSWORD)
        self.local.add_user(LOCAL_USER, "not used: the new server is reached through its master user")
        self.local.install_sieve(LOCAL_USER, SIEVE_SCRIPT)
        self.say(f"old server (the remote): {self.remote.host}:{self.remote.port} STARTTLS, account {REMOTE_USER}")
        self.say(f"new server (the local):  {self.local.host}:{self.local.port} STARTTLS, account {LOCAL_USER}, "
                 f"master user {self.local.master_user}, Sieve")

    def sample_account(self) -> None:
        self.step("A sample account on the old server")
        assert self.remote is not None
        seed = {
            "INBOX": [(mail.make_message(f"Welcome {i}", date=NOW - 9 * DAY), (b"\\Seen",), NOW - 9 * DAY) for i in range(3)]
            + [(mail.make_message(f"Unread note {i}", date=NOW - DAY), (), NOW - DAY) for i in range(2)],
            "Sent Items": [(mail.make_message(f"Re: hello {i}", date=NOW - 2 * DAY), (b"\\Seen",), NOW - 2 * DAY) for i in range(2)],
            "Archive/2025": [(mail.make_message(f"Old thread {i}", date=NOW - 300 * DAY), (b"\\Seen", b"\\Flagged"),
                              NOW - 300 * DAY) for i in range(3)],
            "Projects/Mailops": [(mail.make_message("Migration plan", date=NOW - 5 * DAY), (b"\\Seen",), NOW - 5 * DAY)],
        }
        for folder, messages in seed.items():
            mail.seed(self.remote, REMOTE_USER, REMOTE_PASSWORD, folder, messages)
        counts = {name: len(records) for name, records in mail.snapshot(self.remote, REMOTE_USER, REMOTE_PASSWORD).items()}
        self.show_folders(counts, {"INBOX": "(2 unread)", "Sent Items": "(\\Sent: lands in the new server's Sent)"})
        self.remote_total = sum(counts.values())

    def migrate(self) -> None:
        assert self.remote is not None and self.local is not None
        self.step("playbooks/migrate.yml in check mode: what a real run would do, nothing written")
        accounts = self.write_private("accounts.csv", "local_user,remote_user,remote_password\r\n"
                                      f'{LOCAL_USER},{REMOTE_USER},"{REMOTE_PASSWORD.replace(chr(34), chr(34) * 2)}"\r\n')
        inventory = self.write_private("inventory.ini", "[mailops_migration_workers]\n"
                                       f"demo-worker ansible_connection=local ansible_python_interpreter={self.python}\n")
        variables = self.write_private("migrate-vars.json", json.dumps({
            "migrate_accounts_file": str(accounts),
            "migrate_defaults": {"remote_host": self.remote.host, "remote_port": self.remote.port,
                                 "ca_file": str(self.remote.cert_path), "folders": "all"},
            "migrate_target": {"host": self.local.host, "port": self.local.port, "ca_file": str(self.local.cert_path),
                               "master_user": self.local.master_user, "master_password": self.local.master_password},
            "migrate_state_dir": str(self.work / "migrate-state"),
            "migrate_become": False,
        }, indent=2))
        self.say(f"accounts.csv, inventory.ini and migrate-vars.json written in {self.work} (mode 0600)")
        output = self.playbook("migrate.yml", inventory, variables, "--check")
        for line in self.debug_lines(output, "Show the totals of all hosts"):
            self.say(f"  {line}")
        planned = self.stats(output)["mailops_imap_migrate"]["totals"]["copied"]
        if planned != self.remote_total or sum(self.local_counts().values()) != 0:
            raise DemoError(f"check mode planned {planned} messages (expected {self.remote_total}) or wrote something")
        self.say("  the new server's mailbox is still empty")

        self.step("playbooks/migrate.yml for real, then again")
        output = self.playbook("migrate.yml", inventory, variables)
        for line in self.debug_lines(output, "Show the totals of all hosts")[:2]:
            self.say(f"  {line}")
        counts = self.local_counts()
        self.say("  the new server now holds:")
        self.show_folders(counts, {"Sent": "(from Sent Items)"})
        if sum(counts.values()) != self.remote_total:
            raise DemoError(f"the new server holds {sum(counts.values())} messages, the old one {self.remote_total}")
        output = self.playbook("migrate.yml", inventory, variables)
        for line in self.debug_lines(output, "Show the totals of all hosts")[:2]:
            self.say(f"  {line}")
        changed = sum(host["changed"] for host in self.recap(output).values())
        if self.stats(output)["mailops_imap_migrate"]["totals"]["copied"] != 0 or changed:
            raise DemoError("the second run copied or changed something")
        self.say("  nothing to do: changed=0, not a message copied twice")

    def inbox_task(self) -> None:
        assert self.remote is not None and self.local is not None
        self.step("A scheduled INBOX task, deployed with playbooks/deploy.yml under a private systemd user manager")
        self.manager = UserManager().start()
        self.say(f"systemd --user started (pid {self.manager.pid}), HOME={self.manager.home}")
        arrivals = [(mail.make_message("Your invoice 2026-001", date=NOW), (), NOW),
                    (mail.make_message("Lunch tomorrow?", date=NOW), (), NOW)]
        mail.seed(self.remote, REMOTE_USER, REMOTE_PASSWORD, "INBOX", arrivals)
        self.say("two new unread messages arrive at the old server: \"Your invoice 2026-001\", \"Lunch tomorrow?\"")
        sandbox = self.sandbox_works()
        if not sandbox:
            self.say("this machine cannot sandbox the services of a user manager (no unprivileged user namespaces?):")
            self.say("deploying with imapsync_service_sandbox: false")
        inventory = self.write_private("deploy-inventory.ini", "[mailservers]\n"
                                       f"demo-mailserver ansible_connection=local ansible_python_interpreter={self.python}\n")
        variables = self.write_private("deploy-vars.json", json.dumps({
            "deploy_become": False,
            "imapsync_scope": "user",
            "imapsync_timer_first_delay": "5s",
            "imapsync_service_sandbox": sandbox,
            "imapsync_target": {"host": self.local.host, "port": self.local.port, "ca_file": str(self.local.cert_path),
                                "master_user": self.local.master_user, "master_password": self.local.master_password},
            "imapsync_tasks": [{
                "name": TASK, "local_user": LOCAL_USER, "remote_user": REMOTE_USER, "remote_password": REMOTE_PASSWORD,
                "remote_host": self.remote.host, "remote_port": self.remote.port, "ca_file": str(self.remote.cert_path),
                "folders": "inbox", "sieve": True, "schedule": "interval", "interval_minutes": 1,
            }],
            "status_hosts": "mailservers",
            "status_become": False,
        }, indent=2))
        self.say(f"task {TASK}: folders inbox (unread only, then marked \\Seen on the old server), Sieve on, every 1 min,")
        self.say("first run 5 s after the timer starts")
        self.playbook("deploy.yml", inventory, variables, in_manager=True)
        timers = self.manager.systemctl("list-timers", "--all", "--no-pager", check=False).stdout
        line = next((text for text in timers.splitlines() if TIMER in text), "")
        self.say(f"  systemctl --user list-timers: {' '.join(line.split()) or '(no timer!)'}")
        if not line:
            raise DemoError(f"the role did not start {TIMER}:\n{timers}")
        self.deploy_inventory, self.deploy_vars = inventory, variables

        self.say(f"waiting for the timer to fire (at most {FIRE_TIMEOUT_S} s) ...")
        started = time.monotonic()
        ctl = str(self.manager.home / ".local" / "bin" / "imapsyncctl")
        last = None
        while time.monotonic() - started < FIRE_TIMEOUT_S:
            proc = self.manager.run([ctl, "status", TASK, "--json"], check=False)
            if proc.returncode == 0:
                entries = json.loads(proc.stdout)
                last = entries[0].get("last_result") if entries else None
                if last and not entries[0].get("running"):
                    break
            time.sleep(1)
        if not last:
            service = self.manager.systemctl("status", "--no-pager", "--full", TIMER, TIMER.replace(".timer", ".service"),
                                             check=False)
            raise DemoError(f"the timer did not run {TASK} within {FIRE_TIMEOUT_S} s:\n{service.stdout}{service.stderr}\n"
                            f"the user manager's log:\n{self.manager.log_text()[-3000:]}")
        self.say(f"  it fired after {time.monotonic() - started:.0f} s: {last['status']}, "
                 f"{last['totals']['copied']} message(s) copied, {last['totals']['already_present']} already there")

    def sandbox_works(self) -> bool:
        """Whether a service of this user manager can run with the mount namespace of the role's hardening."""
        assert self.manager is not None
        # The namespacing directives of the role's service in a user manager (roles/imapsync/templates).
        probe = ["systemd-run", "--user", "--wait", "--quiet", "--collect", "-p", "PrivateUsers=yes", "-p", "ProtectSystem=strict",
                 "-p", "PrivateTmp=yes", "-p", "ProtectHome=tmpfs", "-p", "PrivateDevices=yes", "/bin/true"]
        return self.manager.run(probe, check=False, timeout=60).returncode == 0

    def results(self) -> None:
        assert self.manager is not None and self.local is not None and self.remote is not None
        self.step("Results")
        ctl = str(self.manager.home / ".local" / "bin" / "imapsyncctl")
        for args in (["status"], ["log", TASK]):
            self.say(f"$ imapsyncctl {' '.join(args)}")
            proc = self.manager.run([ctl, *args], check=False)
            for text in (proc.stdout + proc.stderr).rstrip().splitlines():
                self.say(f"  {text}")
        output = self.playbook("status.yml", self.deploy_inventory, self.deploy_vars, in_manager=True)
        for text in self.debug_lines(output, "Show the tasks of every host"):
            self.say(f"  {text}")

        inbox = sorted(m.subject for m in mail.messages(self.local, LOCAL_USER, None, "INBOX", master=True))
        invoices = sorted(m.subject for m in mail.messages(self.local, LOCAL_USER, None, "Invoices", master=True)) \
            if "Invoices" in mail.folders(self.local, LOCAL_USER, master=True) else []
        unread_remote = [m.subject for m in mail.messages(self.remote, REMOTE_USER, REMOTE_PASSWORD, "INBOX")
                         if "\\Seen" not in m.flags]
        self.say(f"new server, INBOX:    {', '.join(inbox)}")
        self.say(f"new server, Invoices: {', '.join(invoices) or '(none)'}   (filed by alice's Sieve script)")
        self.say(f"old server, unread in INBOX: {len(unread_remote)} (fetched messages are marked \\Seen there)")
        if "Lunch tomorrow?" not in inbox or invoices != ["Your invoice 2026-001"] or unread_remote:
            raise DemoError("the INBOX task did not bring the new mail as expected")

    def cleanup(self) -> None:
        for what in (self.manager, self.local, self.remote):
            if what is not None:
                with contextlib.suppress(Exception):
                    what.stop()
        shutil.rmtree(self.work, ignore_errors=True)


def preflight() -> str | None:
    """Why the demo cannot run here, or None."""
    if os.geteuid() != 0:
        return "run it as root (make demo): the Dovecot servers run as the dovecot user, the user manager needs a mount namespace"
    if find_dovecot() is None:
        return "Dovecot is missing: run `make demo`, which installs dovecot-imapd, dovecot-lmtpd and dovecot-sieve"
    for tool in ("unshare", "nsenter", "systemctl", SYSTEMD):
        if shutil.which(tool) is None and not os.path.exists(tool):
            return f"{tool} is missing: run `make demo`, which installs systemd"
    if shutil.which("ansible-playbook") is None and not (Path(sys.executable).parent / "ansible-playbook").exists():
        return "ansible-playbook is missing: run `make demo`, which installs ansible-core into .venv"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--verbose", action="store_true", help="print the whole output of every ansible-playbook run")
    args = parser.parse_args()
    problem = preflight()
    if problem:
        print(f"make demo: {problem}", file=sys.stderr)
        return 1

    def terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    print("mailops.imap demo: everything runs on this machine, on loopback, in temporary directories removed at the end.")
    demo = Demo(args.verbose)
    started = time.monotonic()
    try:
        demo.servers()
        demo.sample_account()
        demo.migrate()
        demo.inbox_task()
        demo.results()
    except DemoError as exc:
        print(f"\nmake demo FAILED: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nmake demo interrupted", file=sys.stderr)
        return 130
    finally:
        print("\nCleaning up: stopping the user manager and both Dovecot servers, removing the temporary files.", flush=True)
        demo.cleanup()
    print(f"Demo finished in {time.monotonic() - started:.0f} s. Next: README.md, docs/playbooks.md and docs/awx.md.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
