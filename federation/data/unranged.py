"""Column kinds of a site file with NO ranges, for when no data dictionary exists.

Ranges read from the data would leak (the oldest patient's age is personal data),
so this module never reads them. It only says which columns are numbers and
which are text; the federation layer finds ranges with a DP range query and
calls `UnrangedSchema.complete` to build a full DataDictionary.

Deciding "numeric or not" does look at the data, but reveals only whether some
cell in a column is non-numeric text: one bit per column, the same bit a
column's name usually gives away.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from federation.data.dictionary import ColumnSpec, DataDictionary, OutOfRangePolicy
from federation.data.errors import DataDictionaryError, DataValidationError

UnrangedKind = Literal["numeric", "categorical"]


@dataclass(frozen=True, kw_only=True)
class UnrangedColumn:
    name: str
    kind: UnrangedKind


@dataclass(frozen=True, kw_only=True)
class UnrangedSchema:
    """Column names and kinds (numeric vs categorical), no ranges, no category lists."""

    columns: tuple[UnrangedColumn, ...]
    source_file: str

    @property
    def kinds(self) -> dict[str, UnrangedKind]:
        return {c.name: c.kind for c in self.columns}

    def complete(
        self,
        *,
        name: str,
        source: str,
        ranges: Mapping[str, tuple[float, float]],
        categories: Mapping[str, Sequence[str | int]],
        target: str | None = None,
        out_of_range: OutOfRangePolicy = "clip",
    ) -> DataDictionary:
        """A DataDictionary from public or DP-found ranges and category lists.

        Every numeric column needs a range and every categorical column its
        categories. Missing values are allowed everywhere (nobody looked), and
        values outside a DP-found range are clipped by default, since such a range
        is approximate by design.

        >>> schema = UnrangedSchema(columns=(UnrangedColumn(name="age", kind="numeric"),), source_file="a.csv")
        >>> schema.complete(name="d", source="DP range query", ranges={"age": (18, 95)}, categories={}).column("age").maximum
        95.0
        """
        lacking = [c.name for c in self.columns if c.kind == "numeric" and c.name not in ranges]
        lacking += [c.name for c in self.columns if c.kind == "categorical" and c.name not in categories]
        if lacking:
            raise DataDictionaryError(
                f"no range or category list for column(s) {', '.join(repr(n) for n in lacking)}; "
                "give each numeric column a (minimum, maximum) in ranges and each categorical column "
                "its categories"
            )
        if target is not None and target not in self.kinds:
            raise DataDictionaryError(f"target '{target}' is not a column; columns: {', '.join(self.kinds)}")
        specs = []
        for column in self.columns:
            role = "target" if column.name == target else "feature"
            if column.kind == "numeric":
                lo, hi = ranges[column.name]
                specs.append(
                    ColumnSpec(
                        name=column.name,
                        kind="numeric",
                        role=role,
                        minimum=lo,
                        maximum=hi,
                        missing="allowed",
                        out_of_range=out_of_range,
                    )
                )
            else:
                specs.append(
                    ColumnSpec(
                        name=column.name,
                        kind="categorical",
                        role=role,
                        categories=tuple(categories[column.name]),
                        missing="allowed",
                        out_of_range="missing" if out_of_range == "clip" else out_of_range,
                    )
                )
        return DataDictionary(name=name, columns=tuple(specs), source=source)


def infer_schema_without_ranges(*, path: Path) -> UnrangedSchema:
    """Numeric-vs-categorical kinds of one site file (.csv with header, or .parquet); no ranges.

    A column is numeric when every non-missing cell parses as a number (a column
    with no values at all counts as numeric).
    """
    import pandas as pd

    from federation.data.loader import SITE_SUFFIXES, parse_csv, parse_parquet, read_site_bytes
    from federation.data.validation import text_cells

    path = Path(path)
    if path.is_dir():
        raise DataValidationError(
            f"{path}: pass one site file (e.g. {path}/hospital_01.csv), not a folder: the schema is read at one site",
            file=path,
        )
    if path.suffix.lower() not in SITE_SUFFIXES:
        raise DataValidationError(
            f"{path.name}: unsupported file type '{path.suffix}'; use .csv or .parquet", file=path
        )
    content = read_site_bytes(path=path)
    raw = (parse_parquet if path.suffix.lower() == ".parquet" else parse_csv)(path=path, content=content)
    columns = []
    for name in raw.columns:
        series = raw[name]
        if pd.api.types.is_numeric_dtype(series.dtype) and not isinstance(series.dtype, pd.CategoricalDtype):
            kind: UnrangedKind = "numeric"
        else:
            text, missing = text_cells(series)
            parsed = pd.to_numeric(pd.Series(text[~missing], dtype=object), errors="coerce")
            kind = "categorical" if parsed.isna().any() else "numeric"
        columns.append(UnrangedColumn(name=str(name), kind=kind))
    return UnrangedSchema(columns=tuple(columns), source_file=path.name)
