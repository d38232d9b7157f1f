"""How fast this machine is right now, for the tests whose limits are in seconds.

A CI machine can be much slower than an idle one: runs here saw 20-82% of the CPU stolen by the
host (``vmstat``'s ``st`` column), and one run took 56 minutes instead of 13. A test whose time
limit is a fixed number of seconds then fails although the code is right. Such tests multiply
their limits by :func:`slowdown`, measured when they start; their assertions stay the same.
"""

from __future__ import annotations

import statistics
import time
from functools import lru_cache

# Vital's init preset, one note held 1 s in a 2 s render at 44.1 kHz: the median on an idle
# 2-core machine of this project's kind (47-51 ms; vita-facts §5 gives 40-100 ms).
IDLE_RENDER_S = 0.048


@lru_cache(maxsize=1)
def _init_synth():
    import vita

    synth = vita.Synth()
    synth.load_init_preset()
    synth.render(60, 0.7, 1.0, 2.0)  # the first render allocates; leave it out of the timing
    return synth


def slowdown(renders: int = 5) -> float:
    """How many times longer a render takes now than on an idle machine (at least 1.0).

    The median of ``renders`` bare renders of Vital's init preset in this process (~0.25 s on an
    idle machine), divided by :data:`IDLE_RENDER_S`.
    """
    synth = _init_synth()
    times = []
    for _ in range(renders):
        t0 = time.perf_counter()
        synth.render(60, 0.7, 1.0, 2.0)
        times.append(time.perf_counter() - t0)
    return max(1.0, statistics.median(times) / IDLE_RENDER_S)
