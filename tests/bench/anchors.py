"""The anchors the engine is measured against in ``make bench``: Dovecot's own migration path, the measured floor,
and imapsync when one is installed. Reusable for any mailbox (tests/bench/bench.py; other bench scripts may import
this module: it needs only the integration-test harness's :class:`DovecotServer` objects and imapclient).

Every anchor runs as ONE child process measured the same way as the engine's child (:func:`run_measured`): wall time
of the whole process (start-up included), CPU time (user + system, from the child's rusage as returned by
``wait4``) and peak RSS (the child's ``ru_maxrss``). Each returns a report dict::

    {"tool": str, "wall_s": float, "cpu_s": float, "maxrss_kb": int, "mapping": {remote folder: local folder},
     "inner_s": float | None,  # the tool's own timing inside the process, when it has one (floor only)
     "argv": [...]}            # the command, never with a password

``mapping`` names, for every selectable remote folder, the local folder the tool copies it to (decoded names, as
``harness.mail.snapshot`` lists them), so that the caller verifies every tool's result the same way: every
message's bytes, flags and INTERNALDATE (bench.py ``verify``).

Public functions:

- :func:`dsync`: Dovecot's native migration path, dsync over the imapc driver: ``doveadm backup -R -u LOCAL_USER
  imapc:`` run against the LOCAL server's configuration plus the ``imapc_*`` settings below, written to a 0600
  file that ``!include``\\s the server's own (passwords never on a command line). Running it again on the same
  local user is dsync's incremental mode (it compares both sides and copies what is missing).
- :func:`floor`: the measured floor "fetch all bodies || append all": one thread FETCHes every message's
  ``BODY.PEEK[]`` (+ FLAGS, INTERNALDATE) of a folder with ``UID FETCH 1:*`` and a minimal raw reader, while
  another streams them into one MULTIAPPEND per folder (LITERAL+), every command pipelined (an answer is read only
  once the next command is sent). STARTTLS verified against the server's CA on both sides, AUTHENTICATE PLAIN
  (SASL-IR), the master-user login on the local side, TCP_NODELAY; no state, no identity, no checks beyond the
  tagged OKs, no size pre-pass, an unbounded queue between the threads (so its peak RSS is no target): a lower
  bound on what any IMAP-to-IMAP copy of the same mailbox can take. Its result is verified like every tool's.
- :func:`imapsync`: imapsync (when :func:`imapsync_binary` finds one on PATH) with the command line the engine
  renders for ``engine: imapsync`` (plugins/module_utils/_engine/imapsync_cmd.py ``render``: NethServer 8's flags
  ``--noauthmd5 --allowsizemismatch --skipsize --fastio1 --fastio2`` and the rest), passwords in 0600 files.
- :func:`run_measured`: run a command as a child and measure it (wall, CPU, peak RSS), through launcher.py.
- :func:`name_mapping`: remote folder -> local folder by separator translation (what dsync and the floor do).

dsync's settings (docs: Dovecot's "Migration with dsync" / imapc pages; ``doveadm-backup(1)``), chosen to give it
the same advantages as the engine:

- ``imapc_ssl = starttls``, ``imapc_ssl_verify = yes``, ``ssl_client_ca_file = <remote CA>``: the engine's remote
  security (STARTTLS, certificate verified against the harness CA);
- ``imapc_features = rfc822.size fetch-headers modseq``: the first two are what Dovecot's migration documentation
  recommends (sizes from RFC822.SIZE instead of reading bodies; header fetches instead of whole messages where dsync
  needs headers: its message identity over imapc is a hash of headers); ``modseq`` (Dovecot's imapc documentation:
  access MODSEQ and HIGHESTMODSEQ; on by default from Dovecot 2.4) lets a re-run skip unchanged folders: measured
  here (tmpfs, medians of 3), no-change 0.27 s with it vs 0.34 s without, the first run unchanged;
- ``mail_prefetch_count = 20``: imapc reads this many messages ahead without waiting for each (the documentation's
  migration example; its description says 10..100 suits imapc), the counterpart of the engine's fetch thread;
  measured here: first run 2.89 s with 0, 1.84 s with 20, 1.96 s with 100 (and 11 MiB more RSS);
- ``mail_fsync``: NOT overridden (the migration examples pass ``-o mail_fsync=never``): dsync writes the local
  store itself, with the local server's setting, the same one the engine's APPENDs get through the server;
- the remote user's own login (``imapc_user``/``imapc_password``), like the engine; no ``imapc_master_user``.

dsync translates the hierarchy separator itself (remote ``/``, local ``.``); it does not map special-use folders
(``Sent Items`` stays ``Sent Items``), so :func:`name_mapping` gives its folders.
"""

from __future__ import annotations

import base64
import collections
import json
import os
import queue
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import typing as t
from pathlib import Path

CHILD_TIMEOUT_S = 600.0
DSYNC_PREFETCH = 20
DSYNC_FEATURES = "rfc822.size fetch-headers modseq"
# One MULTIAPPEND per folder: measured here the fastest (medians of 3, disk / tmpfs: 2.58 / 1.75 s, against 2.60 / 1.77
# with 4 MiB batches, 2.69 / 1.82 with 1 MiB, 2.94 / 1.89 with 256 KiB), so the floor stays the lowest.
FLOOR_BATCH_BYTES = sys.maxsize


# ---------------------------------------------------------------------- measuring a child process


def run_measured(argv: list[str], workdir: Path, label: str, *, env: dict[str, str] | None = None,
                 timeout: float = CHILD_TIMEOUT_S) -> dict[str, t.Any]:
    """Run *argv* as a child measured by a small launcher (launcher.py): ``{"wall_s", "cpu_s",
    "maxrss_kb", "returncode", "stdout", "stderr"}``: wall time from fork to exit, the child's user + system CPU and
    its ``ru_maxrss`` from ``wait4`` (its reaped children's included). Why a launcher: Linux carries a process's
    peak RSS across ``exec``, so a child forked straight from this (large) process would report this process's size
    as its own peak; forked from the launcher, it starts from the launcher's few MiB. Output goes to files in
    *workdir* (no pipe to drain while timing)."""
    out_path, err_path, report_path = (workdir / f"{label}.{suffix}" for suffix in ("stdout", "stderr", "rusage"))
    launcher = [sys.executable, "-I", "-S", str(Path(os.path.abspath(__file__)).parent / "launcher.py"), str(report_path),
                str(int(timeout)), "--"]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        subprocess.run(launcher + argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, check=False,
                       timeout=timeout + 60)
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
        report_path.unlink()
    except (OSError, ValueError) as exc:
        raise AnchorFailure(f"{label}: the launcher did not report ({exc}): {err_path.read_text(errors='replace')[-2000:]}") from None
    report["stdout"] = out_path.read_text(encoding="utf-8", errors="replace")
    report["stderr"] = err_path.read_text(encoding="utf-8", errors="replace")
    out_path.unlink()
    err_path.unlink()
    return report


class AnchorFailure(Exception):
    """An anchor could not run (its command failed)."""


def _failed(what: str, run: dict[str, t.Any]) -> AnchorFailure:
    return AnchorFailure(f"{what} failed (exit {run['returncode']}):\n{run['stdout'][-2000:]}\n{run['stderr'][-3000:]}")


# ---------------------------------------------------------------------- folder names


def local_name(remote_name: str, remote_sep: str, local_sep: str) -> str:
    """The local name of a remote folder by separator translation (a local separator inside a level becomes ``_``)."""
    if remote_name.upper() == "INBOX":
        return "INBOX"
    return local_sep.join(part.replace(local_sep, "_") for part in remote_name.split(remote_sep))


def name_mapping(remote_folders: t.Iterable[str], remote_sep: str, local_sep: str) -> dict[str, str]:
    """remote folder -> local folder by :func:`local_name`, for every given (selectable) remote folder."""
    return {name: local_name(name, remote_sep, local_sep) for name in remote_folders}


def _selectable(server: t.Any, user: str, password: str | None, master: bool = False) -> list[str]:
    from harness import mail  # the integration-test harness (tests/integration on sys.path)

    return [name for name, info in mail.folders(server, user, password, master=master).items()
            if info.exists and not {"\\noselect", "\\nonexistent"} & {f.lower() for f in info.flags}]


# ---------------------------------------------------------------------- dsync over imapc


def _conf_quote(value: str | os.PathLike[str]) -> str:
    text = str(value)
    if "\n" in text or "\r" in text:
        raise ValueError("a dovecot.conf value cannot contain a line break")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dsync_config(remote: t.Any, local: t.Any, remote_user: str, workdir: Path) -> Path:
    """Write the 0600 configuration dsync runs with: the local server's own plus the imapc settings (module doc)."""
    path = workdir / f"dsync-{remote_user}.conf"
    text = "\n".join([
        "# tests/bench/anchors.py: the local server's configuration plus Dovecot's imapc migration settings.",
        f"!include {local.config_path}",
        f"imapc_host = {remote.host}",
        f"imapc_port = {remote.port}",
        f"imapc_user = {_conf_quote(remote_user)}",
        f"imapc_password = {_conf_quote(remote.users[remote_user])}",
        "imapc_ssl = starttls",
        "imapc_ssl_verify = yes",
        f"ssl_client_ca_file = {remote.cert_path}",
        f"imapc_features = {DSYNC_FEATURES}",
        f"mail_prefetch_count = {DSYNC_PREFETCH}",
        "",
    ])
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def doveadm_binary() -> str:
    from harness.dovecot import find_doveadm

    binary = find_doveadm()
    if binary is None:
        raise AnchorFailure("doveadm was not found (it ships with dovecot-core); dsync cannot run")
    return binary


def dsync(remote: t.Any, local: t.Any, remote_user: str, local_user: str, workdir: Path,
          label: str = "dsync") -> dict[str, t.Any]:
    """``doveadm backup -R -u LOCAL_USER imapc:``: copy *remote_user*'s mailbox into *local_user* (again: dsync's
    incremental run). The report of the module doc; raises :class:`AnchorFailure` when doveadm fails."""
    conf = dsync_config(remote, local, remote_user, workdir)
    argv = [doveadm_binary(), "-c", str(conf), "backup", "-R", "-u", local_user, "imapc:"]
    run = run_measured(argv, workdir, label)
    if run["returncode"] != 0:
        raise _failed(f"dsync (doveadm backup -R -u {local_user} imapc:)", run)
    mapping = name_mapping(_selectable(remote, remote_user, remote.users[remote_user]), remote.separator, local.separator)
    return {"tool": "dsync", "wall_s": run["wall_s"], "cpu_s": run["cpu_s"], "maxrss_kb": run["maxrss_kb"],
            "inner_s": None, "mapping": mapping, "argv": argv}


# ---------------------------------------------------------------------- the floor (fetch all || append all)


def floor(remote: t.Any, local: t.Any, remote_user: str, local_user: str, workdir: Path,
          label: str = "floor") -> dict[str, t.Any]:
    """The measured floor (module doc), in a child process (this file run as a script). Report of the module doc,
    ``inner_s`` being the copy's own time (logins included, interpreter start excluded)."""
    spec = {
        "remote": {"host": remote.host, "port": remote.port, "ca_file": str(remote.cert_path),
                   "authcid": remote_user, "authzid": "", "password": remote.users[remote_user]},
        "local": {"host": local.host, "port": local.port, "ca_file": str(local.cert_path),
                  "authcid": local.master_user, "authzid": local_user, "password": local.master_password},
    }
    spec_path = workdir / f"{label}.json"
    fd = os.open(spec_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(spec, handle)
    argv = [sys.executable, os.path.abspath(__file__), "floor", str(spec_path)]
    try:
        run = run_measured(argv, workdir, label)
    finally:
        spec_path.unlink()
    report = None
    for line in run["stdout"].splitlines():
        if line.startswith("FLOOR_JSON "):
            report = json.loads(line[len("FLOOR_JSON "):])
    if run["returncode"] != 0 or report is None:
        raise _failed("the floor (fetch all || append all)", run)
    return {"tool": "floor", "wall_s": run["wall_s"], "cpu_s": run["cpu_s"], "maxrss_kb": run["maxrss_kb"],
            "inner_s": report["elapsed_s"], "mapping": report["mapping"], "copied": report["copied"],
            "bytes": report["bytes"], "argv": argv[:3] + ["SPEC.json"]}


class _Raw:
    """A minimal IMAP connection: STARTTLS (verified), AUTHENTICATE PLAIN with SASL-IR, line/literal reads."""

    def __init__(self, side: dict[str, t.Any]) -> None:
        sock = socket.create_connection((side["host"], side["port"]), timeout=120)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.tag = 0
        self.reader = sock.makefile("rb")
        self.sock: socket.socket = sock
        self.reader.readline()  # greeting
        self.command(b"STARTTLS")
        context = ssl.create_default_context(cafile=side["ca_file"])
        self.sock = context.wrap_socket(sock, server_hostname=side["host"])
        self.reader = self.sock.makefile("rb", buffering=1 << 16)
        sasl = f"{side['authzid']}\0{side['authcid']}\0{side['password']}".encode()
        self.command(b"AUTHENTICATE PLAIN " + base64.b64encode(sasl))

    def send_tagged(self, text: bytes) -> bytes:
        self.tag += 1
        tag = b"a%d" % self.tag
        self.sock.sendall(tag + b" " + text + b"\r\n")
        return tag

    def finish(self, tag: bytes, ok_codes: tuple[bytes, ...] = ()) -> list[bytes]:
        """Untagged lines until *tag*'s completion; raises unless OK (or NO with one of *ok_codes*)."""
        lines = []
        while True:
            line = self.reader.readline()
            if not line:
                raise ConnectionError("the server closed the connection")
            if line.startswith(tag + b" "):
                word = line[len(tag) + 1:]
                if word.startswith(b"OK") or any(code in word for code in ok_codes):
                    return lines
                raise RuntimeError(f"{line!r}")
            lines.append(line)

    def command(self, text: bytes, ok_codes: tuple[bytes, ...] = ()) -> list[bytes]:
        return self.finish(self.send_tagged(text), ok_codes)


_LIST_RE = re.compile(rb'^\* LIST \(([^)]*)\) (?:NIL|"((?:[^"\\]|\\.)*)") (.*)\r\n$')
_FLAGS_RE = re.compile(rb"FLAGS \(([^)]*)\)")
_DATE_RE = re.compile(rb'INTERNALDATE ("[^"]*")')


def _astring(raw: bytes) -> bytes:
    if raw.startswith(b'"'):
        return re.sub(rb"\\(.)", rb"\1", raw[1:-1])
    return raw


def _quoted(name: bytes) -> bytes:
    return b'"' + name.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def _separator(conn: _Raw) -> bytes:
    for line in conn.command(b'LIST "" ""'):
        match = _LIST_RE.match(line)
        if match and match.group(2):
            return _astring(b'"' + match.group(2) + b'"')
    return b"/"


def _floor_run(spec: dict[str, t.Any]) -> dict[str, t.Any]:
    from imapclient import imap_utf7

    started = time.perf_counter()
    src, dst = _Raw(spec["remote"]), _Raw(spec["local"])
    rsep, lsep = _separator(src), _separator(dst)
    folders = []
    for line in src.command(b'LIST "" "*"'):
        match = _LIST_RE.match(line)
        if match and not {b"\\noselect", b"\\nonexistent"} & set(match.group(1).lower().split()):
            folders.append(_astring(match.group(3)))
    work: queue.SimpleQueue[tuple[bytes, bytes, bytes] | bytes | None] = queue.SimpleQueue()
    totals = {"copied": 0, "bytes": 0}
    errors: list[BaseException] = []

    def append_all() -> None:
        """Stream the queue into MULTIAPPENDs of at most about FLOOR_BATCH_BYTES, pipelined one command deep: the
        answer to a command is read only once the next one is sent (the same thread: one TLS object is never read
        and written at once)."""
        tag = None
        weight = 0
        pending: collections.deque[bytes] = collections.deque()

        def sent(done: bytes) -> None:
            pending.append(done)
            while len(pending) > 1:
                dst.finish(pending.popleft(), ok_codes=(b"[ALREADYEXISTS]",))

        try:
            while True:
                item = work.get()
                if item is None or isinstance(item, bytes) or (tag is not None and weight >= FLOOR_BATCH_BYTES):
                    if tag is not None:  # end the open APPEND
                        dst.sock.sendall(b"\r\n")
                        sent(tag)
                        tag = None
                if item is None:
                    while pending:
                        dst.finish(pending.popleft(), ok_codes=(b"[ALREADYEXISTS]",))
                    return
                if isinstance(item, bytes):  # a new folder
                    if item != b"INBOX":
                        sent(dst.send_tagged(b"CREATE " + _quoted(item)))
                    target = item
                    continue
                flags, date, body = item
                head = b" (" + flags + b") " + date + b" {%d+}\r\n" % len(body)
                if tag is None:
                    tag = dst.send_tagged(b"APPEND " + _quoted(target) + head[:-2])
                    weight = 0
                    dst.sock.sendall(body)
                elif len(body) < 65536:
                    dst.sock.sendall(head + body)  # one write: a small message is cheaper to copy than to send twice
                else:
                    dst.sock.sendall(head)
                    dst.sock.sendall(body)
                weight += len(body)
                totals["copied"] += 1
                totals["bytes"] += len(body)
        except BaseException as exc:  # pylint: disable=broad-exception-caught
            errors.append(exc)

    appender = threading.Thread(target=append_all, name="floor-append")
    appender.start()
    mapping = {}
    try:
        for name in folders:
            target = b"INBOX" if name.upper() == b"INBOX" else lsep.join(
                part.replace(lsep, b"_") for part in name.split(rsep))
            mapping[imap_utf7.decode(name)] = imap_utf7.decode(target)
            work.put(target)
            src.command(b"EXAMINE " + _quoted(name))
            tag = src.send_tagged(b"UID FETCH 1:* (FLAGS INTERNALDATE BODY.PEEK[])")
            reader = src.reader
            while True:
                line = reader.readline()
                if line.startswith(tag + b" "):
                    if not line[len(tag) + 1:].startswith(b"OK"):
                        raise RuntimeError(f"{line!r}")
                    break
                if not line.endswith(b"}\r\n") or b" FETCH " not in line:
                    continue
                body = reader.read(int(line[line.rindex(b"{") + 1:-3]))
                reader.readline()  # ")"
                flags = _FLAGS_RE.search(line)
                date = _DATE_RE.search(line)
                if flags is None or date is None:
                    raise RuntimeError(f"unexpected FETCH response {line[:200]!r}")
                kept = b" ".join(f for f in flags.group(1).split() if f.lower() != b"\\recent")
                work.put((kept, date.group(1), body))
            if errors:
                break
    finally:
        work.put(None)
        appender.join()
    if errors:
        raise errors[0]
    elapsed = time.perf_counter() - started
    for conn in (src, dst):
        conn.command(b"LOGOUT")
    return {"elapsed_s": elapsed, "mapping": mapping, **totals}


# ---------------------------------------------------------------------- imapsync


def imapsync_binary() -> str | None:
    """The imapsync on PATH, or None (Debian 12 packages none: the bench then says so)."""
    return shutil.which("imapsync")


def imapsync(remote: t.Any, local: t.Any, remote_user: str, local_user: str, workdir: Path,
             label: str = "imapsync") -> dict[str, t.Any]:
    """imapsync with the engine's ``engine: imapsync`` command line (module doc). Its folders: separator translation,
    and ``--automap`` maps a remote special-use folder to the local folder of the same special use."""
    # pylint: disable-next=import-outside-toplevel
    from ansible_collections.mailops.imap.plugins.module_utils._engine import config, imapsync_cmd
    from harness import mail

    binary = imapsync_binary()
    if binary is None:
        raise AnchorFailure("imapsync is not on PATH")
    task = config.parse_task({
        "name": "bench", "local_user": local_user, "remote_user": remote_user,
        "remote_password": remote.users[remote_user], "remote_host": remote.host, "remote_port": remote.port,
        "remote_security": "starttls", "ca_file": str(remote.cert_path), "folders": "all",
    })
    target = config.parse_target({
        "host": local.host, "port": local.port, "security": "starttls", "ca_file": str(local.cert_path),
        "master_user": local.master_user, "master_password": local.master_password,
        "master_separator": local.master_separator,
    })
    passfiles = []
    for name, secret in (("1", remote.users[remote_user]), ("2", local.master_password)):
        path = workdir / f"{label}.pass{name}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secret + "\n")
        passfiles.append(str(path))
    argv = imapsync_cmd.render(task, target, passfiles[0], passfiles[1])
    argv[0] = binary
    try:
        run = run_measured(argv, workdir, label)
    finally:
        for path in passfiles:
            os.unlink(path)
    if run["returncode"] != 0:
        raise _failed("imapsync", run)
    remote_info = mail.folders(remote, remote_user, remote.users[remote_user])
    local_info = mail.folders(local, local_user, master=True)
    special = {}
    for name, info in local_info.items():
        for flag in info.flags:
            if flag.lower() in ("\\sent", "\\junk", "\\drafts", "\\trash", "\\archive", "\\all", "\\flagged"):
                special[flag.lower()] = name
    mapping = name_mapping(_selectable(remote, remote_user, remote.users[remote_user]), remote.separator, local.separator)
    for name in mapping:
        for flag in remote_info[name].flags:
            if flag.lower() in special:
                mapping[name] = special[flag.lower()]
    return {"tool": "imapsync", "wall_s": run["wall_s"], "cpu_s": run["cpu_s"], "maxrss_kb": run["maxrss_kb"],
            "inner_s": None, "mapping": mapping, "argv": [binary, "..."]}


def _main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] != "floor":
        print("usage: anchors.py floor SPEC.json", file=sys.stderr)
        return 2
    with open(sys.argv[2], encoding="utf-8") as handle:
        spec = json.load(handle)
    print("FLOOR_JSON " + json.dumps(_floor_run(spec)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
