"""Checks on the names and small numbers a caller passes to the ledger.

>>> text("dataset", "hospital_01")
'hospital_01'
>>> round_number(None) is None
True
"""

from __future__ import annotations

from typing import Any

from privacy_budgets.errors import LedgerError
from privacy_budgets.state import ALL_PROJECTS


def text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise LedgerError(f"{name} must be a non-empty string; got {value!r}.")
    return value


def optional(name: str, value: Any) -> str | None:
    return None if value is None else text(name, value)


def project(value: Any) -> str:
    value = text("project", value)
    if value == ALL_PROJECTS:
        raise LedgerError(
            f"project may not be named {ALL_PROJECTS!r}: status uses that name "
            "for a dataset's total. Choose another name."
        )
    return value


def round_number(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LedgerError(f"round must be a whole number >= 0 or None; got {value!r}.")
    return value
