"""What the node's and the coordinator's commands share: exit codes and one error line."""

from __future__ import annotations

import typer

EXIT_FAILED = 1  # a check failed or an engine could not start
EXIT_BAD_INPUT = 2  # the command's input breaks a rule; the message says which and how to fix it


def fail(message: str, *, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print ``error: MESSAGE`` on one line (stderr); raise the returned Exit."""
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    return typer.Exit(code=code)
