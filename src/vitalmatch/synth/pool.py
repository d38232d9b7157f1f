"""Crash-isolated process pool: run ``fn(item)`` over a lazy iterable in worker processes.

Stage: infrastructure for ``synth`` (render presets) and ``refine`` (evaluate CMA-ES candidates).
Input: a picklable module-level ``fn`` and an iterable of picklable items. Output: one
:class:`TaskResult` per item, in input order (:meth:`WorkerPool.map`) or as completed
(:meth:`WorkerPool.map_unordered`).

The ``vita`` bindings can segfault or hang on some inputs (see ``docs/vita-facts.md`` §4), so every
task runs in a worker process. A crash or a timeout kills only the worker that ran the task; the
task is reported as ``"crash"`` / ``"timeout"``, a replacement worker is started (its
``initializer`` runs again) and the run goes on.

Design: one duplex pipe per worker and one task at a time per worker. A dispatcher thread in the
parent waits on the pipes, the process sentinels and a wake-up pipe with
:func:`multiprocessing.connection.wait`, so a dead worker is noticed at once and a task's timeout
starts when the task is handed to an idle, initialised worker, i.e. when it starts running. The
dispatcher pulls items from the iterable only while fewer than ``window`` items are pulled but not
yet handed back to the caller, so memory stays bounded and workers keep running while the caller
processes a result. Workers start side by side: the initializer and its arguments (megabytes of
wavetables for the synth) travel through the worker's pipe from a short-lived thread, not as
``Process`` arguments, which would make each ``start()`` wait until that child had imported the
initializer's module (~2 s each here, one after another).

Why not ``pebble.ProcessPool``: it isolates a crash in a running task correctly, re-runs the
initializer and counts timeouts from task start, with ~0.07 ms overhead per task. But a worker
that dies while no task is running (it segfaults in its initializer, or at exit after
``max_tasks`` recycling, e.g. in the C++ destructor after an out-of-range value corrupted memory)
makes pebble raise ``BrokenProcessPool("All workers expired")``: every pending task is aborted and
the pool is dead. Both cases were reproduced with pebble 5.2.3 (``max_workers=1``,
``max_tasks=3``); ``test_worker_dying_outside_a_task_loses_nothing`` checks them here. Crash and
timeout detection also polls every 0.1 s, and a timed-out worker gets SIGTERM and up to 3 s of
grace while the pool's manager thread waits.
This pool has none of these problems. Measured overhead on a 2-core machine: 0.05–0.13 ms
per trivial task; ~0.4 ms per 2 s vita render (pooled / in-process throughput 0.97 with one
worker; 0.99 for 50 ms CPU-bound tasks).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import pickle
import queue
import signal
import threading
import time
import traceback as traceback_module
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing import connection, get_context
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.reduction import ForkingPickler
from typing import Any

__all__ = ["TaskResult", "WorkerPool", "describe_exitcode"]

_MAX_ERROR_CHARS = 500
# A retiring worker (recycled or idle at close) gets this long to exit by itself before SIGKILL.
_EXIT_GRACE_S = 5.0
_CLOSE_GRACE_S = 2.0


@dataclass(frozen=True)
class TaskResult:
    """Outcome of one ``fn(item)`` call.

    Attributes:
        index: position of the item in the input iterable (0-based).
        status: ``"ok"``; ``"error"`` (``fn`` raised, or the task or result could not be
            pickled); ``"crash"`` (the worker died while running it, e.g. SIGSEGV);
            ``"timeout"`` (it ran longer than ``task_timeout_s`` and its worker was killed).
        value: ``fn``'s return value when ``status == "ok"``, else None.
        error: one-line reason otherwise, e.g. ``"worker died (SIGSEGV)"``,
            ``"timed out after 5.0 s"``, ``"ValueError: bad"``; None when ok.
        traceback: the worker-side traceback when ``fn`` raised, else None (not in repr).
    """

    index: int
    status: str
    value: Any
    error: str | None
    traceback: str | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """True when ``status == "ok"``."""
        return self.status == "ok"


def describe_exitcode(exitcode: int | None) -> str:
    """Human-readable reason for a worker's exit code: ``"worker died (SIGSEGV)"`` for -11."""
    if exitcode is None:
        return "worker died (exit code unknown)"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"worker died ({name})"
    return f"worker exited with code {exitcode}"


def _one_line(exc: BaseException) -> str:
    """``"TypeName: message"`` on one line, at most ``_MAX_ERROR_CHARS`` characters."""
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return line if len(line) <= _MAX_ERROR_CHARS else line[: _MAX_ERROR_CHARS - 1] + "…"


# ----------------------------------------------------------------------------------------------
# Worker process side. Messages to the parent are pickled tuples:
#   ("ready",)                          initializer done, waiting for tasks
#   ("init_error", reason, traceback)   initializer raised; the worker then exits with code 1
#   ("ok", value) | ("error", reason, traceback)   one per task
# Messages from the parent: first the pickled (initializer, initargs), then pickled (fn, item) per
# task; EOF (parent closed its end) means exit.
# ----------------------------------------------------------------------------------------------


def _worker_main(conn: Connection) -> None:
    """Body of a worker process: receive and run the initializer, then one task per message until
    EOF."""
    # Ctrl-C reaches the whole process group; the parent decides, and kills us in close().
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        initializer, initargs = pickle.loads(conn.recv_bytes())
        if initializer is not None:
            initializer(*initargs)
    except BaseException as exc:  # report anything, then die
        _send(conn, ("init_error", _one_line(exc), traceback_module.format_exc()))
        os._exit(1)
    if not _send(conn, ("ready",)):
        return
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the parent closed the pipe (close, recycling) or died
        try:
            fn, item = pickle.loads(data)
            message: tuple = ("ok", fn(item))
        except Exception as exc:
            message = ("error", _one_line(exc), traceback_module.format_exc())
        if not _send(conn, message):
            return


def _send(conn: Connection, message: tuple) -> bool:
    """Send one message; an unpicklable value becomes an error message. False if the pipe is gone."""
    try:
        payload = ForkingPickler.dumps(message)
    except Exception as exc:
        payload = ForkingPickler.dumps(
            ("error", f"result not picklable: {_one_line(exc)}", traceback_module.format_exc())
        )
    try:
        conn.send_bytes(payload)
    except (OSError, ValueError):
        return False
    return True


# ----------------------------------------------------------------------------------------------
# Parent side.
# ----------------------------------------------------------------------------------------------


class _Worker:
    """Parent-side handle of one worker process: its pipe and what it is doing."""

    __slots__ = ("proc", "conn", "sender", "ready", "index", "since", "done")

    def __init__(self, proc: BaseProcess, conn: Connection, sender: threading.Thread | None = None) -> None:
        self.proc = proc
        self.conn = conn
        self.sender = sender  # the thread sending the initializer message (see WorkerPool._spawn)
        self.ready = False  # initializer finished
        self.index: int | None = None  # index of the task it runs, None when idle
        self.since = time.monotonic()  # spawn time, then start time of the current task
        self.done = 0  # tasks finished by this process


class _Stop(Exception):
    """Raised inside the dispatcher when the consumer went away."""


_DONE = object()


def check_pool_settings(
    workers: int,
    task_timeout_s: float | None,
    init_timeout_s: float | None,
    max_tasks_per_worker: int | None,
    window: int | None,
) -> None:
    """Raise ValueError (one line) for settings no pool accepts (:class:`WorkerPool` and
    :class:`~vitalmatch.synth.ray_pool.RayPool` share them)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if task_timeout_s is not None and not task_timeout_s > 0:
        raise ValueError(f"task_timeout_s must be > 0 or None, got {task_timeout_s!r}")
    if init_timeout_s is not None and not init_timeout_s > 0:
        raise ValueError(f"init_timeout_s must be > 0 or None, got {init_timeout_s!r}")
    if max_tasks_per_worker is not None and max_tasks_per_worker < 1:
        raise ValueError(f"max_tasks_per_worker must be >= 1 or None, got {max_tasks_per_worker!r}")
    if window is not None and window < 1:
        raise ValueError(f"window must be >= 1 or None, got {window!r}")


class WorkerPool:
    """A fixed number of crash-isolated worker processes, each running one task at a time.

    Args:
        workers: number of worker processes (>= 1).
        initializer: module-level function run once in every worker process, including every
            replacement, before its first task, as ``initializer(*initargs)``; it typically stores
            per-worker state (a ``vita.Synth``) in a module global that ``fn`` reads. If it raises,
            the worker is replaced; ``2 * workers + 1`` failures in a row raise RuntimeError.
        initargs: picklable arguments for ``initializer``.
        task_timeout_s: seconds one task may run, counted from when a worker starts it; then the
            worker is killed (SIGKILL) and the task reported as ``"timeout"``. None: no limit.
        max_tasks_per_worker: a worker is replaced after this many tasks (guards against leaks
            in the C++ synth). None: never.
        window: at most this many items are pulled from ``items`` but not yet handed back to the
            caller (running, queued, or finished and waiting for the caller). Default
            ``4 * workers``.
        start_method: multiprocessing start method: ``"spawn"`` (default, safe) or
            ``"forkserver"``. ``"fork"`` works but forks from a thread of the parent.
        init_timeout_s: seconds a new worker may take to start and run ``initializer``; then it
            is killed and replaced. None: no limit.

    Use as a context manager; leaving the block (also by an exception or KeyboardInterrupt)
    kills the workers::

        with WorkerPool(2, initializer=init_synth, task_timeout_s=30) as pool:
            for result in pool.map(render_preset, presets):
                ...

    Only one ``map``/``map_unordered`` iteration may be active at a time. Closing or abandoning
    its iterator early kills the workers that still run its tasks (they are replaced).
    """

    def __init__(
        self,
        workers: int,
        *,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple = (),
        task_timeout_s: float | None = 60.0,
        max_tasks_per_worker: int | None = 1000,
        window: int | None = None,
        start_method: str = "spawn",
        init_timeout_s: float | None = 120.0,
    ) -> None:
        check_pool_settings(workers, task_timeout_s, init_timeout_s, max_tasks_per_worker, window)
        self.workers = workers
        self.task_timeout_s = None if task_timeout_s is None else float(task_timeout_s)
        self.init_timeout_s = None if init_timeout_s is None else float(init_timeout_s)
        self.max_tasks_per_worker = max_tasks_per_worker
        self.window = window if window is not None else 4 * workers
        self._ctx: Any = get_context(start_method)  # typeshed's BaseContext lacks Process
        self._workers: list[_Worker] = []
        self._retiring: list[tuple[BaseProcess, float]] = []  # (process, kill-after time)
        self._init_failures = 0  # consecutive initializer failures, reset when a worker gets ready
        self._last_init_error = ""
        self._closed = False
        self._run: _Run | None = None
        self._lock = threading.Lock()
        # Sent to each new worker through its pipe, from a thread (see _spawn).
        self._init_payload = ForkingPickler.dumps((initializer, tuple(initargs)))
        try:
            for _ in range(workers):
                self._spawn()
        except BaseException:
            self.close()
            raise

    # -- public API ------------------------------------------------------------------------------

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[TaskResult]:
        """Run ``fn(item)`` for every item; yield one TaskResult per item, in input order.

        Lazy: nothing runs until the first ``next()``. A slow task at the head holds back later
        results (at most ``window`` are buffered); use :meth:`map_unordered` when order does not
        matter. If ``items`` raises, the results of the items it produced are yielded first, then
        its exception propagates. Raises RuntimeError when the initializer keeps failing.
        """
        return self._iterate(fn, items, ordered=True)

    def map_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[TaskResult]:
        """Run ``fn(item)`` for every item; yield one TaskResult per item as tasks finish.

        Same contract as :meth:`map` except for the order.
        """
        return self._iterate(fn, items, ordered=False)

    def close(self) -> None:
        """Stop the active map, then end all workers; idempotent, the pool is unusable afterwards.

        Busy or initialising workers are killed at once; idle ones see their pipe close and get
        up to 2 s to exit by themselves (so their ``atexit`` handlers run) before SIGKILL.
        """
        self._shutdown(grace_s=_CLOSE_GRACE_S)

    def _shutdown(self, grace_s: float) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            run = self._run
        if run is not None:
            run.stop()
        for worker in self._workers:
            if worker.index is not None or not worker.ready:
                worker.proc.kill()  # busy or still initialising: nothing to wait for
            self._stop_sender(worker)
            _close_quietly(worker.conn)  # an idle worker sees EOF and exits by itself
        procs = [w.proc for w in self._workers] + [p for p, _ in self._retiring]
        self._workers.clear()
        self._retiring.clear()
        deadline = time.monotonic() + grace_s
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.exitcode is None:
                proc.kill()
                proc.join()
            proc.close()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        # On an exception (KeyboardInterrupt included) do not wait for idle workers either.
        self._shutdown(grace_s=_CLOSE_GRACE_S if exc_type is None else 0.0)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # -- internals -----------------------------------------------------------------------------

    def _iterate(self, fn: Callable[[Any], Any], items: Iterable[Any], ordered: bool) -> Iterator[TaskResult]:
        if self._closed:
            raise RuntimeError("WorkerPool is closed")
        try:
            pickle.dumps(fn)
        except Exception as exc:
            raise TypeError(f"fn must be a picklable module-level function: {_one_line(exc)}") from exc
        return self._results(fn, iter(items), ordered)

    def _results(self, fn: Callable[[Any], Any], items: Iterator[Any], ordered: bool) -> Iterator[TaskResult]:
        with self._lock:
            if self._closed:
                raise RuntimeError("WorkerPool is closed")
            if self._run is not None:
                raise RuntimeError("another map()/map_unordered() is still active on this WorkerPool")
            run = self._run = _Run(self, fn, items)
        try:
            run.start()
            buffered: dict[int, TaskResult] = {}
            next_index = 0
            while True:
                got = run.get()
                if got is _DONE:
                    return
                if not ordered:
                    yield got
                    run.consumed(1)
                    continue
                buffered[got.index] = got
                while next_index in buffered:
                    yield buffered.pop(next_index)
                    next_index += 1
                    run.consumed(1)
        finally:
            run.stop()
            with self._lock:
                self._run = None

    def _spawn(self) -> None:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=_worker_main,
            args=(child_conn,),
            name="vitalmatch-pool-worker",
            daemon=True,  # the interpreter kills daemon workers at exit if close() was never called
        )
        try:
            proc.start()
        finally:
            child_conn.close()
        # The initializer and its arguments (megabytes for the synth: wavetables) go through the
        # pipe from a thread. Passed to Process() instead, they would make start() block until the
        # child had imported the initializer's module and read them all (~2 s here), so workers
        # would boot one after another instead of side by side. The worker reports "ready" only
        # after reading the whole message, so no task is sent on the pipe before it is through.
        sender = threading.Thread(
            target=_send_payload,
            args=(parent_conn, self._init_payload),
            name="vitalmatch-pool-init",
            daemon=True,
        )
        sender.start()
        self._workers.append(_Worker(proc, parent_conn, sender))

    @staticmethod
    def _stop_sender(worker: _Worker) -> bool:
        """Kill a worker that is still being sent its initializer message and wait for the sending
        thread to fail (EPIPE), so that its pipe is never closed under a write. True if killed."""
        sender = worker.sender
        if sender is None or not sender.is_alive():
            return False
        worker.proc.kill()
        sender.join(10.0)
        return True

    def _retire(self, worker: _Worker, *, kill: bool) -> None:
        """Remove a worker from service: kill it, or close its pipe and let it exit by itself."""
        self._workers.remove(worker)
        kill = self._stop_sender(worker) or kill
        _close_quietly(worker.conn)
        if kill:
            worker.proc.kill()
            worker.proc.join()
            worker.proc.close()
        else:
            self._retiring.append((worker.proc, time.monotonic() + _EXIT_GRACE_S))

    def _reap(self) -> None:
        """Join retired workers that have exited; SIGKILL those past their grace period."""
        now = time.monotonic()
        still = []
        for proc, kill_after in self._retiring:
            if proc.exitcode is not None:
                proc.close()
            elif now > kill_after:
                proc.kill()
                proc.join()
                proc.close()
            else:
                still.append((proc, kill_after))
        self._retiring = still


def _send_payload(conn: Connection, payload: bytes) -> None:
    """Send the initializer message; a worker that died or was retired meanwhile is not an error
    here (the dispatcher sees its exit)."""
    with contextlib.suppress(OSError, ValueError):
        conn.send_bytes(payload)


def _close_quietly(conn: Connection) -> None:
    with contextlib.suppress(OSError):
        conn.close()


class _Run:
    """One map iteration: a dispatcher thread feeding ``pool``'s workers from ``items``.

    The dispatcher owns the pool's worker list while it runs; results go to the consumer through
    a queue. ``pulled - consumed <= window`` bounds the items held at any time.
    """

    def __init__(self, pool: WorkerPool, fn: Callable[[Any], Any], items: Iterator[Any]) -> None:
        self.pool = pool
        self.fn = fn
        self.items = items
        self.counter = itertools.count()
        self.pending: collections.deque[tuple[int, bytes | memoryview]] = (
            collections.deque()
        )  # pulled, not sent
        self.pulled = 0
        self._consumed = 0
        self.exhausted = False
        self.source_error: BaseException | None = None  # raised by the items iterator
        self.out: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.stopping = False
        self.stop_lock = threading.Lock()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        self.thread = threading.Thread(target=self._main, name="vitalmatch-pool-dispatcher", daemon=True)

    # -- consumer side -------------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def get(self) -> Any:
        """Next TaskResult, or _DONE; re-raises an error of the dispatcher or the items iterator."""
        got = self.out.get()
        if isinstance(got, BaseException):
            raise got
        return got

    def consumed(self, n: int) -> None:
        self._consumed += n
        self._wake()

    def stop(self) -> None:
        """Stop the dispatcher (idempotent); kill and replace workers still running tasks."""
        with self.stop_lock:
            if self.wake_w < 0:
                return
            self.stopping = True
            self._wake()
            if self.thread.ident is not None:
                self.thread.join()
            os.close(self.wake_r)
            os.close(self.wake_w)
            self.wake_r = self.wake_w = -1
            pool = self.pool
            busy = [w for w in pool._workers if w.index is not None]
            for worker in busy:
                pool._retire(worker, kill=True)
            if not pool._closed:
                for _ in busy:
                    pool._spawn()
            # A consumer still suspended in the iterator (close() from elsewhere) must not block.
            self.out.put(RuntimeError("the WorkerPool was closed during map()"))

    def _wake(self) -> None:
        # OSError: the pipe is full (a wake-up is pending anyway) or already closed.
        with contextlib.suppress(OSError):
            os.write(self.wake_w, b"x")

    # -- dispatcher thread ---------------------------------------------------------------------

    def _main(self) -> None:
        try:
            self._loop()
            if self.source_error is not None:
                self.out.put(self.source_error)
            else:
                self.out.put(_DONE)
        except _Stop:
            pass
        except BaseException as exc:
            self.out.put(exc)

    def _loop(self) -> None:
        pool = self.pool
        task_timeout = pool.task_timeout_s
        init_timeout = pool.init_timeout_s
        while len(pool._workers) < pool.workers:  # e.g. a previous run ended in an error
            pool._spawn()
        while True:
            if self.stopping:
                raise _Stop
            self._pull()
            self._dispatch()
            busy = [w for w in pool._workers if w.index is not None]
            if self.exhausted and not self.pending and not busy:
                return
            # Wait for a message, a death, a wake-up or the nearest deadline.
            waitables: dict[Any, tuple[str, _Worker | None]] = {self.wake_r: ("wake", None)}
            deadline = float("inf")
            for w in pool._workers:
                waitables[w.conn] = ("msg", w)
                waitables[w.proc.sentinel] = ("died", w)
                if w.index is not None and task_timeout is not None:
                    deadline = min(deadline, w.since + task_timeout)
                elif not w.ready and init_timeout is not None:
                    deadline = min(deadline, w.since + init_timeout)
            if pool._retiring:
                deadline = min(deadline, min(t for _, t in pool._retiring))
            timeout = None if deadline == float("inf") else max(0.0, deadline - time.monotonic())
            ready = connection.wait(list(waitables), timeout)
            # Messages first: a worker that sent its result and then died still delivers it.
            ready.sort(key=lambda obj: waitables[obj][0] != "msg")
            for obj in ready:
                kind, worker = waitables[obj]
                if kind == "wake":
                    os.read(self.wake_r, 4096)
                elif worker in pool._workers:  # not retired by an earlier event of this batch
                    if kind == "msg":
                        self._on_message(worker)
                    else:
                        self._on_death(worker)
            self._check_deadlines()
            if pool._retiring:
                pool._reap()

    def _pull(self) -> None:
        """Take items from the iterator while the window allows; pickle each into a task."""
        while not self.exhausted and self.pulled - self._consumed < self.pool.window:
            if self.stopping:
                raise _Stop
            try:
                item = next(self.items)
            except StopIteration:
                self.exhausted = True
                return
            except BaseException as exc:  # the caller's generator failed: finish what we have
                self.exhausted = True
                self.source_error = exc
                return
            index = next(self.counter)
            self.pulled += 1
            try:
                payload = ForkingPickler.dumps((self.fn, item))
            except Exception as exc:
                self._emit(
                    TaskResult(
                        index,
                        "error",
                        None,
                        f"task not picklable: {_one_line(exc)}",
                        traceback_module.format_exc(),
                    )
                )
                continue
            self.pending.append((index, payload))

    def _dispatch(self) -> None:
        """Hand pending tasks to idle, initialised workers."""
        if not self.pending:
            return
        for worker in list(self.pool._workers):
            if not self.pending:
                return
            if worker.ready and worker.index is None:
                index, payload = self.pending.popleft()
                worker.index = index
                worker.since = time.monotonic()
                # OSError: it died; its sentinel reports the crash for this task.
                with contextlib.suppress(OSError):
                    worker.conn.send_bytes(payload)

    def _on_message(self, worker: _Worker) -> None:
        pool = self.pool
        try:
            data = worker.conn.recv_bytes()
        except (EOFError, OSError):
            self._on_death(worker)
            return
        try:
            message = pickle.loads(data)
        except Exception as exc:
            message = (
                "error",
                f"result could not be unpickled: {_one_line(exc)}",
                traceback_module.format_exc(),
            )
        kind = message[0]
        if kind == "ready":
            worker.ready = True
            pool._init_failures = 0
            return
        if kind == "init_error":
            worker.proc.join(1.0)  # it exits right after sending this
            self._replace(worker, init_error=message[1])
            return
        index = worker.index
        if index is None:  # cannot happen: a worker only answers tasks it was given
            return
        worker.index = None
        worker.done += 1
        if kind == "ok":
            self._emit(TaskResult(index, "ok", message[1], None))
        else:
            self._emit(TaskResult(index, "error", None, message[1], message[2]))
        limit = pool.max_tasks_per_worker
        if limit is not None and worker.done >= limit:
            pool._retire(worker, kill=False)
            pool._spawn()

    def _on_death(self, worker: _Worker) -> None:
        worker.proc.join(1.0)
        if worker.proc.exitcode is None:  # pipe broke but the process lives: it is unusable
            worker.proc.kill()
            worker.proc.join()
        reason = describe_exitcode(worker.proc.exitcode)
        index = worker.index
        if index is not None:
            self._emit(TaskResult(index, "crash", None, reason))
            self._replace(worker)
        elif not worker.ready:
            self._replace(worker, init_error=f"{reason} during initializer")
        else:
            self._replace(worker)  # died while idle: nothing lost

    def _check_deadlines(self) -> None:
        pool = self.pool
        now = time.monotonic()
        for worker in list(pool._workers):
            if worker.index is not None:
                limit = pool.task_timeout_s
                if limit is not None and now - worker.since >= limit:
                    self._emit(TaskResult(worker.index, "timeout", None, f"timed out after {limit} s"))
                    self._replace(worker)
            elif not worker.ready:
                limit = pool.init_timeout_s
                if limit is not None and now - worker.since >= limit:
                    self._replace(worker, init_error=f"initializer timed out after {limit} s")

    def _replace(self, worker: _Worker, init_error: str | None = None) -> None:
        """Kill ``worker`` (if alive) and start a new one; stop after too many init failures."""
        pool = self.pool
        pool._retire(worker, kill=True)
        pool._spawn()
        if init_error is not None:
            pool._init_failures += 1
            pool._last_init_error = init_error
            if pool._init_failures > 2 * pool.workers:
                raise RuntimeError(
                    f"worker initializer failed {pool._init_failures} times in a row; "
                    f"last: {pool._last_init_error}"
                )

    def _emit(self, result: TaskResult) -> None:
        self.out.put(result)
