"""A fake imapsync 2.229 for the tests of ``engine: imapsync`` (real imapsync is not packaged for Debian 12).

:func:`install` writes an executable ``imapsync`` that runs :func:`main` of this module. The fake

* records what it was given (argument vector, content and mode of its password files, environment, session,
  open file descriptors) in the JSON file ``$FAKE_IMAPSYNC_RECORD`` (:func:`read_record`);
* with ``FAKE_IMAPSYNC_LOGIN=1``, really logs in as imapsync 2.229 does: to host1 with IMAP LOGIN as
  ``--user1`` and the first line of ``--passfile1`` (after STARTTLS with ``--tls1``, over TLS with ``--ssl1``), or
  with ``--oauthaccesstoken1 FILE`` by AUTHENTICATE XOAUTH2 as ``--user1`` with the first line of FILE, read once at
  the start (as 2.229 does; ``record["oauthaccesstoken1"]``),
  to host2 with AUTHENTICATE PLAIN (authorization identity ``--user2``, authentication identity
  ``--authuser2``, password from ``--passfile2``), with the TLS settings of ``--sslargsN``. On host1 it lists
  the folders and examines INBOX (``record["host1"]``: what the account it reached holds). A refused login
  ends it with imapsync's failure lines and status 161 (user1) or 162 (user2), as real imapsync does; a
  connection that fails, with 101 or 102;
* prints what imapsync 2.229 prints, in its wording, and exits with the status the test asks for
  (``$FAKE_IMAPSYNC_MODE``, ``$FAKE_IMAPSYNC_EXIT``, the statistics' numbers in ``$FAKE_IMAPSYNC_STATS``).

The wording is that of the transcripts of real imapsync 2.229 runs in
``tests/unit/plugins/module_utils/_engine/data/imapsync-2.229/``: the start of a run,
the login lines (``05-login-failure-host1.txt`` for a refused login; host2's failure lines are the same
lines with ``Host2``, ``PLAIN`` and ``USER2``), the dry-run message lines, the statistics block (``01-dry-run.txt``
and ``02-first-run-without-syncduplicates.txt``) and the exit line. The append-error lines of
``FAKE_IMAPSYNC_MODE=errors`` and the signal lines of ``sleep`` follow imapsync's source, not a transcript.

Modes (``$FAKE_IMAPSYNC_MODE``): ``done`` (default) a finished run; ``leak`` also prints the passwords it read
(a buggy imapsync: the engine must mask them); ``authfail`` a host1 login failure without connecting;
``errors`` two append failures (status 114); ``sleep`` runs until SIGTERM, then ends as imapsync does on a
signal; ``ignore-term`` runs until killed.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import ssl
import stat
import sys
import time
from pathlib import Path

ENV_RECORD = "FAKE_IMAPSYNC_RECORD"
ENV_MODE = "FAKE_IMAPSYNC_MODE"
ENV_EXIT = "FAKE_IMAPSYNC_EXIT"
ENV_LOGIN = "FAKE_IMAPSYNC_LOGIN"
ENV_STATS = "FAKE_IMAPSYNC_STATS"

# The numbers of a finished run unless $FAKE_IMAPSYNC_STATS (JSON) says otherwise; with --dry, "transferred" is
# what "could be" transferred and 0 is transferred.
# "not_copied" > 0 ends the block with "The sync is not finished" (01-dry-run.txt) instead of "The sync looks good".
DEFAULT_STATS = {"transferred": 5, "skipped": 7, "duplicate1": 0, "deleted1": 2, "bytes": 12345, "errors": 0,
                 "folders": 3, "not_copied": 0}

# The statistics block of imapsync 2.229, line by line as in 02-first-run-without-syncduplicates.txt (labels
# padded to column 40; "Messages transferred" ends with a space, "Messages void (noheader) on host1" with two,
# which the values carry);
# a dry run says "0 (could be N without dry mode)" instead (01-dry-run.txt).
STATISTICS = """\
++++ Statistics
Transfer started on                     : Monday 30 November 2026-11-30 16:03:07 +0000 UTC
Transfer ended on                       : Monday 30 November 2026-11-30 16:03:07 +0000 UTC
Transfer time                           : 0.6 sec
Folders synced                          : {folders}/{folders} synced
Messages transferred                    : {transferred}
Messages skipped                        : {skipped}
Messages found duplicate on host1       : {duplicate1}
Messages found duplicate on host2       : 0
Messages found crossduplicate on host2  : 0
Messages void (noheader) on host1       : {void1}
Messages void (noheader) on host2       : 0
Messages found in host1 not in host2    : 0 messages
Messages found in host2 not in host1    : 0 messages
Messages deleted on host1               : {deleted1}
Messages deleted on host2               : 0
Total bytes transferred                 : {bytes} ({kib} KiB)
Total bytes skipped                     : 0 (0.000 KiB)
Message rate                            : 114.1 messages/s
Average bandwidth rate                  : 10756.3 KiB/s
Reconnections to host1                  : 0
Reconnections to host2                  : 0
Memory consumption at the end           : 177.0 MiB (*time 0.0 MiB*h) (started with 162.5 MiB)
Load end is                             : 0.33 0.80 1.25 1/100 on 2 cores
CPU time and %cpu                       : 0.58 sec 105.1 %cpu 52.5 %allcpus
Biggest message transferred             : 4096 bytes (4.000 KiB)
Memory/biggest message ratio            : 522.7
{sync_state}
There is no unidentified message on host1.
The sync is strict, all {identified} identified messages in host2 are on host1.
Detected {errors} errors
Check if a new imapsync release is available by adding --releasecheck
Homepage: https://imapsync.lamiral.info/"""

# imapsync 2.229's names of the statuses a test may choose with $FAKE_IMAPSYNC_EXIT.
EXIT_NAMES = {0: "EX_OK: successful termination", 1: "EXIT_CATCH_ALL", 111: "EXIT_WITH_ERRORS"}

LAUNCHER = """#!{python}
import sys
sys.path.insert(0, {harness_parent!r})
from harness.fakeimapsync import main
sys.exit(main())
"""


def install(bin_dir: Path, name: str = "imapsync") -> Path:
    """Write the fake as the executable ``bin_dir/name`` (run by this Python); returns its path."""
    path = Path(bin_dir) / name
    path.write_text(LAUNCHER.format(python=sys.executable, harness_parent=str(Path(__file__).resolve().parents[1])),
                    encoding="utf-8")
    path.chmod(0o755)
    return path


def read_record(path: Path) -> dict:
    """What the fake recorded of its last run (see the module docstring)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


# -- the fake itself ----------------------------------------------------------------------------------------


class LoginRefused(Exception):
    """The server answered NO or BAD to the login; the text is its tagged answer."""


class _Imap:
    """The few IMAP commands imapsync sends before it syncs, over a plain or TLS socket (Mail::IMAPClient style)."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext | None, server_hostname: str | None) -> None:
        sock = socket.create_connection((host, port), timeout=30)
        self.local_ip = sock.getsockname()[0]
        self.peer_ip = sock.getpeername()[0]
        if context is not None:
            sock = context.wrap_socket(sock, server_hostname=server_hostname)
        self.sock = sock
        self.reader = sock.makefile("rb")
        self.tag = 0
        self.banner = self._line()

    def _line(self) -> str:
        raw = self.reader.readline()
        if not raw:
            raise ConnectionError("the server closed the connection")
        return raw.decode("utf-8", "replace").rstrip("\r\n")

    def _send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, *parts: bytes) -> tuple[list[str], str]:
        """Send one command (literals as synchronising literals); return the untagged lines and the tagged answer."""
        self.tag += 1
        tag = str(self.tag).encode()
        pending = tag + b" "
        for index, part in enumerate(parts):
            if index:
                pending += b" "
            if part.startswith(b"{") and b"}\r\n" in part:
                size_part, literal = part.split(b"\r\n", 1)
                self._send(pending + size_part + b"\r\n")
                if not self._line().startswith("+"):
                    raise ConnectionError("the server did not accept a literal")
                pending = literal
            else:
                pending += part
        self._send(pending + b"\r\n")
        return self._answer(tag.decode())

    def _answer(self, tag: str) -> tuple[list[str], str]:
        untagged = []
        while True:
            line = self._line()
            if line.startswith(tag + " "):
                return untagged, line
            untagged.append(line)

    def authenticate_plain(self, authzid: str, authcid: str, password: str) -> str:
        self.tag += 1
        tag = str(self.tag)
        self._send(f"{tag} AUTHENTICATE PLAIN\r\n".encode())
        line = self._line()
        if line.startswith("+"):
            secret = f"{authzid}\0{authcid}\0{password}".encode("utf-8")
            self._send(base64.b64encode(secret) + b"\r\n")
            return self._answer(tag)[1]
        return line

    def authenticate_xoauth2(self, user: str, token: str) -> str:
        """AUTHENTICATE XOAUTH2 as Mail::IMAPClient sends it (no initial response: the string after the "+"); after an
        error challenge, the empty response that ends the exchange."""
        self.tag += 1
        tag = str(self.tag)
        self._send(f"{tag} AUTHENTICATE XOAUTH2\r\n".encode())
        line = self._line()
        if not line.startswith("+"):
            return line
        self._send(base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode("utf-8")) + b"\r\n")
        line = self._line()
        if line.startswith("+"):  # the server's error challenge (JSON): answer it empty, then read the NO
            self._send(b"\r\n")
            return self._answer(tag)[1]
        if line.startswith(tag + " "):
            return line
        return self._answer(tag)[1]

    def close(self) -> None:
        try:
            self.command(b"LOGOUT")
        except (OSError, ConnectionError):
            pass
        self.sock.close()


def _quote(text: str) -> bytes:
    """An IMAP string as Mail::IMAPClient's Quote sends it: a literal when quoting cannot carry it."""
    data = text.encode("utf-8")
    if re.search(rb'["\\\r\n]|[^\x00-\x7f]', data):
        return b"{%d}\r\n" % len(data) + data
    return b'"' + data + b'"'


def _ok(answer: str) -> bool:
    return answer.split(" ", 2)[1:2] == ["OK"]


class Fake:
    """One run of the fake imapsync over ``args`` (imapsync's argument vector without the program)."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.args = argv[1:]
        self.record_path = os.environ[ENV_RECORD]
        self.mode = os.environ.get(ENV_MODE, "done")
        self.dry = "--dry" in self.args
        self.stats = dict(DEFAULT_STATS, **json.loads(os.environ.get(ENV_STATS) or "{}"))
        self.record: dict = {
            "argv": argv, "pid": os.getpid(), "pgid": os.getpgid(0), "sid": os.getsid(0), "cwd": os.getcwd(),
            "env": dict(os.environ), "passfile2": self.passfile("--passfile2"),
            "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
        }
        # The remote credential: a password file, or an OAuth2 access token's file (never the token itself here).
        self.oauth = "--oauthaccesstoken1" in self.args
        self.record["oauthaccesstoken1" if self.oauth else "passfile1"] = self.passfile(
            "--oauthaccesstoken1" if self.oauth else "--passfile1")
        self.failures: list[tuple[int, str, str]] = []  # (exit status, its name, the error line)

    # -- arguments ----------------------------------------------------------------------------------------
    def value(self, option: str) -> str:
        return self.args[self.args.index(option) + 1]

    def values(self, option: str) -> list[str]:
        return [self.args[i + 1] for i, arg in enumerate(self.args) if arg == option]

    def passfile(self, option: str) -> dict:
        path = self.value(option)
        with open(path, encoding="utf-8") as handle:
            content = handle.read()
        info = os.stat(path)
        return {"path": path, "content": content, "mode": stat.S_IMODE(info.st_mode),
                "dir_mode": stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode), "uid": info.st_uid}

    def password(self, side: str) -> str:
        # imapsync's --passfileN: "It must contain the password on the first line" (the line end removed); the
        # token of --oauthaccesstoken1 FILE too.
        key = "oauthaccesstoken1" if side == "1" and self.oauth else f"passfile{side}"
        return self.record[key]["content"].split("\n", 1)[0]

    def save(self) -> None:
        tmp = self.record_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(self.record, handle)
        os.replace(tmp, self.record_path)

    # -- output ---------------------------------------------------------------------------------------------
    def header(self) -> None:
        print("Here is imapsync 2.229 on host fake, a linux system with 21.9/23.5 free GiB of RAM, 1.11% used by processes.")
        print("with Perl 5.36.0 and Mail::IMAPClient 3.43")
        print(f"PID is {os.getpid()} my PPID is {os.getppid()}")
        print("No log file because of option --nolog")
        print("$RCSfile: imapsync,v $ $Revision: 2.229 $ $Date: 2022/09/14 18:08:24 $ ")
        print("Command line used, run by /usr/bin/perl:")
        print(" ".join(self.argv))
        print(f"Host1: will try to use {'XOAUTH2' if self.oauth else 'LOGIN'} authentication on host1")
        print("Host2: will try to use PLAIN authentication on host2")
        print(f"Host1: IMAP server [{self.value('--host1')}] port [{self.value('--port1')}] user [{self.value('--user1')}]")
        print(f"Host2: IMAP server [{self.value('--host2')}] port [{self.value('--port2')}] user [{self.value('--user2')}]")

    def summary(self, errors: int = 0) -> None:
        stats = self.stats
        transferred = stats["transferred"]
        shown = f"0 (could be {transferred} without dry mode)" if self.dry else f"{transferred} "
        size = 0 if self.dry else stats["bytes"]
        identified = transferred + stats["skipped"]
        if stats["not_copied"]:
            sync_state = (f"The sync is not finished, there are {stats['not_copied']} among {identified} identified "
                          "messages in host1 that are not on host2.")
        else:
            sync_state = f"The sync looks good, all {identified} identified messages in host1 are on host2."
        print(STATISTICS.format(folders=stats["folders"], transferred=shown, skipped=stats["skipped"],
                                duplicate1=stats["duplicate1"], deleted1=stats["deleted1"], bytes=size,
                                kib=f"{size / 1024:.3f}", void1="0  ", identified=identified, sync_state=sync_state,
                                errors=errors or stats["errors"]))

    def exit(self, code: int, name: str, errors: int = 0) -> int:
        print(f"Exiting with return value {code} ({name}) {errors}/50 nb_errors/max_errors PID {os.getpid()}")
        print("No log file because of option --nolog")
        self.save()
        return code

    def error_listing(self, lines: list[str], most_frequent: str, comment: str) -> None:
        print(f"++++ Listing {len(lines)} errors encountered during the sync ( avoid this listing with --noerrorsdump ).")
        for index, line in enumerate(lines, start=1):
            print(f"Err {index}/{len(lines)}: {line}")
        print(f"The most frequent error is {most_frequent}. {comment}")

    # -- logins ---------------------------------------------------------------------------------------------
    def tls(self, side: str) -> tuple[str, ssl.SSLContext | None, str | None]:
        """The side's encryption (none, ssl, starttls), its context from --sslargsN, and the name to check."""
        how = "ssl" if f"--ssl{side}" in self.args else "starttls" if f"--tls{side}" in self.args else "none"
        if how == "none":
            return how, None, None
        sslargs = dict(item.split("=", 1) for item in self.values(f"--sslargs{side}"))
        host = self.value(f"--host{side}")
        if sslargs.get("SSL_verify_mode") == "1":
            context = ssl.create_default_context(cafile=sslargs.get("SSL_ca_file"))
            name = sslargs.get("SSL_verifycn_name")
            context.check_hostname = name is not None
            return how, context, name or sslargs.get("SSL_hostname") or host
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return how, context, sslargs.get("SSL_hostname")

    def connect(self, side: str) -> _Imap:
        how, context, name = self.tls(side)
        host, port = self.value(f"--host{side}"), int(self.value(f"--port{side}"))
        imap = _Imap(host, port, context if how == "ssl" else None, name)
        print(f"Host{side} IP address: {imap.peer_ip} Local IP address: {imap.local_ip}")
        print(f"Host{side} banner: {imap.banner}")
        if how == "starttls":
            _untagged, answer = imap.command(b"STARTTLS")
            if not _ok(answer):
                raise ConnectionError(f"STARTTLS refused: {answer}")
            imap.sock = context.wrap_socket(imap.sock, server_hostname=name)  # type: ignore[union-attr]
            imap.reader = imap.sock.makefile("rb")
        untagged, _answer = imap.command(b"CAPABILITY")
        capability = next((line[len("* CAPABILITY "):] for line in untagged if line.startswith("* CAPABILITY ")), "")
        print(f"Host{side} capability before authentication: {capability}")
        return imap

    def connect_or_fail(self, side: str, user: str) -> _Imap | None:
        """The side's connection, or None after imapsync's connection failure lines (exit 101/102 at the end)."""
        try:
            return self.connect(side)
        except (OSError, ConnectionError) as exc:  # ssl.SSLError is an OSError
            # imapsync's source (login_imap), not a transcript: the wording of a connection that fails.
            line = f"Host{side} failure: can not open imap connection on [{self.value('--host' + side)}] with user [{user}]: {exc}"
            print(line)
            self.failures.append((100 + int(side), f"EXIT_CONNECTION_FAILURE_HOST{side}", line))
            return None

    def login1(self) -> None:
        host, user = self.value("--host1"), self.value("--user1")
        print(f"Host1: connecting and login on host1 [{host}] port [{self.value('--port1')}] with user [{user}]")
        imap = self.connect_or_fail("1", user)
        if imap is None:
            return
        mech = "XOAUTH2" if self.oauth else "LOGIN"
        try:
            print(f"Host1: {host} says it has CAPABILITY for AUTHENTICATE {mech}")
            if self.oauth:
                answer = imap.authenticate_xoauth2(user, self.password("1"))
            else:
                _untagged, answer = imap.command(b"LOGIN", _quote(user), _quote(self.password("1")))
            login = {"user": user, "ok": _ok(answer), "answer": answer, "security": self.tls("1")[0], "mech": mech}
            self.record["host1"] = login
            if not login["ok"]:
                self.refused("1", host, user, "", mech, answer, 161, "EXIT_AUTHENTICATION_FAILURE_USER1")
                return
            print(f"Host1: success login on [{host}] with user [{user}] auth [{mech}] or [LOGIN]")
            listed, _answer = imap.command(b"LIST", b'""', b'"*"')
            login["folders"] = sorted(_listed_name(line) for line in listed if line.startswith("* LIST "))
            print(f"Host1: found {len(login['folders'])} folders.")
            examined, _answer = imap.command(b"EXAMINE", b"INBOX")
            exists = next((int(line.split()[1]) for line in examined if line.endswith(" EXISTS")), 0)
            login["inbox_messages"] = exists
            print(f"Host1: folder [INBOX] has {exists} messages in total (mentioned by SELECT)")
        finally:
            imap.close()

    def login2(self) -> None:
        host, user, authuser = self.value("--host2"), self.value("--user2"), self.value("--authuser2")
        print(f"Host2: connecting and login on host2 [{host}] port [{self.value('--port2')}] with user [{user}]")
        imap = self.connect_or_fail("2", user)
        if imap is None:
            return
        try:
            print(f"Host2: {host} says it has CAPABILITY for AUTHENTICATE PLAIN")
            answer = imap.authenticate_plain(user, authuser, self.password("2"))
            login = {"user": user, "authuser": authuser, "ok": _ok(answer), "answer": answer, "security": self.tls("2")[0]}
            self.record["host2"] = login
            if not login["ok"]:
                self.refused("2", host, user, authuser, "PLAIN", answer, 162, "EXIT_AUTHENTICATION_FAILURE_USER2")
                return
            print(f"Host2: success login on [{host}] with user [{user}] auth [PLAIN] or [LOGIN]")
        finally:
            imap.close()

    def refused(self, side: str, host: str, user: str, authuser: str, mech: str, answer: str, code: int, name: str) -> None:
        # 05-login-failure-host1.txt, line by line.
        line = f"Host{side} failure: Error login on [{host}] with user [{user}] auth [{mech}]: {answer}"
        print(f"Host{side} info: authmech [{mech}] user [{user}] authuser [{authuser}] IsUnconnected []")
        print(line)
        print(f"Host{side}: failed login on [{host}] with user [{user}] auth [{mech}]")
        self.failures.append((code, name, line))

    # -- the run --------------------------------------------------------------------------------------------
    def run(self) -> int:
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
        self.header()
        if self.mode == "leak":  # a buggy imapsync that prints the passwords it read
            print("Host1: password is " + self.password("1"))
            print("Host2: password [" + self.password("2") + "] for " + self.value("--authuser2"), file=sys.stderr)
        if self.mode == "authfail":
            host, user = self.value("--host1"), self.value("--user1")
            self.refused("1", host, user, "", "LOGIN", "2 NO [AUTHENTICATIONFAILED] Authentication failed.", 161,
                         "EXIT_AUTHENTICATION_FAILURE_USER1")
        elif os.environ.get(ENV_LOGIN) == "1":
            self.login1()
            self.login2()
        if self.failures:
            code, name, _line = self.failures[0]
            comment = f"Check the credentials for {self.value('--user' + name[-1])}." if code > 160 else ""
            self.error_listing([line for _code, _name, line in self.failures], name.replace("EXIT_", "ERR_"), comment)
            return self.exit(code, name, len(self.failures))
        if self.mode in ("sleep", "ignore-term"):
            signal.signal(signal.SIGTERM, self.on_term if self.mode == "sleep" else signal.SIG_IGN)
            self.save()
            print(f"++++ Looping on each one of {self.stats['folders']} folders to sync")
            while True:
                time.sleep(0.1)
        print(f"++++ Looping on each one of {self.stats['folders']} folders to sync")
        if self.dry:
            print("msg INBOX/1 copying to INBOX \t(not really since --dry mode) ")
        else:
            print("msg INBOX/1 {2048}            copied to INBOX/1          180.84 msgs/s  13.323 MiB/s 1.768 MiB copied ")
        if self.mode == "errors":
            errors = [
                "- msg INBOX/2 {2048} could not append ( Subject:[Quota], Date:[\"05-Mar-2026 10:00:00 +0000\"], "
                "Size:[2048], Flags:[] ) to folder INBOX: 5 NO [SERVERBUG] Internal error occurred.",
                "- msg Work/7 {4096} could not append ( Subject:[Work], Date:[\"05-Mar-2026 10:00:01 +0000\"], "
                "Size:[4096], Flags:[\\Seen] ) to folder Work: 9 NO [SERVERBUG] Internal error occurred.",
            ]
            for line in errors:
                print(line)
            print("++++ End looping on each folder")
            self.summary(errors=len(errors))
            self.error_listing(errors, "ERR_APPEND", "Check the messages and the folders on host2.")
            return self.exit(114, "EXIT_ERR_APPEND", len(errors))
        print("++++ End looping on each folder")
        self.summary()
        code = int(os.environ.get(ENV_EXIT, "0"))
        return self.exit(code, EXIT_NAMES.get(code, "EXIT_CATCH_ALL"))

    def on_term(self, signum: int, _frame: object) -> None:
        with open(self.record_path + ".sigterm", "w", encoding="utf-8") as handle:
            json.dump({"signal": signum}, handle)
        print("")
        print("Got a signal TERM (15)")
        self.summary(errors=1)
        sys.exit(self.exit(6, "EXIT_BY_SIGNAL: Exiting by signal", 1))


def _listed_name(line: str) -> str:
    """The folder name of a ``* LIST (flags) "sep" name`` line (quoted or atom)."""
    name = re.sub(r'^\* LIST \([^)]*\) (?:NIL|"(?:[^"\\]|\\.)*") ', "", line)
    if name.startswith('"') and name.endswith('"'):
        name = re.sub(r"\\(.)", r"\1", name[1:-1])
    return name


def main() -> int:
    """Run the fake with this process's arguments and environment; returns its exit status."""
    return Fake(sys.argv).run()


if __name__ == "__main__":
    sys.exit(main())
