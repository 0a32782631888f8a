"""What every package's commands share: exit codes, one error line, a plain table."""

from __future__ import annotations

import typer

EXIT_FAILED = 1  # a check failed (data that did not validate) or an engine could not start
EXIT_BAD_INPUT = 2  # the command's input breaks a rule; the message says which and how to fix it


def fail(message: str | BaseException, *, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print ``error: MESSAGE`` on one line (stderr); raise the returned Exit.

    An exception without a message is named by its class."""
    text = " ".join(str(message).split())
    if not text and isinstance(message, BaseException):
        text = type(message).__name__
    typer.echo(f"error: {text}", err=True)
    return typer.Exit(code=code)


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell, a dashed line under the headers."""
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=False)]
    lines = [
        "  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=False)).rstrip() for line in [headers, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
