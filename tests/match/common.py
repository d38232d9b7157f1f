"""Shared pieces of the match tests: running ``vitalmatch match`` through the real CLI."""

from __future__ import annotations

import contextlib
import io
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


def run_match_captured(args, cache) -> CliRun:
    """:func:`run_match` without ``capsys`` (for module-scoped fixtures that run one match for
    several tests): the CLI's ``main`` here, its stdout and stderr captured in memory."""
    from vitalmatch.cli import main

    old = os.environ.get("VITALMATCH_CACHE")
    os.environ["VITALMATCH_CACHE"] = str(cache)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(["match", *map(str, args)])
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        if old is None:
            del os.environ["VITALMATCH_CACHE"]
        else:
            os.environ["VITALMATCH_CACHE"] = old
    return CliRun(code, out.getvalue(), err.getvalue())
