"""Row filters of a query (``where``), checked against the public data dictionary.

A filter that no value the dictionary allows can satisfy ("age > 200" when ages
lie in [18, 95], a category that does not exist, "age > 70 and age < 60") selects
nobody: that is known from public facts alone, so it is refused before any site
reads its data. Whether a possible filter selects few records at a site is never
told exactly: the noisy count decides, and small groups are suppressed.

>>> from datasets_synthetic import SYNTHETIC_HOSPITALS_DICTIONARY as d
>>> filters = parse_where({"age": (">=", 65), "admission_type": ["emergency", "transfer"]})
>>> print(" and ".join(str(f) for f in filters))
age >= 65 and admission_type in ('emergency', 'transfer')
>>> check_filters(filters, dictionary=d)
>>> check_filters(parse_where({"age": (">", 200)}), dictionary=d)
Traceback (most recent call last):
...
federation.analytics.errors.QueryError: The filter age > 200 selects nobody: the data dictionary says age lies in [18, 95]. Change the filter to a value inside that range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from federation.analytics.errors import QueryError
from federation.data.dictionary import DataDictionary

OPERATORS = ("==", "!=", "<", "<=", ">", ">=", "in", "not in")


@dataclass(frozen=True)
class Filter:
    """Keep the rows where ``column op value`` holds (``value`` a tuple for in / not in)."""

    column: str
    op: str
    value: Any

    def __post_init__(self) -> None:
        if not isinstance(self.column, str) or not self.column:
            raise QueryError(f"A filter names a column; got {self.column!r}. Write e.g. where={{'age': ('>=', 65)}}.")
        if self.op not in OPERATORS:
            raise QueryError(
                f"A filter's operator is one of {', '.join(OPERATORS)}; got {self.op!r} for column "
                f"'{self.column}'. Write e.g. ('>=', 65)."
            )
        if self.op in ("in", "not in"):
            values = self.value if isinstance(self.value, (list, tuple, set, frozenset)) else (self.value,)
            object.__setattr__(self, "value", tuple(_plain(v) for v in sorted(values, key=str)))
        else:
            object.__setattr__(self, "value", _plain(self.value))

    def __str__(self) -> str:
        value = self.value if isinstance(self.value, tuple) else _show(self.value)
        return f"{self.column} {self.op} {value}"

    def to_json(self) -> list[Any]:
        return [self.column, self.op, list(self.value) if isinstance(self.value, tuple) else self.value]

    @classmethod
    def from_json(cls, data: Sequence[Any]) -> Filter:
        column, op, value = data
        return cls(column, op, tuple(value) if isinstance(value, list) else value)

    def mask(self, frame) -> np.ndarray:
        """The rows of ``frame`` this filter keeps (a missing value is never kept)."""
        series = frame[self.column]
        present = series.notna().to_numpy()
        if self.op in ("in", "not in"):
            inside = series.astype("object").isin(list(self.value)).to_numpy()
            return present & (inside if self.op == "in" else ~inside)
        if isinstance(self.value, str):
            values = series.astype("object").to_numpy()
            hit = values == self.value
            return present & (hit if self.op == "==" else ~hit)
        values = series.to_numpy(dtype=float, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            hit = {
                "==": values == self.value,
                "!=": values != self.value,
                "<": values < self.value,
                "<=": values <= self.value,
                ">": values > self.value,
                ">=": values >= self.value,
            }[self.op]
        return present & hit


def _plain(value: Any) -> Any:
    """Numbers as float (or int when whole), text as text; anything else is refused."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            raise QueryError(f"A filter compares with a finite number or a category; got {value!r}.")
        return int(value) if float(value).is_integer() else float(value)
    if isinstance(value, str):
        return value
    raise QueryError(f"A filter compares with a number or a category name; got {value!r} ({type(value).__name__}).")


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def parse_where(where: Mapping[str, Any] | Sequence[Sequence[Any]] | None) -> tuple[Filter, ...]:
    """Filters from ``{"col": value}``, ``{"col": (op, value)}``, ``{"col": [a, b]}`` (in)
    or a list of ``(col, op, value)`` triples; all of them must hold."""
    if where is None:
        return ()
    filters: list[Filter] = []
    if isinstance(where, Mapping):
        for column, spec in where.items():
            if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str) and spec[0] in OPERATORS:
                filters.append(Filter(column, spec[0], spec[1]))
            elif isinstance(spec, (list, set, frozenset)):
                filters.append(Filter(column, "in", tuple(spec)))
            else:
                filters.append(Filter(column, "==", spec))
    elif isinstance(where, Sequence) and not isinstance(where, str):
        for item in where:
            if isinstance(item, Filter):
                filters.append(item)
            elif isinstance(item, Sequence) and len(item) == 3:
                filters.append(Filter(*item))
            else:
                raise QueryError(
                    f"A filter in a list is a (column, operator, value) triple; got {item!r}. "
                    "Write e.g. where=[('age', '>=', 65)]."
                )
    else:
        raise QueryError(
            f"where is a dict of column -> condition or a list of (column, operator, value); got {where!r}."
        )
    return tuple(filters)


def check_filters(filters: Sequence[Filter], *, dictionary: DataDictionary) -> None:
    """Refuse unknown columns, values of the wrong type, and filters that select nobody."""
    by_column: dict[str, list[Filter]] = {}
    for f in filters:
        spec = column_spec(dictionary, f.column, "filter")
        values = f.value if isinstance(f.value, tuple) else (f.value,)
        if spec.kind == "categorical":
            if f.op not in ("==", "!=", "in", "not in"):
                raise QueryError(
                    f"A categorical column is filtered with ==, !=, in or not in; got {f}. "
                    f"Its categories are {spec.allowed_values}."
                )
        elif any(isinstance(v, str) for v in values):
            raise QueryError(
                f"Column '{f.column}' is {spec.kind}: compare it with numbers; got {f}. "
                f"Its values lie in {spec.allowed_values}."
            )
        by_column.setdefault(f.column, []).append(f)
    for column, column_filters in by_column.items():
        spec = dictionary.column(column)
        if spec.kind in ("categorical", "binary"):
            _check_set(spec, column_filters)
        else:
            _check_interval(spec, column_filters)


def column_spec(dictionary: DataDictionary, name: str, what: str):
    """The dictionary's spec of column ``name``, or a QueryError naming ``what`` asked for it."""
    try:
        return dictionary.column(name)
    except KeyError:
        raise QueryError(
            f"Unknown column '{name}' in the {what}: the data dictionary '{dictionary.name}' has "
            f"{', '.join(dictionary.column_names)}. Check the spelling."
        ) from None


def _check_set(spec, filters: Sequence[Filter]) -> None:
    allowed = set(spec.categories) if spec.kind == "categorical" else {0, 1}
    left = set(allowed)
    for f in filters:
        values = set(f.value if isinstance(f.value, tuple) else (f.value,))
        unknown = values - allowed
        if unknown and f.op in ("==", "in") and not values & allowed:
            raise QueryError(
                f"The filter {f} selects nobody: {', '.join(_show(v) for v in sorted(unknown, key=str))} "
                f"is not a value of {spec.name}, whose values are {spec.allowed_values}. "
                "Use one of those values."
            )
        left = left & values if f.op in ("==", "in") else left - values
    if not left:
        raise QueryError(
            f"The filters {' and '.join(str(f) for f in filters)} select nobody: no value of "
            f"{spec.name} ({spec.allowed_values}) satisfies them all. Drop or relax one of them."
        )


def _check_interval(spec, filters: Sequence[Filter]) -> None:
    low, high = float(spec.minimum), float(spec.maximum)
    low_open = high_open = False
    excluded: set[float] = set()
    points: set[float] | None = None
    for f in filters:
        if f.op in ("in", "=="):
            values = {float(v) for v in (f.value if isinstance(f.value, tuple) else (f.value,))}
            points = values if points is None else points & values
        elif f.op == "not in" or f.op == "!=":
            excluded |= {float(v) for v in (f.value if isinstance(f.value, tuple) else (f.value,))}
        elif f.op in ("<", "<="):
            if f.value < high or (f.value == high and f.op == "<"):
                high, high_open = float(f.value), f.op == "<"
        elif f.value > low or (f.value == low and f.op == ">"):
            low, low_open = float(f.value), f.op == ">"
    if points is not None:
        inside = {
            p
            for p in points - excluded
            if (low < p or (low == p and not low_open))
            and (p < high or (p == high and not high_open))
            and (spec.kind != "integer" or p.is_integer())
        }
        empty = not inside
    else:
        empty = low > high or (low == high and (low_open or high_open or low in excluded))
        if spec.kind == "integer" and not empty:
            first = math.floor(low) + 1 if low_open or not low.is_integer() else low
            last = math.ceil(high) - 1 if high_open or not high.is_integer() else high
            empty = first > last or (first == last and first in excluded)
    if empty:
        text = " and ".join(str(f) for f in filters)
        one = len(filters) == 1
        raise QueryError(
            f"The filter{'' if one else 's'} {text} select{'s' if one else ''} nobody: the data "
            f"dictionary says {spec.name} lies in {spec.allowed_values}"
            f"{' (whole numbers)' if spec.kind == 'integer' else ''}. "
            f"Change the filter{'' if one else 's'} to a value inside that range."
        )
