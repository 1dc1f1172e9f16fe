"""Child process of the benchmark: runs the engine (or the baseline) once and reports on stdout.

Usage: ``python runner.py SPEC.json``. SPEC: {"mode": "engine"|"baseline", "task": {...}, "target": {...},
"state_path": str, "remote": {...}, "local": {...}, "profile": str|null}. The last stdout line is
``RUNNER_JSON {...}``: the run's own wall time (around sync.run / the baseline only), the process's peak
RSS (VmHWM, read by this process itself at the end, so it is the engine's alone), the RSS before the run,
and the engine's result. The parent (bench.py ``run_child``) measures the whole process too (wall, CPU and peak
RSS from ``wait4``, through launcher.py): the figures its table compares. With "profile", every thread is profiled with cProfile and the statistics are
dumped to PROFILE.<thread>.pstats.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import typing as t

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _start_profiling() -> list[tuple[str, t.Any]]:
    import cProfile
    import threading

    profilers: list[tuple[str, t.Any]] = []
    original = threading.Thread.run

    def profiled_run(self: threading.Thread) -> None:
        profiler = cProfile.Profile()
        profilers.append((self.name, profiler))
        profiler.enable()
        try:
            original(self)
        finally:
            profiler.disable()

    threading.Thread.run = profiled_run  # type: ignore[method-assign]
    main = cProfile.Profile()
    profilers.append(("main", main))
    main.enable()
    return profilers


def _dump_profiles(profilers: list[tuple[str, t.Any]], prefix: str) -> list[str]:
    import pstats

    paths = []
    by_name: dict[str, t.Any] = {}
    for name, profiler in profilers:
        profiler.disable()
        key = "fetch" if "fetch" in name else ("main" if name == "main" else "other")
        stats = pstats.Stats(profiler)
        if key in by_name:
            by_name[key].add(stats)
        else:
            by_name[key] = stats
    for key, stats in by_name.items():
        path = f"{prefix}.{key}.pstats"
        stats.dump_stats(path)
        paths.append(path)
    return paths


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as handle:
        spec = json.load(handle)
    out: dict[str, t.Any] = {"mode": spec["mode"]}
    if spec["mode"] == "engine":
        from ansible_collections.mailops.imap.plugins.module_utils._engine import config, sync

        task = config.parse_task(spec["task"])
        target = config.parse_target(spec["target"])
        out["rss_before_kb"] = status_kb("VmRSS")
        profilers = _start_profiling() if spec.get("profile") else None
        cpu0 = _cpu_s()
        started = time.perf_counter()
        result = sync.run(task, target, spec["state_path"], check_mode=False)
        out["elapsed_s"] = time.perf_counter() - started
        out["cpu_s"] = _cpu_s() - cpu0
        if profilers is not None:
            out["profiles"] = _dump_profiles(profilers, spec["profile"])
        out["result"] = result.as_dict()
    elif spec["mode"] == "baseline":
        import baseline

        out["rss_before_kb"] = status_kb("VmRSS")
        cpu0 = _cpu_s()
        started = time.perf_counter()
        out["result"] = baseline.run(spec["remote"], spec["local"])
        out["elapsed_s"] = time.perf_counter() - started
        out["cpu_s"] = _cpu_s() - cpu0
    else:
        raise SystemExit(f"unknown mode {spec['mode']!r}")
    out["vmhwm_kb"] = status_kb("VmHWM")
    print("RUNNER_JSON " + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
