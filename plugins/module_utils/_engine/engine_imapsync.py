# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``engine: imapsync``: a task run by upstream imapsync instead of the builtin engine (:class:`ImapsyncRun`).

The command line is :func:`imapsync_cmd.render`'s (its refusals, :func:`imapsync_cmd.check_expressible`, are
this engine's :meth:`ImapsyncEngine.check`), with the remote's namespaces read first (:func:`read_namespace`: imapsync
cannot tell the user's folders from shared ones by itself); the two passwords (or, with an OAuth2 ``remote_auth``, the
remote access token, renewed in its file before it expires while imapsync runs: :meth:`ImapsyncRun._keep_token_fresh`)
go in files of mode 0600 inside a private directory (0700) that exists only while imapsync runs; the run holds the same per-task and per-account locks as
builtin runs (:meth:`store.Store.run_locks`); imapsync's output goes to the run log (and the terminal) line by
line with both passwords masked; its exit status and its end-of-run statistics are mapped onto the result. The
program is ``imapsync`` from ``PATH``, or the one that ``$MAILOPS_IMAP_IMAPSYNC`` names (a path or a command name).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import typing as t

from . import errors, files, imapsync_cmd, sync
from .config import Target, Task
from .contract import Kind, Status
from .folders import Namespace
from .imap import Connection, Endpoint
from .result import RunResult
from .store import Store, atomic_write
from .text import printable

if t.TYPE_CHECKING:  # the interface module imports this one
    from .engine import Request

ProgressFn = t.Callable[[str], None]

ENV_IMAPSYNC = "MAILOPS_IMAP_IMAPSYNC"  # the imapsync program to run: a path, or a command name looked up in PATH
STOP_GRACE_S = 30.0  # after SIGTERM, how long imapsync may take to print its statistics and end before SIGKILL
INTERRUPT_GRACE_S = 5.0  # the same after a second Ctrl-C, or any error of this process while imapsync runs
TOKEN_CHECK_S = 60.0  # while imapsync runs, how often the remote token source is asked whether its token was renewed
TOKEN_FILE = "oauthaccesstoken1"  # the name of the access token's file in the run's private directory
MASK = "MASKED"  # what imapsync itself prints in place of a password

# Variables through which imapsync 2.229 would take a password ("You can also pass the passwords in the environment
# variables IMAPSYNC_PASSWORD1 and IMAPSYNC_PASSWORD2", README OPTIONS/credentials): never passed on.
_PASSWORD_VARIABLES = ("IMAPSYNC_PASSWORD1", "IMAPSYNC_PASSWORD2")

NOTICE_TOTALS_ONLY = (
    "engine: imapsync reports totals only: per-folder counts are not available, already_present counts the "
    "messages imapsync skipped (already on the local server), and flag updates and created folders are not counted."
)
NOTICE_NO_STATISTICS = (
    "imapsync printed no end-of-run statistics ('++++ Statistics'), so the counts of this run are not known "
    "and show 0."
)
NOTICE_DRY = (
    "Check mode ran imapsync --dry, which writes nothing: copied is the number of messages a real run would "
    "transfer ('could be N without dry mode'); imapsync --dry reports no bytes."
)
NOTICE_DRY_UNCOUNTED = (
    "Check mode ran imapsync --dry, which writes nothing; it did not say how many messages a real run would transfer, "
    "so copied shows 0."
)
NOTICE_STOPPED = "The run was stopped on request; the next run continues where it stopped."  # as the builtin engine's

# imapsync 2.229 ends a run with a block like this one (real runs: tests/unit/plugins/module_utils/_engine/data/
# imapsync-2.229/; the labels are padded to column 40). Only the lines below are read; any other line, or a block
# that is missing, leaves the count unknown.
#   ++++ Statistics
#   Folders synced                          : 9/9 synced
#   Messages transferred                    : 0 (could be 63 without dry mode)    <- the part in () with --dry
#   Messages skipped                        : 2
#   Messages found duplicate on host1       : 2
#   Messages void (noheader) on host1       : 0
#   Messages deleted on host1               : 0
#   Total bytes transferred                 : 6080002 (5.798 MiB)
#   The sync is not finished, there are 29 among 29 identified messages in host1 that are not on host2.
#   Detected 0 errors
# and, after it, "Exiting with return value 161 (EXIT_AUTHENTICATION_FAILURE_USER1) 1/50 nb_errors/max_errors PID 1".
# With --syncduplicates (always rendered) "skipped" counts the messages already on host2 only: without it, the
# duplicates it did not copy were counted there too.
_STATISTICS_START = "++++ Statistics"
_STAT_RE = re.compile(r"(?P<label>[A-Za-z][A-Za-z0-9 ()/-]*?)\s*:\s*(?P<value>.*)")
_NUMBER_RE = re.compile(r"\d+")
_COULD_BE_RE = re.compile(r"could be (\d+) without (?:--)?dry mode")  # 2.229 says "dry mode"
_FOLDERS_RE = re.compile(r"(\d+)/(\d+)\b.*")
_DETECTED_RE = re.compile(r"Detected (\d+) errors?\b.*")
_NOT_FINISHED_RE = re.compile(r"The sync is not finished, there (?:is|are) (\d+) among (\d+) identified messages? in host1 that "
                              r"(?:is|are) not on host2\..*")
_EXIT_RE = re.compile(r"Exiting with return value (\d+)(?: \((?P<why>[^)]*)\))?.*")
_ERR_RE = re.compile(r"^Err \d+/\d+:?\s*")  # imapsync's numbered error lines ("Err 1/50: Host1 failure: ...")
_ERRORISH_RE = re.compile(r"\b(failure|failed|error|can ?not|can't|die[ds]?)\b", re.IGNORECASE)
_STAT_TOTALS = {
    "Messages transferred": "copied",
    "Messages skipped": "already_present",
    "Messages found duplicate on host1": "duplicates",
    "Messages void (noheader) on host1": "unidentified",
    "Messages deleted on host1": "deleted_remote",
    "Total bytes transferred": "bytes",
}
_DETAIL_LINES = 3
_DETAIL_MAX = 1500


def find_imapsync(environ: t.Mapping[str, str] | None = None) -> tuple[str | None, str]:
    """The imapsync program to run (None when there is none) and a sentence for when there is none.

    ``$MAILOPS_IMAP_IMAPSYNC`` (a path, or a command name looked up in PATH) wins over ``imapsync`` in PATH.
    """
    environ = os.environ if environ is None else environ
    override = environ.get(ENV_IMAPSYNC, "")
    path = environ.get("PATH", os.defpath)
    if override:
        found = shutil.which(override, path=path)
        return found, (
            f"${ENV_IMAPSYNC} names {override!r}, which is not an executable program; point it at the imapsync "
            "program, or unset it to use imapsync from PATH."
        )
    return shutil.which("imapsync", path=path), (
        f"imapsync is not installed on this host: no executable 'imapsync' in PATH ({path}). Install upstream imapsync "
        f"{imapsync_cmd.IMAPSYNC_VERSION} or later (a Perl program with its Perl modules; see "
        f"https://imapsync.lamiral.info/#install), or set ${ENV_IMAPSYNC} to its path, or use engine: builtin, "
        "which needs no other program."
    )


def scrubber(secrets: t.Iterable[str]) -> t.Callable[[bytes], str]:
    """A function turning a raw output line into text with every secret replaced by MASKED (longest first)."""
    texts = sorted({s for s in secrets if s}, key=len, reverse=True)
    raws = [s.encode("utf-8", "surrogateescape") for s in texts]
    mask = MASK.encode("ascii")

    def scrub(raw: bytes) -> str:
        for raw_secret in raws:
            raw = raw.replace(raw_secret, mask)
        text = raw.decode("utf-8", "replace").replace("\r", "").rstrip()
        for text_secret in texts:
            text = text.replace(text_secret, MASK)
        return text

    return scrub


def child_environment(secrets: t.Iterable[str], tmpdir: str, environ: t.Mapping[str, str] | None = None) -> dict[str, str]:
    """imapsync's environment: this one without any password, and TMPDIR in the run's private directory.

    imapsync writes its pid file (and any temporary file) in TMPDIR, so runs of different tasks never share
    one, and whatever it leaves there goes away with the directory.
    """
    environ = os.environ if environ is None else environ
    values = {s for s in secrets if s}
    env = {key: value for key, value in environ.items() if key not in _PASSWORD_VARIABLES and value not in values}
    env["TMPDIR"] = tmpdir
    return env


@dataclasses.dataclass
class Statistics:
    """What imapsync's output said about the run (None where it said nothing)."""

    found: bool = False
    copied: int | None = None
    could_be: int | None = None
    already_present: int | None = None
    duplicates: int | None = None  # remote messages sharing their identifying headers with another of their folder
    unidentified: int | None = None  # remote messages imapsync could not identify (no header to match by): not copied
    not_copied: int | None = None  # "The sync is not finished, there are N among M identified messages ... not on host2"
    deleted_remote: int | None = None
    bytes: int | None = None
    errors: int | None = None
    folders_synced: tuple[int, int] | None = None
    exit_line: str | None = None
    # imapsync's numbered errors, other lines that sound like one, and the last lines: the detail of a failure.
    err_lines: collections.deque = dataclasses.field(default_factory=lambda: collections.deque(maxlen=_DETAIL_LINES))
    error_lines: collections.deque = dataclasses.field(default_factory=lambda: collections.deque(maxlen=_DETAIL_LINES))
    last_lines: collections.deque = dataclasses.field(default_factory=lambda: collections.deque(maxlen=_DETAIL_LINES))
    _in_block: bool = False

    def feed(self, line: str) -> None:
        """Read one (scrubbed) output line."""
        text = line.strip()
        if not text:
            return
        if text.startswith(_STATISTICS_START):
            self.found = self._in_block = True
            return
        exiting = _EXIT_RE.fullmatch(text)
        if exiting:
            self.exit_line = text
            return
        detected = _DETECTED_RE.fullmatch(text)
        if detected:
            self.errors = int(detected.group(1))
            return
        not_finished = _NOT_FINISHED_RE.fullmatch(text)
        if not_finished and self._in_block:
            self.not_copied = int(not_finished.group(1))
            return
        self.last_lines.append(text)
        if _ERR_RE.match(text):
            message = _ERR_RE.sub("", text, count=1)
            if message not in self.err_lines:
                self.err_lines.append(message)
        elif (_ERRORISH_RE.search(text) and not self._in_block and not text.startswith("++++")
              and text not in self.error_lines):
            self.error_lines.append(text)
        if self._in_block:
            self._statistic(text)

    def _statistic(self, text: str) -> None:
        match = _STAT_RE.fullmatch(text)
        if not match:
            return
        label, value = match.group("label").strip(), match.group("value")
        if label == "Folders synced":
            folders = _FOLDERS_RE.fullmatch(value)
            if folders:
                self.folders_synced = (int(folders.group(1)), int(folders.group(2)))
            return
        field = _STAT_TOTALS.get(label)
        number = _NUMBER_RE.search(value)
        if field is None or number is None:
            return
        setattr(self, field, int(number.group()))
        if field == "copied":
            could_be = _COULD_BE_RE.search(value)
            if could_be:
                self.could_be = int(could_be.group(1))

    def totals(self, check_mode: bool) -> dict[str, int]:
        """The result totals imapsync reported (only those it reported)."""
        totals = {}
        copied = self.could_be if check_mode and self.could_be is not None else self.copied
        for key, value in (("copied", copied), ("bytes", self.bytes), ("already_present", self.already_present),
                           ("deleted_remote", self.deleted_remote), ("errors", self.errors)):
            if value is not None:
                totals[key] = value
        return totals

    def losses(self, incomplete_expected: bool) -> list[tuple[Kind, str]]:
        """Errors for the messages imapsync reported it did not copy (none: []); ``incomplete_expected`` (check mode, or a
        stopped run): remote messages missing on the local server are no error."""
        lost = []
        if self.unidentified:
            lost.append((Kind.IMAPSYNC_FAILED, f"imapsync could not identify {self.unidentified} remote message(s) (no "
                         "header to recognise them by: 'Messages void (noheader) on host1') and did not copy them; "
                         "migrate this account with engine: builtin, which copies every message."))
        if self.not_copied and not incomplete_expected:
            lost.append((Kind.IMAPSYNC_FAILED, f"imapsync ended with {self.not_copied} remote message(s) not on the local "
                         "server ('The sync is not finished'); see the run log for the reason, and run the task again."))
        return lost

    def failure(self, returncode: int) -> str:
        """A sentence for a failed run: the exit status, its meaning and imapsync's last error lines."""
        if returncode < 0:
            try:
                how = f"imapsync was ended by signal {signal.Signals(-returncode).name}"
            except ValueError:
                how = f"imapsync was ended by signal {-returncode}"
        else:
            why = _EXIT_RE.fullmatch(self.exit_line or "")
            meaning = f" ({printable(why.group('why'))})" if why and why.group("why") else ""
            how = f"imapsync exited with status {returncode}{meaning}"
        lines = [printable(line) for line in list(self.err_lines) or list(self.error_lines) or list(self.last_lines)]
        detail = f"{how}: {' | '.join(lines)}" if lines else f"{how}, without a message"
        if len(detail) > _DETAIL_MAX:
            detail = detail[:_DETAIL_MAX - 3] + "..."
        return detail.rstrip(".") + "."


@dataclasses.dataclass
class ImapsyncResult(RunResult):
    """A result whose totals come from imapsync's end-of-run statistics: imapsync reports no per-folder counts."""

    reported: dict[str, int] = dataclasses.field(default_factory=dict, repr=False)

    def totals(self) -> dict[str, int]:
        totals = super().totals()
        totals.update({key: value for key, value in self.reported.items() if key in totals})
        totals["errors"] = max(totals["errors"], len(self.errors))
        return totals


def read_namespace(task: Task, target: Target, remote: Endpoint | None = None) -> Namespace:
    """The remote account's namespaces (imap.Connection.namespace), read with the task's own remote login.

    imapsync cannot tell the user's folders from other users' and shared ones (issue: a Cyrus remote names them
    ``Other Users/...``, or gives the shared namespace the empty prefix), so the run reads them first and the command
    excludes them (imapsync_cmd.namespace_excludes). Raises errors.SyncError (auth_failed, tls_failed, ...): the run
    fails with the builtin engine's words before imapsync starts. ``remote``: the remote endpoint to log in with (the
    run's, so that its token source is asked once), else the task's.
    """
    connection = Connection(remote if remote is not None else sync.endpoints(task, target)[0])
    try:
        check_mechanism(connection)
        return connection.namespace()
    finally:
        connection.close()


def check_mechanism(connection: Connection) -> None:
    """imapsync 2.229 logs in with a token by XOAUTH2 only (docs/oauth2.md "engine: imapsync"): a remote that does not
    announce it is refused with a sentence before imapsync starts (imapsync would only exit 161)."""
    ep = connection.ep
    if ep.token is not None and b"AUTH=XOAUTH2" not in connection.login_caps:
        raise errors.SyncError(
            errors.AUTH_FAILED,
            f"The remote server {printable(ep.host, 255)}:{ep.port} does not announce AUTH=XOAUTH2, the only OAuth2 "
            "mechanism imapsync logs in with; use engine: builtin for this task (it logs in with OAUTHBEARER).",
            ep.side,
        )


def write_secret(directory: str, name: str, secret: str) -> str:
    """Write ``secret`` as the first line of a new file of mode 0600 in ``directory``; its path."""
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(_first_line(secret))
    return path


def _first_line(secret: str) -> bytes:
    """What a password or token file holds: ``secret`` on its first line (imapsync reads that line)."""
    return secret.encode("utf-8", "surrogateescape") + b"\n"


def replace_secret(directory: str, name: str, secret: str) -> str:
    """Replace the file ``name`` of ``directory`` by one holding ``secret`` as :func:`write_secret` writes it, atomically
    (store.atomic_write: a reader sees the old file or the new one, whole, never with a wider mode than 0600)."""
    path = os.path.join(directory, name)
    atomic_write(path, _first_line(secret), 0o600)
    return path


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    """Send ``signum`` to imapsync and whatever it started (its own process group), while it has not been reaped."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signum)


class ImapsyncRun:
    """One run of upstream imapsync for a task with ``engine: imapsync`` (see the module documentation).

    The password files live in the private directory of :meth:`store.Store.new_private_dir` for a real run, and in a private
    directory of the system's temporary directory in check mode (which writes nothing under state_dir); the
    directory is also imapsync's working directory and TMPDIR, and is removed when imapsync has ended, whatever
    the way. imapsync runs in a session of its own, so a Ctrl-C on the terminal reaches this process only (imapsync
    would take a first SIGINT as an order to reconnect): a stop request ends it with SIGTERM (imapsync then prints
    its statistics and exits), and SIGKILL after STOP_GRACE_S. It inherits the task's lock, so that even a run whose
    own process was killed outright keeps the task locked until its imapsync has ended.
    """

    def __init__(self, request: Request) -> None:
        self.store: Store = request.store
        self.name = request.name
        self.task = request.task
        self.target = request.target
        self.check_mode = request.check_mode
        self.log: ProgressFn = request.log or (lambda _message: None)
        self.stop = request.stop or threading.Event()
        self.on_locked = request.on_locked
        self.secrets = [s for s in (self.task.remote_password, self.target.master_password) if s]
        self.remote = sync.endpoints(self.task, self.target)[0]
        self.token: str | None = None  # the access token in the private directory's TOKEN_FILE, if any
        self._scrub = scrubber(self.secrets)  # rebuilt when the token is renewed (_keep_token_fresh)
        self.result = ImapsyncResult(task=self.name, check_mode=self.check_mode)
        self.stopped = False

    def run(self) -> RunResult:
        result = self.result
        program, missing = find_imapsync()
        if program is None:
            return result.fail(Kind.MISSING_PROGRAM, missing)
        locks = self.store.run_locks(self.name, self.task, create=not self.check_mode)
        try:
            try:
                if not sync.begin(locks, result, self.remote, self.on_locked):
                    return result
            except errors.SyncError as exc:
                return self._failed(exc, self.store.state_dir)
            try:
                namespace = read_namespace(self.task, self.target, self.remote)
                if self.remote.token is not None:
                    self._add_token(self.remote.token.token())  # the token the namespace login used (a grant's cache)
            except errors.SyncError as exc:  # oauth.TokenError too: the token endpoint's or the token source's words
                return result.fail(exc.kind, exc.message)
            where = tempfile.gettempdir() if self.check_mode else self.store.runs_dir(self.name)
            try:
                if self.check_mode:
                    private = tempfile.mkdtemp(prefix="mailops-imapsync-")
                else:
                    private = self.store.new_private_dir(self.name)
            except (OSError, files.Unsafe, errors.SyncError) as exc:
                return self._failed(exc, where)
            try:
                try:
                    if self.token is not None:
                        passfile1 = write_secret(private, TOKEN_FILE, self.token)
                    else:
                        passfile1 = write_secret(private, "passfile1", self.task.remote_password)
                    passfile2 = write_secret(private, "passfile2", self.target.master_password)
                except OSError as exc:
                    return self._failed(exc, private)
                argv = imapsync_cmd.render(self.task, self.target, passfile1, passfile2, namespace)
                argv[0] = program
                if self.check_mode:
                    argv.append("--dry")  # README 2.229: "--dry : Makes imapsync do nothing for real"
                self._execute(argv, private, locks.fds)
            finally:
                try:
                    shutil.rmtree(private)
                except OSError as exc:
                    result.notice(f"The private directory {private} of this run's password files could not be removed "
                                  f"({exc.strerror}); the next run removes it, or remove it by hand.")
        finally:
            locks.release()
        return result

    def _add_token(self, token: str) -> None:
        """Make ``token`` the run's access token: masked in imapsync's output from now on, as the passwords are."""
        self.token = token
        if token not in self.secrets:
            self.secrets.append(token)
            self._scrub = scrubber(self.secrets)

    def _keep_token_fresh(self, private: str, ended: threading.Event) -> None:
        """While imapsync runs, ask the remote token source every TOKEN_CHECK_S whether its token changed (a grant renews
        its token in the last 5 minutes or 10 % of its life; a token file or command gives what it holds now) and
        replace the token file when it did. imapsync 2.229 reads the file once, at its login (docs/oauth2.md "engine:
        imapsync"); a later imapsync, or a reconnection that reads it, gets a valid token. A failure is logged, not
        fatal: imapsync's session does not need a new token."""
        source = self.remote.token
        if source is None:
            return
        while not ended.wait(TOKEN_CHECK_S):
            try:
                token = source.token()
            except errors.SyncError as exc:
                self.log(printable(f"engine imapsync: the access token could not be renewed: {exc.message}"))
                continue
            if token == self.token:
                continue
            self._add_token(token)
            try:
                replace_secret(private, TOKEN_FILE, token)
            except OSError as exc:
                self.log(f"engine imapsync: the renewed access token could not be written ({exc.strerror}).")
                continue
            self.log(f"engine imapsync: renewed the access token in {os.path.join(private, TOKEN_FILE)}")

    def _failed(self, exc: BaseException, where: str) -> RunResult:
        """The run fails before imapsync starts: its locks, private directory or password files cannot be used
        (``where``: the directory concerned, for a failure that is no SyncError yet)."""
        failure = exc if isinstance(exc, errors.SyncError) else files.state_error(where, exc)
        return self.result.fail(failure.kind, failure.message)

    def _execute(self, argv: list[str], private: str, lock_fds: tuple[int, ...]) -> None:
        result = self.result
        # Password file paths only, never a password; the excludes carry the remote's namespace prefixes: printable.
        self.log(printable(f"engine imapsync: {shlex.join(argv)}"))
        try:
            proc = subprocess.Popen(  # pylint: disable=consider-using-with
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=private,
                env=child_environment(self.secrets, private), start_new_session=True,
                pass_fds=lock_fds,
            )
        except OSError as exc:
            result.fail(Kind.MISSING_PROGRAM, f"imapsync ({argv[0]}) cannot be started: {exc.strerror}; check that it is "
                        f"an executable program (and its interpreter, perl, is installed), or set ${ENV_IMAPSYNC}.")
            return
        stats = Statistics()
        ended = threading.Event()
        watcher = threading.Thread(target=self._stop_when_asked, args=(proc, ended), name="mailops-imapsync-stop", daemon=True)
        watcher.start()
        refresher = threading.Thread(target=self._keep_token_fresh, args=(private, ended), name="mailops-imapsync-token",
                                     daemon=True)
        refresher.start()
        returncode: int | None = None
        try:
            if proc.stdout is not None:
                for raw in proc.stdout:
                    line = self._scrub(raw)
                    stats.feed(line)
                    if line.strip():
                        self.log(printable(line))  # imapsync prints what the servers said: folder names, responses
            returncode = proc.wait()
        finally:
            ended.set()
            if proc.poll() is None:  # this process is failing (a second Ctrl-C, an error): imapsync must not outlive it
                _signal_group(proc, signal.SIGTERM)
                try:
                    proc.wait(INTERRUPT_GRACE_S)
                except subprocess.TimeoutExpired:
                    _signal_group(proc, signal.SIGKILL)
                    proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
            watcher.join()
            refresher.join()
        if returncode is not None:
            self._conclude(returncode, stats)

    def _stop_when_asked(self, proc: subprocess.Popen, ended: threading.Event) -> None:
        """Watch the stop event while imapsync runs: SIGTERM, then SIGKILL after STOP_GRACE_S."""
        while not ended.is_set():
            if self.stop.wait(0.1):
                break
        if ended.is_set():
            return
        self.stopped = True
        _signal_group(proc, signal.SIGTERM)
        if not ended.wait(STOP_GRACE_S):
            _signal_group(proc, signal.SIGKILL)

    def _conclude(self, returncode: int, stats: Statistics) -> None:
        result = self.result
        result.reported = stats.totals(self.check_mode)
        if stats.folders_synced is not None:
            synced, total = stats.folders_synced
            self.log(f"imapsync synced {synced} of {total} folders")
        result.notice(NOTICE_TOTALS_ONLY)
        for kind, detail in stats.losses(self.check_mode or self.stopped):
            result.add_error(kind, detail)
        if stats.duplicates:
            result.notice(
                f"imapsync found {stats.duplicates} remote message(s) sharing their identifying headers (Message-Id, "
                f"Received) with another message of the same folder; --syncduplicates {'would copy' if self.check_mode else 'copied'} "
                "each of them.")
        if not stats.found:
            result.notice(NOTICE_NO_STATISTICS)
        elif self.check_mode:
            result.notice(NOTICE_DRY if stats.could_be is not None else NOTICE_DRY_UNCOUNTED)
        if self.stopped:
            result.notice(NOTICE_STOPPED)
            result.finish(Status.SUCCESS)
        elif returncode == 0:
            result.finish()  # success, or partial with the messages imapsync left behind (Statistics.losses)
        else:
            result.fail(Kind.IMAPSYNC_FAILED, stats.failure(returncode))


class ImapsyncEngine:
    """The imapsync engine (see the module documentation)."""

    name = "imapsync"

    def check(self, task: Task, target: Target) -> None:
        """Refuse a definition imapsync cannot run equivalently (a definition edited by hand)."""
        imapsync_cmd.check_expressible(task, target)

    def run(self, request: Request) -> RunResult:
        return ImapsyncRun(request).run()


ENGINE = ImapsyncEngine()
