"""Performance benchmark of the mailops.imap sync engine against its anchors (``make bench``).

Starts two throwaway Dovecot servers (the integration-test harness), seeds a remote account of 2,051
messages / 114 MB in 17 folders (13 with mail; mostly a few KB, about one in ten of 100-800 KB, one of
12 MB; see corpus.py) and one twice as large (every folder doubled, the same 12 MB message), then runs each
tool on the same servers, in four scenarios:

- ``first``: a first run into a fresh local user;
- ``no-change``: the same tool again on that user, nothing new on the remote;
- ``+1%``: again after 1 % new mail (21 messages over 9 folders; removed from the remote after the round);
- ``2x``: a first run of the doubled account into a fresh local user (memory flatness, throughput).

Tools (tests/bench/anchors.py holds the anchors; it is reusable for other mailboxes):

- ``engine``: the builtin engine (runner.py runs ``sync.run`` in a child process);
- ``dsync``: Dovecot's own migration path, ``doveadm backup -R -u LOCAL imapc:`` (always: it ships with Dovecot;
  its settings and why: anchors.py); its re-runs are its incremental mode;
- ``floor``: the measured floor, fetch all bodies || append all (first and 2x only: it has no state);
- ``baseline``: the naive imapclient copier (baseline.py; first run only: it has no state);
- ``imapsync``: when an imapsync is on PATH, with the engine's ``engine: imapsync`` command line (NethServer 8's
  flags); otherwise the output says it was not found.

Every run of every tool is verified the same way: every local folder equals the remote folder it maps to
(every message's bytes, flags and INTERNALDATE; empty folders too). imapsync's ``--addheader`` changes the
copies of messages without a Message-ID: those (and only those) may differ in their bytes.

Each run is one child process measured the same way (anchors.run_measured): wall time of the whole process
(start-up, imports and logins included: "process s"), CPU time (user + system, the child's rusage) and peak
RSS (ru_maxrss). The engine's and the floor's own timing inside the process is shown too ("inner s").
Rounds (``--repeat``, default 3) are interleaved: each scenario runs every tool once per round, in an order
rotated from round to round, and the table reports medians (peak RSS: the largest).

Variants (``--variants``, default ``disk,tmpfs``): ``disk`` keeps the mail stores in TMPDIR with Dovecot's
DEFAULT ``mail_fsync`` (optimized), as a production server runs: the issue's primary target; ``tmpfs`` keeps
them in /dev/shm with ``mail_fsync = never`` (the harness's default), where the disk's writeback does not blur
the tools' own cost. The engine's state database stays in TMPDIR (disk) either way.

Prints one table (tool x scenario: process wall, inner wall, CPU, peak RSS, ratio to dsync and to the floor),
PASS/MISS lines for the issue's targets on this mailbox and one ``BENCH_JSON {...}`` line. Speed and memory
targets are informational: the exit status is 0 unless a copy is wrong (or the bench cannot run), then 1.

Options: ``--tools`` (default every available one), ``--variants``, ``--repeat``, ``--no-double`` (skip the 2x
scenario), ``--profile`` (or BENCH_PROFILE=1: adds an engine first run and a +1 % re-run under cProfile, every
thread, and prints their hot spots). Environment: MAILOPS_IMAP_COLLECTIONS_PATH, a directory holding
ansible_collections/mailops/imap, when the script is not run from such a layout (``make bench`` runs it from
build/ with PYTHONPATH set).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
import typing as t
from pathlib import Path

HERE = Path(os.path.abspath(__file__)).parent  # not resolved: keep the ansible_collections layout
COLLECTION_ROOT = HERE.parent.parent
ENGINE_PKG = ("ansible_collections", "mailops", "imap", "plugins", "module_utils", "_engine")

# The issue's targets for this mailbox (issue 11 "Targets"), and the older ones kept beside them.
TARGET_FIRST_VS_DSYNC = 1.0
TARGET_FIRST_VS_FLOOR = 1.3
TARGET_NOCHANGE_VS_DSYNC = 1.0
TARGET_INCR_FACTOR = 1.5  # +1 % proportional: t(+1%) - t(no-change) <= 1.5 x share x t(first), share = new / all messages
TARGET_FIRST_VS_BASELINE = 1.0
TARGET_PEAK_RSS_MIB = 64.0
TARGET_FLAT_GROWTH = 0.10  # peak RSS may grow by at most 10 % when the mailbox doubles
TMPFS_NEEDED = 3 << 30  # bytes free on /dev/shm for the tmpfs variant (each round's local copies are removed after it)

TOOLS = ("engine", "dsync", "floor", "baseline", "imapsync")
SCENARIOS = ("first", "no-change", "+1%", "2x")
CAN = {"engine": SCENARIOS, "dsync": SCENARIOS, "imapsync": SCENARIOS, "floor": ("first", "2x"), "baseline": ("first",)}
VARIANTS = {
    "disk": ("disk ({tmp}), Dovecot's default mail_fsync (optimized)", None, None),
    "tmpfs": ("tmpfs (/dev/shm), mail_fsync = never", "/dev/shm", "never"),
}

# 1 % new mail for the incremental re-run: 21 messages spread over 9 folders.
NEW_MAIL = (("INBOX", 6), ("Sent Items", 3), ("Archive/2024", 2), ("Projects/Alpha", 2), ("Projects/Beta", 1),
            ("Lists/dovecot", 3), ("Lists/python-dev", 2), ("Receipts", 1), ("Drafts", 1))


def _has_engine(path: str) -> bool:
    return os.path.isfile(os.path.join(path, *ENGINE_PKG, "sync.py"))


def collections_path() -> str:
    """The directory that holds ansible_collections/mailops/imap (put first on sys.path and the child's PYTHONPATH)."""
    candidates = []
    if os.environ.get("MAILOPS_IMAP_COLLECTIONS_PATH"):
        candidates.append(os.environ["MAILOPS_IMAP_COLLECTIONS_PATH"])
    if COLLECTION_ROOT.parent.name == "mailops" and COLLECTION_ROOT.parent.parent.name == "ansible_collections":
        candidates.append(str(COLLECTION_ROOT.parent.parent.parent))
    candidates += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    for candidate in candidates:
        if _has_engine(candidate):
            return os.path.abspath(candidate)
    raise SystemExit(
        "bench: cannot find the collection as ansible_collections/mailops/imap; run `make bench`, or set "
        "MAILOPS_IMAP_COLLECTIONS_PATH (or PYTHONPATH) to a directory that holds ansible_collections/mailops/imap."
    )


def precompile(path: str) -> None:
    """Compile the engine's modules to bytecode, as the role does when it installs them on a host
    (roles/imapsync/handlers/main.yml, compileall): the measured engine starts like an installed one, whatever
    PYTHONDONTWRITEBYTECODE says (without bytecode, every start compiles about 6,000 lines: ~0.1 s)."""
    import compileall

    compileall.compile_dir(os.path.join(path, *ENGINE_PKG[:-1]), quiet=1)


COLLECTIONS = collections_path()
precompile(COLLECTIONS)
sys.path.insert(0, COLLECTIONS)
sys.path.insert(0, str(COLLECTION_ROOT / "tests" / "integration"))  # the harness package
sys.path.insert(0, str(HERE))

# pylint: disable=wrong-import-position
import anchors  # noqa: E402
import corpus  # noqa: E402
from harness import mail  # noqa: E402
from harness.dovecot import DovecotServer, find_dovecot  # noqa: E402


def _without_debug_copy(connect: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
    """harness.mail's connections with imaplib's debug copy off (as the engine turns it off: _engine/imap.py
    ``Connection._connect``): the checks read every body of every run, and the copy doubles their cost."""
    def quiet(*args: t.Any, **kwargs: t.Any) -> t.Any:
        client = connect(*args, **kwargs)
        client._imap.debug = 0  # pylint: disable=protected-access
        return client
    return quiet


mail.connect = _without_debug_copy(mail.connect)  # the bench's own checks only: this process, not the measured children


class BenchFailure(Exception):
    """The benchmark measured a wrong result or could not run."""


def log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


# ---------------------------------------------------------------------- child runs


def run_child(spec: dict[str, t.Any], workdir: Path, label: str) -> dict[str, t.Any]:
    """Run runner.py with *spec*, measured like every anchor (anchors.run_measured); return its report plus
    ``wall_s``/``cpu_s``/``maxrss_kb`` of the whole child process."""
    spec_path = workdir / f"{label}.json"
    fd = os.open(spec_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(spec, handle)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([COLLECTIONS] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    try:
        proc = anchors.run_measured([sys.executable, str(HERE / "runner.py"), str(spec_path)], workdir, label, env=env)
    finally:
        spec_path.unlink()
    report = None
    for line in proc["stdout"].splitlines():
        if line.startswith("RUNNER_JSON "):
            report = json.loads(line[len("RUNNER_JSON "):])
    if proc["returncode"] != 0 or report is None:
        raise BenchFailure(f"{label}: the child process failed (exit {proc['returncode']})\n{proc['stdout'][-3000:]}\n"
                           f"{proc['stderr'][-5000:]}")
    report.update(wall_s=proc["wall_s"], cpu_s=proc["cpu_s"], maxrss_kb=proc["maxrss_kb"], inner_s=report["elapsed_s"])
    return report


def engine_spec(remote: DovecotServer, local: DovecotServer, remote_user: str, local_user: str, state_path: Path,
                profile: str | None = None) -> dict[str, t.Any]:
    return {
        "mode": "engine",
        "task": {
            "name": "bench", "local_user": local_user, "remote_user": remote_user,
            "remote_password": remote.users[remote_user], "remote_host": remote.host, "remote_port": remote.port,
            "remote_security": "starttls", "ca_file": str(remote.cert_path), "folders": "all",
        },
        "target": {
            "host": local.host, "port": local.port, "security": "starttls", "ca_file": str(local.cert_path),
            "master_user": local.master_user, "master_password": local.master_password,
            "master_separator": local.master_separator,
        },
        "state_path": str(state_path),
        "profile": profile,
    }


def baseline_spec(remote: DovecotServer, local: DovecotServer, remote_user: str, local_user: str) -> dict[str, t.Any]:
    return {
        "mode": "baseline",
        "remote": {"host": remote.host, "port": remote.port, "security": "starttls", "ca_file": str(remote.cert_path),
                   "user": remote_user, "password": remote.users[remote_user]},
        "local": {"host": local.host, "port": local.port, "security": "starttls", "ca_file": str(local.cert_path),
                  "master_user": local.master_user, "master_password": local.master_password, "user": local_user},
    }


def check_result(report: dict[str, t.Any], what: str, copied: int | None, size: int | None) -> None:
    result = report["result"]
    totals = result["totals"]
    if result["status"] != "success" or result["errors"]:
        raise BenchFailure(f"{what}: status {result['status']}, errors {json.dumps(result['errors'])[:2000]}")
    if copied is not None and totals["copied"] != copied:
        raise BenchFailure(f"{what}: copied {totals['copied']} messages, expected {copied}")
    if size is not None and totals["bytes"] != size:
        raise BenchFailure(f"{what}: copied {totals['bytes']} bytes, expected {size}")


# ---------------------------------------------------------------------- seeding and checking


_MESSAGE_ID_RE = re.compile(rb"(?im)^message-id:")


def _without_message_id(body: bytes) -> bool:
    return _MESSAGE_ID_RE.search(body.split(b"\r\n\r\n", 1)[0]) is None


class Account:
    """A seeded remote account: its user, size, snapshot and the hashes of its messages without a Message-ID."""

    def __init__(self, remote: DovecotServer, user: str, seed: str, factor: int = 1) -> None:
        self.user = user
        self.messages = self.bytes = 0
        self.no_message_id: set[str] = set()
        for folder, number in corpus.FOLDERS:
            items = list(corpus.messages(folder, number * factor, seed=seed))
            if folder == "INBOX":
                items.insert(len(items) // 2, corpus.big_message(seed))
            self.seed(remote, folder, items)
        self.snapshot = mail.snapshot(remote, user, remote.users[user])

    def seed(self, remote: DovecotServer, folder: str, items: list[t.Any]) -> list[int]:
        self.messages += len(items)
        self.bytes += sum(len(item[0]) for item in items)
        self.no_message_id |= {hashlib.sha256(item[0]).hexdigest() for item in items if _without_message_id(item[0])}
        return mail.seed(remote, self.user, remote.users[self.user], folder, items)


def add_new_mail(remote: DovecotServer, account: Account, seed: str) -> dict[str, t.Any]:
    """Seed 1 % new mail (NEW_MAIL); returns {"messages", "bytes", "uids": {folder: [uid]}, "snapshot"} (the
    account's snapshot with the new mail)."""
    before = (account.messages, account.bytes)
    uids = {}
    for folder, number in NEW_MAIL:
        uids[folder] = account.seed(remote, folder, list(corpus.messages(folder, number, seed=seed, start=100000)))
    new = {"messages": account.messages - before[0], "bytes": account.bytes - before[1], "uids": uids,
           "snapshot": mail.snapshot(remote, account.user, remote.users[account.user])}
    account.messages, account.bytes = before
    return new


def remove_new_mail(remote: DovecotServer, account: Account, new: dict[str, t.Any]) -> None:
    """Expunge exactly the new mail again (UID EXPUNGE: the corpus's own \\Deleted messages stay), so that every
    round's first runs copy the same mailbox; fails unless the account is back to its snapshot's message count."""
    with mail.session(remote, account.user, remote.users[account.user]) as client:
        for folder, uids in new["uids"].items():
            client.select_folder(folder)
            client.add_flags(uids, [b"\\Deleted"], silent=True)
            client.uid_expunge(uids)
        count = sum(client.folder_status(name, [b"MESSAGES"])[b"MESSAGES"] for name in account.snapshot)
    if count != sum(len(records) for records in account.snapshot.values()):
        raise BenchFailure(f"removing the +1% mail left {count} messages in {account.user}, not the seeded ones")


def _describe(records: list[t.Any]) -> str:
    return ", ".join(f"{r.sha256[:12]} {sorted(r.flags)} {r.internaldate} {r.size}B" for r in records[:3]) + (" ..." if len(records) > 3 else "")


def _excuse(missing: list[t.Any], extra: list[t.Any], tolerate: set[str]) -> tuple[list[t.Any], list[t.Any]]:
    """Pair each missing record whose hash is in *tolerate* with an extra local record of the same flags and
    INTERNALDATE (a copy whose bytes the tool changed on purpose); returns what stays unpaired."""
    extra = list(extra)
    left = []
    for record in missing:
        twin = next((e for e in extra if e.flags == record.flags and e.internaldate == record.internaldate), None)
        if record.sha256 in tolerate and twin is not None:
            extra.remove(twin)
        else:
            left.append(record)
    return left, extra


def compare(remote_snap: dict[str, list[t.Any]], local_snap: dict[str, list[t.Any]], mapping: dict[str, str],
            tolerate: set[str] | None = None) -> list[str]:
    """Differences between each remote folder and the local folder it maps to (empty list: identical). Remote
    records whose sha256 is in *tolerate* may have a local copy with other bytes (same flags and INTERNALDATE)."""
    problems = []
    for folder in sorted(set(remote_snap) - set(mapping)):
        problems.append(f"remote folder {folder!r} was not synced (not in the tool's folder mapping)")
    for rname, lname in sorted(mapping.items()):
        want = remote_snap.get(rname)
        have = local_snap.get(lname)
        if want is None:
            problems.append(f"the tool reports remote folder {rname!r}, which the snapshot does not list")
            continue
        if have is None:
            problems.append(f"local folder {lname!r} (for remote {rname!r}) does not exist")
            continue
        if want == have:
            continue
        missing = list((collections.Counter(want) - collections.Counter(have)).elements())
        extra = list((collections.Counter(have) - collections.Counter(want)).elements())
        if tolerate:
            missing, extra = _excuse(missing, extra, tolerate)
            if not missing and not extra:
                continue
        problems.append(
            f"{rname!r} -> {lname!r}: remote {len(want)} messages, local {len(have)}; "
            f"{len(missing)} remote records without an identical local copy [{_describe(missing)}]; "
            f"{len(extra)} local records without a remote original [{_describe(extra)}]"
        )
    for lname in sorted(set(local_snap) - set(mapping.values())):
        if local_snap[lname]:
            problems.append(f"local folder {lname!r} holds {len(local_snap[lname])} messages but no remote folder maps to it")
    return problems


def verify(remote_snap: dict[str, list[t.Any]], local: DovecotServer, local_user: str, mapping: dict[str, str],
           what: str, tolerate: set[str] | None = None) -> None:
    """Fail loudly unless the local account equals the remote snapshot folder by folder (bytes, flags, INTERNALDATE)."""
    local_snap = mail.snapshot(local, local_user, master=True)
    problems = compare(remote_snap, local_snap, mapping, tolerate)
    if problems:
        raise BenchFailure(f"CORRECTNESS FAILURE after {what}:\n  " + "\n  ".join(problems))


# ---------------------------------------------------------------------- one variant


class Variant:
    """Both servers of one variant (mail stores on disk or tmpfs), the seeded accounts, and every measured run."""

    def __init__(self, name: str, args: argparse.Namespace, workdir: Path, stack: contextlib.ExitStack) -> None:
        self.name = name
        self.args = args
        self.workdir = workdir / name
        self.workdir.mkdir()
        self.state_dir = self.workdir / "state"  # TMPDIR: on disk in both variants
        self.state_dir.mkdir()
        title, mail_dir, fsync = VARIANTS[name]
        self.title = title.format(tmp=tempfile.gettempdir())
        saved_tempdir = tempfile.tempdir
        tempfile.tempdir = mail_dir or saved_tempdir  # where DovecotServer makes its directory (mkdtemp)
        try:
            self.remote = stack.enter_context(DovecotServer("remote", mail_fsync=fsync))
            self.local = stack.enter_context(DovecotServer("local", mail_fsync=fsync))
        finally:
            tempfile.tempdir = saved_tempdir
        log(f"[{name}] servers up: remote 127.0.0.1:{self.remote.port}, local 127.0.0.1:{self.local.port}; mail stores on {self.title}")
        started = time.perf_counter()
        self.account = Account(self.remote, self.remote.add_user("bench-a", "r\u00e9mote'pw\"A"), "a")
        log(f"[{name}] seeded {self.account.user}: {self.account.messages} messages, {self.account.bytes / 1e6:.1f} MB in "
            f"{len(corpus.FOLDERS)} folders (+ parent folders) in {time.perf_counter() - started:.1f} s (not measured)")
        self.double: Account | None = None
        if not args.no_double:
            started = time.perf_counter()
            self.double = Account(self.remote, self.remote.add_user("bench-double", "r\u00e9mote'pw\"B"), "b", factor=2)
            log(f"[{name}] seeded {self.double.user}: {self.double.messages} messages, {self.double.bytes / 1e6:.1f} MB "
                f"(every folder doubled, the same 12 MB message) in {time.perf_counter() - started:.1f} s")
        self.runs: dict[tuple[str, str], list[dict[str, t.Any]]] = collections.defaultdict(list)
        self.new_mail: dict[str, int] = {}

    # -- one run of one tool -------------------------------------------------------------------------------
    def run(self, tool: str, scenario: str, account: Account, user: str, label: str,
            expect: tuple[int, int] | None) -> dict[str, t.Any]:
        remote, local = self.remote, self.local
        if tool == "engine":
            report = run_child(engine_spec(remote, local, account.user, user, self.state_dir / f"{user}.sqlite"),
                               self.workdir, label)
            check_result(report, f"engine {scenario} ({label})", *(expect or (None, None)))
            report["mapping"] = {f["remote"]: f["local"] for f in report["result"]["folders"]}
        elif tool == "baseline":
            report = run_child(baseline_spec(remote, local, account.user, user), self.workdir, label)
            if expect and (report["result"]["copied"], report["result"]["bytes"]) != expect:
                raise BenchFailure(f"baseline copied {report['result']['copied']} messages / {report['result']['bytes']} "
                                   f"bytes, expected {expect[0]} / {expect[1]}")
            report["mapping"] = anchors.name_mapping(account.snapshot, remote.separator, local.separator)
        else:
            try:
                report = getattr(anchors, tool)(remote, local, account.user, user, self.workdir, label)
            except anchors.AnchorFailure as exc:
                raise BenchFailure(f"{label}: {exc}") from None
        return report

    def measure(self, tool: str, scenario: str, rnd: int, account: Account, user: str,
                snapshot: dict[str, list[t.Any]], expect: tuple[int, int] | None) -> None:
        label = f"{tool}-{scenario.replace('%', 'pc')}-{rnd}"
        os.sync()  # untimed: the previous run's dirty pages are written now, not during this run (disk variant)
        report = self.run(tool, scenario, account, user, label, expect)
        tolerate = account.no_message_id if tool == "imapsync" else None
        verify(snapshot, self.local, user, report["mapping"], f"{tool} {scenario} (round {rnd + 1}, {self.name})", tolerate)
        self.runs[(tool, scenario)].append(report)
        inner = f" (inner {report['inner_s']:.3f} s)" if report.get("inner_s") is not None else ""
        log(f"[{self.name}] round {rnd + 1}: {tool:<8} {scenario:<9} {report['wall_s']:.3f} s{inner}, CPU {report['cpu_s']:.2f} s, "
            f"peak RSS {report['maxrss_kb'] / 1024:.0f} MiB; verified")

    # -- the rounds ------------------------------------------------------------------------------------------
    def rounds(self, tools: list[str]) -> None:
        account = self.account
        full = (account.messages, account.bytes)
        for rnd in range(self.args.repeat):
            shift = rnd % len(tools)
            order = tools[shift:] + tools[:shift]
            users = {tool: self.local.add_user(f"{tool}-{rnd}", "lpw") for tool in order}
            for tool in order:
                self.measure(tool, "first", rnd, account, users[tool], account.snapshot, full)
            for tool in (x for x in order if "no-change" in CAN[x]):
                self.measure(tool, "no-change", rnd, account, users[tool], account.snapshot, (0, 0))
            if any("+1%" in CAN[x] for x in order):
                new = add_new_mail(self.remote, account, f"a-new-{rnd}")
                self.new_mail = {"messages": new["messages"], "bytes": new["bytes"]}
                for tool in (x for x in order if "+1%" in CAN[x]):
                    self.measure(tool, "+1%", rnd, account, users[tool], new["snapshot"], (new["messages"], new["bytes"]))
                remove_new_mail(self.remote, account, new)
            if self.double is not None:
                for tool in (x for x in order if "2x" in CAN[x]):
                    user = self.local.add_user(f"{tool}-double-{rnd}", "lpw")
                    self.measure(tool, "2x", rnd, self.double, user, self.double.snapshot,
                                 (self.double.messages, self.double.bytes))
                    shutil.rmtree(self.local.user_maildir(user), ignore_errors=True)
            for user in users.values():  # keep the stores small (tmpfs): a round's copies are not needed again
                shutil.rmtree(self.local.user_maildir(user), ignore_errors=True)

    def profile(self) -> list[tuple[str, list[str], tuple[str, ...]]]:
        """An engine first run and a +1 % re-run under cProfile; their statistics files."""
        user = self.local.add_user("engine-profile", "lpw")
        state = self.state_dir / "profile.sqlite"
        log(f"[{self.name}] extra runs under cProfile (slower than unprofiled): engine first run ...")
        prof = run_child(engine_spec(self.remote, self.local, self.account.user, user, state,
                                     profile=str(self.workdir / "engine-first")), self.workdir, "engine-profile")
        check_result(prof, "profiled engine first run", None, None)
        profiles = [("the first run", prof.get("profiles", []), ("tottime", "cumulative"))]
        new = add_new_mail(self.remote, self.account, "a-new-profile")
        log(f"[{self.name}] added {new['messages']} new messages; engine +1% re-run under cProfile ...")
        prof = run_child(engine_spec(self.remote, self.local, self.account.user, user, state,
                                     profile=str(self.workdir / "engine-incremental")), self.workdir, "engine-profile-incr")
        check_result(prof, "profiled engine +1% re-run", new["messages"], new["bytes"])
        remove_new_mail(self.remote, self.account, new)
        profiles.append(("the +1% re-run", [p for p in prof.get("profiles", []) if p.endswith(".main.pstats")], ("cumulative",)))
        return profiles

    # -- figures ---------------------------------------------------------------------------------------------
    def cell(self, tool: str, scenario: str) -> dict[str, t.Any] | None:
        runs = self.runs.get((tool, scenario))
        if not runs:
            return None
        inner = [r["inner_s"] for r in runs if r.get("inner_s") is not None]
        return {
            "n": len(runs), "wall_s": statistics.median(r["wall_s"] for r in runs),
            "inner_s": statistics.median(inner) if inner else None,
            "cpu_s": statistics.median(r["cpu_s"] for r in runs),
            "peak_rss_mib": max(r["maxrss_kb"] for r in runs) / 1024.0,
            "each_wall_s": [round(r["wall_s"], 4) for r in runs],
        }

    def table(self, tools: list[str]) -> dict[str, dict[str, dict[str, t.Any]]]:
        cells: dict[str, dict[str, dict[str, t.Any]]] = {}
        for tool in tools:
            for scenario in SCENARIOS:
                cell = self.cell(tool, scenario)
                if cell is None:
                    continue
                for anchor in ("dsync", "floor"):
                    base = self.cell(anchor, scenario)
                    cell[f"vs_{anchor}"] = cell["wall_s"] / base["wall_s"] if base else None
                cells.setdefault(tool, {})[scenario] = cell
        return cells


# ---------------------------------------------------------------------- reporting


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def print_table(variant: Variant, cells: dict[str, dict[str, dict[str, t.Any]]]) -> None:
    account = variant.account
    print(f"\n== {variant.name}: mail stores on {variant.title}; {account.messages} messages, {account.bytes / 1e6:.1f} MB"
          + (f"; 2x: {variant.double.messages} messages, {variant.double.bytes / 1e6:.1f} MB" if variant.double else "")
          + f"; +1%: {variant.new_mail.get('messages', 0)} new messages")
    head = (f"{'tool':<9} {'scenario':<9} {'n':>2} {'process s':>9} {'inner s':>8} {'CPU s':>6} {'peak RSS MiB':>12} "
            f"{'x dsync':>7} {'x floor':>7}  each process s")
    print(head)
    print("-" * len(head))
    for tool, scenarios in cells.items():
        for scenario, c in scenarios.items():
            print(f"{tool:<9} {scenario:<9} {c['n']:>2} {c['wall_s']:>9.3f} {_num(c['inner_s'], '8.3f'):>8} {c['cpu_s']:>6.2f} "
                  f"{c['peak_rss_mib']:>12.1f} {_num(c['vs_dsync'], '7.2f'):>7} {_num(c['vs_floor'], '7.2f'):>7}  "
                  + ", ".join(f"{v:.3f}" for v in c["each_wall_s"]))


def targets_of(variant: Variant, cells: dict[str, dict[str, dict[str, t.Any]]], primary: bool) -> list[dict[str, t.Any]]:
    """The issue's targets on this mailbox (process wall times, medians), as {"name", "text", "target", "pass"}."""
    out: list[dict[str, t.Any]] = []
    engine = cells.get("engine", {})

    def add(name: str, text: str, target: str, ok: bool | None) -> None:
        out.append({"name": f"{variant.name}:{name}", "text": f"[{variant.name}{', primary' if primary else ''}] {text}",
                    "target": target, "pass": ok})

    def ratio(scenario: str, anchor: str) -> tuple[float, dict[str, t.Any]] | None:
        mine, theirs = engine.get(scenario), cells.get(anchor, {}).get(scenario)
        if not mine or not theirs:
            return None
        return mine["wall_s"] / theirs["wall_s"], mine

    got = ratio("first", "dsync")
    if got:
        add("first_vs_dsync", f"engine first run / dsync = {got[0]:.3f}", f"<= {TARGET_FIRST_VS_DSYNC}", got[0] <= TARGET_FIRST_VS_DSYNC)
    got = ratio("first", "floor")
    if got:
        floor = cells["floor"]["first"]
        inner = (f" [inner: engine {got[1]['inner_s']:.3f} s / floor {floor['inner_s']:.3f} s = {got[1]['inner_s'] / floor['inner_s']:.3f}]"
                 if got[1].get("inner_s") and floor.get("inner_s") else "")
        add("first_vs_floor", f"engine first run / floor = {got[0]:.3f}{inner}", f"<= {TARGET_FIRST_VS_FLOOR}",
            got[0] <= TARGET_FIRST_VS_FLOOR)
    got = ratio("no-change", "dsync")
    if got:
        add("nochange_vs_dsync", f"engine no-change re-run / dsync's = {got[0]:.3f} ({got[1]['wall_s']:.3f} s, process)",
            f"<= {TARGET_NOCHANGE_VS_DSYNC}", got[0] <= TARGET_NOCHANGE_VS_DSYNC)
    if all(s in engine for s in ("first", "no-change", "+1%")) and variant.new_mail:
        share = variant.new_mail["messages"] / variant.account.messages
        extra = engine["+1%"]["wall_s"] - engine["no-change"]["wall_s"]
        budget = TARGET_INCR_FACTOR * share * engine["first"]["wall_s"]
        add("incremental_proportional",
            f"+1% re-run proportional: t(+1%) - t(no-change) = {extra * 1000:.0f} ms vs {TARGET_INCR_FACTOR} x {share * 100:.2f} % "
            f"(new/all messages) x t(first) = {budget * 1000:.0f} ms", "extra <= budget", extra <= budget)
    got = ratio("first", "baseline")
    if got:
        add("first_vs_baseline", f"engine first run / naive baseline = {got[0]:.3f}", f"<= {TARGET_FIRST_VS_BASELINE}",
            got[0] <= TARGET_FIRST_VS_BASELINE)
    if "first" in engine:
        rss = engine["first"]["peak_rss_mib"]
        add("peak_rss", f"engine peak RSS, first run (12 MB message; max of {engine['first']['n']}) = {rss:.1f} MiB",
            f"<= {TARGET_PEAK_RSS_MIB:.0f} MiB", rss <= TARGET_PEAK_RSS_MIB)
        if "2x" in engine:
            rss2 = engine["2x"]["peak_rss_mib"]
            growth = rss2 / rss - 1.0
            add("rss_flat_2x", f"engine peak RSS 2x mailbox = {rss2:.1f} MiB vs {rss:.1f} MiB ({growth * 100:+.1f} %)",
                f"flat (growth <= {TARGET_FLAT_GROWTH * 100:.0f} %) and <= {TARGET_PEAK_RSS_MIB:.0f} MiB",
                growth <= TARGET_FLAT_GROWTH and rss2 <= TARGET_PEAK_RSS_MIB)
    return out


def print_profile(title: str, paths: list[str], orders: tuple[str, ...], top: int = 20) -> None:
    import pstats

    for path in sorted(paths):
        thread = path.rsplit(".", 2)[-2]
        for order in orders:
            print(f"\n--- cProfile of {title}, thread '{thread}', top {top} by {order} ---")
            stats = pstats.Stats(path)
            stats.sort_stats(order).print_stats(top)


# ---------------------------------------------------------------------- main


def tmpfs_usable() -> bool:
    shm = VARIANTS["tmpfs"][1] or "/dev/shm"
    try:
        return os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) and shutil.disk_usage(shm).free >= TMPFS_NEEDED
    except OSError:
        return False


def bench(args: argparse.Namespace, workdir: Path) -> int:
    if find_dovecot() is None:
        raise BenchFailure("the dovecot binary was not found; run `make deps` as root (dovecot-imapd) first")
    notes = []
    tools = [tool for tool in args.tools if tool != "imapsync" or anchors.imapsync_binary()]
    if "imapsync" in args.tools and "imapsync" not in tools:
        notes.append("imapsync: not on PATH (Debian 12 packages none), so not measured")
    variants = list(args.variants)
    if "tmpfs" in variants and not tmpfs_usable():
        variants.remove("tmpfs")
        notes.append(f"tmpfs variant skipped: /dev/shm missing or smaller than {TMPFS_NEEDED >> 30} GiB free")
    for note in notes:
        log(note)
    if not variants:
        raise BenchFailure("no variant can run")
    out: dict[str, t.Any] = {"tools": tools, "variants": {}, "notes": notes, "repeat": args.repeat}
    printed: list[tuple[Variant, dict[str, t.Any]]] = []
    targets: list[dict[str, t.Any]] = []
    profiles: list[tuple[str, list[str], tuple[str, ...]]] = []
    for name in variants:
        with contextlib.ExitStack() as stack:
            variant = Variant(name, args, workdir, stack)
            variant.rounds(tools)
            if args.profile and not profiles:
                profiles = variant.profile()
            log(f"[{name}] stopping the servers")
        cells = variant.table(tools)
        printed.append((variant, cells))
        targets += targets_of(variant, cells, primary=name == "disk")
        out["variants"][name] = {"mail_stores": variant.title, "messages": variant.account.messages,
                                 "bytes": variant.account.bytes, "new_mail": variant.new_mail,
                                 "double": {"messages": variant.double.messages, "bytes": variant.double.bytes} if variant.double else None,
                                 "cells": cells}

    print(f"\nmailops.imap benchmark: remote and local Dovecot over STARTTLS on loopback; medians of {args.repeat} interleaved "
          f"round(s), the order of the tools rotated per round; every run verified (bytes, flags, INTERNALDATE).")
    for variant, cells in printed:
        print_table(variant, cells)
    print("\nprocess s: wall time of the tool's whole child process (interpreter start, imports, logins included), the "
          "figure every ratio\nand target uses; inner s: the engine's time around sync.run / the floor's copy; CPU s: "
          "user+system CPU of that process\n(Dovecot's own work excluded, except dsync's, which is Dovecot); peak RSS: "
          "its ru_maxrss, the largest of the rounds;\nx dsync / x floor: process s over the anchor's in the same scenario. "
          "floor = fetch all bodies || append all (anchors.py).\nBefore every run the bench calls sync(2), untimed, so "
          "that no run pays for the writeback of the one before; the disk variant still varies from run to run.")
    for note in notes:
        print(f"note: {note}")
    print("\ntargets (informational; only correctness fails the bench). +1% proportional means "
          f"t(+1%) - t(no-change) <= {TARGET_INCR_FACTOR} x share x t(first),\nshare = new messages / messages of the mailbox:")
    for target in targets:
        verdict = "INFO" if target["pass"] is None else ("PASS" if target["pass"] else "MISS")
        print(f"  {verdict:<4}  {target['text']}   [target {target['target']}]")
    print(f"  PASS  correctness: after every run of every tool ({', '.join(tools)}), each local folder equals its remote "
          "folder (bytes, flags, INTERNALDATE)")
    for title, paths, orders in profiles:
        print_profile(title, paths, orders)
    out["targets"] = {target["name"]: {"value": target["text"], "target": target["target"], "pass": target["pass"]}
                      for target in targets}
    out["correct"] = True
    print("BENCH_JSON " + json.dumps(out, sort_keys=True), flush=True)
    return 0


def _names(allowed: tuple[str, ...]) -> t.Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in allowed]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)} (comma-separated), not {text!r}")
        return names
    return parse


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", maxsplit=1)[0])
    parser.add_argument("--profile", action="store_true", default=os.environ.get("BENCH_PROFILE") == "1",
                        help="add an engine first run and +1%% re-run under cProfile and print their hot spots")
    parser.add_argument("--repeat", type=int, default=int(os.environ.get("BENCH_REPEAT", "3")),
                        help="interleaved rounds of every tool and scenario; medians are compared (default 3, or BENCH_REPEAT)")
    parser.add_argument("--variants", type=_names(tuple(VARIANTS)), default=["disk", "tmpfs"],
                        help="mail stores: disk (Dovecot's default mail_fsync; the primary target) and/or tmpfs "
                             "(mail_fsync never); default disk,tmpfs")
    parser.add_argument("--mail-on-disk", action="store_true", default=os.environ.get("BENCH_MAIL_ON_DISK") == "1",
                        help="the same as --variants disk (also BENCH_MAIL_ON_DISK=1)")
    parser.add_argument("--tools", type=_names(TOOLS), default=list(TOOLS),
                        help=f"default {','.join(TOOLS)} (imapsync only when on PATH)")
    parser.add_argument("--no-double", action="store_true", help="skip the 2x mailbox scenario")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.mail_on_disk:
        args.variants = ["disk"]

    def _terminate(signum: int, _frame: t.Any) -> None:
        raise SystemExit(128 + signum)  # unwinds the ExitStack: the Dovecot servers are stopped

    signal.signal(signal.SIGTERM, _terminate)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mailops-bench-") as tmp:
        try:
            rc = bench(args, Path(tmp))
        except BenchFailure as exc:
            print(f"\nBENCH FAILED: {exc}", file=sys.stderr, flush=True)
            print("BENCH_JSON " + json.dumps({"correct": False, "error": str(exc)[:4000]}), flush=True)
            rc = 1
    log(f"total bench time {time.perf_counter() - started:.1f} s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
