"""Benchmark: ``vitalmatch.synth.pool.WorkerPool`` against ``pebble.ProcessPool`` on the same tasks.

Usage::

    python benchmarks/pool_libraries.py [--out benchmarks/results] [--tasks 40]

Issue 16 §4 asks whether pebble can replace the crash-isolated pool. Both libraries run the
promises of ``tests/synth/test_pool.py`` (tasks from ``tests/synth/pool_tasks.py``) and the real
generate worker (``vitalmatch.data.generate._init_worker`` / ``_render_task``), in one run:

1. crash: a task that segfaults (``os.kill(SIGSEGV)``, and the real vita chorus crash) among
   normal tasks: exactly that task fails, every other result arrives, in input order, and the
   replacement worker ran the initializer again.
2. time-out counted from task start: 2 workers, 12 queued tasks of 0.4 x limit, one of them hangs:
   only the hanging task times out, although the last ones start > 2 limits after submission.
3. recycling every 3 tasks (pebble ``max_tasks``): new pid and a fresh initializer every 3 tasks.
4. no lost result: (a) crash + hang + recycling in one map; (b) a worker that segfaults at exit
   after recycling; (c) workers that segfault in their initializer (every second start).
5. start-up with the real 2 MB initializer arguments (registry JSON + wavetables): seconds from
   creating the pool to the first result, and to ``workers`` results, with 2 and 16 workers.
6. throughput: one real preset render (3 notes) per task, 2 workers, start-up excluded; the two
   libraries alternate twice and the best of each counts. Renders are bit-reproducible, so the
   audio of both libraries must be identical. Also: overhead per trivial task (1 worker).

Pebble runs with the spawn context (like ``WorkerPool``), ``schedule()`` per item and the futures
collected in input order (its ``map`` has no per-item status); every wait has a deadline, so a
broken pebble pool is reported as lost results instead of hanging the benchmark. Prints one line
per check with both libraries' results and writes ``pool_libraries.json``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # spawned workers inherit sys.path and import tests.synth.pool_tasks

from tests.synth import pool_tasks as tasks  # noqa: E402

# (status, value, error) per item, in input order; status as in TaskResult, or "lost".
Outcome = list[tuple[str, Any, str | None]]


# ---------------------------------------------------------------------------------- runners
def run_ours(
    fn: Callable,
    items: Iterable,
    workers: int,
    *,
    timeout: float | None = None,
    max_tasks: int | None = None,
    initializer: Callable | None = None,
    initargs: tuple = (),
) -> Outcome:
    """Run ``fn`` over ``items`` in a fresh ``WorkerPool``; one outcome per item."""
    from vitalmatch.synth.pool import WorkerPool

    with WorkerPool(
        workers,
        initializer=initializer,
        initargs=initargs,
        task_timeout_s=timeout,
        max_tasks_per_worker=max_tasks,
    ) as pool:
        return [(r.status, r.value, r.error) for r in pool.map(fn, items)]


def _pebble_pool(workers: int, max_tasks: int | None, initializer: Callable | None, initargs: tuple):
    import pebble

    return pebble.ProcessPool(
        max_workers=workers,
        max_tasks=max_tasks or 0,
        initializer=initializer,
        initargs=initargs,
        context=multiprocessing.get_context("spawn"),
    )


def _collect(futures: list, deadline: float) -> Outcome:
    """Outcomes of pebble futures in submission order; waits at most until ``deadline``."""
    import pebble

    out: Outcome = []
    for f in futures:
        try:
            out.append(("ok", f.result(timeout=max(0.0, deadline - time.monotonic())), None))
        except pebble.ProcessExpired as exc:
            out.append(("crash", None, f"ProcessExpired(exitcode={exc.exitcode})"))
        except (TimeoutError, concurrent.futures.TimeoutError):
            if f.done():
                out.append(("timeout", None, "TimeoutError"))
            else:
                out.append(("lost", None, "no result before the benchmark's deadline"))
        except Exception as exc:
            out.append(
                ("lost" if "expired" in str(exc).lower() else "error", None, f"{type(exc).__name__}: {exc}")
            )
    return out


def run_pebble(
    fn: Callable,
    items: Iterable,
    workers: int,
    *,
    timeout: float | None = None,
    max_tasks: int | None = None,
    initializer: Callable | None = None,
    initargs: tuple = (),
    deadline_s: float = 60.0,
) -> Outcome:
    """Run ``fn`` over ``items`` in a fresh ``pebble.ProcessPool``; one outcome per item."""
    pool = _pebble_pool(workers, max_tasks, initializer, initargs)
    try:
        futures = [pool.schedule(fn, args=(item,), timeout=timeout) for item in items]
        return _collect(futures, time.monotonic() + deadline_s)
    finally:
        pool.stop()
        pool.join(timeout=10)


def both(check: Callable[[Callable], Any]) -> dict[str, Any]:
    """``check(runner)`` for each library: ``{"ours": ..., "pebble": ...}``."""
    return {"ours": check(run_ours), "pebble": check(run_pebble)}


def summary(out: Outcome) -> str:
    """Compact statuses: ``ok x11, crash@5``."""
    n_ok = sum(s == "ok" for s, _, _ in out)
    bad = [f"{s}@{i}" for i, (s, _, _) in enumerate(out) if s != "ok"]
    return ", ".join([f"ok x{n_ok}", *bad[:4]] + ([f"+{len(bad) - 4} more"] if len(bad) > 4 else []))


# ---------------------------------------------------------------------------------- checks
def check_segfault(run) -> dict:
    out = run(tasks.segfault_on, [(i, 5) for i in range(12)], 2)
    ok = out[5][0] == "crash" and [v for i, (s, v, _) in enumerate(out) if i != 5 and s == "ok"] == [
        i for i in range(12) if i != 5
    ]
    return {"pass": ok, "statuses": summary(out), "crash_error": out[5][2]}


def check_vita_crash(run) -> dict:
    voices = [2.0, 7.0, 3.0, 1.0, 4.0, 2.0]
    out = run(tasks.render_chorus, voices, 2, timeout=30, initializer=tasks.init_synth)
    others = [o for i, o in enumerate(out) if i != 1]
    ok = out[1][0] == "crash" and all(s == "ok" and 0.05 < v < 2.2 for s, v, _ in others)
    return {"pass": ok, "statuses": summary(out), "crash_error": out[1][2]}


LIMIT_S = 1.5


def check_timeout_from_start(run) -> dict:
    items = [(60.0 if i == 2 else 0.4 * LIMIT_S, i) for i in range(12)]
    t0 = time.monotonic()
    out = run(tasks.sleep_then, items, 2, timeout=LIMIT_S)
    elapsed = time.monotonic() - t0
    ok = [s for s, _, _ in out] == ["timeout" if i == 2 else "ok" for i in range(12)] and [
        v for i, (_, v, _) in enumerate(out) if i != 2
    ] == [i for i in range(12) if i != 2]
    return {"pass": ok, "statuses": summary(out), "seconds": elapsed}


def check_recycling(run, tmp: Path) -> dict:
    log_dir = tempfile.mkdtemp(dir=tmp)
    out = run(tasks.init_info, range(9), 1, max_tasks=3, initializer=tasks.init_record, initargs=(log_dir,))
    values = [v for s, v, _ in out if s == "ok"]
    pids = [p for p, _ in values]
    ok = (
        len(values) == 9
        and len(set(pids)) == 3
        and pids[0] == pids[2] != pids[3] == pids[5] != pids[6] == pids[8]
        and [n for _, n in values] == [1, 2, 3] * 3
    )
    return {"pass": ok, "statuses": summary(out), "distinct_pids": len(set(pids))}


def check_mixed(run) -> dict:
    items = [
        ("segfault_on", (0, 0))
        if i == 4
        else ("sleep_then", (60.0, i))
        if i == 11
        else ("sleep_then", (0.05, i))
        for i in range(20)
    ]
    out = run(tasks.call, items, 2, timeout=LIMIT_S, max_tasks=3)
    expect = ["crash" if i == 4 else "timeout" if i == 11 else "ok" for i in range(20)]
    values_ok = all(v == i for i, (s, v, _) in enumerate(out) if s == "ok")
    return {"pass": [s for s, _, _ in out] == expect and values_ok, "statuses": summary(out)}


def check_exit_crash(run) -> dict:
    out = run(
        tasks.square, range(10), 1, max_tasks=3, initializer=tasks.init_segfault_at_exit, **_deadline(run)
    )
    ok = [v for _, v, _ in out] == [x * x for x in range(10)]
    return {"pass": ok, "statuses": summary(out), "first_error": next((e for _, _, e in out if e), None)}


def check_init_crash(run, tmp: Path) -> dict:
    counter = str(Path(tempfile.mkdtemp(dir=tmp)) / "starts")
    out = run(
        tasks.square,
        range(10),
        1,
        max_tasks=2,
        initializer=tasks.init_segfault_every_second_start,
        initargs=(counter,),
        **_deadline(run),
    )
    ok = [v for _, v, _ in out] == [x * x for x in range(10)]
    return {"pass": ok, "statuses": summary(out), "first_error": next((e for _, _, e in out if e), None)}


def _deadline(run) -> dict:
    return {"deadline_s": 20.0} if run is run_pebble else {}


# ---------------------------------------------------------------------------------- real worker
def real_initargs() -> tuple:
    """The generate pool's initializer arguments: registry JSON, wavetables, render/validation."""
    from vitalmatch.data.generate import load_catalog
    from vitalmatch.data.validation import ValidationConfig
    from vitalmatch.synth.params import ParamRegistry
    from vitalmatch.synth.render import RenderConfig

    catalog = load_catalog(None)
    registry = ParamRegistry.from_synth(wavetable_names=catalog.names)
    return registry.to_json(), [e.table for e in catalog], RenderConfig(), ValidationConfig(), None


def real_tasks(n: int, first: int = 0) -> list[tuple]:
    """``_render_task`` items for presets ``first .. first + n - 1`` of tier 1, seed 0."""
    from vitalmatch.data.generate import load_catalog
    from vitalmatch.data.sampling import PresetSampler, SamplerConfig
    from vitalmatch.synth.params import ParamRegistry
    from vitalmatch.synth.render import RenderConfig

    registry = ParamRegistry.from_synth(wavetable_names=load_catalog(None).names)
    sampler = PresetSampler(registry, SamplerConfig(tier=1, seed=0))
    notes = RenderConfig().notes
    return [
        (p.index, p.continuous, p.categorical, notes) for p in map(sampler.preset, range(first, first + n))
    ]


def startup(lib: str, workers: int, initargs: tuple) -> dict:
    """Seconds from creating the pool to the first and to the ``workers``-th result (0.2 s tasks)."""
    from vitalmatch.data.generate import _init_worker
    from vitalmatch.synth.pool import WorkerPool

    items = [(0.2, i) for i in range(workers)]
    t0 = time.perf_counter()
    if lib == "ours":
        with WorkerPool(workers, initializer=_init_worker, initargs=initargs, task_timeout_s=60) as pool:
            it = pool.map_unordered(tasks.sleep_then, items)
            next(it)
            first = time.perf_counter() - t0
            n_ok = 1 + sum(r.ok for r in it)
            every = time.perf_counter() - t0
    else:
        pool = _pebble_pool(workers, None, _init_worker, initargs)
        try:
            futures = [pool.schedule(tasks.sleep_then, args=(item,), timeout=60) for item in items]
            done = iter(concurrent.futures.as_completed(futures, timeout=120))
            next(done)
            first = time.perf_counter() - t0
            n_ok = 1 + sum(f.exception() is None for f in done)
            every = time.perf_counter() - t0
        finally:
            pool.stop()
            pool.join(timeout=10)
    return {"first_result_s": first, "all_results_s": every, "ok": n_ok}


def throughput(lib: str, initargs: tuple, items: list[tuple], warmup: list[tuple]) -> dict:
    """Tasks/s of ``_render_task`` on 2 workers after a warm-up, and the rendered audio."""
    from vitalmatch.data.generate import _init_worker, _render_task
    from vitalmatch.synth.pool import WorkerPool

    if lib == "ours":
        with WorkerPool(2, initializer=_init_worker, initargs=initargs, task_timeout_s=60) as pool:
            list(pool.map(_render_task, warmup))
            t0 = time.perf_counter()
            results = [r.value if r.ok else None for r in pool.map(_render_task, items)]
            seconds = time.perf_counter() - t0
    else:
        pool = _pebble_pool(2, None, _init_worker, initargs)
        try:
            concurrent.futures.wait([pool.schedule(_render_task, args=(w,), timeout=60) for w in warmup])
            t0 = time.perf_counter()
            futures = [pool.schedule(_render_task, args=(item,), timeout=60) for item in items]
            results = [f.result() if f.exception() is None else None for f in futures]
            seconds = time.perf_counter() - t0
        finally:
            pool.stop()
            pool.join(timeout=10)
    return {"tasks_per_s": len(items) / seconds, "seconds": seconds, "results": results}


def trivial_overhead_ms(lib: str, n: int = 2000) -> float:
    """Milliseconds per ``square`` task on 1 warmed-up worker."""
    from vitalmatch.synth.pool import WorkerPool

    if lib == "ours":
        with WorkerPool(1) as pool:
            list(pool.map(tasks.square, range(20)))
            t0 = time.perf_counter()
            list(pool.map(tasks.square, range(n)))
            return (time.perf_counter() - t0) / n * 1e3
    pool = _pebble_pool(1, None, None, ())
    try:
        concurrent.futures.wait([pool.schedule(tasks.square, args=(i,)) for i in range(20)])
        t0 = time.perf_counter()
        [f.result() for f in [pool.schedule(tasks.square, args=(i,)) for i in range(n)]]
        return (time.perf_counter() - t0) / n * 1e3
    finally:
        pool.stop()
        pool.join(timeout=10)


def same_audio(a: list, b: list) -> bool:
    """True if two lists of ``_render_task`` results hold bit-identical audio and verdicts."""

    def key(r):
        return None if r is None else (r[0], r[2], [None if x is None else x.tobytes() for x in r[1]])

    return all(isinstance(x, tuple) for x in a + b) and [key(x) for x in a] == [key(x) for x in b]


# ---------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--tasks", type=int, default=40, help="render tasks in the throughput check")
    args = ap.parse_args()
    import pebble

    t_start = time.monotonic()
    load_before = os.getloadavg()
    result: dict[str, Any] = {
        "pebble_version": pebble.__version__ if hasattr(pebble, "__version__") else "?",
        "cpu_count": os.cpu_count(),
        "load_avg_before": load_before,
        "checks": {},
    }
    checks = result["checks"]
    lines: list[str] = []

    def line(name: str, ours: str, theirs: str, extra: str = "") -> None:
        text = f"{name:34} ours: {ours:32} pebble: {theirs:40} {extra}"
        print(text, flush=True)
        lines.append(text)

    def verdict(d: dict) -> str:
        return ("PASS " if d["pass"] else "FAIL ") + d["statuses"]

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name, fn in [
            ("1a segfault among 12 tasks", check_segfault),
            ("1b real vita crash, init re-run", check_vita_crash),
            ("2 timeout from start (2 w, 12 q)", check_timeout_from_start),
            ("3 recycling every 3 tasks", lambda run: check_recycling(run, tmp)),
            ("4a crash+hang+recycle, 20 tasks", check_mixed),
            ("4b worker segfaults at exit", check_exit_crash),
            ("4c worker segfaults in init", lambda run: check_init_crash(run, tmp)),
        ]:
            r = both(fn)
            checks[name] = r
            extra = ""
            if "seconds" in r["ours"]:
                extra = f"({r['ours']['seconds']:.1f} s vs {r['pebble']['seconds']:.1f} s)"
            for key in ("crash_error", "first_error"):
                if r["pebble"].get(key) and not r["pebble"]["pass"]:
                    extra = f"pebble: {r['pebble'][key][:70]}"
            line(name, verdict(r["ours"]), verdict(r["pebble"]), extra)

        initargs = real_initargs()
        import pickle

        mb = len(pickle.dumps(initargs)) / 1e6
        for workers in (2, 16):
            r = {lib: startup(lib, workers, initargs) for lib in ("ours", "pebble")}
            checks[f"5 start-up, {workers} workers"] = r
            o, p = r["ours"], r["pebble"]
            line(
                f"5 start-up {workers:2} w ({mb:.1f} MB init)",
                f"first {o['first_result_s']:.2f} s, all {o['all_results_s']:.2f} s",
                f"first {p['first_result_s']:.2f} s, all {p['all_results_s']:.2f} s",
                f"pebble/ours first {p['first_result_s'] / o['first_result_s']:.2f}, "
                f"all {p['all_results_s'] / o['all_results_s']:.2f}",
            )

        items, warmup = real_tasks(args.tasks, first=4), real_tasks(4)
        runs: dict[str, list[dict]] = {"ours": [], "pebble": []}
        for _ in range(2):
            for lib in ("ours", "pebble"):
                runs[lib].append(throughput(lib, initargs, items, warmup))
        best = {lib: max(rs, key=lambda x: x["tasks_per_s"]) for lib, rs in runs.items()}
        identical = same_audio(best["ours"]["results"], best["pebble"]["results"])
        checks["6 throughput"] = {
            lib: {"tasks_per_s": [x["tasks_per_s"] for x in rs], "best": best[lib]["tasks_per_s"]}
            for lib, rs in runs.items()
        }
        checks["6 throughput"]["identical_audio"] = identical
        o, p = best["ours"]["tasks_per_s"], best["pebble"]["tasks_per_s"]
        line(
            f"6 throughput, {args.tasks} renders, 2 w",
            f"{o:.3f} tasks/s (" + ", ".join(f"{x['tasks_per_s']:.3f}" for x in runs["ours"]) + ")",
            f"{p:.3f} tasks/s (" + ", ".join(f"{x['tasks_per_s']:.3f}" for x in runs["pebble"]) + ")",
            f"pebble/ours {p / o:.3f}; identical audio: {identical}",
        )
        ov = {lib: trivial_overhead_ms(lib) for lib in ("ours", "pebble")}
        checks["overhead_ms_per_trivial_task"] = ov
        line(
            "  overhead per trivial task, 1 w",
            f"{ov['ours']:.3f} ms",
            f"{ov['pebble']:.3f} ms",
            f"pebble/ours {ov['pebble'] / ov['ours']:.2f}",
        )

    result["load_avg_after"] = os.getloadavg()
    result["seconds_total"] = time.monotonic() - t_start
    result["lines"] = lines
    print(
        f"load average before {load_before[0]:.2f}, after {result['load_avg_after'][0]:.2f} "
        f"({os.cpu_count()} cores); total {result['seconds_total']:.0f} s"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pool_libraries.json").write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
