"""An analytics query: what to compute, on which rows, with which bounds and noise.

A query is a small frozen record. It travels to the sites as JSON inside a Flower
ConfigRecord, and its canonical JSON names it: the same question gets the same
``query_id`` everywhere, which is what a site's cache of released answers is keyed on.

Kinds and what each releases (per stratum of ``by``; see ``federation.analytics.cells``
for the sensitivities):

- ``count``: the number of rows that pass ``where``.
- ``sum``, ``mean``: a noisy count and a noisy sum of the column clipped to ``bounds``.
- ``variance``: as mean, plus a noisy sum of squares.
- ``histogram``: counts per category of a categorical/binary column, or per public bin
  (``bins`` edges over ``bounds``) of a numeric column.
- ``crosstab``: counts per combination of two categorical/binary columns.
- ``quantiles``: noisy counts below each edge of a public grid over ``bounds``; the
  quantiles are read from that noisy distribution function.
- ``survival``: Kaplan-Meier (life-table form) from noisy counts of events and of
  censored patients per bin of a public time grid over ``bounds``.

Every query states its privacy: ``epsilon`` (the site calibrates the noise so that
this query alone costs that much at the site's delta) or ``noise_multiplier`` (the
noise per unit of sensitivity; the site computes what it costs).

>>> q = Query(kind="mean", column="age", bounds=(18, 95), by=("admission_type",), epsilon=0.5)
>>> q.query_id == Query.from_json(q.to_json()).query_id
True
>>> q.describe()
'mean of age (clipped to [18, 95]) by admission_type'
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from federation.analytics.errors import QueryError
from federation.analytics.filters import Filter, check_filters, column_spec, parse_where
from federation.data.dictionary import DataDictionary

FORMAT = "workbench-analytics-query/1"
KINDS = ("count", "sum", "mean", "variance", "histogram", "crosstab", "quantiles", "survival")
MECHANISMS = ("gaussian", "laplace")
NEEDS_BOUNDS = ("sum", "mean", "variance", "quantiles", "survival")
DEFAULT_BINS = {"histogram": 10, "quantiles": 50, "survival": 20}
DEFAULT_PROBABILITIES = (0.25, 0.5, 0.75)
# A finer grid spreads the same noise over more cumulative counts; beyond this the
# noise swamps the shape and the answer is slow to compute for nothing.
MAX_BINS = 500
# The "site" breakdown is a way to show answers, not something a site computes.
SITE = "site"
# Bounds narrower than this (relative to their size) are refused: below it, clipping,
# the fixed-point grid and the noise's scale lose the precision a float holds (bounds of
# (0, 5e-324) once scaled noise to exactly 0 and released exact counts).
MIN_RELATIVE_WIDTH = 1e-9
# After intersecting a sum's bounds with the column's public range (data dictionary),
# at least this share of that range must remain.
MIN_SHARE_OF_RANGE = 1e-6
# Kinds whose bounds set the noise's scale (a sum of clipped values), and so are
# intersected with the dictionary's range at the site.
SCALED_BY_BOUNDS = ("sum", "mean", "variance")


@dataclass(frozen=True, kw_only=True)
class Query:
    """One analytics question, as every site reads it (see the module docstring).

    ``bounds`` clip the values (and are required for every kind that sums or ranks
    values: there is no default, as a range read from the data would leak);
    ``bins`` are public edges from ``bounds[0]`` to ``bounds[1]`` (a number of
    equal bins is turned into edges); ``by`` names categorical or binary columns to
    stratify by. ``min_cell_size`` may raise a site's minimum cell size, never lower it.
    """

    kind: str
    column: str | None = None
    columns: tuple[str, ...] = ()
    event: str | None = None
    bounds: tuple[float, float] | None = None
    bins: tuple[float, ...] = ()
    probabilities: tuple[float, ...] = ()
    where: tuple[Filter, ...] = ()  # or what parse_where accepts: {"age": (">=", 65)}, triples
    by: tuple[str, ...] = ()
    epsilon: float | None = None
    noise_multiplier: float | None = None
    mechanism: str = "gaussian"
    min_cell_size: int | None = None
    label: str = field(default="", compare=False)
    per_site: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise QueryError(f"A query's kind is one of {', '.join(KINDS)}; got {self.kind!r}.")
        if self.mechanism not in MECHANISMS:
            raise QueryError(f"The noise mechanism is 'gaussian' or 'laplace'; got {self.mechanism!r}.")
        self._check_privacy()
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "where", parse_where(self.where) if self.where else ())
        by = tuple([self.by] if isinstance(self.by, str) else self.by)
        if SITE in by:  # every answer has per-site rows; "site" only asks to show them
            object.__setattr__(self, "per_site", True)
            by = tuple(b for b in by if b != SITE)
        if len(set(by)) != len(by):
            raise QueryError(f"Each column appears once in by; got {by!r}.")
        object.__setattr__(self, "by", by)
        if self.bounds is not None:
            object.__setattr__(self, "bounds", _bounds(self.bounds, self.kind))
        object.__setattr__(self, "bins", _edges(self))
        object.__setattr__(self, "probabilities", _probabilities(self))
        if self.min_cell_size is not None and (
            isinstance(self.min_cell_size, bool) or not isinstance(self.min_cell_size, int) or self.min_cell_size < 1
        ):
            raise QueryError(
                f"min_cell_size is a whole number that may raise a site's minimum; got {self.min_cell_size!r}."
            )

    def _check_privacy(self) -> None:
        given = [name for name in ("epsilon", "noise_multiplier") if getattr(self, name) is not None]
        if len(given) != 1:
            raise QueryError(
                "A query states its privacy with exactly one of epsilon= (the site calibrates the "
                "noise to it) or noise_multiplier= (the noise per unit of sensitivity); got "
                f"{'both' if given else 'neither'}. E.g. epsilon=0.5."
            )
        name = given[0]
        value = getattr(self, name)
        # A normal float: a subnormal one (below sys.float_info.min) rounds to 0 in the
        # noise's arithmetic, and 0 is no noise.
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < sys.float_info.min
        ):
            raise QueryError(
                f"{name} must be a finite number above 0; got {value!r}. "
                + (
                    "Privacy loss cannot be negative or zero: e.g. epsilon=0.5."
                    if name == "epsilon"
                    else "Noise of zero or below gives no privacy: e.g. noise_multiplier=5."
                )
                + f" (A number below {sys.float_info.min:.3g} is too small for a float's precision and counts as 0.)"
            )
        object.__setattr__(self, name, float(value))

    # --- identity -------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """What a site needs, JSON-ready (the display ``label`` is left out)."""
        return {
            "format": FORMAT,
            "kind": self.kind,
            "column": self.column,
            "columns": list(self.columns),
            "event": self.event,
            "bounds": list(self.bounds) if self.bounds else None,
            "bins": list(self.bins),
            "probabilities": list(self.probabilities),
            "where": [f.to_json() for f in self.where],
            "by": list(self.by),
            "epsilon": self.epsilon,
            "noise_multiplier": self.noise_multiplier,
            "mechanism": self.mechanism,
            "min_cell_size": self.min_cell_size,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | str) -> Query:
        """Rebuild a query from ``to_json`` output (a dict or its text)."""
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as err:
                raise QueryError(f"A query travels as JSON; this is not readable ({err}).") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise QueryError(f"A query carries format {FORMAT!r}; got {str(data)[:120]!r}.")
        known = set(cls.__dataclass_fields__) - {"label", "per_site"}
        unknown = set(data) - known - {"format"}
        if unknown:
            raise QueryError(f"Unknown query field(s) {sorted(unknown)}; a query has {sorted(known)}.")
        kwargs = {k: v for k, v in data.items() if k != "format"}
        try:
            kwargs["where"] = tuple(Filter.from_json(f) for f in kwargs.get("where", []))
            for name in ("columns", "bins", "probabilities", "by"):
                value = kwargs.get(name) or ()
                if isinstance(value, (str, dict)) or not hasattr(value, "__iter__"):
                    raise QueryError(f"A query's {name} travels as a list; got {value!r:.80}.")
                kwargs[name] = tuple(value)
            if kwargs.get("bounds") is not None:
                kwargs["bounds"] = tuple(kwargs["bounds"])
            return cls(**kwargs)
        except (TypeError, ValueError) as err:
            if isinstance(err, QueryError):
                raise
            raise QueryError(
                f"A query's fields have the wrong shape or type ({err}); write it with Query.to_json."
            ) from None

    def canonical(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @property
    def query_id(self) -> str:
        """A short name derived from the content: equal questions, equal ids."""
        return "q-" + hashlib.sha256(self.canonical().encode()).hexdigest()[:12]

    @property
    def question_id(self) -> str:
        """The question, without what a query says about its privacy or display: equal
        for queries that ask the same of the data whatever their epsilon, noise
        multiplier, mechanism, minimum cell size or label (kind, columns, canonical
        filter: its conditions in any order, each once; bounds, bins, probabilities and
        strata). A site counts fresh answers to one question to raise its repeated-query
        alert."""
        body = {
            "kind": self.kind,
            "column": self.column,
            "columns": list(self.columns),
            "event": self.event,
            "bounds": list(self.bounds) if self.bounds else None,
            "bins": list(self.bins),
            "probabilities": list(self.probabilities),
            "where": sorted({json.dumps(f.to_json(), sort_keys=True) for f in self.where}),  # order, repeats
            "by": sorted(self.by),
        }
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return "qq-" + hashlib.sha256(text.encode()).hexdigest()[:16]

    def with_label(self, label: str) -> Query:
        return replace(self, label=label)

    # --- words ----------------------------------------------------------------------

    def describe(self) -> str:
        """The question in words, for ledger purposes and result titles."""
        clip = f" (clipped to [{_num(self.bounds[0])}, {_num(self.bounds[1])}])" if self.bounds else ""
        if self.kind == "count":
            text = "count of patients"
        elif self.kind == "crosstab":
            text = f"crosstab of {' x '.join(self.columns)}"
        elif self.kind == "quantiles":
            text = f"quantiles {', '.join(_num(p) for p in self.probabilities)} of {self.column}{clip}"
        elif self.kind == "survival":
            text = f"Kaplan-Meier survival of {self.column} / {self.event} on {len(self.bins) - 1} bins{clip}"
        else:
            text = f"{self.kind} of {self.column}{clip}"
        if self.by:
            text += f" by {', '.join(self.by)}"
        if self.where:
            text += f" where {' and '.join(str(f) for f in self.where)}"
        return text

    # --- checks against the public dictionary ----------------------------------------

    def check(self, *, dictionary: DataDictionary) -> Query:
        """Refuse what the public dictionary shows to be wrong; returns the query, with
        the survival columns filled from the dictionary's time/event roles."""
        if dictionary.max_rows_per_patient != 1:
            raise QueryError(
                f"Analytics assume one row per patient (each sensitivity below counts one row); "
                f"data dictionary '{dictionary.name}' allows {dictionary.max_rows_per_patient}. "
                "Reduce the data to one row per patient first."
            )
        query = self
        if self.kind == "survival":
            query = replace(
                self,
                column=self.column or dictionary.time_column,
                event=self.event or dictionary.event_column,
            )
            if query.column is None or query.event is None:
                raise QueryError(
                    "A survival query needs a time and an event column: pass column= and event=, or "
                    "give the data dictionary columns with roles 'time' and 'event'."
                )
            time = column_spec(dictionary, query.column, "survival time")
            if time.kind not in ("numeric", "integer"):
                raise QueryError(f"A survival time column is numeric; '{time.name}' is {time.kind}.")
            event = column_spec(dictionary, query.event, "survival event")
            if event.kind != "binary":
                raise QueryError(f"A survival event column is binary (1 = event); '{event.name}' is {event.kind}.")
        query._check_value_column(dictionary)
        query = query._within_public_range(dictionary)
        for name in query.by:
            spec = column_spec(dictionary, name, "by")
            if spec.kind not in ("categorical", "binary"):
                raise QueryError(
                    f"by stratifies by a categorical or binary column; '{name}' is {spec.kind}. "
                    f"Use a histogram of '{name}' with public bins instead."
                )
            if name in (query.column, *query.columns):
                raise QueryError(f"'{name}' is both the query's column and in by; choose one.")
        check_filters(query.where, dictionary=dictionary)
        return query

    def _check_value_column(self, dictionary: DataDictionary) -> None:
        if self.kind == "count":
            if self.column is not None:
                raise QueryError("A count counts rows; it takes no column. Use where= to select rows.")
            return
        if self.kind == "crosstab":
            if len(self.columns) != 2:
                raise QueryError(f"A crosstab needs columns=(first, second); got {self.columns!r}.")
            for name in self.columns:
                spec = column_spec(dictionary, name, "crosstab")
                if spec.kind not in ("categorical", "binary"):
                    raise QueryError(
                        f"A crosstab counts categories; '{name}' is {spec.kind}. Use a histogram with bins."
                    )
            return
        if self.column is None:
            raise QueryError(f"A {self.kind} needs column=; e.g. column='age'.")
        spec = column_spec(dictionary, self.column, self.kind)
        categorical = spec.kind in ("categorical", "binary")
        if self.kind == "histogram" and categorical:
            if self.bounds is not None:
                raise QueryError(f"A histogram of categorical '{self.column}' counts its categories; drop bounds.")
            return
        if categorical and self.kind != "survival":
            if spec.kind == "binary" and self.kind in ("sum", "mean"):
                if self.bounds is None:
                    raise QueryError(_missing_bounds(self, spec))
                return
            raise QueryError(
                f"A {self.kind} needs a numeric column; '{self.column}' is {spec.kind}. "
                "Use a histogram to count its categories."
            )
        if self.bounds is None:
            raise QueryError(_missing_bounds(self, spec))

    def _within_public_range(self, dictionary: DataDictionary) -> Query:
        """A sum's bounds, intersected with the column's public range: values outside the
        range do not occur (the site's loader checks its data against it), so clipping
        to the intersection changes no value and the noise scales to what can occur.
        Refused when the two do not overlap, or overlap on a sliver."""
        if self.kind not in SCALED_BY_BOUNDS or self.bounds is None:
            return self
        spec = dictionary.column(self.column)
        if spec.minimum is None or spec.maximum is None:
            return self
        low, high = max(self.bounds[0], spec.minimum), min(self.bounds[1], spec.maximum)
        need = MIN_SHARE_OF_RANGE * (spec.maximum - spec.minimum)
        if not high - low >= need:
            raise QueryError(
                f"A {self.kind}'s bounds must overlap the public range of '{self.column}' "
                f"({spec.allowed_values}) by at least {MIN_SHARE_OF_RANGE:g} of it ({need:g}); got bounds "
                f"({_num(self.bounds[0])}, {_num(self.bounds[1])}). Fix: choose bounds within the "
                f"column's range, e.g. bounds=({_num(spec.minimum)}, {_num(spec.maximum)})."
            )
        if (low, high) == self.bounds:
            return self
        return replace(self, bounds=(low, high))

    # --- shape ------------------------------------------------------------------------

    def categories(self, dictionary: DataDictionary, name: str) -> tuple:
        spec = dictionary.column(name)
        return tuple(spec.categories) if spec.kind == "categorical" else (0, 1)


def _missing_bounds(query: Query, spec) -> str:
    hint = ""
    if spec.minimum is not None:
        hint = (
            f" The data dictionary gives {spec.name} the public range {spec.allowed_values}: "
            f"pass bounds=({_num(spec.minimum)}, {_num(spec.maximum)}) or a narrower public range."
        )
    return (
        f"A {query.kind} of '{spec.name}' needs bounds=(low, high): values are clipped to them and "
        f"the noise is scaled to them, so they must be public, never read from the data.{hint}"
    )


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _bounds(bounds: Any, kind: str) -> tuple[float, float]:
    try:
        low, high = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise QueryError(f"bounds is a pair (low, high) of numbers; got {bounds!r}.") from None
    if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
        raise QueryError(f"bounds must be finite with low < high; got {bounds!r} for a {kind}.")
    need = MIN_RELATIVE_WIDTH * max(1.0, abs(low), abs(high))
    if not high - low >= need:
        raise QueryError(
            f"bounds must be at least {MIN_RELATIVE_WIDTH:g} x max(1, |low|, |high|) wide ({need:g} here), so "
            f"that clipping and noise stay exact in floating point; got {bounds!r} (width {high - low:g}) for a "
            f"{kind}. Fix: give the column's public range, e.g. from the data dictionary."
        )
    return low, high


def _edges(query: Query) -> tuple[float, ...]:
    if query.kind not in DEFAULT_BINS or query.bounds is None:
        if query.bins and not (query.kind == "histogram" and query.bounds is None):
            raise QueryError(f"bins go with bounds, for a histogram, quantiles or survival; got a {query.kind}.")
        if query.bins:
            raise QueryError("bins are public edges over bounds: pass bounds=(low, high) with them.")
        return ()
    bins = query.bins if query.bins != () else DEFAULT_BINS[query.kind]
    low, high = query.bounds
    if isinstance(bins, (int, np.integer)) and not isinstance(bins, bool):
        if not 1 <= bins <= MAX_BINS:
            raise QueryError(f"bins is a number of bins from 1 to {MAX_BINS}, or edges; got {bins!r}.")
        return tuple(float(e) for e in np.linspace(low, high, int(bins) + 1))
    try:
        edges = tuple(float(e) for e in bins)
    except (TypeError, ValueError):
        raise QueryError(f"bins is a number of bins or a list of edges; got {bins!r}.") from None
    if len(edges) < 2 or len(edges) > MAX_BINS + 1 or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise QueryError(f"bin edges increase strictly, at most {MAX_BINS} bins; got {bins!r}.")
    if edges[0] != low or edges[-1] != high:
        raise QueryError(
            f"bin edges run from bounds[0] to bounds[1] ({_num(low)} to {_num(high)}); got "
            f"{_num(edges[0])} to {_num(edges[-1])}."
        )
    return edges


def _probabilities(query: Query) -> tuple[float, ...]:
    if query.kind != "quantiles":
        if query.probabilities:
            raise QueryError("probabilities go with a quantiles query.")
        return ()
    probabilities = tuple(float(p) for p in (query.probabilities or DEFAULT_PROBABILITIES))
    if any(not 0 < p < 1 for p in probabilities):
        raise QueryError(f"quantile probabilities lie strictly between 0 and 1; got {probabilities!r}.")
    return tuple(sorted(set(probabilities)))
