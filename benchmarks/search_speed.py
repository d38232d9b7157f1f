"""Benchmark: search speed against the synth's limit (issue 18, section 5), measured in one run.

Usage::

    python benchmarks/search_speed.py [--tier1 8] [--tier23 8] [--group-s 10] [--out benchmarks/results]

The limit is the synth: ``workers / (seconds of a bare render of the same candidate at the same
length)``; the goals are *search evaluations per second / that limit >= 0.9* and *>= 40
evaluations per second on Vital's init preset* (2 workers, 2 cores). Takes 2-4 minutes.

Presets, in three groups: Vital's init preset (with the reproducibility pins), ``--tier1`` random
Tier-1 presets and ``--tier23`` random Tier-2 and Tier-3 presets (half each) of
:mod:`vitalmatch.data.sampling` (seed ``--seed``; silent ones skipped); from Tier 2 on they
carry their :class:`~vitalmatch.synth.render.PresetExtras` (modulations, LFO shapes) when the search
can take them (probed once: a ``(continuous, categorical, extras)`` candidate). Each is seen as a
search sees it: the target is the preset's own 2 s render (MIDI 60, 1 s note, mono, 44.1 kHz) and
each candidate is the preset with ``--columns`` of its CMA-ES columns
(:func:`vitalmatch.search.searchable_columns`, without ``volume``) moved by N(0, ``--step``), and
one modulation amount too when the preset has connections and they travel with the candidates.

Per preset, interleaved so that both see the same machine load:

1. *bare render*: one :class:`~vitalmatch.synth.render.RenderEngine` in this process
   (``reproducible=False``) brought to each of ``--bare`` candidates; only
   ``engine.synth.render(note, velocity, note_s, render_s)`` is timed (wall and CPU time of this
   thread; CPU < wall means the machine was busy). Median.
2. *search*: the pool the matcher builds (``Matcher(MatchConfig(workers=2, start_set_size=0))``),
   :func:`vitalmatch.search.evaluate_batch` on batches of CMA-ES's default size (``popsize = 4 +
   floor(3 ln n)`` for ``n`` columns) and of twice that, after a warm-up batch that loads the
   preset in each worker; each batch size runs until the group has spent ``--group-s`` seconds on
   it (at least one batch per preset). Evaluations per second = evaluations / wall time.

``ratio = search evals/s / (workers / bare render s)``, per preset; groups and the overall figure
are medians over presets. Beside it, two figures a busy machine does not skew (the benchmark
shares its cores with whatever else runs): the *CPU ratio*, bare render CPU time / the workers'
CPU time per evaluation (read from ``/proc``), i.e. the work an evaluation adds to the render,
and the workers' *CPU use*, their CPU time / (wall time x workers), i.e. how busy the search
keeps them (batch ends, the parent, other programs). On a quiet machine ratio ~ CPU ratio x CPU
use.

Then, where the time goes (in this process, one core):

* one evaluation split into its pieces: a search worker (:class:`vitalmatch.search.worker._Searcher`)
  evaluates ``--breakdown`` candidates of the first preset of each group, under each objective
  of ``SearchTarget.objective`` when it has one, with its engine's methods (:data:`ENGINE_PIECES`)
  and the worker module's loss functions (:data:`WORKER_PIECES`, those that exist) wrapped in
  timers of this thread's CPU time (self time: a piece called inside another is not counted
  twice). ``render_note`` is then the render itself (its flush is counted under ``flush``);
  "rest" is what the wrapped pieces do not cover;
* the task a candidate travels as, read from :func:`~vitalmatch.search.evaluate_batch` itself:
  pickled size and time, the same with the target's audio cut to one sample (today the audio is
  pickled into every task), and a round trip of each through a pipe to a child process that
  unpickles it;
* CMA-ES's own cost in the parent (``ask`` + ``tell`` per generation at the init preset's and the
  largest preset's dimension; the workers wait meanwhile).

To adapt to a changed worker: :func:`search_batch` is the one place that builds candidates for
:func:`~vitalmatch.search.evaluate_batch`, :func:`breakdown` the one that calls the worker's pieces;
new optional fields of ``SearchTarget`` keep their defaults. Writes ``search_speed.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import math
import multiprocessing
import os
import pickle
import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NOTE, NOTE_S, RENDER_S, RATE = 60, 1.0, 2.0, 44100
#: Functions of ``vitalmatch.search.worker`` timed in the breakdown (those that exist are wrapped).
WORKER_PIECES = ("search_features", "search_loss", "best_gain", "loss_features", "candidate_features")
#: Methods of the worker's ``RenderEngine`` timed in the breakdown.
ENGINE_PIECES = ("update", "load", "settle", "flush", "render_note")
SILENT_PEAK = 1e-3


# ------------------------------------------------------------------------------------------ presets
@dataclasses.dataclass
class Case:
    """One preset as the benchmark plays it."""

    group: str  # "init", "tier 1", "tier 2/3"
    name: str
    cont: np.ndarray
    cat: np.ndarray
    extras: object  # PresetExtras or None
    cols: np.ndarray  # CMA-ES columns
    target: object = None  # SearchTarget
    rows: dict = dataclasses.field(default_factory=dict)

    @property
    def popsize(self) -> int:
        return 4 + int(3 * math.log(max(len(self.cols), 1)))  # cma's default


def candidates(case: Case, rng: np.random.Generator, n: int, columns: int, step: float) -> list[tuple]:
    """``n`` CMA-ES-like candidates ``(continuous, categorical, extras)`` around the preset."""
    out = []
    for _ in range(n):
        c = case.cont.copy()
        j = rng.choice(case.cols, size=min(columns, len(case.cols)), replace=False)
        c[j] = np.clip(c[j] + rng.normal(0.0, step, len(j)), 0.0, 1.0)
        extras = case.extras
        if extras is not None and extras.modulations and hasattr(extras, "with_amounts"):
            amounts = np.array([m.amount for m in extras.modulations], dtype=float)
            k = rng.integers(len(amounts))
            amounts[k] += rng.normal(0.0, step)
            extras = extras.with_amounts(amounts)
        out.append((c, case.cat, extras))
    return out


def sample_cases(registry, n_tier1: int, n_tier23: int, seed: int, carry_extras: bool, render) -> list[Case]:
    """The init preset, then audible random presets of Tiers 1, 2 and 3 (``render(cont, cat,
    extras) -> mono`` checks audibility and gives the target)."""
    from vitalmatch.data.sampling import PresetSampler, SamplerConfig
    from vitalmatch.search import SearchTarget, searchable_columns
    from vitalmatch.synth.params import reproducibility_pins

    def make(group, name, cont, cat, extras, tier):
        more = {"extras": extras} if "extras" in inspect.signature(searchable_columns).parameters else {}
        cols = searchable_columns(registry, cont, cat, tier, frozenset({"volume"}), **more)
        audio = render(cont, cat, extras)
        if float(np.abs(audio).max()) < SILENT_PEAK or len(cols) < 2:
            return None
        case = Case(group, name, cont, cat, extras, cols)
        case.target = SearchTarget(f"bench {name}", audio, RATE, NOTE, NOTE_S)
        return case

    cont, cat = registry.from_raw(reproducibility_pins())
    cases = [make("init", "init", cont, cat, None, 1)]
    wanted = [
        (1, "tier 1", n_tier1),
        (2, "tier 2/3", n_tier23 - n_tier23 // 2),
        (3, "tier 2/3", n_tier23 // 2),
    ]
    for tier, group, n in wanted:
        sampler = PresetSampler(registry, SamplerConfig(tier=tier, seed=seed))
        index, found = 0, 0
        while found < n and index < 20 * n + 20:
            p = sampler.preset(index)
            index += 1
            extras = p.extras() if tier >= 2 and carry_extras else None
            case = make(group, p.name, p.continuous, p.categorical, extras, tier)
            if case is not None:
                cases.append(case)
                found += 1
    return cases


# ------------------------------------------------------------------------------------------ search
def search_batch(pool, batch: list[tuple], target, carry_extras: bool):
    """:func:`vitalmatch.search.evaluate_batch` on ``(continuous, categorical, extras)`` triples,
    sent as pairs when the search takes no extras. Returns ``(losses, failures)``."""
    from vitalmatch.search import evaluate_batch

    cands = batch if carry_extras else [(c, k) for c, k, _ in batch]
    losses, _, failures = evaluate_batch(pool, cands, target)
    return losses, failures


def probe_extras(pool, registry) -> bool:
    """Does the search take ``(continuous, categorical, extras)`` candidates?"""
    from vitalmatch.search import SearchTarget
    from vitalmatch.synth.params import reproducibility_pins
    from vitalmatch.synth.render import PresetExtras

    cont, cat = registry.from_raw(reproducibility_pins())
    tone = np.zeros(RATE // 10, np.float32)
    try:
        _, failures = search_batch(
            pool, [(cont, cat, PresetExtras())], SearchTarget("probe", tone, RATE, NOTE, 0.05), True
        )
    except Exception:
        return False
    return failures == 0


def bare_times(engine, batch: list[tuple], render_s: float) -> tuple[float, float]:
    """Median (wall, thread CPU) seconds of ``engine.synth.render`` alone, one per candidate."""
    update = engine.update
    takes_extras = "extras" in inspect.signature(update).parameters
    walls, cpus = [], []
    for c, k, extras in batch:
        if takes_extras and extras is not None:
            update(c, k, extras)
        else:
            update(c, k)
        engine.flush()  # as the worker does before each render: no voice left from the last one
        w, p = time.perf_counter(), time.thread_time()
        engine.synth.render(NOTE, engine.config.velocity, NOTE_S, render_s)
        cpus.append(time.thread_time() - p)
        walls.append(time.perf_counter() - w)
    return statistics.median(walls), statistics.median(cpus)


def children_cpu_s() -> float:
    """CPU seconds (user + system) used so far by this process's live children, i.e. the pool's
    workers (Linux ``/proc``; NaN elsewhere). Read by hand: no process library is a dependency."""
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        return math.nan
    pids = {int(p) for path in tasks.glob("*/children") for p in path.read_text().split()}
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # it exited meanwhile
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def measure_search(pool, case: Case, rng, share_s: float, size: int, args, carry_extras: bool) -> dict:
    """Batches of ``size`` until ``share_s`` seconds have passed (at least one): evaluations per
    second, and the CPU the workers and this process spent per evaluation."""
    evals, failures = 0, 0
    cpu0, parent0, t0 = children_cpu_s(), time.process_time(), time.perf_counter()
    while True:
        batch = candidates(case, rng, size, args.columns, args.step)
        _, failed = search_batch(pool, batch, case.target, carry_extras)
        evals += len(batch)
        failures += failed
        wall = time.perf_counter() - t0
        if wall >= share_s:
            workers_cpu = max(0.0, children_cpu_s() - cpu0)
            return {
                "evals": evals,
                "wall_s": wall,
                "failures": failures,
                "evals_per_s": evals / wall,
                "worker_cpu_ms_per_eval": 1000 * workers_cpu / evals,
                "parent_cpu_ms_per_eval": 1000 * (time.process_time() - parent0) / evals,
                "worker_cpu_use": workers_cpu / (wall * args.workers),
            }


# ------------------------------------------------------------------------------------------ breakdown
class Timers:
    """Self-time accounting of wrapped callables (nested wrapped calls are not counted twice) on
    ``clock`` (default: this thread's CPU time, which other programs on the machine do not skew)."""

    def __init__(self, clock=time.thread_time) -> None:
        self.clock = clock
        self.self_s: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[float] = []

    def wrap(self, name: str, fn):
        def timed(*a, **k):
            t0 = self.clock()
            self._stack.append(0.0)
            try:
                return fn(*a, **k)
            finally:
                dt = self.clock() - t0
                inner = self._stack.pop()
                self.self_s[name] += dt - inner
                self.calls[name] += 1
                if self._stack:
                    self._stack[-1] += dt

        return timed

    def reset(self) -> None:
        self.self_s.clear()
        self.calls.clear()


def _objectives(target) -> list[tuple[str, object]]:
    """The target under each objective the search knows (``SearchTarget.objective``, if any)."""
    import vitalmatch.search.loss as loss_module

    if not hasattr(target, "objective"):
        return [("-", target)]
    names = getattr(loss_module, "OBJECTIVES", (target.objective,))
    return [(name, dataclasses.replace(target, objective=name)) for name in names]


def breakdown(registry, tables, cases: list[Case], n: int, args, carry_extras: bool) -> list[dict]:
    """CPU milliseconds per evaluation of each piece of a search worker's ``evaluate``."""
    import vitalmatch.search.worker as worker_module

    searcher = worker_module._Searcher(registry, tables, RATE)
    timers = Timers()
    originals = {name: getattr(worker_module, name) for name in WORKER_PIECES if hasattr(worker_module, name)}
    for name in ENGINE_PIECES:
        if hasattr(searcher.engine, name):
            setattr(searcher.engine, name, timers.wrap(name, getattr(searcher.engine, name)))
    takes_extras = "extras" in inspect.signature(searcher.evaluate).parameters
    out = []
    try:
        for name, fn in originals.items():
            setattr(worker_module, name, timers.wrap(name, fn))
        for case in cases:
            for objective, target in _objectives(case.target):
                rng = np.random.default_rng(args.seed + 7)
                batch = candidates(case, rng, n + 1, args.columns, args.step)

                def evaluate(c, k, extras, target=target):
                    if takes_extras and carry_extras and extras is not None:
                        return searcher.evaluate(c, k, target, extras=extras)
                    return searcher.evaluate(c, k, target)

                evaluate(*batch[0])  # loads the preset, caches the target's features
                timers.reset()
                t0, c0 = time.perf_counter(), timers.clock()
                for cand in batch[1:]:
                    evaluate(*cand)
                wall, total = (time.perf_counter() - t0) / n, (timers.clock() - c0) / n
                pieces = {k: 1000 * v / n for k, v in timers.self_s.items()}
                pieces["rest"] = 1000 * total - sum(pieces.values())
                out.append(
                    {
                        "preset": case.name,
                        "group": case.group,
                        "objective": objective,
                        "ms_total": 1000 * total,
                        "ms_wall_total": 1000 * wall,
                        "ms": pieces,
                        "calls": {k: v / n for k, v in timers.calls.items()},
                    }
                )
    finally:
        for name, fn in originals.items():
            setattr(worker_module, name, fn)
    return out


def _echo_child(conn) -> None:
    """Child of the pipe round trip: unpickle each message (as a pool worker does), answer 1 byte."""
    while True:
        try:
            data = conn.recv_bytes()
        except EOFError:
            return
        pickle.loads(data)
        conn.send_bytes(b"k")


class _TaskTap:
    """Takes the pool's place in :func:`vitalmatch.search.evaluate_batch` to read the tasks it
    would send, exactly as built (nothing is evaluated)."""

    def __init__(self) -> None:
        self.tasks: list[tuple] = []

    def map_unordered(self, fn, items):
        self.tasks = [(fn, item) for item in items]
        return iter(())


def ipc_costs(case: Case, carry_extras: bool, reps: int = 200) -> dict:
    """Bytes and milliseconds of one search task, with and without the target's audio."""
    from multiprocessing.reduction import ForkingPickler

    from vitalmatch.search import SearchTarget

    tap = _TaskTap()
    search_batch(tap, candidates(case, np.random.default_rng(0), 1, 1, 0.0), case.target, carry_extras)
    task = tap.tasks[0]

    def lean(x):
        if isinstance(x, SearchTarget):
            return dataclasses.replace(x, audio=np.zeros(1, np.float32))
        return tuple(lean(y) for y in x) if isinstance(x, tuple) else x

    parent, child = multiprocessing.get_context("fork").Pipe()
    proc = multiprocessing.get_context("fork").Process(target=_echo_child, args=(child,), daemon=True)
    proc.start()
    out = {}
    try:
        for label, item in (("task", task), ("task_without_audio", lean(task))):
            dumps, loads, trips = [], [], []
            for _ in range(reps):
                t = time.perf_counter()
                payload = bytes(ForkingPickler.dumps(item))
                dumps.append(time.perf_counter() - t)
                t = time.perf_counter()
                pickle.loads(payload)
                loads.append(time.perf_counter() - t)
                t = time.perf_counter()
                parent.send_bytes(payload)
                parent.recv_bytes()
                trips.append(time.perf_counter() - t)
            out[label] = {
                "bytes": len(payload),
                "ms_pickle": 1000 * statistics.median(dumps),
                "ms_unpickle": 1000 * statistics.median(loads),
                "ms_pipe_round_trip": 1000 * statistics.median(trips),
            }
    finally:
        parent.close()
        proc.join(5)
    full, lean_ = out["task"], out["task_without_audio"]
    out["ms_audio_per_task"] = (
        full["ms_pickle"] + full["ms_pipe_round_trip"] - lean_["ms_pickle"] - lean_["ms_pipe_round_trip"]
    )
    return out


def cma_costs(dims: list[int], generations: int = 20) -> dict:
    """Milliseconds per generation of ``cma``'s ask + tell in the parent, at each dimension."""
    import cma

    out = {}
    for n in sorted(set(dims)):
        es = cma.CMAEvolutionStrategy(np.full(n, 0.5), 0.1, {"bounds": [0.0, 1.0], "seed": 1, "verbose": -9})
        rng = np.random.default_rng(0)
        t, c = time.perf_counter(), time.process_time()
        for _ in range(generations):
            xs = es.ask()
            es.tell(xs, rng.random(len(xs)).tolist())
        ms = 1000 * (time.perf_counter() - t) / generations
        cpu_ms = 1000 * (time.process_time() - c) / generations  # all threads (BLAS may use several)
        out[str(n)] = {
            "popsize": es.popsize,
            "ms_per_generation": ms,
            "cpu_ms_per_generation": cpu_ms,
            "ms_per_eval": ms / es.popsize,
        }
    return out


# ------------------------------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tier1", type=int, default=8, help="random Tier-1 presets")
    ap.add_argument("--tier23", type=int, default=8, help="random Tier-2 and Tier-3 presets (half each)")
    ap.add_argument("--group-s", type=float, default=10.0, help="search seconds per group and batch size")
    ap.add_argument("--bare", type=int, default=5, help="bare renders per preset (candidates)")
    ap.add_argument("--columns", type=int, default=4, help="columns moved per candidate")
    ap.add_argument("--step", type=float, default=0.02, help="std of a move, normalised units")
    ap.add_argument("--breakdown", type=int, default=12, help="evaluations per breakdown preset")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results")
    args = ap.parse_args()

    import torch

    from vitalmatch.match import MatchConfig, Matcher
    from vitalmatch.synth.render import RenderConfig, RenderEngine

    torch.set_num_threads(1)
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    matcher = Matcher(MatchConfig(workers=args.workers, start_set_size=0))
    t_matcher = time.perf_counter() - t_start
    registry, tables, pool = matcher.registry, matcher.tables, matcher.pool
    engine = RenderEngine(registry, tables, RenderConfig(sample_rate=RATE, reproducible=False))
    carry = probe_extras(pool, registry)

    def render(cont, cat, extras):
        engine.load(cont, cat, extras)
        return engine.render_note(NOTE, NOTE_S, RENDER_S).mean(axis=0).astype(np.float32)

    cases = sample_cases(registry, args.tier1, args.tier23, args.seed, carry, render)
    print(
        f"{len(cases)} presets; matcher ready in {t_matcher:.1f} s; extras travel with the candidates: "
        f"{'yes' if carry else 'no (Tier-2/3 presets are searched and timed without their modulations)'}",
        flush=True,
    )
    groups = {g: [c for c in cases if c.group == g] for g in dict.fromkeys(c.group for c in cases)}
    for g, members in groups.items():
        share = args.group_s / len(members)
        for case in members:
            rng = np.random.default_rng([args.seed, cases.index(case)])
            render_s = len(case.target.audio) / RATE
            engine.load(case.cont, case.cat, case.extras)
            wall, cpu = bare_times(
                engine, candidates(case, rng, args.bare, args.columns, args.step), render_s
            )
            limit = args.workers / wall
            search_batch(
                pool, candidates(case, rng, args.workers, args.columns, args.step), case.target, carry
            )
            row = {"bare_ms": 1000 * wall, "bare_cpu_ms": 1000 * cpu, "limit_evals_per_s": limit}
            for label, size in (("pop", case.popsize), ("2pop", 2 * case.popsize)):
                m = measure_search(pool, case, rng, share, size, args, carry)
                cpu_ratio = (
                    row["bare_cpu_ms"] / m["worker_cpu_ms_per_eval"]
                    if m["worker_cpu_ms_per_eval"]
                    else math.nan
                )
                row[label] = {"size": size, **m, "ratio": m["evals_per_s"] / limit, "cpu_ratio": cpu_ratio}
            case.rows = row
            pop, pop2 = row["pop"], row["2pop"]
            print(
                f"{g:8s} {case.name:18s} n={len(case.cols):3d} pop={case.popsize:2d}  "
                f"bare {row['bare_ms']:6.1f} ms (cpu {row['bare_cpu_ms']:6.1f})  limit {limit:5.1f}/s  "
                f"search {pop['evals_per_s']:5.1f}/s (2x pop {pop2['evals_per_s']:5.1f}/s)  "
                f"ratio {pop['ratio']:.2f} ({pop2['ratio']:.2f})  cpu ratio {pop['cpu_ratio']:.2f}",
                flush=True,
            )

    picks = [members[0] for members in groups.values()]
    try:
        parts = breakdown(registry, tables, picks, args.breakdown, args, carry)
    except Exception as exc:  # the worker changed shape: report, keep the rest
        parts = [{"error": f"{type(exc).__name__}: {exc}"}]
    ipc = ipc_costs(cases[0], carry)
    cma_ms = cma_costs([len(c.cols) for c in (cases[0], max(cases, key=lambda c: len(c.cols)))])
    matcher.close()

    def med(xs):
        return float(statistics.median(xs)) if xs else math.nan

    summary = {}
    heads = ("presets", "bare ms", "limit/s", "evals/s", "ratio", "2x pop", "cpu rat", "cpu use")
    print(f"\n{'group':10s} " + " ".join(f"{h:>8s}" for h in heads))
    for g, members in list(groups.items()) + [("overall", cases)]:
        s = {
            "presets": len(members),
            "bare_ms": med([c.rows["bare_ms"] for c in members]),
            "limit_evals_per_s": med([c.rows["limit_evals_per_s"] for c in members]),
            "evals_per_s": med([c.rows["pop"]["evals_per_s"] for c in members]),
            "ratio": med([c.rows["pop"]["ratio"] for c in members]),
            "ratio_2pop": med([c.rows["2pop"]["ratio"] for c in members]),
            "cpu_ratio": med([c.rows["pop"]["cpu_ratio"] for c in members]),
            "worker_cpu_use": med([c.rows["pop"]["worker_cpu_use"] for c in members]),
            "failures": sum(c.rows[k]["failures"] for c in members for k in ("pop", "2pop")),
        }
        summary[g] = s
        cells = (
            s["bare_ms"],
            s["limit_evals_per_s"],
            s["evals_per_s"],
            s["ratio"],
            s["ratio_2pop"],
            s["cpu_ratio"],
            s["worker_cpu_use"],
        )
        print(f"{g:10s} {s['presets']:8d} " + " ".join(f"{x:8.2f}" for x in cells))
    print(
        "\none evaluation, CPU ms in this process (self time of each piece; render_note = the render itself):"
    )
    for part in parts:
        if "error" in part:
            print(f"  breakdown skipped: {part['error']}")
            continue
        bits = "  ".join(f"{k} {v:.1f}" for k, v in sorted(part["ms"].items(), key=lambda kv: -kv[1]))
        print(f"  {part['preset']:18s} {part['objective']:6s} total {part['ms_total']:6.1f}: {bits}")
    full, lean = ipc["task"], ipc["task_without_audio"]
    print(
        f"task: {full['bytes']} bytes, pickle {full['ms_pickle']:.3f} ms, pipe round trip "
        f"{full['ms_pipe_round_trip']:.3f} ms; without the target audio {lean['bytes']} bytes, "
        f"{lean['ms_pickle']:.3f} / {lean['ms_pipe_round_trip']:.3f} ms: the audio costs "
        f"{ipc['ms_audio_per_task']:.3f} ms per task in the parent"
    )
    print(
        "cma ask+tell in the parent (the workers wait meanwhile): "
        + ", ".join(
            f"n={n}: {v['ms_per_generation']:.1f} ms/generation (cpu {v['cpu_ms_per_generation']:.1f}), "
            f"{v['ms_per_eval']:.2f} ms/eval"
            for n, v in cma_ms.items()
        )
    )
    load_end = os.getloadavg()
    print(f"load average at start {load_start[0]:.2f}, at end {load_end[0]:.2f} ({os.cpu_count()} cores)")
    init = summary.get("init", {})
    print(
        f"(by CPU time, which a busy machine does not skew: bare render CPU / worker CPU per evaluation = "
        f"{summary['overall']['cpu_ratio']:.2f}; the workers used {summary['overall']['worker_cpu_use']:.2f} "
        f"of their {args.workers} cores)"
    )
    print(f"search / limit = {summary['overall']['ratio']:.2f} (goal >= 0.9)")
    print(f"init preset: {init.get('evals_per_s', math.nan):.0f} evals/s (goal >= 40)")

    result = {
        "settings": {
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "note": NOTE,
            "note_s": NOTE_S,
            "render_s": RENDER_S,
            "sample_rate": RATE,
            "extras_in_search": carry,
        },
        "seconds": time.perf_counter() - t_start,
        "matcher_start_s": t_matcher,
        "load_average": {"start": load_start, "end": load_end, "cores": os.cpu_count()},
        "summary": summary,
        "goals": {
            "search_over_limit": summary["overall"]["ratio"],
            "init_evals_per_s": init.get("evals_per_s"),
        },
        "presets": [
            {"group": c.group, "name": c.name, "columns": len(c.cols), "popsize": c.popsize, **c.rows}
            for c in cases
        ],
        "breakdown": parts,
        "ipc": ipc,
        "cma": cma_ms,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "search_speed.json").write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out / 'search_speed.json'} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
