"""Shared pieces of the match tests: running ``vitalmatch match`` through the real CLI."""

from __future__ import annotations

import os

from tests.processes import CliRun, cli_in_process


def run_match(args, cache, capsys) -> CliRun:
    """``vitalmatch match ARGS`` with ``$VITALMATCH_CACHE`` = ``cache``, through the CLI's own
    ``main`` in this process (the same code path as the command; no interpreter, torch and librosa
    start: ~7 s less per run than a subprocess). The Ctrl-C test runs a real process instead."""
    old = os.environ.get("VITALMATCH_CACHE")
    os.environ["VITALMATCH_CACHE"] = str(cache)
    try:
        return cli_in_process(capsys, "match", *map(str, args))
    finally:
        if old is None:
            del os.environ["VITALMATCH_CACHE"]
        else:
            os.environ["VITALMATCH_CACHE"] = old
