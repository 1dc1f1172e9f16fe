"""Scenario benchmarks of issue 11 beside the bench mailbox of bench.py (``make bench`` runs both).

Starts two throwaway Dovecot servers (the integration-test harness; mail stores on tmpfs with ``mail_fsync = never``,
or with ``--mail-on-disk`` on disk with Dovecot's default ``mail_fsync``, as bench.py's disk variant) and measures,
each scenario on its own remote accounts:

1. ``big``: one folder of 50,000 small messages (a few KB; corpus.py ``small_only``), and one of 5,000: the engine's
   first run against the measured floor (fetch all while appending all, anchors.py), a no-change re-run (in the
   engine and as a whole process), and the engine's peak RSS at 5,000 and 50,000 messages (the engine's UID window
   is 2,000, plan.WINDOW: both sizes span many windows, so a memory that grows with the folder shows).
2. ``folders``: 300 folders of 20 messages: the engine's first run against dsync over imapc (anchors.py), and a
   no-change re-run.
3. ``bulk``: 20 accounts of 200 messages through the migrate module's own code path for many accounts
   (plugins/module_utils/_migrate.py ``run_accounts``), ``parallel: 4`` against ``parallel: 1``: throughput ratio,
   CPU, and the peak RSS of one account's process.
4. ``playbook``: the fixed cost of a migrate task through ansible-playbook: a play without the task, a play with a
   no-change migrate task, the engine's no-change run in a child process; and a first run of a 200-message account
   end to end (ansible-playbook) against the engine's first run in a child process.

Every run that copies, the anchors' too, is verified as bench.py verifies (bench.compare against a snapshot of the
remote account: every message's bytes, flags and INTERNALDATE, folder by folder, through the folder mapping the tool
reports); a no-change run must copy nothing. The engine runs in a child process (bench.run_child / runner.py:
"process" is the whole child, "inside" the time around sync.run), the anchors in theirs (anchors.py). Runs of the
things compared alternate, and medians are compared (``--repeat``, default 3; the 50,000-message runs
``--big-repeat``, default 2). Ratios to an anchor compare whole processes, as bench.py does.

Prints PASS/MISS per target and, last, one ``SCENARIOS_JSON {...}`` line. Speed targets are informational: the exit
status is 1 only when a result is wrong or the bench cannot run. ``--only NAME`` (repeatable) runs some scenarios
(big, folders, bulk, playbook); ``--profile`` adds a 50,000-message first run under cProfile and prints its hot spots.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import typing as t
from pathlib import Path

HERE = Path(os.path.abspath(__file__)).parent
sys.path.insert(0, str(HERE))

# pylint: disable=wrong-import-position
import anchors  # noqa: E402
import bench  # noqa: E402  (puts the collection and the harness on sys.path)
import corpus  # noqa: E402
from bench import BenchFailure, check_result, compare, engine_spec  # noqa: E402
from harness import mail  # noqa: E402
from harness.dovecot import DovecotServer, find_dovecot  # noqa: E402

SCENARIOS = ("big", "folders", "bulk", "playbook")
TARGET_FLOOR_RATIO = 1.3
TARGET_NOCHANGE_S = 0.5
TARGET_PEAK_RSS_MIB = 64.0
TARGET_FLAT_GROWTH = 0.10  # as bench.py: peak RSS may grow by at most 10 % from 5,000 to 50,000 messages
TARGET_BULK_RATIO = 2.0
BIG_COUNTS = (5000, 50000)
MANY_FOLDERS, PER_FOLDER = 300, 20
BULK_ACCOUNTS, BULK_FOLDERS = 20, (("INBOX", 120), ("Projects/Alpha", 50), ("Archive/2024", 30))
BULK_PARALLEL = (1, 4)
TMPFS_NEEDED = 3 << 30  # bytes free on /dev/shm to keep the mail stores there (verified local copies are removed)
SEED_CHUNK = 5000  # messages generated and appended per session while seeding (memory of this process stays small)
CHILD_TIMEOUT_S = 600
PLAY_TIMEOUT_S = 600

log = bench.log


def median(values: t.Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def mib(kb: int) -> float:
    return kb / 1024.0


def median_report(reports: list[dict[str, t.Any]], key: str = "process_s") -> dict[str, t.Any]:
    """The report with the median *key* (the lower middle one for an even count)."""
    ordered = sorted(reports, key=lambda r: r[key])
    return ordered[(len(ordered) - 1) // 2]


def run_child(spec: dict[str, t.Any], workdir: Path, label: str) -> dict[str, t.Any]:
    """bench.run_child (runner.py in a child process), its report with the names used here: ``process_s`` (the whole
    child process), ``inner_s`` (around sync.run), ``cpu_s``, ``peak_kb``."""
    report = bench.run_child(spec, workdir, label)
    report["process_s"] = report["child_wall_s"] if "child_wall_s" in report else report["wall_s"]
    report["inner_s"] = report["elapsed_s"]
    report["peak_kb"] = report.get("vmhwm_kb") or report.get("maxrss_kb", 0)
    return report


def mail_stores(on_disk: bool) -> tuple[str | None, str]:
    """Where the Dovecot instances keep their mail (as bench.py): tmpfs when it has room, else TMPDIR on disk."""
    if not on_disk:
        try:
            if shutil.disk_usage("/dev/shm").free >= TMPFS_NEEDED and os.access("/dev/shm", os.W_OK | os.X_OK):
                return "/dev/shm", "tmpfs (/dev/shm), mail_fsync = never"
        except OSError:
            pass
    return None, (f"disk ({tempfile.gettempdir()}), Dovecot's default mail_fsync"
                  f"{' (as asked)' if on_disk else ' (/dev/shm is missing or too small)'}")


class Bench:
    """The servers, the work directory and what has been measured so far."""

    def __init__(self, args: argparse.Namespace, workdir: Path, remote: DovecotServer, local: DovecotServer) -> None:
        self.args = args
        self.workdir = workdir
        self.remote = remote
        self.local = local
        self.state_dir = workdir / "state"
        self.state_dir.mkdir()
        self.targets: list[tuple[str, str, bool | None]] = []
        self.rows: list[tuple[str, str]] = []
        self.profiles: list[tuple[str, list[str]]] = []
        self.out: dict[str, t.Any] = {}
        self._users = 0
        self._snapshots: dict[str, dict[str, list[t.Any]]] = {}
        self._no_message_id: dict[str, set[str]] = {}  # remote user -> sha256 of its messages without a Message-ID

    # ------------------------------------------------------------------ helpers

    def local_user(self, prefix: str) -> str:
        self._users += 1
        return self.local.add_user(f"{prefix}-{self._users}", f"lpw-{self._users}")

    def drop_local(self, user: str) -> None:
        """Free the tmpfs: remove a verified local account's mail."""
        shutil.rmtree(self.local.user_maildir(user), ignore_errors=True)

    def remote_snapshot(self, ruser: str) -> dict[str, list[t.Any]]:
        if ruser not in self._snapshots:
            self._snapshots[ruser] = mail.snapshot(self.remote, ruser, self.remote.users[ruser])
        return self._snapshots[ruser]

    def target(self, text: str, target: str, ok: bool | None) -> None:
        self.targets.append((text, target, ok))
        log(f"{'INFO' if ok is None else ('PASS' if ok else 'MISS')}  {text}   [target {target}]")

    def servers_cpu_s(self) -> float:
        return dovecot_cpu_s(self.remote) + dovecot_cpu_s(self.local)

    def verify(self, ruser: str, luser: str, mapping: dict[str, str], what: str, tolerate: set[str] | None = None) -> None:
        """Fail unless the local account equals the remote one folder by folder (bench.compare: every message's bytes,
        flags and INTERNALDATE)."""
        local_snap = mail.snapshot(self.local, luser, master=True)
        remote_snap = self.remote_snapshot(ruser)
        problems = compare(remote_snap, local_snap, mapping, tolerate) if tolerate else compare(remote_snap, local_snap, mapping)
        if problems:
            raise BenchFailure(f"CORRECTNESS FAILURE after {what}:\n  " + "\n  ".join(problems))
        log(f"verified {what}: {len(mapping)} folders, {sum(len(v) for v in remote_snap.values())} messages identical")

    def engine(self, ruser: str, luser: str, state: Path, label: str, copied: int | None, size: int | None) -> dict[str, t.Any]:
        """One engine run in a child process (runner.py), its result checked (not yet verified)."""
        report = run_child(engine_spec(self.remote, self.local, ruser, luser, state), self.workdir, label)
        check_result(report, label, copied, size)
        return report

    def engine_first(self, ruser: str, label: str, copied: int, size: int, keep: bool = False) -> dict[str, t.Any]:
        """The engine's first run into a fresh local user, verified; the local mail removed afterwards unless kept."""
        luser = self.local_user(label)
        state = self.state_dir / f"{luser}.sqlite"
        servers0 = self.servers_cpu_s()
        report = self.engine(ruser, luser, state, label, copied, size)
        report["dovecot_cpu_s"] = self.servers_cpu_s() - servers0
        self.verify(ruser, luser, mapping_of(report["result"]), f"{label} ({luser})")
        report["local_user"], report["state_path"] = luser, state
        if not keep:
            self.drop_local(luser)
        return report

    def anchor(self, name: str, ruser: str, label: str) -> dict[str, t.Any]:
        """The floor or dsync over imapc (anchors.py) into a fresh local user, verified, its local mail removed;
        ``process_s`` is the anchor's whole process, ``inner_s`` its own timing when it has one (the floor)."""
        luser = self.local_user(label)
        servers0 = self.servers_cpu_s()
        try:
            report = getattr(anchors, name)(self.remote, self.local, ruser, luser, self.workdir, label=label)
        except anchors.AnchorFailure as exc:
            raise BenchFailure(str(exc)) from None
        # dsync is Dovecot (doveadm): its own CPU is in cpu_s; count only the servers' for it too
        report["dovecot_cpu_s"] = self.servers_cpu_s() - servers0
        # dsync may rewrite a message without a Message-ID (bench.py tolerates those, same flags and INTERNALDATE)
        self.verify(ruser, luser, report["mapping"], f"{label} ({luser})", self._no_message_id.get(ruser) if name == "dsync" else None)
        self.drop_local(luser)
        report["process_s"], report["peak_kb"] = report["wall_s"], report["maxrss_kb"]
        return report

    # ------------------------------------------------------------------ seeding

    def seed_stream(self, ruser: str, folder: str, count: int, seed: str) -> tuple[int, int]:
        """Append ``count`` small messages to one folder, SEED_CHUNK at a time (MULTIAPPEND of 1,000 per command)."""
        size = 0
        for start in range(0, count, SEED_CHUNK):
            items = list(corpus.messages(folder, min(SEED_CHUNK, count - start), seed=seed, start=start, small_only=True))
            mail.seed(self.remote, ruser, self.remote.users[ruser], folder, items, batch_count=1000, batch_bytes=32 << 20)
            self._note_bodies(ruser, [item[0] for item in items])
            size += sum(len(item[0]) for item in items)
        return count, size

    def seed_folders(self, ruser: str, folders: t.Sequence[tuple[str, int]], seed: str) -> tuple[int, int]:
        """Many folders in one session: CREATE, SUBSCRIBE and one MULTIAPPEND each."""
        count = size = 0
        with mail.session(self.remote, ruser, self.remote.users[ruser]) as client:
            for folder, number in folders:
                mail.ensure_folder(client, folder, separator=self.remote.separator)
                items = [mail._seed_item(item)  # pylint: disable=protected-access
                         for item in corpus.messages(folder, number, seed=seed, small_only=True)]
                typ, data = client.multiappend(folder, items)
                if typ != "OK":
                    raise BenchFailure(f"seeding {folder!r} failed: {data!r}")
                self._note_bodies(ruser, [item["msg"] for item in items])
                count += len(items)
                size += sum(len(item["msg"]) for item in items)
        return count, size

    def _note_bodies(self, ruser: str, bodies: list[bytes]) -> None:
        without = getattr(bench, "_without_message_id", None)
        if without is not None:
            self._no_message_id.setdefault(ruser, set()).update(
                hashlib.sha256(body).hexdigest() for body in bodies if without(body))

    # ------------------------------------------------------------------ 1. one big folder

    def scenario_big(self) -> None:
        args = self.args
        seeded: dict[int, tuple[str, int, int]] = {}
        for count in BIG_COUNTS:
            ruser = self.remote.add_user(f"big{count}", f"r\u00e9mote'pw\"{count}")
            started = time.perf_counter()
            msgs, size = self.seed_stream(ruser, "INBOX", count, "big")
            self.remote_snapshot(ruser)
            log(f"seeded {ruser}: {msgs} messages, {size / 1e6:.1f} MB in INBOX, and took its snapshot, in "
                f"{time.perf_counter() - started:.1f} s (not measured)")
            seeded[count] = (ruser, msgs, size)
        out: dict[str, t.Any] = {}
        peaks: dict[int, list[float]] = {}
        firsts: list[dict[str, t.Any]] = []
        for count in BIG_COUNTS:
            ruser, msgs, size = seeded[count]
            repeat = args.big_repeat if count >= 50000 else args.repeat
            firsts, floors = [], []
            for rep in range(repeat):
                for kind in (("floor", "engine") if rep % 2 == 0 else ("engine", "floor")):
                    if kind == "engine":
                        report = self.engine_first(ruser, f"big{count}-engine", msgs, size, keep=rep == repeat - 1)
                        firsts.append(report)
                        log(f"  {count} messages, engine first run {rep + 1}/{repeat}: {_fmt(report)}")
                    else:
                        floors.append(self.anchor("floor", ruser, f"big{count}-floor"))
                        log(f"  {count} messages, floor {rep + 1}/{repeat}: {_fmt(floors[-1])}")
            peaks[count] = [mib(r["peak_kb"]) for r in firsts]
            first, floor = median_report(firsts), median_report(floors)
            ratio = first["process_s"] / floor["process_s"]
            inner = first["inner_s"] / floor["inner_s"]
            out[str(count)] = {
                "messages": msgs, "bytes": size, "first_vs_floor": ratio, "first_vs_floor_inner": inner,
                "engine_first_process_s": [r["process_s"] for r in firsts], "engine_first_inner_s": [r["inner_s"] for r in firsts],
                "engine_first_cpu_s": [r["cpu_s"] for r in firsts], "engine_first_peak_rss_mib": peaks[count],
                "floor_process_s": [r["process_s"] for r in floors], "floor_inner_s": [r["inner_s"] for r in floors],
                "floor_cpu_s": [r["cpu_s"] for r in floors],
            }
            self.rows.append((f"{count} messages in one folder: engine first run", _fmt(first)))
            self.rows.append((f"{count} messages in one folder: floor (fetch all || append all)", _fmt(floor)))
            self.target(f"{count} messages in one folder: engine first run / floor = {ratio:.2f} (processes: "
                        f"{first['process_s']:.2f} s / {floor['process_s']:.2f} s; inside them: {first['inner_s']:.2f} s / "
                        f"{floor['inner_s']:.2f} s = {inner:.2f})", f"<= {TARGET_FLOOR_RATIO}" if count >= 50000 else "informational",
                        ratio <= TARGET_FLOOR_RATIO if count >= 50000 else None)

        # no-change re-runs on the 50,000-message account of the last engine first run
        ruser, msgs, size = seeded[BIG_COUNTS[-1]]
        last = firsts[-1]
        nochanges = [self.engine(ruser, last["local_user"], last["state_path"], f"big{msgs}-nochange{rep}", 0, 0)
                     for rep in range(args.repeat)]
        self.verify(ruser, last["local_user"], mapping_of(nochanges[-1]["result"]), "after the no-change re-runs")
        self.drop_local(last["local_user"])
        nochange = median_report(nochanges, "inner_s")
        process = median([r["process_s"] for r in nochanges])
        out["nochange_inner_s"] = [r["inner_s"] for r in nochanges]
        out["nochange_process_s"] = [r["process_s"] for r in nochanges]
        self.rows.append((f"{msgs} messages in one folder: engine no-change re-run", _fmt(nochange)))
        self.target(f"{msgs} messages: no-change re-run = {nochange['inner_s']:.3f} s in the engine; {process:.3f} s as a "
                    "process (interpreter start and imports included)", f"< {TARGET_NOCHANGE_S} s (engine)",
                    nochange["inner_s"] < TARGET_NOCHANGE_S)

        small, large = max(peaks[BIG_COUNTS[0]]), max(peaks[BIG_COUNTS[-1]])
        growth = large / small - 1.0
        out["peak_rss_growth"] = growth
        self.target(f"engine peak RSS (the largest of the first runs): {BIG_COUNTS[0]} messages {small:.1f} MiB, "
                    f"{BIG_COUNTS[-1]} messages {large:.1f} MiB", f"< {TARGET_PEAK_RSS_MIB:.0f} MiB",
                    large < TARGET_PEAK_RSS_MIB and small < TARGET_PEAK_RSS_MIB)
        self.target(f"engine peak RSS from {BIG_COUNTS[0]} to {BIG_COUNTS[-1]} messages in one folder: {growth * 100:+.1f} %",
                    f"flat (<= {TARGET_FLAT_GROWTH * 100:.0f} %)", growth <= TARGET_FLAT_GROWTH)
        self.out["big"] = out
        if args.profile:
            luser = self.local_user("big-profile")
            log(f"an extra engine first run of {msgs} messages under cProfile (slower than unprofiled) ...")
            spec = engine_spec(self.remote, self.local, ruser, luser, self.state_dir / "profile.sqlite",
                               profile=str(self.workdir / "big-profile"))
            report = run_child(spec, self.workdir, "big-profile")
            check_result(report, "the profiled first run", msgs, size)
            self.drop_local(luser)
            self.profiles.append((f"the engine's first run of {msgs} messages in one folder", report.get("profiles", [])))

    # ------------------------------------------------------------------ 2. many folders

    def scenario_folders(self) -> None:
        args = self.args
        ruser = self.remote.add_user("folders300", "r\u00e9mote'pw\"F")
        started = time.perf_counter()
        folders = [(f"F{index:03d}", PER_FOLDER) for index in range(MANY_FOLDERS)]
        msgs, size = self.seed_folders(ruser, folders, "folders")
        self.remote_snapshot(ruser)
        log(f"seeded {ruser}: {msgs} messages in {MANY_FOLDERS} folders, and took its snapshot, in "
            f"{time.perf_counter() - started:.1f} s (not measured)")
        firsts, dsyncs = [], []
        for rep in range(args.repeat):
            for kind in (("dsync", "engine") if rep % 2 == 0 else ("engine", "dsync")):
                if kind == "engine":
                    firsts.append(self.engine_first(ruser, "folders-engine", msgs, size, keep=rep == args.repeat - 1))
                    log(f"  engine first run {rep + 1}/{args.repeat}: {_fmt(firsts[-1])}")
                else:
                    dsyncs.append(self.anchor("dsync", ruser, "folders-dsync"))
                    log(f"  dsync over imapc {rep + 1}/{args.repeat}: {_fmt(dsyncs[-1])}")
        first, dsync = median_report(firsts), median_report(dsyncs)
        ratio = first["process_s"] / dsync["process_s"]
        self.rows.append((f"{MANY_FOLDERS} folders x {PER_FOLDER}: engine first run", _fmt(first)))
        self.rows.append((f"{MANY_FOLDERS} folders x {PER_FOLDER}: dsync over imapc", _fmt(dsync)))
        self.target(f"{MANY_FOLDERS} folders x {PER_FOLDER}: engine first run / dsync = {ratio:.2f} (processes: "
                    f"{first['process_s']:.2f} s / {dsync['process_s']:.2f} s; in the engine {first['inner_s']:.2f} s)",
                    "<= 1.0", ratio <= 1.0)
        last = firsts[-1]
        nochanges = [self.engine(ruser, last["local_user"], last["state_path"], f"folders-nochange{rep}", 0, 0)
                     for rep in range(args.repeat)]
        self.drop_local(last["local_user"])
        nochange = median_report(nochanges)
        self.rows.append((f"{MANY_FOLDERS} folders x {PER_FOLDER}: engine no-change re-run", _fmt(nochange)))
        self.target(f"{MANY_FOLDERS} folders: engine no-change re-run = {nochange['inner_s']:.3f} s in the engine, "
                    f"{nochange['process_s']:.3f} s as a process", "informational", None)
        self.out["folders"] = {
            "messages": msgs, "folders": MANY_FOLDERS, "first_vs_dsync": ratio,
            "engine_first_process_s": [r["process_s"] for r in firsts], "engine_first_inner_s": [r["inner_s"] for r in firsts],
            "dsync_process_s": [r["process_s"] for r in dsyncs],
            "nochange_process_s": [r["process_s"] for r in nochanges], "nochange_inner_s": [r["inner_s"] for r in nochanges],
        }

    # ------------------------------------------------------------------ 3. many accounts

    def bulk_accounts(self) -> list[tuple[str, int, int]]:
        """The remote accounts of the bulk scenario (seeded once; scenario 4 uses the first)."""
        if not hasattr(self, "_bulk"):
            started = time.perf_counter()
            accounts = []
            for index in range(BULK_ACCOUNTS):
                ruser = self.remote.add_user(f"bulk{index:02d}", f"r\u00e9mote'pw\"{index}")
                msgs, size = self.seed_folders(ruser, BULK_FOLDERS, f"bulk{index}")
                accounts.append((ruser, msgs, size))
            log(f"seeded {BULK_ACCOUNTS} accounts of {accounts[0][1]} messages in {time.perf_counter() - started:.1f} s (not measured)")
            self._bulk = accounts  # pylint: disable=attribute-defined-outside-init
        return self._bulk

    def bulk_run(self, parallel: int, rep: int) -> dict[str, t.Any]:
        accounts = self.bulk_accounts()
        locals_ = [self.local_user(f"bulk-p{parallel}") for _account in accounts]
        remote, local = self.remote, self.local
        spec = {
            "mode": "bulk", "parallel": parallel, "state_dir": str(self.state_dir / f"bulk-p{parallel}-{rep}"),
            "accounts": [{"local_user": luser, "remote_user": ruser, "remote_password": remote.users[ruser],
                          "remote_host": remote.host, "remote_port": remote.port, "remote_security": "starttls",
                          "ca_file": str(remote.cert_path), "folders": "all"}
                         for luser, (ruser, _m, _s) in zip(locals_, accounts)],
            "target": {"host": local.host, "port": local.port, "security": "starttls", "ca_file": str(local.cert_path),
                       "master_user": local.master_user, "master_password": local.master_password,
                       "master_separator": local.master_separator},
        }
        servers0 = self.servers_cpu_s()
        report = _child(spec, self.workdir, f"bulk-p{parallel}-{rep}", "scenario_child.py")
        report["dovecot_cpu_s"] = self.servers_cpu_s() - servers0
        for result, luser, (ruser, msgs, size) in zip(report["results"], locals_, accounts):
            check_result({"result": result}, f"bulk parallel {parallel}, {luser}", msgs, size)
            self.verify(ruser, luser, mapping_of(result), f"bulk parallel {parallel} ({ruser} -> {luser})")
            self.drop_local(luser)
        report["messages"] = sum(msgs for _r, msgs, _s in accounts)
        report["bytes"] = sum(size for _r, _m, size in accounts)
        return report

    def scenario_bulk(self) -> None:
        args = self.args
        self.bulk_accounts()
        runs: dict[int, list[dict[str, t.Any]]] = {p: [] for p in BULK_PARALLEL}
        for rep in range(args.repeat):
            for parallel in (BULK_PARALLEL if rep % 2 == 0 else tuple(reversed(BULK_PARALLEL))):
                report = self.bulk_run(parallel, rep)
                runs[parallel].append(report)
                log(f"  bulk {BULK_ACCOUNTS} accounts, parallel {parallel}, round {rep + 1}/{args.repeat}: "
                    f"{report['inner_s']:.2f} s, CPU {report['cpu_s']:.2f} s (both Dovecots {report['dovecot_cpu_s']:.2f} s), "
                    f"peak RSS: module process "
                    f"{mib(report['vmhwm_kb']):.1f} MiB, largest worker {mib(report['children_maxrss_kb']):.1f} MiB")
        one, four = (median_report(runs[p], "inner_s") for p in BULK_PARALLEL)
        ratio = one["inner_s"] / four["inner_s"]
        # One account's peak: with parallel 1 the accounts run in the module's process, one after the other (its
        # VmHWM); with parallel > 1 each account has a worker process (the largest of their VmHWMs).
        # (Accounts run as threads, as before, have no worker: then the module process's VmHWM is the figure.)
        per_account = {p: max(mib(r["children_maxrss_kb"] if p > 1 and r["children_maxrss_kb"] else r["vmhwm_kb"])
                              for r in runs[p]) for p in BULK_PARALLEL}
        msgs = one["messages"]
        for parallel, report in ((1, one), (4, four)):
            self.rows.append((f"bulk {BULK_ACCOUNTS} x {msgs // BULK_ACCOUNTS}: parallel {parallel}",
                              f"{report['inner_s']:.2f} s, CPU {report['cpu_s']:.2f} s + both Dovecots {report['dovecot_cpu_s']:.2f} s "
                              f"= {(report['cpu_s'] + report['dovecot_cpu_s']) / report['inner_s']:.2f} cores busy, "
                              f"{msgs / report['inner_s']:.0f} msg/s, "
                              f"peak RSS per account {per_account[parallel]:.1f} MiB, module process {mib(report['vmhwm_kb']):.1f} MiB"))
        # The ratio this host allows at most: all its cores busy with the work parallel 1 did (its CPU and Dovecot's).
        cores = os.cpu_count() or 1
        ceiling = cores * one["inner_s"] / (one["cpu_s"] + one["dovecot_cpu_s"])
        self.target(f"bulk {BULK_ACCOUNTS} accounts: parallel 4 throughput / parallel 1 = {ratio:.2f} "
                    f"({one['inner_s']:.2f} s / {four['inner_s']:.2f} s on {cores} cores; about {ceiling:.2f} at most here: "
                    f"parallel 1 kept {cores / ceiling:.2f} cores busy, Dovecot included)",
                    f">= {TARGET_BULK_RATIO}", ratio >= TARGET_BULK_RATIO)
        self.target(f"bulk: peak RSS of one account, parallel 4 {per_account[4]:.1f} MiB, parallel 1 {per_account[1]:.1f} MiB",
                    f"< {TARGET_PEAK_RSS_MIB:.0f} MiB", max(per_account.values()) < TARGET_PEAK_RSS_MIB)
        self.out["bulk"] = {"accounts": BULK_ACCOUNTS, "messages": msgs, "ratio": ratio, "ratio_ceiling": ceiling,
                            "per_account_peak_rss_mib": {str(p): v for p, v in per_account.items()},
                            **{f"parallel{p}_s": [r["inner_s"] for r in runs[p]] for p in BULK_PARALLEL},
                            **{f"parallel{p}_cpu_s": [r["cpu_s"] for r in runs[p]] for p in BULK_PARALLEL},
                            **{f"parallel{p}_dovecot_cpu_s": [r["dovecot_cpu_s"] for r in runs[p]] for p in BULK_PARALLEL}}

    # ------------------------------------------------------------------ 4. through ansible-playbook

    def scenario_playbook(self) -> None:
        args = self.args
        ruser, msgs, size = self.bulk_accounts()[0]
        plays, firsts, engines = [], [], []
        play_state = self.workdir / "play-state"
        for rep in range(args.repeat):
            for kind in (("play", "engine") if rep % 2 == 0 else ("engine", "play")):
                if kind == "engine":
                    engines.append(self.engine_first(ruser, "play-engine", msgs, size, keep=rep == args.repeat - 1))
                else:
                    luser = self.local_user("play")
                    report = self.play(ruser, luser, play_state / str(rep))
                    check_result({"result": report["result"]}, "the migrate task's first run", msgs, size)
                    self.verify(ruser, luser, mapping_of(report["result"]), f"the playbook's first run ({luser})")
                    report["local_user"] = luser
                    firsts.append(report)
        # no-change: the play with the migrate task, the same play without it, the engine alone in a child process
        play_luser, play_dir = firsts[-1]["local_user"], play_state / str(args.repeat - 1)
        eng = engines[-1]
        empties, noplays, noengines = [], [], []
        for rep in range(args.repeat):
            empties.append(self.play(None, None, None))
            noplays.append(self.play(ruser, play_luser, play_dir))
            check_result({"result": noplays[-1]["result"]}, "the migrate task's no-change run", 0, 0)
            noengines.append(self.engine(ruser, eng["local_user"], eng["state_path"], f"play-engine-nochange{rep}", 0, 0))
        for luser in (play_luser, eng["local_user"]):
            self.drop_local(luser)
        empty = median([r["process_s"] for r in empties])
        noplay = median([r["process_s"] for r in noplays])
        noengine_proc = median([r["process_s"] for r in noengines])
        noengine_run = median([r["inner_s"] for r in noengines])
        first_play = median([r["process_s"] for r in firsts])
        first_engine_proc = median([r["process_s"] for r in engines])
        first_engine_run = median([r["inner_s"] for r in engines])
        self.rows += [
            ("ansible-playbook, a play without the migrate task", f"{empty:.2f} s"),
            ("ansible-playbook, a no-change migrate task", f"{noplay:.2f} s (the task: {noplay - empty:.2f} s)"),
            ("engine no-change run in a child process", f"{noengine_proc:.2f} s (in the engine {noengine_run:.3f} s)"),
            (f"ansible-playbook, first run of {msgs} messages", f"{first_play:.2f} s (the task: {first_play - empty:.2f} s)"),
            (f"engine first run of {msgs} messages in a child process", f"{first_engine_proc:.2f} s (in the engine {first_engine_run:.3f} s)"),
        ]
        fixed = noplay - noengine_run
        self.target(f"fixed cost of a migrate task: play with a no-change task {noplay:.2f} s - engine's no-change run "
                    f"{noengine_run:.3f} s = {fixed:.2f} s (ansible-playbook with a play without it: {empty:.2f} s; "
                    f"the task itself beyond the engine's run: {noplay - empty - noengine_run:.2f} s; a child python "
                    f"process running the engine: {noengine_proc - noengine_run:.2f} s)", "measured", None)
        self.target(f"first run of {msgs} messages end to end: ansible-playbook {first_play:.2f} s, engine process "
                    f"{first_engine_proc:.2f} s", "measured", None)
        self.out["playbook"] = {
            "empty_play_s": [r["process_s"] for r in empties], "nochange_play_s": [r["process_s"] for r in noplays],
            "nochange_engine_process_s": [r["process_s"] for r in noengines],
            "nochange_engine_inner_s": [r["inner_s"] for r in noengines],
            "first_play_s": [r["process_s"] for r in firsts], "first_engine_process_s": [r["process_s"] for r in engines],
            "first_engine_inner_s": [r["inner_s"] for r in engines], "fixed_cost_s": fixed,
        }

    def play(self, ruser: str | None, luser: str | None, state_dir: Path | None) -> dict[str, t.Any]:
        """ansible-playbook with one migrate task (arguments in a 0600 extra-vars file), or a play without it that
        runs ansible.builtin.meta (no module); the result through the tree callback. Timed as a whole process."""
        work = self.workdir / "play"
        work.mkdir(exist_ok=True)
        tree = work / "tree"
        shutil.rmtree(tree, ignore_errors=True)
        lines = ["- hosts: localhost", "  gather_facts: false", "  tasks:"]
        extra: dict[str, t.Any] = {}
        if ruser is None:
            lines += ["    - ansible.builtin.meta: noop"]
        else:
            assert luser is not None and state_dir is not None
            remote, local = self.remote, self.local
            extra["migration"] = {
                "local_user": luser, "remote_user": ruser, "remote_password": remote.users[ruser], "remote_host": remote.host,
                "remote_port": remote.port, "ca_file": str(remote.cert_path), "state_dir": str(state_dir),
                "target": {"host": local.host, "port": local.port, "ca_file": str(local.cert_path),
                           "master_user": local.master_user, "master_password": local.master_password},
            }
            lines += ["    - mailops.imap.migrate: \"{{ migration }}\""]
        (work / "play.yml").write_text("\n".join(lines) + "\n", encoding="utf-8")
        vars_path = work / "vars.json"
        vars_path.write_text(json.dumps(extra), encoding="utf-8")
        os.chmod(vars_path, 0o600)
        playbook = shutil.which("ansible-playbook", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
        if playbook is None:
            raise BenchFailure("ansible-playbook is not on PATH; run through `make bench`")
        env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
                   ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.tree",
                   ANSIBLE_CALLBACK_TREE_DIR=str(tree), ANSIBLE_COLLECTIONS_PATH=bench.COLLECTIONS)
        started = time.perf_counter()
        proc = subprocess.run([playbook, "-i", "localhost,", "-c", "local", str(work / "play.yml"), "-e", f"@{vars_path}"],
                              capture_output=True, text=True, env=env, timeout=PLAY_TIMEOUT_S, check=False)
        elapsed = time.perf_counter() - started
        vars_path.unlink()
        if proc.returncode != 0:
            raise BenchFailure(f"ansible-playbook failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        report: dict[str, t.Any] = {"process_s": elapsed}
        if ruser is not None:
            report["result"] = json.loads((tree / "localhost").read_text(encoding="utf-8"))
        return report


def dovecot_cpu_s(server: DovecotServer) -> float:
    """CPU seconds used so far by a Dovecot instance: its live processes (the master's session) and the children its
    master has reaped (imap, auth...)."""
    master = int((server.base_dir / "master.pid").read_text(encoding="ascii").split()[0])
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) != master:  # session id: DovecotServer starts the master in a session of its own
            continue
        ticks += int(fields[11]) + int(fields[12])
        if int(entry.name) == master:
            ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def mapping_of(result: dict[str, t.Any]) -> dict[str, str]:
    """The engine's remote folder -> local folder, from its result."""
    return {folder["remote"]: folder["local"] for folder in result["folders"]}


def _fmt(report: dict[str, t.Any]) -> str:
    inner = f" (inside: {report['inner_s']:.3f} s)" if report.get("inner_s") else ""
    servers = f", both Dovecots' CPU {report['dovecot_cpu_s']:.2f} s" if "dovecot_cpu_s" in report else ""
    return (f"process {report['process_s']:.3f} s{inner}, CPU {report['cpu_s']:.2f} s{servers}, "
            f"peak RSS {mib(report['peak_kb']):.1f} MiB")


def _child(spec: dict[str, t.Any], workdir: Path, label: str, script: str) -> dict[str, t.Any]:
    """Run one of this directory's child scripts with *spec* (a 0600 file, removed after); its RUNNER_JSON report."""
    spec_path = workdir / f"{label}.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    os.chmod(spec_path, 0o600)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([bench.COLLECTIONS] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    started = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, str(HERE / script), str(spec_path)], capture_output=True, text=True,
                              timeout=CHILD_TIMEOUT_S, env=env, check=False)
    finally:
        spec_path.unlink()
    report = None
    for line in proc.stdout.splitlines():
        if line.startswith("RUNNER_JSON "):
            report = json.loads(line[len("RUNNER_JSON "):])
    if proc.returncode != 0 or report is None:
        raise BenchFailure(f"{label}: the child process failed (exit {proc.returncode})\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    report["process_s"] = time.perf_counter() - started
    report["inner_s"] = report["elapsed_s"]
    return report


def scenarios(args: argparse.Namespace, workdir: Path) -> dict[str, t.Any]:
    """Run the scenarios asked for, print the table and the targets; what SCENARIOS_JSON reports."""
    if find_dovecot() is None:
        raise BenchFailure("the dovecot binary was not found; run `make deps` as root (dovecot-imapd) first")
    mail_dir, where = mail_stores(args.mail_on_disk)
    with contextlib.ExitStack() as stack:
        saved_tempdir = tempfile.tempdir
        tempfile.tempdir = mail_dir or saved_tempdir  # where DovecotServer makes its directory (mkdtemp)
        try:
            fsync = None if mail_dir is None else "never"  # on disk: Dovecot's default mail_fsync (optimized)
            remote = stack.enter_context(DovecotServer("remote", mail_fsync=fsync))
            local = stack.enter_context(DovecotServer("local", mail_fsync=fsync))
        finally:
            tempfile.tempdir = saved_tempdir
        log(f"servers up: remote 127.0.0.1:{remote.port}, local 127.0.0.1:{local.port}; mail stores on {where}")
        run = Bench(args, workdir, remote, local)
        run.out["mail_stores"] = where
        for name in SCENARIOS:
            if name in args.only:
                started = time.perf_counter()
                log(f"scenario {name} ...")
                getattr(run, f"scenario_{name}")()
                log(f"scenario {name} took {time.perf_counter() - started:.1f} s")
        log("stopping the servers")
    print()
    print(f"mailops.imap scenarios ({', '.join(args.only)}); remote and local Dovecot over STARTTLS on loopback, mail stores on {where}")
    print("times: medians; 'process' = the whole child process (interpreter start and imports included); CPU: that\n"
          "process's user+system time; both Dovecots' CPU: what the two servers' processes used meanwhile (the dsync\n"
          "anchor's doveadm excluded: it is in its CPU)")
    width = max((len(name) for name, _v in run.rows), default=10)
    for name, value in run.rows:
        print(f"  {name:<{width}}  {value}")
    print()
    print("targets (informational; only correctness fails the bench):")
    for text, target, ok in run.targets:
        print(f"  {'INFO' if ok is None else ('PASS' if ok else 'MISS'):<4}  {text}   [target {target}]")
    print("  PASS  correctness: every run that copied was verified (bytes, flags, INTERNALDATE of every message); "
          "no-change runs copied nothing")
    for title, paths in run.profiles:
        bench.print_profile(title, paths, ("tottime", "cumulative"))
    run.out["targets"] = [{"text": text, "target": target, "pass": ok} for text, target, ok in run.targets]
    run.out["correct"] = True
    return run.out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--only", action="append", choices=SCENARIOS, help="run this scenario (repeatable; default all)")
    parser.add_argument("--repeat", type=int, default=int(os.environ.get("BENCH_REPEAT", "3")),
                        help="runs of each compared thing, alternating (default 3, or BENCH_REPEAT)")
    parser.add_argument("--big-repeat", type=int, default=2, help="runs of the 50,000-message first run and its floor (default 2)")
    parser.add_argument("--profile", action="store_true", help="add a 50,000-message first run under cProfile (scenario big)")
    parser.add_argument("--mail-on-disk", action="store_true", default=os.environ.get("BENCH_MAIL_ON_DISK") == "1",
                        help="keep the Dovecot mail stores in TMPDIR instead of tmpfs (also BENCH_MAIL_ON_DISK=1)")
    args = parser.parse_args()
    args.only = [name for name in SCENARIOS if name in (args.only or SCENARIOS)]
    if args.repeat < 1 or args.big_repeat < 1:
        parser.error("--repeat and --big-repeat must be at least 1")

    def _terminate(signum: int, _frame: t.Any) -> None:
        raise SystemExit(128 + signum)  # unwinds the ExitStack: the Dovecot servers are stopped

    signal.signal(signal.SIGTERM, _terminate)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mailops-scenarios-") as tmp:
        try:
            out = scenarios(args, Path(tmp))
            rc = 0
        except BenchFailure as exc:
            print(f"\nSCENARIOS FAILED: {exc}", file=sys.stderr, flush=True)
            out = {"correct": False, "error": str(exc)[:4000]}
            rc = 1
    log(f"total scenarios time {time.perf_counter() - started:.1f} s")
    print("SCENARIOS_JSON " + json.dumps(out, sort_keys=True), flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
