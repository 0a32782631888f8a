"""What every package's commands share: one table of exit codes, one error line, a plain table.

Every ``workbench`` command exits with one of ``EXIT_CODES`` (documented in the README):
the code says what kind of trouble it was, the one line on stderr says what to do.
``exit_code_for`` reads the kind from the error's class (federation/errors.py, and the
ledger's own classes), so a command catches one base per kind and never prints a
traceback for an expected failure.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import typer

from federation.errors import BadInput, Cancelled, InternalFault, PartyFailed, Refused

EXIT_OK = 0
EXIT_REFUSED = 1  # refused by policy or budget: a site's refusal, a pause, a cap or an allocation
EXIT_BAD_INPUT = 2  # what was given breaks a rule (arguments, node.toml, data, a folder); the line says the fix
EXIT_UNREACHABLE = 3  # a party did not answer or failed: a site, a node, the coordinator, an engine
EXIT_INTERNAL = 4  # the workbench failed, or a record does not verify (a ledger, an audit log)
EXIT_INTERRUPTED = 130  # interrupted (Ctrl-C) or cancelled; a study's Flower run was stopped first

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "done",
    EXIT_REFUSED: "refused by policy or budget (a site's refusal, a paused site, a cap, an allocation)",
    EXIT_BAD_INPUT: "bad input: an argument, a file or a folder breaks a rule; the message says the fix",
    EXIT_UNREACHABLE: "a party unreachable or failed: a site, a node, the coordinator or an engine",
    EXIT_INTERNAL: "internal error, or a record that does not verify (a ledger, an audit log)",
    EXIT_INTERRUPTED: "interrupted or cancelled (Ctrl-C, `workbench study cancel`); the run was stopped first",
}


def exit_code_for(error: BaseException) -> int:
    """The exit code of ``error``'s kind (see EXIT_CODES)."""
    from privacy_budgets.errors import (
        AccountingFault,
        BudgetRefused,
        LedgerIntegrityError,
        PrivacyBudgetError,
    )

    if isinstance(error, (KeyboardInterrupt, Cancelled)):
        return EXIT_INTERRUPTED
    if isinstance(error, (Refused, BudgetRefused)):
        return EXIT_REFUSED
    if isinstance(error, PartyFailed):
        return EXIT_UNREACHABLE
    if isinstance(error, (LedgerIntegrityError, AccountingFault, InternalFault)):
        return EXIT_INTERNAL
    if isinstance(error, (BadInput, PrivacyBudgetError, ValueError, OSError)):
        return EXIT_BAD_INPUT
    return EXIT_INTERNAL


def fail(message: str | BaseException, *, code: int | None = None) -> typer.Exit:
    """Print ``error: MESSAGE`` on one line (stderr); return the Exit to raise.

    Without ``code`` the code comes from the error's kind (bad input for a plain
    message). An exception without a message is named by its class."""
    text = " ".join(str(message).split())
    if not text and isinstance(message, BaseException):
        text = type(message).__name__
    typer.echo(f"error: {text}", err=True)
    if code is None:
        code = exit_code_for(message) if isinstance(message, BaseException) else EXIT_BAD_INPUT
    return typer.Exit(code=code)


EXPECTED = (BadInput, Refused, InternalFault, PartyFailed, Cancelled)


def clear_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a command: our errors (the three bases, the ledger's), file errors, a
    ``ValueError`` (a value that breaks a rule) and Ctrl-C become one line on stderr and
    their exit code, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from privacy_budgets.errors import PrivacyBudgetError

        try:
            return command(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            typer.echo("interrupted.", err=True)
            raise typer.Exit(code=EXIT_INTERRUPTED) from None
        except (*EXPECTED, PrivacyBudgetError, OSError, ValueError) as err:  # ValueError: a value breaks a rule
            raise fail(err) from None

    return wrapper


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell, a dashed line under the headers."""
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=False)]
    lines = [
        "  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=False)).rstrip() for line in [headers, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
