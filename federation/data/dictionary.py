"""The data dictionary: public knowledge about each column, never read from the data.

Differential privacy needs bounds on every value (to clip, to scale, to set
sensitivities). Bounds read from the data would themselves leak, so they come
from here: clinical plausibility, device ranges, coding manuals.

>>> age = ColumnSpec(name="age", kind="numeric", minimum=18, maximum=95, unit="years")
>>> age.fill  # midpoint of the public range, used to impute a missing value
56.5
>>> d = DataDictionary(name="demo", columns=(age,), source="clinical plausibility")
>>> d.feature_columns
('age',)
>>> DataDictionary.from_json(d.to_json()) == d
True
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from federation.data.errors import DataDictionaryError

if TYPE_CHECKING:  # pandas is imported lazily so `import federation.data.dictionary` stays light
    import pandas as pd

FORMAT = "workbench-data-dictionary/1"

Kind = Literal["numeric", "integer", "binary", "categorical"]
# "outcome_detail": a column that describes the outcome (e.g. a severity grade the
# target is derived from); it is neither a feature nor the target.
Role = Literal["feature", "target", "time", "event", "id", "outcome_detail"]
MissingPolicy = Literal["error", "allowed"]
OutOfRangePolicy = Literal["error", "clip", "missing"]

KINDS: tuple[str, ...] = get_args(Kind)
ROLES: tuple[str, ...] = get_args(Role)
MISSING_POLICIES: tuple[str, ...] = get_args(MissingPolicy)
OUT_OF_RANGE_POLICIES: tuple[str, ...] = get_args(OutOfRangePolicy)

Category = str | int


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True, kw_only=True)
class ColumnSpec:
    """Public facts about one column.

    `minimum`/`maximum` are required for numeric and integer columns; binary
    columns are always {0, 1}; categorical columns list their `categories`.
    `out_of_range` says what the loader does with a value outside the range or
    the categories: raise ("error"), clip to the range ("clip", numeric and
    integer only) or treat it as missing ("missing", needs missing="allowed").
    `fill` is the public value used to impute a missing value; by default the
    midpoint of the range (rounded down for integer columns), 0 for binary and
    None for categorical.

    >>> ColumnSpec(name="smoker", kind="binary").maximum
    1.0
    >>> ColumnSpec(name="ca", kind="integer", minimum=0, maximum=3).fill
    1.0
    """

    name: str
    kind: Kind
    role: Role = "feature"
    minimum: float | None = None
    maximum: float | None = None
    categories: tuple[Category, ...] | None = None
    unit: str = ""
    description: str = ""
    missing: MissingPolicy = "error"
    out_of_range: OutOfRangePolicy = "error"
    fill: float | Category | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise DataDictionaryError(f"column name {self.name!r} is not allowed: a column needs a non-empty text name")
        where = f"column '{self.name}'"
        _check_choice(where, "kind", self.kind, KINDS)
        _check_choice(where, "role", self.role, ROLES)
        _check_choice(where, "missing", self.missing, MISSING_POLICIES)
        _check_choice(where, "out_of_range", self.out_of_range, OUT_OF_RANGE_POLICIES)
        for text_field in ("unit", "description"):
            if not isinstance(getattr(self, text_field), str):
                raise DataDictionaryError(f"{where}: {text_field} must be text, got {getattr(self, text_field)!r}")
        if self.kind in ("numeric", "integer"):
            self._resolve_range(where)
        elif self.kind == "binary":
            self._resolve_binary(where)
        else:
            self._resolve_categories(where)
        if self.out_of_range == "missing" and self.missing != "allowed":
            raise DataDictionaryError(
                f"{where}: out_of_range='missing' turns bad values into missing ones, but "
                f"missing='{self.missing}' forbids missing values; set missing='allowed' "
                "or choose out_of_range='error' or 'clip'"
            )
        if self.role == "time" and self.kind not in ("numeric", "integer"):
            raise DataDictionaryError(f"{where}: a 'time' column must be numeric or integer, got kind '{self.kind}'")
        if self.role == "event" and self.kind != "binary":
            raise DataDictionaryError(
                f"{where}: an 'event' column must be binary (1 = event, 0 = censored), got kind '{self.kind}'"
            )

    def _resolve_range(self, where: str) -> None:
        lo, hi = self.minimum, self.maximum
        if lo is None or hi is None:
            raise DataDictionaryError(
                f"{where}: a {self.kind} column needs both minimum and maximum "
                f"(got minimum={lo!r}, maximum={hi!r}); set them from public knowledge "
                "(clinical plausibility, the device's range), never from the data"
            )
        for label, value in (("minimum", lo), ("maximum", hi)):
            if not _is_number(value) or not math.isfinite(value):
                raise DataDictionaryError(f"{where}: {label} must be a finite number, got {value!r}")
            if self.kind == "integer" and float(value) != int(value):
                raise DataDictionaryError(
                    f"{where}: an integer column needs whole-number bounds, got {label}={value!r}"
                )
        if lo >= hi:
            raise DataDictionaryError(f"{where}: minimum ({lo!r}) must be below maximum ({hi!r}); swap or correct them")
        if self.categories is not None:
            raise DataDictionaryError(
                f"{where}: a {self.kind} column takes a range, not categories; "
                "remove categories or use kind='categorical'"
            )
        object.__setattr__(self, "minimum", float(lo))
        object.__setattr__(self, "maximum", float(hi))
        if self.fill is None:
            midpoint = (float(lo) + float(hi)) / 2
            object.__setattr__(self, "fill", float(math.floor(midpoint)) if self.kind == "integer" else midpoint)
        elif not _is_number(self.fill) or not lo <= self.fill <= hi:
            raise DataDictionaryError(f"{where}: fill must be a number within [{lo}, {hi}], got {self.fill!r}")
        else:
            object.__setattr__(self, "fill", float(self.fill))

    def _resolve_binary(self, where: str) -> None:
        if self.categories not in (None, (0, 1), [0, 1]):
            raise DataDictionaryError(
                f"{where}: a binary column is always coded 0/1; remove categories "
                f"{self.categories!r} or use kind='categorical'"
            )
        if (self.minimum, self.maximum) not in ((None, None), (0, 1)):
            raise DataDictionaryError(
                f"{where}: a binary column is always coded 0/1; remove minimum/maximum "
                f"(got {self.minimum!r}, {self.maximum!r})"
            )
        if self.out_of_range == "clip":
            raise DataDictionaryError(
                f"{where}: out_of_range='clip' has no meaning for a binary column; use 'error' or 'missing'"
            )
        if self.fill not in (None, 0, 1) or isinstance(self.fill, bool):
            raise DataDictionaryError(f"{where}: fill of a binary column must be 0 or 1, got {self.fill!r}")
        object.__setattr__(self, "categories", None)
        object.__setattr__(self, "minimum", 0.0)
        object.__setattr__(self, "maximum", 1.0)
        object.__setattr__(self, "fill", float(self.fill or 0))

    def _resolve_categories(self, where: str) -> None:
        cats = self.categories
        if cats is None or isinstance(cats, (str, bytes)) or len(cats) == 0:
            raise DataDictionaryError(
                f"{where}: a categorical column needs its list of categories "
                f"(got {cats!r}); e.g. categories=('elective', 'emergency', 'transfer')"
            )
        cats = tuple(cats)
        all_text = all(isinstance(c, str) and c != "" for c in cats)
        all_int = all(isinstance(c, int) and not isinstance(c, bool) for c in cats)
        if not (all_text or all_int):
            raise DataDictionaryError(
                f"{where}: categories must be all non-empty text or all whole numbers, got {cats!r}"
            )
        if len(set(cats)) != len(cats):
            raise DataDictionaryError(f"{where}: categories repeat a value: {cats!r}; list each once")
        if self.minimum is not None or self.maximum is not None:
            raise DataDictionaryError(
                f"{where}: a categorical column takes categories, not minimum/maximum; remove them"
            )
        if self.out_of_range == "clip":
            raise DataDictionaryError(
                f"{where}: out_of_range='clip' has no meaning for a categorical column; use 'error' or 'missing'"
            )
        if self.fill is not None and self.fill not in cats:
            raise DataDictionaryError(f"{where}: fill {self.fill!r} is not one of the categories {cats!r}")
        object.__setattr__(self, "categories", cats)

    @property
    def allowed_values(self) -> str:
        """The allowed values in words, for messages and tables: '[18, 95]' or '{a, b}'."""
        if self.kind == "categorical":
            return "{" + ", ".join(str(c) for c in self.categories or ()) + "}"
        if self.kind == "binary":
            return "{0, 1}"
        return f"[{_number_text(self.minimum)}, {_number_text(self.maximum)}]"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (defaults resolved)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "role": self.role,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "categories": list(self.categories) if self.categories is not None else None,
            "unit": self.unit,
            "description": self.description,
            "missing": self.missing,
            "out_of_range": self.out_of_range,
            "fill": self.fill,
        }


_COLUMN_KEYS = tuple(ColumnSpec.__dataclass_fields__)


def _number_text(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _check_choice(where: str, label: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise DataDictionaryError(f"{where}: {label} {value!r} is not one of {', '.join(choices)}")


@dataclass(frozen=True, kw_only=True)
class DataDictionary:
    """The columns of a data set, with the public facts a DP analysis needs.

    `source` says, in words, where the ranges come from. `unit_of_privacy` is
    what one DP "individual" is; if a patient may have several rows, set
    `patient_id_column` and `max_rows_per_patient` so the privacy layer can
    bound one patient's contribution.
    """

    name: str
    columns: tuple[ColumnSpec, ...]
    source: str
    unit_of_privacy: str = "one row per patient"
    patient_id_column: str | None = None
    max_rows_per_patient: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise DataDictionaryError(f"data dictionary name {self.name!r} is not allowed: give it a non-empty name")
        if not isinstance(self.source, str) or not self.source.strip():
            raise DataDictionaryError(
                f"data dictionary '{self.name}': source must say where the ranges come from "
                "(e.g. 'clinical plausibility ranges, UCI documentation'), got "
                f"{self.source!r}"
            )
        columns = tuple(self.columns)
        if not columns:
            raise DataDictionaryError(f"data dictionary '{self.name}' has no columns; list at least one")
        for index, column in enumerate(columns):
            if not isinstance(column, ColumnSpec):
                raise DataDictionaryError(
                    f"data dictionary '{self.name}': columns[{index}] is {type(column).__name__}, expected a ColumnSpec"
                )
        by_name: dict[str, ColumnSpec] = {}
        for column in columns:
            if column.name in by_name:
                raise DataDictionaryError(
                    f"data dictionary '{self.name}': column '{column.name}' is listed twice; keep one entry per column"
                )
            by_name[column.name] = column
        for role in ("target", "time", "event"):
            named = [c.name for c in columns if c.role == role]
            if len(named) > 1:
                raise DataDictionaryError(
                    f"data dictionary '{self.name}': columns {', '.join(repr(n) for n in named)} "
                    f"all have role '{role}'; at most one may, give the others role 'outcome_detail' "
                    "or 'feature'"
                )
        if self.patient_id_column is not None and self.patient_id_column not in by_name:
            raise DataDictionaryError(
                f"data dictionary '{self.name}': patient_id_column '{self.patient_id_column}' "
                f"is not a column; known columns: {', '.join(by_name)}"
            )
        if (
            not isinstance(self.max_rows_per_patient, int)
            or isinstance(self.max_rows_per_patient, bool)
            or self.max_rows_per_patient < 1
        ):
            raise DataDictionaryError(
                f"data dictionary '{self.name}': max_rows_per_patient must be a whole number >= 1, "
                f"got {self.max_rows_per_patient!r}"
            )
        if self.max_rows_per_patient > 1 and self.patient_id_column is None:
            raise DataDictionaryError(
                f"data dictionary '{self.name}': max_rows_per_patient={self.max_rows_per_patient} "
                "needs patient_id_column, so a patient's rows can be told apart and bounded"
            )
        object.__setattr__(self, "columns", columns)

    @cached_property
    def _by_name(self) -> dict[str, ColumnSpec]:
        return {c.name: c for c in self.columns}

    # --- looking columns up -------------------------------------------------------

    def column(self, name: str) -> ColumnSpec:
        """The ColumnSpec called `name`; KeyError listing the known columns otherwise."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(
                f"no column '{name}' in data dictionary '{self.name}'; known columns: {', '.join(self._by_name)}"
            ) from None

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    @property
    def feature_columns(self) -> tuple[str, ...]:
        """Names of the columns with role 'feature', in dictionary order."""
        return tuple(c.name for c in self.columns if c.role == "feature")

    @property
    def target(self) -> str | None:
        return self._single("target")

    @property
    def time_column(self) -> str | None:
        return self._single("time")

    @property
    def event_column(self) -> str | None:
        return self._single("event")

    def _single(self, role: str) -> str | None:
        return next((c.name for c in self.columns if c.role == role), None)

    # --- JSON ----------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, with the schema `format` key."""
        return {
            "format": FORMAT,
            "name": self.name,
            "source": self.source,
            "unit_of_privacy": self.unit_of_privacy,
            "patient_id_column": self.patient_id_column,
            "max_rows_per_patient": self.max_rows_per_patient,
            "columns": [c.to_json() for c in self.columns],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DataDictionary:
        """Rebuild a dictionary from `to_json()` output; DataDictionaryError says what is wrong where."""
        if not isinstance(data, Mapping):
            raise DataDictionaryError(f"expected a JSON object at the top level, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise DataDictionaryError(
                f"'format' is {data.get('format')!r}, expected {FORMAT!r}; "
                "this file is not a workbench data dictionary (or is a version this code does not read)"
            )
        known = {"format", "name", "source", "unit_of_privacy", "patient_id_column", "max_rows_per_patient", "columns"}
        _reject_unknown_keys("top level", data, known)
        for required in ("name", "source", "columns"):
            if required not in data:
                raise DataDictionaryError(f"top level: required key '{required}' is missing")
        raw_columns = data["columns"]
        if not isinstance(raw_columns, list):
            raise DataDictionaryError(f"'columns' must be a list, got {type(raw_columns).__name__}")
        columns = []
        for index, raw in enumerate(raw_columns):
            label = f"columns[{index}]"
            if not isinstance(raw, Mapping):
                raise DataDictionaryError(f"{label}: expected an object, got {type(raw).__name__}")
            if isinstance(raw.get("name"), str):
                label += f" ('{raw['name']}')"
            _reject_unknown_keys(label, raw, set(_COLUMN_KEYS))
            for required in ("name", "kind"):
                if required not in raw:
                    raise DataDictionaryError(f"{label}: required key '{required}' is missing")
            kwargs = dict(raw)
            if isinstance(kwargs.get("categories"), list):
                kwargs["categories"] = tuple(kwargs["categories"])
            try:
                columns.append(ColumnSpec(**kwargs))
            except DataDictionaryError as error:
                raise DataDictionaryError(f"{label}: {error}") from None
        optional = {k: data[k] for k in ("unit_of_privacy", "patient_id_column", "max_rows_per_patient") if k in data}
        return cls(name=data["name"], columns=tuple(columns), source=data["source"], **optional)

    def save(self, path: Path) -> Path:
        """Write the dictionary as pretty-printed JSON; returns the path."""
        path = Path(path)
        path.write_text(self.to_json_text(), encoding="utf-8")
        return path

    def to_json_text(self) -> str:
        """The pretty-printed JSON that `save` writes."""
        return json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def load(cls, path: Path) -> DataDictionary:
        """Read a dictionary written by `save`; DataDictionaryError names the file and the problem."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DataDictionaryError(
                f"{path}: data dictionary file not found; write one with DataDictionary.save "
                "(or `workbench data synth` / `workbench data uci`)"
            ) from None
        except (OSError, UnicodeDecodeError) as error:
            raise DataDictionaryError(f"{path}: cannot read the data dictionary: {error}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataDictionaryError(
                f"{path}: not valid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
            ) from None
        try:
            return cls.from_json(data)
        except DataDictionaryError as error:
            raise DataDictionaryError(f"{path}: {error}") from None

    # --- display -------------------------------------------------------------------

    def to_frame(self) -> pd.DataFrame:
        """One row per column (name, kind, role, unit, range, categories, ...), for notebooks."""
        import pandas as pd

        rows = [
            {
                "name": c.name,
                "kind": c.kind,
                "role": c.role,
                "unit": c.unit,
                "minimum": c.minimum,
                "maximum": c.maximum,
                "categories": ", ".join(str(v) for v in c.categories) if c.categories else None,
                "missing": c.missing,
                "out_of_range": c.out_of_range,
                "fill": c.fill,
                "description": c.description,
            }
            for c in self.columns
        ]
        return pd.DataFrame(rows)

    def _repr_html_(self) -> str:
        from html import escape

        header = (
            f"<p><b>{escape(self.name)}</b> &mdash; ranges from: {escape(self.source)}; "
            f"unit of privacy: {escape(self.unit_of_privacy)}</p>"
        )
        return header + self.to_frame().to_html(index=False, na_rep="")


def _reject_unknown_keys(where: str, data: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise DataDictionaryError(
            f"{where}: unknown key(s) {', '.join(repr(k) for k in unknown)}; known keys: {', '.join(sorted(known))}"
        )
