"""Crash-isolated worker pool on Ray: :class:`~vitalmatch.synth.pool.WorkerPool`'s interface, with
the workers spread over a Ray cluster (or a Ray started on this machine).

Stage: infrastructure for ``synth`` (``generate --backend ray``) and ``match`` (a folder of sounds
across nodes). Input: a picklable module-level ``fn``, an iterable of picklable items, and the
cluster's address. Output: one :class:`~vitalmatch.synth.pool.TaskResult` per item, in input order
(:meth:`RayPool.map`) or as completed (:meth:`RayPool.map_unordered`), exactly as the local pool
gives them, so :mod:`vitalmatch.data.generate` uses either unchanged.

Design: one Ray actor per worker slot, each a separate worker process with its own state: its
constructor runs ``initializer(*initargs)`` (one ``vita.Synth`` per actor, as in the local pool),
and it runs one task at a time, so a task's timeout counts from when it starts. The driver (the
process that called :meth:`map`) keeps the results and writes every row; workers never touch
the output, so nothing they do can damage rows already written.

Failures cost the one task, never the run (the same contract as the local pool):

- the actor's process dies during a task (a segfault in vita, an OOM kill, its node lost): Ray
  raises ``ActorDiedError``; the task is reported as ``"crash"`` and **recorded as failed, not
  retried** (as the local pool does: a preset that crashes the synth once crashes it again, and
  ``--resume`` and the row-for-row equality with a local run stay as they are); a new actor
  replaces the dead one;
- no result within ``task_timeout_s``: the actor is killed (``ray.kill``), the task reported as
  ``"timeout"`` and the actor replaced;
- ``fn`` raises: ``"error"`` with the one-line reason and the worker-side traceback.

Why actors and not plain Ray tasks: a task would build its synth on every call (~0.1-2 s with the
wavetables) and Ray's own task retries would re-run a crashing preset on another worker. Why not
Ray's ``ActorPool``: it has no timeouts and stops at the first dead actor.

Ray is imported only when a :class:`RayPool` is made (``import vitalmatch`` does not import it;
``ray`` is in the ``dev`` extra). The driver's ``VITALMATCH_*`` environment variables (the match
cache folder, the test fault switch) are passed to every actor through Ray's ``runtime_env``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import socket
import time
import traceback as traceback_module
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vitalmatch.synth.pool import TaskResult, WorkerPool, _one_line, check_pool_settings

__all__ = ["BACKENDS", "RayPool", "check_backend", "open_pool"]

log = logging.getLogger(__name__)

#: The pool backends :func:`open_pool` knows.
BACKENDS = ("local", "ray")
#: Object store of a Ray started here (``address=None``): results are small (one preset's audio),
#: and Ray's default (30% of the RAM) would take /dev/shm from the synth workers.
LOCAL_OBJECT_STORE_BYTES = 200 * 1024**2
#: Seconds to wait for a cluster's port to answer before saying it is unreachable (ray.init itself
#: retries an unreachable GCS for up to 60 s).
CONNECT_TIMEOUT_S = 5.0
#: Ray's default GCS port, for an address given without one.
DEFAULT_RAY_PORT = 6379


def check_backend(backend: str, address: str | None) -> None:
    """Raise ValueError (one line) unless ``backend`` is one of :data:`BACKENDS`, ``address`` goes
    with ``"ray"`` only and is ``"auto"``, ``HOST:PORT`` or ``ray://HOST:PORT``, and ray is
    installed when it is asked for; RuntimeError if nothing answers at ``HOST:PORT`` within
    :data:`CONNECT_TIMEOUT_S`. Does not import ray (a config check runs it before any file is
    made)."""
    if backend not in BACKENDS:
        raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if address is not None and backend != "ray":
        raise ValueError("--address needs --backend ray")
    if backend == "ray" and importlib.util.find_spec("ray") is None:
        raise ValueError("--backend ray needs the ray package: pip install 'ray>=2.50'")
    if address == "auto":
        address = _auto_address()
    if address is not None:
        _probe(address)  # before any output is created: an unreachable cluster is one line


def _auto_address() -> str:
    """The cluster ``--address auto`` joins, found the way ``ray.init("auto")`` finds it
    ($RAY_ADDRESS, else the file ``ray start`` leaves in Ray's temp folder); ValueError (one
    line) when there is none, so that nothing is created before ray.init would fail."""
    import tempfile

    env = os.environ.get("RAY_ADDRESS")
    if env and env != "auto":
        return env
    root = Path(os.environ.get("RAY_TMPDIR") or Path(tempfile.gettempdir()) / "ray")
    current = root / "ray_current_cluster"
    text = current.read_text().strip() if current.is_file() else ""
    if not text:
        raise ValueError(
            "--address auto found no Ray cluster on this machine (no $RAY_ADDRESS, no "
            f"{current}); start one with `ray start --head` or give --address HOST:PORT"
        )
    return text


def _host_port(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``HOST[:PORT]`` or ``ray://HOST:PORT``; ValueError for anything else."""
    rest = address.removeprefix("ray://")
    host, _, port = rest.rpartition(":") if ":" in rest else (rest, "", str(DEFAULT_RAY_PORT))
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--address must be auto, HOST:PORT or ray://HOST:PORT, got {address!r}")
    return host, int(port)


def _probe(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """RuntimeError (one line) if nothing listens at ``address`` within ``timeout_s``.

    Written by hand because ray.init has no connect timeout: it retries an unreachable GCS for up
    to a minute (``gcs_rpc_server_reconnect_timeout_s``) before failing."""
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise RuntimeError(
            f"cannot reach the Ray cluster at {address} ({why}); start one with `ray start --head` "
            "or check --address"
        ) from None


def _connect(address: str | None, num_cpus: int) -> bool:
    """Make sure this process is connected to Ray; True if this call connected (so close()
    disconnects). ``address`` None starts a private local Ray with ``num_cpus`` CPUs on
    127.0.0.1; ``"auto"`` joins the cluster this machine is part of; else ``HOST:PORT``."""
    import ray

    if ray.is_initialized():
        return False  # the caller (a test, a notebook) connected already: use that cluster
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    quiet: dict[str, Any] = dict(
        log_to_driver=False,  # worker logs stay in /tmp/ray/session_latest/logs
        logging_level=logging.ERROR,
        configure_logging=True,
    )
    try:
        if address is None:
            ray.init(
                num_cpus=num_cpus,
                include_dashboard=False,
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                _node_ip_address="127.0.0.1",
                **quiet,
            )
        else:
            ray.init(address=address, **quiet)
    except ConnectionError as exc:  # "auto" without a cluster, or a port that is not Ray's
        line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RuntimeError(f"cannot connect to the Ray cluster at {address}: {line}") from None
    return True


class _Actor:
    """The body of one Ray worker process: runs the initializer once, then one task per call.

    Made a Ray actor class by :func:`_actor_class` (here a plain class, so this module imports
    without ray)."""

    def __init__(self, init: tuple[Callable[..., Any] | None, tuple]) -> None:
        self._init_error: tuple[str, str] | None = None
        try:
            initializer, initargs = init
            if initializer is not None:
                initializer(*initargs)
        except BaseException as exc:  # reported by ready(), so the driver can replace us
            self._init_error = (_one_line(exc), traceback_module.format_exc())

    def ready(self) -> tuple:
        """``("ready", pid)``, or ``("init_error", reason, traceback)``."""
        if self._init_error is not None:
            return ("init_error", *self._init_error)
        return ("ready", os.getpid())

    def run(self, fn: Callable[[Any], Any], item: Any) -> tuple:
        """``("ok", fn(item))`` or ``("error", reason, traceback)``."""
        try:
            return ("ok", fn(item))
        except Exception as exc:
            return ("error", _one_line(exc), traceback_module.format_exc())

    def pid(self) -> int:
        return os.getpid()


_ACTOR_CLASS: Any = None


def _actor_class() -> Any:
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        import ray

        # max_restarts=0: a dead actor stays dead and the pool replaces it (and reports the task);
        # max_task_retries=0: Ray never re-runs a task that crashed its worker.
        _ACTOR_CLASS = ray.remote(max_restarts=0, max_task_retries=0)(_Actor)
    return _ACTOR_CLASS


@dataclass(eq=False)
class _Slot:
    """One worker slot: its actor and what it is doing."""

    actor: Any
    ready_ref: Any  # the pending ready() call while initialising, else None
    since: float  # creation time, then start time of the current task
    task_ref: Any = None
    index: int | None = None  # the task it runs, None when idle
    done: int = 0
    pid: int | None = None


class RayPool:
    """Worker slots on a Ray cluster, each a crash-isolated actor running one task at a time.

    Args:
        workers: worker slots (actors); capped, with a warning, at what the cluster's CPUs
            can hold (``cluster CPUs // cpus_per_worker``, at least 1), so that none waits forever.
        initializer, initargs: run once in every actor (also every replacement) as
            ``initializer(*initargs)``; the arguments go to the object store once (``ray.put``),
            not once per actor. ``2 * workers + 1`` failures in a row raise RuntimeError.
        task_timeout_s: seconds a task may run, from when its actor starts it; then the actor is
            killed and the task reported as ``"timeout"``. None: no limit.
        max_tasks_per_worker: an actor is replaced after this many tasks. None: never.
        window: at most this many items pulled from ``items`` but not yet handed back. Default
            ``4 * workers``.
        address: None starts a private Ray on this machine (127.0.0.1, ``workers`` CPUs, no
            dashboard) and stops it at :meth:`close`; ``"auto"`` or ``HOST:PORT`` connects to a
            running cluster (RuntimeError with one line, within :data:`CONNECT_TIMEOUT_S`, if it
            cannot be reached). If this process is already connected, that connection is used.
        cpus_per_worker: Ray CPUs each actor reserves (a match actor runs its own local pool).
        init_timeout_s: seconds an actor may take to start and run ``initializer``.
        env_vars: environment of every actor; default: the driver's ``VITALMATCH_*`` variables.

    Use as a context manager, like :class:`~vitalmatch.synth.pool.WorkerPool`::

        with RayPool(4, initializer=init_synth, task_timeout_s=30, address="auto") as pool:
            for result in pool.map(render_preset, presets):
                ...
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
        address: str | None = None,
        cpus_per_worker: float = 1,
        init_timeout_s: float | None = 300.0,
        env_vars: Mapping[str, str] | None = None,
    ) -> None:
        check_pool_settings(workers, task_timeout_s, init_timeout_s, max_tasks_per_worker, window)
        if not cpus_per_worker > 0:
            raise ValueError(f"cpus_per_worker must be > 0, got {cpus_per_worker!r}")
        check_backend("ray", address)
        import ray

        self._ray = ray
        self.task_timeout_s = None if task_timeout_s is None else float(task_timeout_s)
        self.init_timeout_s = None if init_timeout_s is None else float(init_timeout_s)
        self.max_tasks_per_worker = max_tasks_per_worker
        self.cpus_per_worker = cpus_per_worker
        self._closed = False
        self._active = False
        self._owns_connection = _connect(address, max(1, round(workers * cpus_per_worker)))
        try:
            fits = int(ray.cluster_resources().get("CPU", 0) // cpus_per_worker)
            if fits < workers:  # info, not warning: a folder match asks for one per file
                log.info(
                    "the Ray cluster has room for %d workers of %g CPU, not %d: using %d",
                    fits,
                    cpus_per_worker,
                    workers,
                    max(fits, 1),
                )
            self.workers = max(1, min(workers, fits))
            self.window = window if window is not None else 4 * self.workers
            if env_vars is None:
                env_vars = {k: v for k, v in os.environ.items() if k.startswith("VITALMATCH_")}
            self._options: dict[str, Any] = {"num_cpus": cpus_per_worker}
            if env_vars:
                self._options["runtime_env"] = {"env_vars": dict(env_vars)}
            self._init_ref = ray.put((initializer, tuple(initargs)))
            self._slots: list[_Slot] = []
            self._init_failures = 0
            self._last_init_error = ""
            for _ in range(self.workers):
                self._spawn()
        except BaseException:
            self.close()
            raise

    # -- public API ------------------------------------------------------------------------------

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[TaskResult]:
        """Run ``fn(item)`` for every item; yield one TaskResult per item, in input order.

        Lazy, like :meth:`WorkerPool.map`; if ``items`` raises, the results of the items it gave
        come first, then its exception. RuntimeError when the initializer keeps failing."""
        return self._iterate(fn, items, ordered=True)

    def map_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[TaskResult]:
        """As :meth:`map`, yielding results as tasks finish."""
        return self._iterate(fn, items, ordered=False)

    def wait_ready(self, timeout_s: float | None = None) -> int:
        """Block until every actor has run its initializer (or ``timeout_s`` passed); return how
        many are ready. Optional: :meth:`map` starts handing out tasks as soon as one is."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            waiting = [s for s in self._slots if s.ready_ref is not None]
            left = None if deadline is None else deadline - time.monotonic()
            if not waiting or (left is not None and left <= 0):
                return len(self._slots) - len(waiting)
            refs = [s.ready_ref for s in waiting]
            done, _ = self._ray.wait(refs, num_returns=len(refs), timeout=left)
            for slot in waiting:
                if slot.ready_ref in done:
                    self._on_ready(slot)

    def pids(self) -> list[int]:
        """Process ids of the ready actors (all on this machine for a local cluster; for tests)."""
        return [s.pid for s in self._slots if s.pid is not None]

    def close(self) -> None:
        """Kill every actor and, if this pool connected to Ray, disconnect (a Ray it started
        stops); idempotent."""
        if self._closed:
            return
        self._closed = True
        for slot in getattr(self, "_slots", []):
            with contextlib.suppress(Exception):
                self._ray.kill(slot.actor)
        if getattr(self, "_slots", None) is not None:
            self._slots.clear()
        if getattr(self, "_owns_connection", False):
            with contextlib.suppress(Exception):
                self._ray.shutdown()

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # -- internals -------------------------------------------------------------------------------

    def _spawn(self) -> None:
        # Ray resolves an ObjectRef given as a top-level argument: the actor receives the stored
        # (initializer, initargs) tuple, fetched from the object store (megabytes of wavetables).
        actor = _actor_class().options(**self._options).remote(self._init_ref)
        self._slots.append(_Slot(actor, actor.ready.remote(), time.monotonic()))

    def _replace(self, slot: _Slot, init_error: str | None = None) -> None:
        with contextlib.suppress(Exception):
            self._ray.kill(slot.actor)
        self._slots.remove(slot)
        self._spawn()
        if init_error is not None:
            self._init_failures += 1
            self._last_init_error = init_error
            if self._init_failures > 2 * self.workers:
                raise RuntimeError(
                    f"worker initializer failed {self._init_failures} times in a row; "
                    f"last: {self._last_init_error}"
                )

    def _iterate(self, fn: Callable[[Any], Any], items: Iterable[Any], ordered: bool) -> Iterator[TaskResult]:
        if self._closed:
            raise RuntimeError("RayPool is closed")
        return self._results(fn, iter(items), ordered)

    def _results(self, fn: Callable[[Any], Any], items: Iterator[Any], ordered: bool) -> Iterator[TaskResult]:
        if self._active:
            raise RuntimeError("another map()/map_unordered() is still active on this RayPool")
        self._active = True
        ray = self._ray
        pending: deque[tuple[int, Any]] = deque()  # pulled, not yet started
        done: dict[int, TaskResult] = {}  # finished, not yet handed back
        arrived: deque[TaskResult] = deque()  # finished in completion order (map_unordered)
        pulled = consumed = next_index = 0
        exhausted = False
        source_error: BaseException | None = None
        fn_ref = ray.put(fn)

        def emit(result: TaskResult) -> None:
            if ordered:
                done[result.index] = result
            else:
                arrived.append(result)

        try:
            while len(self._slots) < self.workers:  # an earlier map was abandoned mid-task
                self._spawn()
            while True:
                while not exhausted and pulled - consumed < self.window:
                    try:
                        item = next(items)
                    except StopIteration:
                        exhausted = True
                    except BaseException as exc:  # the caller's generator failed: finish the rest
                        exhausted, source_error = True, exc
                    else:
                        pending.append((pulled, item))
                        pulled += 1
                for slot in self._slots:  # hand pending tasks to idle, ready actors
                    if not pending:
                        break
                    if slot.ready_ref is None and slot.index is None:
                        slot.index, item = pending.popleft()
                        slot.task_ref = slot.actor.run.remote(fn_ref, item)
                        slot.since = time.monotonic()
                # hand back what is finished (the actors keep running meanwhile)
                while True:
                    if ordered and next_index in done:
                        got = done.pop(next_index)
                        next_index += 1
                    elif not ordered and arrived:
                        got = arrived.popleft()
                    else:
                        break
                    consumed += 1
                    yield got
                busy = [s for s in self._slots if s.index is not None]
                if exhausted and not pending and not busy and not done and not arrived:
                    break
                self._wait(emit)
            if source_error is not None:
                raise source_error
        finally:
            self._active = False
            for slot in [s for s in self._slots if s.index is not None]:
                if not self._closed:  # abandoned mid-task: its result would be stale
                    self._replace(slot)

    def _wait(self, emit: Callable[[TaskResult], None]) -> None:
        """Wait for one result, actor start or deadline; record what happened."""
        ray = self._ray
        refs: dict[Any, _Slot] = {}
        deadline = float("inf")
        for slot in self._slots:
            if slot.ready_ref is not None:
                refs[slot.ready_ref] = slot
                if self.init_timeout_s is not None:
                    deadline = min(deadline, slot.since + self.init_timeout_s)
            elif slot.index is not None:
                refs[slot.task_ref] = slot
                if self.task_timeout_s is not None:
                    deadline = min(deadline, slot.since + self.task_timeout_s)
        timeout = None if deadline == float("inf") else max(0.0, deadline - time.monotonic())
        ready, _ = ray.wait(list(refs), num_returns=1, timeout=timeout)
        if ready:  # take every other finished one too, without waiting
            more, _ = ray.wait([r for r in refs if r not in ready], num_returns=len(refs) - 1, timeout=0)
            ready += more
        for ref in ready:
            slot = refs[ref]
            if slot.ready_ref is not None and ref == slot.ready_ref:
                self._on_ready(slot)
            else:
                self._on_result(slot, emit)
        now = time.monotonic()
        task_limit, init_limit = self.task_timeout_s, self.init_timeout_s
        for slot in list(self._slots):
            if slot.index is not None:
                if task_limit is not None and now - slot.since >= task_limit:
                    emit(TaskResult(slot.index, "timeout", None, f"timed out after {task_limit} s"))
                    self._replace(slot)
            elif slot.ready_ref is not None and init_limit is not None and now - slot.since >= init_limit:
                self._replace(slot, init_error=f"initializer timed out after {init_limit} s")

    def _on_ready(self, slot: _Slot) -> None:
        try:
            message = self._ray.get(slot.ready_ref)
        except self._ray.exceptions.RayActorError as exc:
            self._replace(slot, init_error=f"{_death(exc)} during initializer")
            return
        if message[0] == "init_error":
            self._replace(slot, init_error=message[1])
            return
        slot.ready_ref, slot.pid = None, message[1]
        self._init_failures = 0

    def _on_result(self, slot: _Slot, emit: Callable[[TaskResult], None]) -> None:
        ray = self._ray
        index = slot.index
        assert index is not None
        try:
            message = ray.get(slot.task_ref)
        except ray.exceptions.RayActorError as exc:  # ActorDiedError: the worker process died
            emit(TaskResult(index, "crash", None, _death(exc)))
            self._replace(slot)
            return
        except ray.exceptions.RayError as exc:  # e.g. the result could not be unpickled here
            emit(TaskResult(index, "error", None, _one_line(exc)))
            slot.index = slot.task_ref = None
            return
        slot.index = slot.task_ref = None
        slot.done += 1
        if message[0] == "ok":
            emit(TaskResult(index, "ok", message[1], None))
        else:
            emit(TaskResult(index, "error", None, message[1], message[2]))
        if self.max_tasks_per_worker is not None and slot.done >= self.max_tasks_per_worker:
            self._replace(slot)


def _death(exc: BaseException) -> str:
    """One line for a dead actor: ``"worker died (SIGSEGV)"`` when Ray's message names the
    signal, else ``"worker died (Ray: ...)"`` with Ray's exit detail (Ray 2.60 reports a segfault
    as "Worker unexpectedly exits with a connection error code 2. End of file")."""
    text = str(exc)
    for name in ("SIGSEGV", "SIGKILL", "SIGABRT", "SIGBUS"):
        if name in text:
            return f"worker died ({name})"
    m = re.search(r"Worker exit detail: ([^.]*)", text)
    detail = m.group(1).strip() if m else next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return f"worker died (Ray: {detail[:200] or type(exc).__name__})"


def open_pool(
    backend: str,
    workers: int,
    *,
    address: str | None = None,
    **kwargs: Any,
) -> WorkerPool | RayPool:
    """A :class:`~vitalmatch.synth.pool.WorkerPool` (``backend="local"``) or a :class:`RayPool`
    (``"ray"``, at ``address``) of ``workers`` workers; ``kwargs`` (initializer, initargs,
    task_timeout_s, max_tasks_per_worker, window) go to either. ValueError for an unknown backend
    or an address without Ray."""
    check_backend(backend, address)
    if backend == "ray":
        return RayPool(workers, address=address, **kwargs)
    return WorkerPool(workers, **kwargs)
