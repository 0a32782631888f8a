"""What a site releases for a query: noisy statistics, with small groups suppressed.

``make_release`` adds the noise (fresh, from a cryptographically secure source, on the
integers: ``federation.analytics.secure_noise``) to the exact whole-number statistics
of ``federation.analytics.cells``, scales each back by its grid's step (1 for counts),
derives what the query needs from the noisy values only, and suppresses small groups by
the site's ``DisclosureRules``:

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
is post-processing of the mechanism the ledger charges (``noise.NoisePlan.event``).
Every noisy statistic is a whole number times its grid's step (``Release.grid``), and
each noise scale is checked again here, where the noise is drawn: a scale that is zero,
subnormal or not finite raises NoiseError and nothing is released.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from federation.analytics.cells import ExactCells
from federation.analytics.disclosure import DisclosureRules
from federation.analytics.errors import NoiseError
from federation.analytics.noise import NoisePlan, noise_std
from federation.analytics.query import Query
from federation.analytics.secure_noise import add_secure_noise, check_scale

# Adds noise to whole numbers: (values, *, mechanism, scale) -> values + noise, whole numbers.
Sampler = Callable[..., np.ndarray]
FORMAT = "workbench-analytics-release/1"


@dataclass(frozen=True, eq=False)
class Release:
    """One site's answer to one query (everything here may leave the site).

    ``stats``: arrays (strata, cells), NaN where suppressed. ``noise_std``: the standard
    deviation of one noise draw of each drawn statistic (the estimators know how the
    released arrays derive from the draws). ``suppressed``: the primary grid's mask
    (strata, cells); ``stratum_suppressed``: whole strata not answered. ``grid``: the
    step of each drawn statistic's fixed-point grid (1.0 for counts; every released value
    of it is a whole multiple of the step) and ``noise_scale``: its noise's parameter in
    whole steps (empty for a release made before the noise moved to the integers).
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
    grid: dict[str, float] = field(default_factory=dict)
    noise_scale: dict[str, float] = field(default_factory=dict)

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
            "grid": dict(self.grid),
            "noise_scale": dict(self.noise_scale),
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
            grid={k: float(v) for k, v in data.get("grid", {}).items()},
            noise_scale={k: float(v) for k, v in data.get("noise_scale", {}).items()},
        )


def _nullable(array: np.ndarray) -> list:
    return [[None if np.isnan(v) else float(v) for v in row] for row in np.asarray(array, dtype=float)]


def make_release(
    *,
    query: Query,
    exact: ExactCells,
    plan: NoisePlan,
    rules: DisclosureRules,
    site_id: str,
    sampler: Sampler = add_secure_noise,
) -> Release:
    """Noise, derive, suppress: the release of ``query`` at one site (see the module doc).

    ``plan`` is the noise the ledger was charged for (``noise.plan_noise``), ``exact``
    the statistics computed on its grids. ``sampler`` draws the noise; a site always uses
    the default, the secure one (tests pass a seeded one to be reproducible).
    """
    noisy, true = {}, {}
    for name, values in exact.stats.items():
        stat = plan.statistics[name]
        scale = check_scale(name=f"the noise scale of {name}", scale=stat.scale)  # defence in depth
        if not (stat.step >= sys.float_info.min and stat.step * scale >= sys.float_info.min):
            raise NoiseError(f"the grid of {name} (step {stat.step!r}) is degenerate; nothing released.")
        whole = np.asarray(values)
        if whole.dtype.kind not in "iu":
            raise NoiseError(f"the exact {name} is not on its grid (dtype {whole.dtype}); nothing released.")
        drawn = np.asarray(sampler(whole, mechanism=plan.mechanism, scale=scale))
        if drawn.shape != whole.shape or drawn.dtype.kind not in "iu":
            raise NoiseError(f"the noisy {name} is not whole numbers of its shape; nothing released.")
        noisy[name] = drawn.astype(float) * stat.step
        true[name] = whole.astype(float) * stat.step
    stds = {
        name: noise_std(mechanism=plan.mechanism, scale=plan.statistics[name].scale) * plan.statistics[name].step
        for name in exact.stats
    }
    family = _family(query.kind)
    derive, too_small = _DERIVE[family], _SMALL[family]
    released, true = derive(noisy), derive(true)
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
        noise_multiplier=plan.noise_multiplier,
        suppressed=cell_out,
        stratum_suppressed=stratum_out,
        rules=rules,
        centre=exact.centre,
        edges=query.bins,
        grid={name: plan.statistics[name].step for name in exact.stats},
        noise_scale={name: plan.statistics[name].scale for name in exact.stats},
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
