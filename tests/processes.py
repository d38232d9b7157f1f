"""Helpers for tests that start the CLI as a child process and press "Ctrl-C" on it."""

from __future__ import annotations

import signal


def default_sigint() -> None:
    """``preexec_fn`` for :class:`subprocess.Popen`: give the child SIGINT's default action.

    A shell without job control starts background commands (``pytest ... &``, some CI runners)
    with SIGINT ignored, and children inherit that; Python then never raises KeyboardInterrupt,
    so a Ctrl-C test would wait for a child that does not hear it.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
