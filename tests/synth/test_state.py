"""Preset state: a preset read back from the live synth, in a crash-isolated worker."""

from __future__ import annotations

import ctypes
import time

import pytest

from tests.pace import slowdown
from vitalmatch.synth.state import run_isolated


def _segfault(_):
    ctypes.string_at(0)  # SIGSEGV in the worker


def _sleep(seconds):
    time.sleep(seconds)


def test_a_crash_or_hang_while_loading_is_an_error_not_a_crash():
    with pytest.raises(ValueError, match=r"crashed the synth \(worker died \(SIGSEGV\)\)"):
        run_isolated(_segfault, None, 10.0, "cannot load")
    limit = 10 * slowdown()  # a worker's start-up, then the 0.5 s time-out
    t0 = time.monotonic()
    with pytest.raises(ValueError, match="hung"):
        run_isolated(_sleep, 30, 0.5, "cannot load")
    assert time.monotonic() - t0 < limit
