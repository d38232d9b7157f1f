"""Module-level task and initializer functions for tests/synth/test_pool.py.

Spawned worker processes import this module by name (``tests.synth.pool_tasks``), so it must
stay importable from the repository root and cheap to import (no vita at module level).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

# Per-worker state, set by the initializers below (lives in the worker process only).
STATE: dict[str, object] = {}


def square(x: int) -> int:
    return x * x


def identity(x: object) -> object:
    return x


def pid_of(_: object) -> int:
    """The worker's process id."""
    return os.getpid()


def sleep_then(args: tuple[float, object]) -> object:
    """Sleep ``args[0]`` seconds, then return ``args[1]``."""
    seconds, value = args
    time.sleep(seconds)
    return value


def busy(seconds: float) -> float:
    """Spin the CPU for ``seconds`` (a stand-in for a render); return the time spent."""
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        pass
    return time.perf_counter() - start


def segfault_on(args: tuple[int, int]) -> int:
    """``(x, bad)``: SIGSEGV the worker when ``x == bad``, else return ``x``."""
    x, bad = args
    if x == bad:
        os.kill(os.getpid(), signal.SIGSEGV)
        time.sleep(10)  # the signal is delivered before this returns
    return x


def raise_on(args: tuple[int, int]) -> int:
    """``(x, bad)``: raise ValueError("bad") when ``x == bad``, else return ``x``."""
    x, bad = args
    if x == bad:
        raise ValueError("bad")
    return x


def unpicklable_result(_: object) -> object:
    return lambda: None


def init_record(log_dir: str) -> None:
    """Initializer: record this worker's pid as a file in ``log_dir`` and remember it."""
    STATE["init_pid"] = os.getpid()
    STATE["tasks"] = 0
    Path(log_dir, f"{os.getpid()}.init").touch()


def init_info(_: object) -> tuple[int | None, int]:
    """(pid recorded by init_record, tasks run since init) of this worker."""
    STATE["tasks"] = int(STATE.get("tasks", 0)) + 1
    return STATE.get("init_pid"), int(STATE["tasks"])


def init_fail() -> None:
    raise RuntimeError("no synth for you")


def init_synth() -> None:
    """Initializer: one vita.Synth per worker, deterministic oscillator phases."""
    import vita

    synth = vita.Synth()
    controls = synth.get_controls()
    for n in (1, 2, 3):
        controls[f"osc_{n}_random_phase"].set(0.0)
    STATE["synth"] = synth
    STATE["controls"] = controls


def render_chorus(chorus_voices: float) -> float:
    """Render 0.2 s of the init preset with the chorus on; return the peak amplitude.

    ``chorus_voices`` outside 1..4 (e.g. 7) segfaults inside vita (docs/vita-facts.md §4).
    The synth is reset first so a previous task's setting cannot leak into this one.
    """
    synth = STATE["synth"]
    synth.load_init_preset()
    controls = synth.get_controls()
    controls["chorus_on"].set(1.0)
    controls["chorus_voices"].set(float(chorus_voices))
    audio = synth.render(60, 0.7, 0.1, 0.2)
    return float(abs(audio).max())


def call(args: tuple[str, object]) -> object:
    """``(name, arg)``: run the function ``name`` of this module on ``arg`` (mixes tasks in one map)."""
    name, arg = args
    return globals()[name](arg)


def init_segfault_at_exit() -> None:
    """Initializer: the worker segfaults when it exits (like a C++ destructor on corrupt memory)."""
    import atexit

    atexit.register(os.kill, os.getpid(), signal.SIGSEGV)


def init_segfault_every_second_start(counter_file: str) -> None:
    """Initializer: every second worker started (counted in ``counter_file``) segfaults."""
    with open(counter_file, "a+") as f:
        f.write("x")
        f.flush()
        f.seek(0)
        starts = len(f.read())
    if starts % 2 == 0:
        os.kill(os.getpid(), signal.SIGSEGV)


def render_init(seconds: float) -> float:
    """Render ``seconds`` of the init preset (note 60, 1 s note) with the worker's synth; return RMS."""
    audio = STATE["synth"].render(60, 0.7, 1.0, seconds)
    return float((audio**2).mean() ** 0.5)


def timed_render(seconds: float) -> float:
    """Seconds spent inside one ``render_init(seconds)`` call (to split pool overhead from render time)."""
    start = time.perf_counter()
    render_init(seconds)
    return time.perf_counter() - start
