"""WorkerPool with real worker processes: crash, timeout and error isolation, recycling, laziness.

Worker functions live in tests/synth/pool_tasks.py so spawned workers can import them.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.pace import slowdown
from tests.synth import pool_tasks as tasks
from vitalmatch.synth.pool import TaskResult, WorkerPool, describe_exitcode

pytestmark = pytest.mark.timeout(120)


def _alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _worker_pids(pool: WorkerPool) -> list[int]:
    return [w.proc.pid for w in pool._workers]


@pytest.mark.parametrize("workers", [0, -1, 1.5, True])
def test_workers_must_be_a_positive_int(workers):
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        WorkerPool(workers)


def test_map_matches_serial_computation_in_order():
    items = list(range(40))
    with WorkerPool(2) as pool:
        results = list(pool.map(tasks.square, items))
    assert [r.index for r in results] == items
    assert [r.status for r in results] == ["ok"] * len(items)
    assert [r.value for r in results] == [tasks.square(x) for x in items]
    assert all(r.error is None and r.ok for r in results)


def test_map_unordered_yields_every_index_once():
    # Early items sleep longer, so completion order differs from input order.
    items = [(0.02 * (8 - i % 8), i) for i in range(16)]
    with WorkerPool(2) as pool:
        results = list(pool.map_unordered(tasks.sleep_then, items))
    assert sorted(r.index for r in results) == list(range(16))
    assert all(r.ok and r.value == r.index for r in results)
    assert [r.index for r in results] != list(range(16))


def test_sigsegv_kills_only_its_task_and_the_pool_keeps_working():
    with WorkerPool(2) as pool:
        before = set(_worker_pids(pool))
        results = list(pool.map(tasks.segfault_on, [(i, 5) for i in range(12)]))
        assert results[5] == TaskResult(5, "crash", None, "worker died (SIGSEGV)")
        assert [r.value for r in results if r.index != 5] == [i for i in range(12) if i != 5]
        assert all(r.ok for r in results if r.index != 5)
        assert len(pool._workers) == 2
        assert set(_worker_pids(pool)) != before  # the crashed worker was replaced
        assert [r.value for r in pool.map(tasks.square, range(6))] == [0, 1, 4, 9, 16, 25]


VITA_CRASH = textwrap.dedent(
    """
    import vita
    synth = vita.Synth()
    controls = synth.get_controls()
    controls["chorus_on"].set(1.0)
    controls["chorus_voices"].set(7.0)
    synth.render(60, 0.7, 0.1, 0.2)
    """
)


def test_vita_chorus_voices_7_really_segfaults():
    """Precondition of the next test (docs/vita-facts.md §4), checked in a throwaway process."""
    pytest.importorskip("vita")
    proc = subprocess.run([sys.executable, "-c", VITA_CRASH], capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGSEGV


def test_real_vita_segfault_is_isolated_and_initializer_reruns():
    pytest.importorskip("vita")
    voices = [2.0, 7.0, 3.0, 1.0, 4.0, 2.0]
    with WorkerPool(2, initializer=tasks.init_synth, task_timeout_s=30) as pool:
        results = list(pool.map(tasks.render_chorus, voices))
    assert results[1].status == "crash"
    assert "SIGSEGV" in results[1].error
    others = [r for r in results if r.index != 1]
    # The replacement worker has a synth only if the initializer ran again in it.
    assert all(r.ok and 0.05 < r.value < 2.2 for r in others), others


def test_timeout_kills_the_task_and_later_tasks_still_run():
    limit = round(1.0 * slowdown(), 1)  # the quick tasks must never reach it, even on a loaded machine
    items = [(0.01, 0), (60.0, 1), (0.01, 2), (0.01, 3)]
    start = time.monotonic()
    with WorkerPool(1, task_timeout_s=limit) as pool:
        results = list(pool.map(tasks.sleep_then, items))
    assert time.monotonic() - start < 10 * limit
    assert results[1] == TaskResult(1, "timeout", None, f"timed out after {limit} s")
    assert [(r.status, r.value) for r in results if r.index != 1] == [("ok", 0), ("ok", 2), ("ok", 3)]


def test_timeout_counts_from_task_start_not_submission():
    # One worker, four tasks queued at once: each runs 0.4 of the limit, but the last starts 1.2
    # limits after submission. The limit leaves room for a loaded machine.
    limit = 1.0 + 1.0 * slowdown()
    with WorkerPool(1, task_timeout_s=limit, window=8) as pool:
        results = list(pool.map(tasks.sleep_then, [(0.4 * limit, i) for i in range(4)]))
    assert [r.status for r in results] == ["ok"] * 4


def test_exception_gives_error_with_one_line_message():
    with WorkerPool(1) as pool:
        results = list(pool.map(tasks.raise_on, [(i, 1) for i in range(3)]))
        assert [r.status for r in results] == ["ok", "error", "ok"]
        assert results[1].error == "ValueError: bad"
        assert results[1].value is None
        assert 'raise ValueError("bad")' in results[1].traceback
        (bad_result,) = pool.map(tasks.unpicklable_result, [0])
        assert bad_result.status == "error"
        assert bad_result.error.startswith("result not picklable:")
        assert [r.value for r in pool.map(tasks.square, [3])] == [9]


def test_unpicklable_fn_is_refused_at_call_time():
    with WorkerPool(1) as pool, pytest.raises(TypeError, match="picklable"):
        pool.map(lambda x: x, [1])


def test_initializer_reruns_in_a_replacement_worker(tmp_path):
    items = [("init_info", 0), ("init_info", 0), ("segfault_on", (0, 0)), ("init_info", 0)]
    with WorkerPool(1, initializer=tasks.init_record, initargs=(str(tmp_path),)) as pool:
        r = list(pool.map(tasks.call, items))
    assert [x.status for x in r] == ["ok", "ok", "crash", "ok"]
    (pid_a, n1), (pid_a2, n2), (pid_b, n3) = r[0].value, r[1].value, r[3].value
    assert pid_a == pid_a2 and (n1, n2) == (1, 2)
    assert pid_b != pid_a and n3 == 1  # fresh state: the initializer ran again
    inits = {int(p.stem) for p in tmp_path.glob("*.init")}
    assert {pid_a, pid_b} <= inits


def test_max_tasks_per_worker_recycles_workers(tmp_path):
    with WorkerPool(
        1, initializer=tasks.init_record, initargs=(str(tmp_path),), max_tasks_per_worker=3
    ) as pool:
        values = [r.value for r in pool.map(tasks.init_info, range(9))]
    pids = [pid for pid, _ in values]
    assert len(set(pids)) == 3
    assert pids[0] == pids[2] != pids[3] == pids[5] != pids[6] == pids[8]
    assert [n for _, n in values] == [1, 2, 3] * 3


def test_worker_dying_outside_a_task_loses_nothing(tmp_path):
    """Deaths at exit after recycling, or in the initializer, cost no task (pebble breaks here)."""
    with WorkerPool(1, initializer=tasks.init_segfault_at_exit, max_tasks_per_worker=3) as pool:
        results = list(pool.map(tasks.square, range(10)))
    assert [r.value for r in results] == [x * x for x in range(10)]
    counter = str(tmp_path / "starts")
    with WorkerPool(
        1, initializer=tasks.init_segfault_every_second_start, initargs=(counter,), max_tasks_per_worker=2
    ) as pool:
        results = list(pool.map(tasks.square, range(10)))
    assert [r.value for r in results] == [x * x for x in range(10)]
    assert len(Path(counter).read_text()) >= 9  # 5 good workers and 4 that crashed in between


def test_initializer_that_always_fails_raises_instead_of_looping():
    with WorkerPool(1, initializer=tasks.init_fail) as pool, pytest.raises(RuntimeError, match="no synth"):
        list(pool.map(tasks.square, range(3)))


@pytest.mark.parametrize("ordered", [True, False])
def test_lazy_generator_is_consumed_within_the_window(ordered):
    pulled = 0

    def items():
        nonlocal pulled
        for i in range(10_000):
            pulled += 1
            yield i

    window = 4
    with WorkerPool(2, window=window) as pool:
        mapper = pool.map if ordered else pool.map_unordered
        it = mapper(tasks.square, items())
        assert pulled == 0  # nothing is pulled before iteration starts
        for k, result in enumerate(it):
            assert result.ok
            assert pulled <= k + 1 + window
            if k == 49:
                break
        it.close()
        assert pulled <= 50 + window
        # The abandoned map left the pool usable.
        assert [r.value for r in pool.map(tasks.square, [2, 3])] == [4, 9]


def test_generator_error_is_raised_after_the_results_of_earlier_items():
    def items():
        yield 1
        yield 2
        raise KeyError("broken source")

    with WorkerPool(1) as pool:
        got = []
        with pytest.raises(KeyError, match="broken source"):
            for r in pool.map(tasks.square, items()):
                got.append(r.value)
    assert got == [1, 4]


def test_close_leaves_no_child_process_alive():
    pool = WorkerPool(2, max_tasks_per_worker=2, task_timeout_s=None)
    list(pool.map(tasks.square, range(5)))  # recycling leaves retiring workers behind
    it = pool.map_unordered(tasks.sleep_then, [(0.01, 0), (60.0, 1), (60.0, 2)])
    next(it)  # two workers now sleep in abandoned tasks
    pids = _worker_pids(pool) + [p.pid for p, _ in pool._retiring]
    assert any(_alive(pid) for pid in pids)
    start = time.monotonic()
    pool.close()
    pool.close()  # idempotent
    assert time.monotonic() - start < 5
    assert not any(_alive(pid) for pid in pids)
    assert not [p for p in multiprocessing.active_children() if p.name == "vitalmatch-pool-worker"]
    with pytest.raises(RuntimeError, match="closed"):
        pool.map(tasks.square, [1])


def test_context_exit_on_keyboard_interrupt_kills_workers():
    with pytest.raises(KeyboardInterrupt), WorkerPool(2, task_timeout_s=None) as pool:
        pids = _worker_pids(pool)
        for _ in pool.map_unordered(tasks.sleep_then, [(0.01, 0), (60.0, 1), (60.0, 2)]):
            raise KeyboardInterrupt
    assert not any(_alive(pid) for pid in pids)


SIGINT_SCRIPT = textwrap.dedent(
    """
    import signal
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    from tests.synth import pool_tasks as tasks
    from vitalmatch.synth.pool import WorkerPool
    if __name__ == "__main__":
        with WorkerPool(2, task_timeout_s=None) as pool:
            print(*[w.proc.pid for w in pool._workers], flush=True)
            for result in pool.map(tasks.sleep_then, [(30.0, i) for i in range(4)]):
                pass
    """
)


def test_real_sigint_while_waiting_for_results_kills_workers(tmp_path):
    script = tmp_path / "interrupted.py"
    script.write_text(SIGINT_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        time.sleep(0.5)  # let the map start
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode != 0 and "KeyboardInterrupt" in stderr, stderr
    assert len(pids) == 2 and not any(_alive(pid) for pid in pids)


def test_describe_exitcode():
    assert describe_exitcode(-signal.SIGSEGV) == "worker died (SIGSEGV)"
    assert describe_exitcode(-signal.SIGKILL) == "worker died (SIGKILL)"
    assert describe_exitcode(3) == "worker exited with code 3"
