"""The ``llmmeter`` command line, a wing of the library: nothing outside it imports it.

The console script (``llmmeter = "llmmeter._cli:run"``) and ``python -m llmmeter`` call
:func:`run`; tests call :func:`main` with an argument list. The parser root is ``app``, one
module per command (``prices``, ``policy``, ``status``, ``evaluate``, ``demo``, ``report``)
sits under it, and what the commands share (``common``, ``otlp``, ``summary`` and the status
command's parts) under those: every import points down that stack.

This module imports nothing of the wing until a command runs: importing any
``llmmeter._cli.x`` runs this file first, so an import here would point back up.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``llmmeter`` command and return its exit code (0 ok, 1 unpriced, 2 usage)."""
    from .app import main as run_command

    return run_command(argv)


def run() -> None:
    """Console-script entry point: exit with :func:`main`'s code."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`llmmeter prices --list | head`): not an error of ours.
        # Point stdout at devnull so the interpreter's final flush stays quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    except KeyboardInterrupt:
        # Ctrl-C on a long read (a huge file, a pipe that never ends): stop, no traceback.
        print("\nllmmeter: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)
