"""Shared pieces of the match tests: running ``vitalmatch match`` in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys


def run_match(args, cache, **kw) -> subprocess.CompletedProcess:
    """``python -m vitalmatch match ARGS`` with ``$VITALMATCH_CACHE`` = ``cache`` (text output)."""
    env = {**os.environ, "VITALMATCH_CACHE": str(cache)}
    return subprocess.run(
        [sys.executable, "-m", "vitalmatch", "match", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        **kw,
    )
