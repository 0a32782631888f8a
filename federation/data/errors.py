"""The two errors this package raises for bad input.

Both are ``federation.errors.BadInput`` and ValueError, so callers that only care
"was the input bad?" can catch either; callers that want to point at the culprit
read the attributes of DataValidationError.
"""

from __future__ import annotations

from pathlib import Path

from federation.errors import BadInput


class DataDictionaryError(BadInput, ValueError):
    """A data dictionary (or its JSON file) breaks a rule; the message names the rule and the fix."""


class DataValidationError(BadInput, ValueError):
    """A site's data file breaks a rule of the data dictionary.

    Attributes:
        file: the file (or folder) at fault.
        row: 1-based data row (the first row after any header is row 1), or None
            when the problem is not about one row.
        column: the column at fault, or None.
    """

    def __init__(
        self,
        message: str,
        *,
        file: Path | None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        super().__init__(message)
        self.file = file
        self.row = row
        self.column = column
