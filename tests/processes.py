"""Helpers for tests that run the CLI: as a child process (the installed entry point, signals)
or in this process (the same ``vitalmatch.cli.main``, for quick checks of error handling)."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass


def default_sigint() -> None:
    """``preexec_fn`` for :class:`subprocess.Popen`: give the child SIGINT's default action.

    A shell without job control starts background commands (``pytest ... &``, some CI runners)
    with SIGINT ignored, and children inherit that; Python then never raises KeyboardInterrupt,
    so a Ctrl-C test would wait for a child that does not hear it.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m vitalmatch ARGS`` in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "vitalmatch", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str


def cli_in_process(capsys, *args: str) -> CliRun:
    """Run ``vitalmatch.cli.main(ARGS)`` here (no interpreter start, ~3 s less than
    :func:`run_cli`); the exit status is what ``sys.exit`` was given (0 when it returns)."""
    from vitalmatch.cli import main

    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return CliRun(code, out.out, out.err)
