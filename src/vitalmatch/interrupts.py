"""Ctrl-C and SIGTERM at a safe moment: the one place where the stages handle signals.

Stage: shared by every stage that writes state or serves: the dataset writer and ``generate``
(:func:`sigint_deferred`: a block that must not be cut in two runs to its end first), training and
the demo server (:func:`signals_caught`: a signal becomes a stop request or a KeyboardInterrupt).
Input: a block of code. Output: the same block, with the signals handled as documented.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def sigint_deferred(*, deliver: bool = True) -> Iterator[None]:
    """Hold SIGINT (Ctrl-C) until the block ends, then deliver it as if it had just arrived.

    Why: Python raises ``KeyboardInterrupt`` between any two bytecodes, including inside a
    callback that a C library makes into Python. HDF5 writes the dataset through such callbacks
    (h5py's ``fileobj`` driver, see :mod:`vitalmatch.data.journal`); an exception there leaves
    HDF5's in-memory state half updated, and the writer could then neither commit nor close
    cleanly. Deferring the signal lets an append, a commit or a close finish first.

    While the block runs, SIGINT only records that it arrived. When the block ends the previous
    handler is restored and, if a SIGINT came, it is handed on once: to the previous Python
    handler (the default one raises ``KeyboardInterrupt`` here, after the block), or re-raised
    with ``os.kill`` if the previous action was ``SIG_DFL``; an ignored SIGINT stays ignored.
    Several SIGINTs during the block count as one. ``deliver=False`` drops a SIGINT that came
    during the block instead (for the last commit of a run that is already stopping).

    Outside the main thread (where Python cannot install signal handlers) the block runs
    without deferral: signals are delivered to the main thread anyway.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda *a: caught.append(a))
    except ValueError:  # not the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and deliver:
            if callable(previous):
                previous(*caught[0])
            elif previous == signal.SIG_DFL:
                os.kill(os.getpid(), signal.SIGINT)


@contextlib.contextmanager
def signals_caught(signals: tuple[signal.Signals, ...], on_signal: Callable[[int], None]) -> Iterator[None]:
    """Call ``on_signal(signum)`` for each of ``signals`` while the block runs; restore after.

    ``on_signal`` may record a stop request that a loop checks (training: checkpoint, then stop),
    or raise ``KeyboardInterrupt`` (the demo server, also for a SIGINT that a background start left
    ignored). Installed only in the main thread, where Python can handle signals; elsewhere the
    block runs unchanged.
    """
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in signals:
            with contextlib.suppress(ValueError):  # not the main interpreter
                previous[sig] = signal.signal(sig, lambda signum, frame: on_signal(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
