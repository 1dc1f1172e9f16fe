# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``engine: imapsync`` in the runner without servers: statistics, masking, environment, lock, password files,
the program lookup, and runs of a small fake imapsync in this process (stop, interrupt, a program that cannot start)."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import stat
import sys
import threading
import time

import pytest

from ansible_collections.mailops.imap.plugins.module_utils._engine import config, engine, engine_imapsync, files, runner, state, store as store_mod, sync
from ansible_collections.mailops.imap.plugins.module_utils._engine.contract import Kind
from ansible_collections.mailops.imap.plugins.module_utils._engine.errors import ConfigError

REMOTE = "r3m0te'\"\\ü pass"
MASTER = "m4ster'\"\\é pass"

# The end of a real imapsync 2.229 run: "Messages transferred" keeps its trailing space.
REAL = """\
Time spent on sizing:         0.4 seconds
++++ Statistics
Transfer started on                     : Sun May  3 12:08:04 2020
Transfer ended on                       : Sun May  3 12:08:07 2020
Transfer time                           : 3.4 sec
Folders synced                          : 5/5 synced
Messages transferred                    : 14431\x20
Messages skipped                        : 25
Messages found duplicate on host1       : 0
Messages found duplicate on host2       : 0
Messages found crossduplicate on host2  : 0
Messages void (noheader) on host1       : 0\x20\x20
Messages void (noheader) on host2       : 0
Messages found in host1 not in host2    : 0 messages
Messages found in host2 not in host1    : 7 messages
Messages deleted on host1               : 3
Messages deleted on host2               : 0
Total bytes transferred                 : 230323064 (219.653 MiB)
Total bytes skipped                     : 393251 (384.034 KiB)
Message rate                            : 2.0 messages/s
Average bandwidth rate                  : 30.6 KiB/s
Reconnections to host1                  : 0
Reconnections to host2                  : 0
Memory consumption at the end           : 446.8 MiB (started with 372.1 MiB)
Load end is                             : 0.72 0.46 0.39 2/1941 on 8 cores
Biggest message                         : 4773349 bytes (4.552 MiB)
Memory/biggest message ratio            : 98.2
Start difference host2 - host1          : -14431 messages, -230323064 bytes (-219.653 MiB)
Final difference host2 - host1          : 0 messages, 0 bytes (0.000 KiB)
The sync looks good, all 7123 identified messages in host1 are on host2.
There is no unidentified message
The sync is strict, all 7123 identified messages in host2 are on host1.
Detected 0 errors

Homepage: https://imapsync.lamiral.info/
Exiting with return value 0 (EX_OK: successful termination) 0/50 nb_errors/max_errors
"""


def statistics(text: str) -> engine_imapsync.Statistics:
    stats = engine_imapsync.Statistics()
    for line in text.splitlines():
        stats.feed(line)
    return stats


# -- statistics -------------------------------------------------------------------------------------------


def test_statistics_of_a_real_run():
    stats = statistics(REAL)
    assert stats.found and stats.folders_synced == (5, 5)
    assert stats.totals(check_mode=False) == {"copied": 14431, "bytes": 230323064, "already_present": 25,
                                              "deleted_remote": 3, "errors": 0}
    assert stats.exit_line.startswith("Exiting with return value 0 (EX_OK")


# Unedited output of real imapsync 2.229 runs between two Dovecot servers (README.md beside them says what each is).
TRANSCRIPTS = pathlib.Path(__file__).parent / "data" / "imapsync-2.229"


def transcript(name: str) -> tuple[str, int, engine_imapsync.Statistics]:
    """A real run: its command line, exit status and what the parser read of its output."""
    command, status, *output = (TRANSCRIPTS / name).read_text(encoding="utf-8").splitlines()
    assert command.startswith("$ imapsync ") and status.startswith("[exit status ")
    return command, int(status.split()[2].rstrip("]")), statistics("\n".join(output))


def test_a_real_dry_run_counts_what_a_real_run_would_copy():
    command, status, stats = transcript("01-dry-run.txt")
    assert command.endswith(" --dry") and status == 0
    assert stats.could_be == 63 and stats.totals(check_mode=True)["copied"] == 63
    assert stats.totals(check_mode=False)["copied"] == 0
    assert stats.not_copied == 29 and stats.losses(incomplete_expected=True) == []  # a dry run copies nothing
    assert stats.duplicates == 2 and stats.folders_synced == (9, 9)


def test_a_real_first_run_and_re_run_with_syncduplicates_copy_every_message_once():
    command, status, first = transcript("04-first-run-with-syncduplicates.txt")
    assert " --syncduplicates" in command and status == 0
    assert first.totals(check_mode=False) == {"copied": 65, "bytes": first.bytes, "already_present": 0, "deleted_remote": 0,
                                              "errors": 0}
    assert first.bytes > 6_000_000 and first.duplicates == 2 and first.losses(incomplete_expected=False) == []
    _command, status, again = transcript("06-rerun-with-syncduplicates.txt")
    assert status == 0 and again.totals(check_mode=False)["copied"] == 0
    assert again.totals(check_mode=False)["already_present"] == 65


def test_without_syncduplicates_imapsync_skips_duplicates_and_says_the_sync_looks_good():
    # Why the command always carries --syncduplicates: 2 of 65 messages were never copied, exit status 0, no error.
    command, status, stats = transcript("02-first-run-without-syncduplicates.txt")
    assert "--syncduplicates" not in command and status == 0
    assert stats.copied == 63 and stats.duplicates == 2 and stats.errors == 0 and stats.not_copied is None
    _command, _status, again = transcript("03-rerun-no-change.txt")
    assert again.copied == 0 and again.already_present == 65  # the skipped duplicates count as present


def test_a_real_login_failure_names_the_status_and_imapsyncs_error():
    _command, status, stats = transcript("05-login-failure-host1.txt")
    assert status == 161 and not stats.found
    assert stats.failure(status) == (
        "imapsync exited with status 161 (EXIT_AUTHENTICATION_FAILURE_USER1): Host1 failure: Error login on [127.0.0.1] "
        "with user [alice] auth [LOGIN]: 2 NO [AUTHENTICATIONFAILED] Authentication failed.")


def test_messages_imapsync_left_behind_are_errors_of_a_real_run():
    _command, _status, dry = transcript("01-dry-run.txt")
    (kind, detail), = dry.losses(incomplete_expected=False)
    assert kind == Kind.IMAPSYNC_FAILED and detail.startswith("imapsync ended with 29 remote message(s) not on the local server")
    void = statistics("++++ Statistics\nMessages void (noheader) on host1       : 3\nDetected 0 errors\n")
    assert [k for k, _d in void.losses(incomplete_expected=True)] == [Kind.IMAPSYNC_FAILED]


def test_counts_are_read_from_the_statistics_block_only():
    stats = statistics("Messages transferred                    : 99\nMessages skipped : 3\n")
    assert not stats.found and stats.totals(check_mode=False) == {}


def test_failure_names_the_status_its_meaning_and_the_numbered_errors_once():
    text = (
        "Host1: connecting and login on host1 [imap.example.org] port [143] with user [a]\n"
        "Host1 failure: Error login on [imap.example.org] with user [a] auth [LOGIN]: 2 NO [AUTHENTICATIONFAILED] failed.\n"
        "Err 1/50: Host1 failure: Error login on [imap.example.org] with user [a] auth [LOGIN]: 2 NO failed.\n"
        "++++ Listing 1 errors encountered during the sync ( avoid this listing with --noerrorsdump ).\n"
        "Err 1/50: Host1 failure: Error login on [imap.example.org] with user [a] auth [LOGIN]: 2 NO failed.\n"
        "Exiting with return value 16 (EXIT_AUTHENTICATION_FAILURE: authentication failure) 1/50 nb_errors/max_errors\n"
    )
    detail = statistics(text).failure(16)
    assert detail == ("imapsync exited with status 16 (EXIT_AUTHENTICATION_FAILURE: authentication failure): "
                      "Host1 failure: Error login on [imap.example.org] with user [a] auth [LOGIN]: 2 NO failed.")


def test_failure_without_numbered_errors_uses_lines_that_sound_like_errors_then_the_last_lines():
    perl = statistics("Can't locate Mail/IMAPClient.pm in @INC (you may need to install the Mail::IMAPClient module)\n"
                      "BEGIN failed--compilation aborted at /usr/bin/imapsync line 668.\n")
    detail = perl.failure(2)
    assert detail.startswith("imapsync exited with status 2: Can't locate Mail/IMAPClient.pm")
    assert "BEGIN failed--compilation aborted" in detail
    quiet = statistics("one\ntwo\nthree\nfour\n")
    assert quiet.failure(1) == "imapsync exited with status 1: two | three | four."
    assert engine_imapsync.Statistics().failure(1) == "imapsync exited with status 1, without a message."


def test_failure_by_a_signal_and_a_long_detail():
    assert engine_imapsync.Statistics().failure(-signal.SIGKILL).startswith("imapsync was ended by signal SIGKILL")
    long = statistics("Err 1/50: " + "x" * 5000 + "\n")
    assert len(long.failure(111)) <= engine_imapsync._DETAIL_MAX + 1  # pylint: disable=protected-access


def test_result_totals_come_from_the_statistics():
    result = engine_imapsync.ImapsyncResult(task="t1", check_mode=False)
    result.reported = {"copied": 4, "bytes": 100, "already_present": 2, "deleted_remote": 1, "errors": 0}
    result.add_error(Kind.IMAPSYNC_FAILED, "imapsync exited with status 111.")
    result.finish("failed")
    data = result.as_dict()
    assert data["folders"] == []
    assert data["totals"] == {"copied": 4, "bytes": 100, "already_present": 2, "flags_updated": 0, "deleted_remote": 1,
                              "folders_created": 0, "errors": 1}
    assert set(data) == {"task", "status", "check_mode", "started", "finished", "duration_s", "folders", "totals",
                         "errors", "notices"}
    assert result.changed
    assert "reported" not in repr(result)


# -- masking, environment, program --------------------------------------------------------------------------


def test_scrubber_masks_both_passwords_in_bytes_and_text():
    scrub = engine_imapsync.scrubber([REMOTE, MASTER, ""])
    assert scrub(f"login {REMOTE} and {MASTER}\r\n".encode()) == "login MASKED and MASKED"
    assert scrub(b"\xff\xfe broken " + REMOTE.encode() + b"\n") == "\ufffd\ufffd broken MASKED"
    longer = engine_imapsync.scrubber(["abc", "abcdef"])
    assert longer(b"abcdef abc\n") == "MASKED MASKED"
    assert engine_imapsync.scrubber([])(b"plain  \n") == "plain"


def test_child_environment_has_no_password_and_its_own_tmpdir():
    environ = {"PATH": "/usr/bin", "HOME": "/root", "IMAPSYNC_PASSWORD1": "x", "IMAPSYNC_PASSWORD2": "y",
               "SOMETHING": REMOTE, "TMPDIR": "/tmp"}
    env = engine_imapsync.child_environment([REMOTE, MASTER], "/var/lib/x/.secrets-1", environ)
    assert env == {"PATH": "/usr/bin", "HOME": "/root", "TMPDIR": "/var/lib/x/.secrets-1"}


def _program(path, text="#!/bin/sh\nexit 0\n", mode=0o755):
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return str(path)


def test_find_imapsync_in_path_or_from_the_override(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    found, _missing = engine_imapsync.find_imapsync({"PATH": str(bin_dir)})
    assert found is None
    program = _program(bin_dir / "imapsync")
    assert engine_imapsync.find_imapsync({"PATH": str(bin_dir)})[0] == program
    other = _program(tmp_path / "imapsync-2.229")
    assert engine_imapsync.find_imapsync({"PATH": str(bin_dir), engine_imapsync.ENV_IMAPSYNC: other})[0] == other
    named = _program(bin_dir / "imapsync-patched")
    assert engine_imapsync.find_imapsync({"PATH": str(bin_dir), engine_imapsync.ENV_IMAPSYNC: "imapsync-patched"})[0] == named
    _program(tmp_path / "not-executable", mode=0o644)
    found, missing = engine_imapsync.find_imapsync({"PATH": str(bin_dir), engine_imapsync.ENV_IMAPSYNC: str(tmp_path / "not-executable")})
    assert found is None and missing.startswith(f"${engine_imapsync.ENV_IMAPSYNC} names ")


def test_missing_imapsync_says_how_to_install_it():
    found, missing = engine_imapsync.find_imapsync({"PATH": "/nonexistent"})
    assert found is None
    assert missing.startswith("imapsync is not installed on this host: no executable 'imapsync' in PATH (/nonexistent).")
    assert "imapsync 2.229 or later" in missing and "https://imapsync.lamiral.info/#install" in missing
    assert engine_imapsync.ENV_IMAPSYNC in missing and missing.endswith("use engine: builtin, which needs no other program.")


# -- password files and the lock ----------------------------------------------------------------------------


def test_password_files_are_0600_even_with_an_open_umask(tmp_path):
    previous = os.umask(0)
    try:
        path = engine_imapsync.write_secret(str(tmp_path), "passfile1", REMOTE)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path, encoding="utf-8") as handle:
        assert handle.read() == REMOTE + "\n"
    with pytest.raises(FileExistsError):
        engine_imapsync.write_secret(str(tmp_path), "passfile1", MASTER)
    os.symlink(str(tmp_path / "elsewhere"), str(tmp_path / "link"))
    with pytest.raises(OSError):
        engine_imapsync.write_secret(str(tmp_path), "link", MASTER)
    assert not (tmp_path / "elsewhere").exists()


def test_stale_private_directories_are_removed(tmp_path):
    st = store_mod.Store(str(tmp_path / "etc"), str(tmp_path / "var"))
    runs = tmp_path / "var" / "runs" / "t1"
    runs.mkdir(parents=True, mode=0o700)
    os.chmod(tmp_path / "var", 0o700)
    os.chmod(tmp_path / "var" / "runs", 0o700)
    (runs / ".secrets-abc").mkdir()
    (runs / ".secrets-abc" / "passfile1").write_text("x", encoding="utf-8")
    (runs / "20260101T000000Z.log").write_text("log", encoding="utf-8")
    private = st.new_private_dir("t1")
    assert sorted(p.name for p in runs.iterdir()) == sorted(["20260101T000000Z.log", os.path.basename(private)])
    assert os.path.basename(private).startswith(store_mod.PRIVATE_PREFIX) and stat.S_IMODE(os.stat(private).st_mode) == 0o700


def test_the_lock_is_the_builtin_engines_lock(tmp_path):
    path = str(tmp_path / "tasks" / "t1.sqlite")
    lock = files.FileLock(path + ".lock", create=True)
    assert lock.acquire()
    assert stat.S_IMODE(os.stat(path + ".lock").st_mode) == 0o600
    with pytest.raises(state.Busy):
        state.State(path).lock()
    assert not files.FileLock(path + ".lock", create=False).acquire()
    lock.release()

    builtin = state.State(path)
    builtin.lock()
    try:
        assert not files.FileLock(path + ".lock", create=True).acquire()
    finally:
        builtin.close()
    again = files.FileLock(path + ".lock", create=True)
    assert again.acquire()
    again.release()


def test_check_mode_lock_creates_nothing(tmp_path):
    path = str(tmp_path / "tasks" / "t1.sqlite")
    lock = files.FileLock(path + ".lock", create=False)
    assert lock.acquire() and lock.fd is None
    assert not (tmp_path / "tasks").exists()


# -- runs of a fake imapsync in this process -------------------------------------------------------------------

FAKE = """#!{python}
import json, os, signal, sys, time
sys.stdout.reconfigure(line_buffering=True)
args = sys.argv[1:]
with open(os.environ["FAKE_RECORD"] + ".tmp", "w") as handle:
    json.dump({{"pid": os.getpid(), "passfile1": args[args.index("--passfile1") + 1]}}, handle)
os.replace(os.environ["FAKE_RECORD"] + ".tmp", os.environ["FAKE_RECORD"])
if os.environ.get("FAKE_IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("Here is imapsync 2.229 (fake)")
while True:
    time.sleep(0.05)
"""


@pytest.fixture
def fake_host(tmp_path, monkeypatch):
    """A store with an imapsync task ``t1`` and a fake imapsync (given by the override) that runs until stopped."""
    st = store_mod.Store(str(tmp_path / "etc"), str(tmp_path / "var"))
    target = config.parse_target({"master_password": MASTER})
    st.write("targets", "default", target.public(), MASTER)
    task = config.parse_task({"name": "t1", "local_user": "alice", "remote_user": "a@x", "remote_password": REMOTE,
                              "remote_host": "imap.example.org", "engine": "imapsync"})
    st.write("tasks", "t1", task.public(), REMOTE)
    program = _program(tmp_path / "fake-imapsync", FAKE.format(python=sys.executable))
    monkeypatch.setenv(engine_imapsync.ENV_IMAPSYNC, program)
    record = tmp_path / "record.json"
    monkeypatch.setenv("FAKE_RECORD", str(record))
    monkeypatch.setattr(engine_imapsync, "STOP_GRACE_S", 0.5)
    monkeypatch.setattr(engine_imapsync, "INTERRUPT_GRACE_S", 0.5)
    no_remote(monkeypatch)
    return st, record


def no_remote(monkeypatch):
    """No server here: the remote's NAMESPACE, which a run reads before imapsync starts, is a plain Dovecot's (the
    integration tests read a real one)."""
    monkeypatch.setattr(engine_imapsync, "read_namespace", lambda task, target, remote=None: (("", "/"), []))


def _wait_for(path, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.02)
    return json.loads(path.read_text(encoding="utf-8"))


def _gone(pid, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
                if handle.read().split(") ", 1)[1][0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.02)
    return False


def test_stop_kills_an_imapsync_that_ignores_sigterm(fake_host, monkeypatch):
    st, record = fake_host
    monkeypatch.setenv("FAKE_IGNORE_TERM", "1")
    stop = threading.Event()
    seen = []

    def progress(line):
        seen.append(line)
        if "Here is imapsync" in line:
            stop.set()

    result = runner.run_task(st, "t1", progress=progress, stop=stop)
    info = _wait_for(record)
    assert _gone(info["pid"])
    assert result.status == "success" and engine_imapsync.NOTICE_STOPPED in result.notices
    assert engine_imapsync.NOTICE_NO_STATISTICS in result.notices
    assert not os.path.exists(os.path.dirname(info["passfile1"]))
    assert st.last_result("t1")["status"] == "success" and st.running_pid("t1") is None
    assert any(line.startswith("engine imapsync: ") for line in seen)


def test_an_interrupt_ends_imapsync_and_removes_the_password_files(fake_host):
    st, record = fake_host

    def progress(line):
        if "Here is imapsync" in line:
            raise KeyboardInterrupt()

    with pytest.raises(KeyboardInterrupt):
        runner.run_task(st, "t1", progress=progress)
    info = _wait_for(record)
    assert _gone(info["pid"])
    assert not os.path.exists(os.path.dirname(info["passfile1"]))
    assert st.running_pid("t1") is None
    lock = files.FileLock(st.state_path("t1") + ".lock", create=True)
    assert lock.acquire()
    lock.release()


def test_a_program_that_cannot_start_fails_the_run(fake_host, tmp_path, monkeypatch):
    st, _record = fake_host
    broken = _program(tmp_path / "broken-imapsync", "#!/nonexistent/perl\n")
    monkeypatch.setenv(engine_imapsync.ENV_IMAPSYNC, broken)
    result = runner.run_task(st, "t1")
    assert result.status == "failed"
    assert result.errors[0]["kind"] == Kind.MISSING_PROGRAM
    assert result.errors[0]["detail"].startswith(f"imapsync ({broken}) cannot be started: No such file or directory")
    assert [p for p in os.listdir(st.runs_dir("t1")) if p.startswith(store_mod.PRIVATE_PREFIX)] == []


def test_a_definition_imapsync_cannot_run_writes_nothing(fake_host):
    st, record = fake_host
    public, _secret = st.read("tasks", "t1")
    st.write("tasks", "t1", dict(public, folders="inbox", sieve=False), None)
    for check_mode in (False, True):
        with pytest.raises(ConfigError, match="folders: inbox cannot be rendered for imapsync 2.229"):
            runner.run_task(st, "t1", check_mode=check_mode)
    assert not record.exists() and not os.path.exists(st.state_dir)


@pytest.mark.parametrize("line, notice, copied", [
    ("Messages transferred                    : 0 (could be 4 without dry mode)", engine_imapsync.NOTICE_DRY, 4),
    ("Messages transferred                    : 0", engine_imapsync.NOTICE_DRY_UNCOUNTED, 0),
])
def test_check_mode_says_whether_imapsync_dry_counted_the_messages(fake_host, line, notice, copied):
    st, _record = fake_host
    task = st.load_task("t1")
    run = engine_imapsync.ImapsyncRun(engine.Request(st, "t1", task, st.load_target(task.target), check_mode=True))
    run._conclude(0, statistics(f"++++ Statistics\n{line}\nDetected 0 errors\n"))  # pylint: disable=protected-access
    result = run.result.as_dict()
    assert result["status"] == "success" and result["check_mode"] is True
    assert notice in result["notices"] and result["totals"]["copied"] == copied


def test_an_imapsync_run_holds_its_accounts_lock_against_builtin_runs(fake_host):
    st, record = fake_host
    other = config.parse_task({"name": "t2", "local_user": "Alice", "remote_user": "A@X", "remote_password": REMOTE,
                               "remote_host": "IMAP.example.org", "remote_port": 993, "remote_security": "ssl"})
    stop = threading.Event()
    met = []

    def progress(line):
        if "Here is imapsync" in line:  # imapsync runs t1; a builtin run of t2, the same account, meets it
            met.append(sync.run(other, st.load_target("default"), st.state_path("t2"), state_dir=st.state_dir))
            met.append(sync.run(other, st.load_target("default"), st.state_path("t2"), state_dir=st.state_dir,
                                check_mode=True))
            stop.set()

    result = runner.run_task(st, "t1", progress=progress, stop=stop)
    assert _gone(_wait_for(record)["pid"])
    assert result.status == "success"
    assert [m.status for m in met] == ["skipped", "skipped"]
    assert met[0].notices == ["Another run into the account A@X at IMAP.example.org -> Alice is active (another task, "
                              "or an inline migrate, of the same account); this run was skipped."]
    assert not os.path.exists(st.state_path("t2"))  # it stopped before opening any state


ESCAPING = """#!{python}
print("Host1 folder [x\\x1b[2J]")
print("++++ Statistics")
print("Messages transferred                    : 1")
print("Detected 0 errors")
"""


def test_imapsync_output_is_escaped_and_an_unencrypted_remote_is_noticed(tmp_path, monkeypatch):
    st = store_mod.Store(str(tmp_path / "etc"), str(tmp_path / "var"))
    target = config.parse_target({"master_password": MASTER})
    st.write("targets", "default", target.public(), MASTER)
    task = config.parse_task({"name": "t1", "local_user": "alice", "remote_user": "a@x", "remote_password": REMOTE,
                              "remote_host": "imap.example.org", "remote_port": 143, "remote_security": "none",
                              "engine": "imapsync"})
    st.write("tasks", "t1", task.public(), REMOTE)
    monkeypatch.setenv(engine_imapsync.ENV_IMAPSYNC, _program(tmp_path / "fake-imapsync", ESCAPING.format(python=sys.executable)))
    no_remote(monkeypatch)
    result = runner.run_task(st, "t1")
    assert result.status == "success"
    assert any("imap.example.org:143 is not encrypted (remote_security: none)" in n for n in result.notices), result.notices
    with open(st.newest_log("t1"), encoding="utf-8") as handle:
        log = handle.read()
    assert "\x1b" not in log
    assert "Host1 folder [x\\x1b[2J]" in log


def test_a_password_file_that_cannot_be_written_is_a_state_error_recorded_as_the_last_result(fake_host, monkeypatch):
    st, record = fake_host

    def full(directory, name, secret):
        raise OSError(28, "No space left on device", os.path.join(directory, name))

    monkeypatch.setattr(engine_imapsync, "write_secret", full)
    result = runner.run_task(st, "t1")
    assert result.status == "failed" and [e["kind"] for e in result.errors] == ["state_error"], result.as_dict()
    assert "No space left on device" in result.errors[0]["detail"] and st.runs_dir("t1") in result.errors[0]["detail"]
    assert st.last_result("t1")["errors"][0]["kind"] == "state_error"
    assert not record.exists()  # imapsync never started
    assert not [e for e in os.listdir(st.runs_dir("t1")) if e.startswith(store_mod.PRIVATE_PREFIX)]  # no directory left


def test_the_result_shows_duplicates_copied_and_messages_left_behind(fake_host):
    st, _record = fake_host
    task = st.load_task("t1")

    def concluded(name, check_mode):
        run = engine_imapsync.ImapsyncRun(engine.Request(st, "t1", task, st.load_target(task.target), check_mode=check_mode))
        _command, status, stats = transcript(name)
        run._conclude(status, stats)  # pylint: disable=protected-access
        return run.result.as_dict()

    copied = concluded("04-first-run-with-syncduplicates.txt", False)
    assert copied["status"] == "success" and copied["totals"]["copied"] == 65
    assert any(n.startswith("imapsync found 2 remote message(s) sharing their identifying headers") and "copied each" in n
               for n in copied["notices"])
    planned = concluded("01-dry-run.txt", True)
    assert planned["status"] == "success" and planned["totals"]["copied"] == 63 and planned["errors"] == []
    # The same "not finished" statistics after a real run: the messages left behind make it partial.
    left = concluded("01-dry-run.txt", False)
    assert left["status"] == "partial" and left["totals"]["errors"] == 1
    assert left["errors"][0]["kind"] == "imapsync_failed" and "29 remote message(s) not on the local server" in left["errors"][0]["detail"]


# -- an OAuth2 remote: the token in a 0600 file of the private directory, renewed while imapsync runs ------------

FAKE_OAUTH = """#!{python}
import json, os, sys, time
sys.stdout.reconfigure(line_buffering=True)
args = sys.argv[1:]
path = args[args.index("--oauthaccesstoken1") + 1]
first = open(path, encoding="utf-8").read()
record = {{"argv": args, "path": path, "first": first, "mode": os.stat(path).st_mode & 0o777}}
print("Host1: token is " + first.strip())  # a buggy imapsync that prints its token
deadline = time.time() + 10
while time.time() < deadline and "renewed" not in record:
    now = open(path, encoding="utf-8").read()
    if now != first:
        record["renewed"] = now
    time.sleep(0.02)
print("Host1: token is now " + record.get("renewed", "").strip())
with open(os.environ["FAKE_RECORD"], "w", encoding="utf-8") as handle:
    json.dump(record, handle)
"""


def test_an_oauth_token_goes_to_imapsync_in_a_private_file_that_is_renewed_while_it_runs(tmp_path, monkeypatch):
    st = store_mod.Store(str(tmp_path / "etc"), str(tmp_path / "var"))
    target = config.parse_target({"master_password": MASTER})
    st.write("targets", "default", target.public(), MASTER)
    source = tmp_path / "token"
    source.write_text("tok-first-0123\n", encoding="ascii")
    source.chmod(0o600)
    task = config.parse_task({"name": "t1", "local_user": "alice", "remote_user": "a@x", "remote_host": "imap.example.org",
                              "engine": "imapsync", "remote_auth": "token_file", "remote_token_file": str(source)})
    st.write("tasks", "t1", task.public(), store_mod.task_secret(task))
    monkeypatch.setenv(engine_imapsync.ENV_IMAPSYNC, _program(tmp_path / "fake-imapsync", FAKE_OAUTH.format(python=sys.executable)))
    record = tmp_path / "record.json"
    monkeypatch.setenv("FAKE_RECORD", str(record))
    monkeypatch.setattr(engine_imapsync, "TOKEN_CHECK_S", 0.05)
    no_remote(monkeypatch)
    seen = []

    def progress(line):
        seen.append(line)
        if "Host1: token is " in line and "now" not in line:
            source.write_text("tok-second-4567\n", encoding="ascii")  # another process renews the token

    result = runner.run_task(st, "t1", progress=progress)
    info = _wait_for(record)
    assert info["first"] == "tok-first-0123\n" and info["renewed"] == "tok-second-4567\n" and info["mode"] == 0o600
    argv = info["argv"]
    assert argv[argv.index("--oauthaccesstoken1") + 1] == info["path"] and "--passfile1" not in argv
    assert argv[argv.index("--authmech1") + 1] == "XOAUTH2" and not any("tok-" in arg for arg in argv)
    assert os.path.basename(info["path"]) == engine_imapsync.TOKEN_FILE and not os.path.exists(os.path.dirname(info["path"]))
    written = "\n".join(seen) + json.dumps(result.as_dict()) + json.dumps(st.last_result("t1"))
    written += "".join(pathlib.Path(p).read_text(encoding="utf-8") for p in st.logs("t1"))
    assert "Host1: token is MASKED" in written and "Host1: token is now MASKED" in written and "tok-" not in written
    assert any(line.startswith("engine imapsync: renewed the access token in ") for line in seen)
    assert result.status == "success"
