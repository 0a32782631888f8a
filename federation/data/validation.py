"""Check a raw table against a data dictionary and return typed columns.

The raw table comes from a CSV (every cell text) or a Parquet file (cells may
already be typed). The result has exactly the dictionary's columns, in its
order: numeric as float64 (NaN = missing), integer and binary as int64 (float64
when the column allows missing values, so a column's dtype never depends on the
data), categorical as pandas Categorical with the dictionary's categories.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from federation.data.dictionary import ColumnSpec, DataDictionary
from federation.data.errors import DataValidationError

MISSING_MARKERS = ("", "?", "NA", "NaN")
_MISSING_WORDS = "an empty cell, '?', 'NA' or 'NaN'"


@dataclass(frozen=True, kw_only=True)
class RowConvention:
    """How to tell a person where data row N is in the file.

    header_lines: lines before the first data row in a text file, or None for a
    binary format (Parquet) where only the row number means anything.
    """

    header_lines: int | None

    def note(self, row: int) -> str:
        if self.header_lines is None:
            return "(rows are counted from 1)"
        if self.header_lines == 0:
            return f"(rows are counted from 1; this file has no header, so row {row} is line {row})"
        return f"(rows are data rows counted from 1, header excluded: row {row} is line {row + self.header_lines} of the file)"


def validate_frame(
    *, raw: pd.DataFrame, dictionary: DataDictionary, file: Path, rows: RowConvention
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The typed, validated frame and the warnings (extra columns, clipped or blanked values)."""
    missing_columns = [name for name in dictionary.column_names if name not in raw.columns]
    if missing_columns:
        raise DataValidationError(
            f"{file.name}: missing required column(s) {', '.join(repr(c) for c in missing_columns)}; "
            f"the file has column(s) {', '.join(repr(str(c)) for c in raw.columns)}. "
            f"Rename the file's columns to match data dictionary '{dictionary.name}', or fix the dictionary.",
            file=file,
            column=missing_columns[0],
        )
    warnings: list[str] = []
    extra = [str(c) for c in raw.columns if c not in dictionary.column_names]
    if extra:
        warnings.append(
            f"column(s) {', '.join(repr(c) for c in extra)} are not in data dictionary "
            f"'{dictionary.name}' and were ignored"
        )
    checker = _ColumnChecker(file=file, rows=rows)
    columns = {}
    for spec in dictionary.columns:
        columns[spec.name], warning = checker.check(spec=spec, series=raw[spec.name])
        if warning:
            warnings.append(warning)
    frame = pd.DataFrame(columns)
    frame.index = pd.RangeIndex(len(frame))
    return frame, tuple(warnings)


@dataclass(frozen=True, kw_only=True)
class _Cells:
    """One column's cells: numbers (NaN where missing or not a number), and what the file showed."""

    numbers: np.ndarray
    missing: np.ndarray
    text: np.ndarray | None  # stripped cell text when the source was text, else None

    def shown(self, index: int) -> str:
        if self.text is not None:
            return repr(str(self.text[index]))
        value = float(self.numbers[index])
        return repr(int(value)) if value.is_integer() else repr(value)


@dataclass(frozen=True, kw_only=True)
class _ColumnChecker:
    file: Path
    rows: RowConvention

    def fail(self, *, index: int | None, spec: ColumnSpec, message: str) -> DataValidationError:
        if index is None:
            return DataValidationError(
                f"{self.file.name}, column '{spec.name}': {message}", file=self.file, column=spec.name
            )
        row = index + 1
        return DataValidationError(
            f"{self.file.name}, row {row}, column '{spec.name}': {message} {self.rows.note(row)}",
            file=self.file,
            row=row,
            column=spec.name,
        )

    def check(self, *, spec: ColumnSpec, series: pd.Series) -> tuple[object, str | None]:
        if spec.kind == "categorical" and all(isinstance(c, str) for c in spec.categories or ()):
            return self._check_text_categories(spec=spec, series=series)
        cells = self._numbers(spec=spec, series=series)
        self._check_missing(spec=spec, missing=cells.missing, cells=cells)
        if spec.kind == "integer":
            fractional = ~cells.missing & (cells.numbers != np.floor(cells.numbers))
            if fractional.any():
                index = _first(fractional)
                raise self.fail(
                    index=index,
                    spec=spec,
                    message=f"{cells.shown(index)} is not a whole number; column '{spec.name}' holds "
                    f"whole numbers in {spec.allowed_values}. Correct the value or mark it missing.",
                )
        numbers, warning = self._apply_range_policy(spec=spec, cells=cells)
        if spec.kind == "categorical":
            codes = [None if np.isnan(v) else int(v) for v in numbers]
            return pd.Categorical(codes, categories=list(spec.categories or ())), warning
        if spec.kind == "numeric" or spec.missing == "allowed":
            return numbers.astype(np.float64), warning
        return numbers.astype(np.int64), warning

    def _numbers(self, *, spec: ColumnSpec, series: pd.Series) -> _Cells:
        if pd.api.types.is_numeric_dtype(series.dtype) and not isinstance(series.dtype, pd.CategoricalDtype):
            numbers = series.to_numpy(dtype=np.float64, na_value=np.nan)
            missing = np.isnan(numbers)
            cells = _Cells(numbers=numbers, missing=missing, text=None)
        else:
            text, missing = text_cells(series)
            parsed = pd.to_numeric(pd.Series(np.where(missing, None, text), dtype=object), errors="coerce")
            numbers = parsed.to_numpy(dtype=np.float64, na_value=np.nan)
            cells = _Cells(numbers=numbers, missing=missing, text=text)
            not_a_number = ~missing & np.isnan(numbers)
            if not_a_number.any():
                index = _first(not_a_number)
                raise self.fail(
                    index=index,
                    spec=spec,
                    message=f"{cells.shown(index)} is not a number; column '{spec.name}' is {spec.kind} "
                    f"with allowed values {spec.allowed_values}{_unit(spec)}. Write the value as a number, "
                    f"or mark it missing with {_MISSING_WORDS}.",
                )
        infinite = ~cells.missing & np.isinf(cells.numbers)
        if infinite.any():
            index = _first(infinite)
            raise self.fail(
                index=index,
                spec=spec,
                message=f"{cells.shown(index)} is not a finite number; allowed values are "
                f"{spec.allowed_values}{_unit(spec)}.",
            )
        return cells

    def _check_missing(self, *, spec: ColumnSpec, missing: np.ndarray, cells: _Cells | None) -> None:
        if spec.missing == "error" and missing.any():
            index = _first(missing)
            shown = f" ({cells.shown(index)})" if cells is not None and cells.text is not None else ""
            raise self.fail(
                index=index,
                spec=spec,
                message=f"value is missing{shown}, but data dictionary says column '{spec.name}' may not be "
                "missing (missing='error'). Fill in the value, drop the row, or set missing='allowed' "
                "for this column in the data dictionary.",
            )

    def _apply_range_policy(self, *, spec: ColumnSpec, cells: _Cells) -> tuple[np.ndarray, str | None]:
        numbers = cells.numbers.copy()
        if spec.kind in ("numeric", "integer"):
            outside = ~cells.missing & ((numbers < spec.minimum) | (numbers > spec.maximum))
        else:  # binary or whole-number categories
            allowed = [0, 1] if spec.kind == "binary" else list(spec.categories or ())
            outside = ~cells.missing & ~np.isin(numbers, allowed)
        if not outside.any():
            return numbers, None
        count = int(outside.sum())
        if spec.out_of_range == "error":
            index = _first(outside)
            rule = "outside the allowed range" if spec.kind in ("numeric", "integer") else "not an allowed value"
            raise self.fail(
                index=index,
                spec=spec,
                message=f"{cells.shown(index)} is {rule} {spec.allowed_values}{_unit(spec)}. Correct the value, "
                "or change out_of_range in the data dictionary to 'clip' or 'missing' "
                f"({count} value(s) in this column break the rule).",
            )
        if spec.out_of_range == "clip":
            numbers = np.clip(numbers, spec.minimum, spec.maximum)
            return numbers, (
                f"column '{spec.name}': {count} value(s) outside {spec.allowed_values} clipped to the range "
                "(out_of_range='clip')"
            )
        numbers[outside] = np.nan
        return numbers, (
            f"column '{spec.name}': {count} value(s) outside {spec.allowed_values} treated as missing "
            "(out_of_range='missing')"
        )

    def _check_text_categories(self, *, spec: ColumnSpec, series: pd.Series) -> tuple[object, str | None]:
        text, missing = text_cells(series)
        cells = _Cells(numbers=np.full(len(text), np.nan), missing=missing, text=text)
        self._check_missing(spec=spec, missing=missing, cells=cells)
        outside = ~missing & ~np.isin(text, list(spec.categories or ()))
        values = np.where(missing, None, text).astype(object)
        warning = None
        if outside.any():
            count = int(outside.sum())
            if spec.out_of_range == "error":
                index = _first(outside)
                raise self.fail(
                    index=index,
                    spec=spec,
                    message=f"{cells.shown(index)} is not one of the categories {spec.allowed_values}. "
                    "Recode the value to a listed category, add the category to the data dictionary, "
                    f"or set out_of_range='missing' ({count} value(s) in this column break the rule).",
                )
            values[outside] = None
            warning = (
                f"column '{spec.name}': {count} value(s) not in {spec.allowed_values} treated as missing "
                "(out_of_range='missing')"
            )
        return pd.Categorical(values, categories=list(spec.categories or ())), warning


def text_cells(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Stripped cell text (object array) and a missing mask that honours MISSING_MARKERS."""
    as_text = series.astype("string").str.strip()
    null = as_text.isna().to_numpy()
    text = as_text.fillna("").to_numpy(dtype=object)
    missing = null | np.isin(text, MISSING_MARKERS)
    return text, missing


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _unit(spec: ColumnSpec) -> str:
    return f" {spec.unit}" if spec.unit else ""
