"""What a site releases for a query: noisy statistics, with small groups suppressed.

``make_release`` adds the noise (fresh randomness each time) to the exact statistics
of ``federation.analytics.cells``, derives what the query needs from the noisy values
only, and suppresses small groups by the site's ``DisclosureRules``:

- count, sum, mean, variance: a stratum whose noisy count is below the minimum is
  suppressed whole (a stratification that would expose a small group is not answered);
- histogram, crosstab: each cell whose noisy count is below the minimum, and every
  cell of a stratum whose noisy total is below it;
- quantiles: the released values are noisy counts below each inner edge of the grid;
  an edge with fewer than the minimum (noisy) below or above it is suppressed, which
  hides the tails where single records would show, and a stratum whose noisy total is
  below the minimum is suppressed whole;
- survival: a bin whose noisy number at risk is below the minimum is suppressed, and
  every later bin with it (the curve stops there).

Suppressed values are not sent: they travel as null and are marked suppressed, never
as zero. With a true-count floor the same tests also run on the exact counts.
Everything here is computed from the noisy values except that floor, so the release
is post-processing of the mechanism the ledger charges (``noise.query_event``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from federation.analytics.cells import ExactCells
from federation.analytics.disclosure import DisclosureRules
from federation.analytics.noise import draw, noise_std
from federation.analytics.query import Query

FORMAT = "workbench-analytics-release/1"


@dataclass(frozen=True, eq=False)
class Release:
    """One site's answer to one query (everything here may leave the site).

    ``stats``: arrays (strata, cells), NaN where suppressed. ``noise_std``: the standard
    deviation of one noise draw of each drawn statistic (the estimators know how the
    released arrays derive from the draws). ``suppressed``: the primary grid's mask
    (strata, cells); ``stratum_suppressed``: whole strata not answered.
    """

    site_id: str
    query_id: str
    kind: str
    by: tuple[str, ...]
    strata: tuple[tuple, ...]
    cell_names: tuple[str, ...]
    cells: tuple[tuple, ...]
    stats: dict[str, np.ndarray]
    noise_std: dict[str, float]
    mechanism: str
    noise_multiplier: float
    suppressed: np.ndarray
    stratum_suppressed: np.ndarray
    rules: DisclosureRules
    centre: float | None = None
    edges: tuple[float, ...] = ()
    single_draw: bool = True  # False once pooled: a sum of several sites' noise
    parts: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "site_id": self.site_id,
            "query_id": self.query_id,
            "kind": self.kind,
            "by": list(self.by),
            "strata": [list(s) for s in self.strata],
            "cell_names": list(self.cell_names),
            "cells": [[list(v) if isinstance(v, tuple) else v for v in c] for c in self.cells],
            "stats": {k: _nullable(v) for k, v in self.stats.items()},
            "noise_std": dict(self.noise_std),
            "mechanism": self.mechanism,
            "noise_multiplier": self.noise_multiplier,
            "suppressed": self.suppressed.astype(bool).tolist(),
            "stratum_suppressed": self.stratum_suppressed.astype(bool).tolist(),
            "rules": self.rules.to_json(),
            "centre": self.centre,
            "edges": list(self.edges),
        }

    def to_text(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, data: dict[str, Any] | str) -> Release:
        if isinstance(data, str):
            data = json.loads(data)
        if data.get("format") != FORMAT:
            raise ValueError(f"A release carries format {FORMAT!r}; got {str(data)[:100]!r}.")
        return cls(
            site_id=data["site_id"],
            query_id=data["query_id"],
            kind=data["kind"],
            by=tuple(data["by"]),
            strata=tuple(tuple(s) for s in data["strata"]),
            cell_names=tuple(data["cell_names"]),
            cells=tuple(tuple(tuple(v) if isinstance(v, list) else v for v in c) for c in data["cells"]),
            stats={k: np.array(v, dtype=float) for k, v in data["stats"].items()},
            noise_std={k: float(v) for k, v in data["noise_std"].items()},
            mechanism=data["mechanism"],
            noise_multiplier=float(data["noise_multiplier"]),
            suppressed=np.array(data["suppressed"], dtype=bool),
            stratum_suppressed=np.array(data["stratum_suppressed"], dtype=bool),
            rules=DisclosureRules(**data["rules"]),
            centre=data["centre"],
            edges=tuple(data["edges"]),
        )


def _nullable(array: np.ndarray) -> list:
    return [[None if np.isnan(v) else float(v) for v in row] for row in np.asarray(array, dtype=float)]


def make_release(
    *,
    query: Query,
    exact: ExactCells,
    noise_multiplier: float,
    rules: DisclosureRules,
    rng: np.random.Generator,
    site_id: str,
) -> Release:
    """Noise, derive, suppress: the release of ``query`` at one site (see the module doc)."""
    scales = {name: noise_multiplier * d for name, d in exact.sensitivity.items()}
    noisy = {
        name: values + draw(rng=rng, mechanism=query.mechanism, scale=scales[name], shape=values.shape)
        for name, values in exact.stats.items()
    }
    stds = {name: noise_std(mechanism=query.mechanism, scale=s) for name, s in scales.items()}
    family = _family(query.kind)
    derive, too_small = _DERIVE[family], _SMALL[family]
    released, true = derive(noisy), derive(exact.stats)
    m, floor = rules.min_cell_size, rules.true_count_floor
    stratum_out, cell_out = too_small(released, m)
    if floor:
        true_stratum, true_cell = too_small(true, floor)
        stratum_out, cell_out = stratum_out | true_stratum, cell_out | true_cell
    cell_out = cell_out | stratum_out[:, None]
    stats = {}
    for name, values in released.items():
        values = np.array(values, dtype=float)
        if name in _PER_CELL[family]:
            values[cell_out] = np.nan
        else:
            values[stratum_out, :] = np.nan
        stats[name] = values
    return Release(
        site_id=site_id,
        query_id=query.query_id,
        kind=query.kind,
        by=query.by,
        strata=exact.strata,
        cell_names=exact.cell_names,
        cells=_primary_cells(query, exact),
        stats=stats,
        noise_std=stds,
        mechanism=query.mechanism,
        noise_multiplier=noise_multiplier,
        suppressed=cell_out,
        stratum_suppressed=stratum_out,
        rules=rules,
        centre=exact.centre,
        edges=query.bins,
    )


def _family(kind: str) -> str:
    return {
        "sum": "moments",
        "mean": "moments",
        "variance": "moments",
        "count": "moments",
        "crosstab": "histogram",
    }.get(kind, kind)


def _primary_cells(query: Query, exact: ExactCells) -> tuple[tuple, ...]:
    if query.kind == "quantiles":  # released at the grid's inner edges
        return tuple((float(e),) for e in query.bins[1:-1])
    return exact.cells


# --- derived statistics (the same function of noisy or of exact values) ----------------


def _moments(stats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return dict(stats)


def _quantile_counts(stats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    cumulative = np.cumsum(stats["bins"], axis=1)
    return {"below": cumulative[:, :-1], "n": cumulative[:, -1:]}


def _survival(stats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    # At risk at the start of bin k: everyone who leaves in bin k or later, or is still
    # followed at the end. "followed" itself is not released (the curve needs only this).
    exits = stats["events"] + stats["censored"]
    at_risk = np.cumsum(exits[:, ::-1], axis=1)[:, ::-1] + stats["followed"]
    return {"events": stats["events"], "censored": stats["censored"], "at_risk": at_risk}


_DERIVE = {"moments": _moments, "histogram": _moments, "quantiles": _quantile_counts, "survival": _survival}
# Statistics suppressed cell by cell (the others go with their stratum).
_PER_CELL = {
    "moments": {"n", "sum", "sumsq"},
    "histogram": {"n"},
    "quantiles": {"below"},
    "survival": {"events", "censored", "at_risk"},
}


# --- what is too small: (strata to suppress, cells to suppress) -------------------------


def _small_moments(stats, m):
    out = stats["n"][:, 0] < m
    return out, np.broadcast_to(out[:, None], stats["n"].shape).copy()


def _small_histogram(stats, m):
    n = stats["n"]
    return n.sum(axis=1) < m, n < m


def _small_quantiles(stats, m):
    below, n = stats["below"], stats["n"]
    return n[:, 0] < m, (below < m) | (n - below < m)


def _small_survival(stats, m):
    at_risk = stats["at_risk"]
    small = at_risk < m
    # Once the risk set is too small the curve stops: every later bin goes too.
    return small[:, 0], np.logical_or.accumulate(small, axis=1)


_SMALL = {
    "moments": _small_moments,
    "histogram": _small_histogram,
    "quantiles": _small_quantiles,
    "survival": _small_survival,
}
