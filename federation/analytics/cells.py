"""The exact statistics a query needs, before any noise: computed at the site only.

Every query is answered from a few arrays of shape (strata, cells): strata are the
combinations of the ``by`` columns' public categories (all of them, observed or
not: which categories occur is itself data), cells are a histogram's categories or
bins, a grid's bins, or one cell. Rows with a missing value in a column the query
uses are left out, as if filtered.

Sensitivities, under add/remove-one-patient (one row per patient). A patient who
passes the filters falls in exactly one stratum and, for each statistic, in exactly
one cell; a patient who does not pass changes nothing. So for every statistic the
L1 and the L2 sensitivity are the same number, over all strata and cells together:

- ``n`` (count, histogram, crosstab, and the count behind sum/mean/variance): 1.
- ``sum``: the sum of (x - c) with x clipped to [low, high] and c = (low + high) / 2:
  (high - low) / 2. Centring halves the noise against a raw sum when 0 is outside the
  bounds; the raw sum is c * n + sum, recovered by post-processing.
- ``sumsq``: the sum of (x - c)^2: ((high - low) / 2)^2.
- ``bins`` (quantiles): counts per bin of a public grid over the bounds: 1.
- ``events``, ``censored`` and ``followed`` (survival): each patient leaves the risk set
  in one bin of the public time grid, as an event or censored, or is still followed at
  the grid's end (times beyond it are censored there): one cell of the three arrays
  together changes by 1, so they are one component of sensitivity 1.

``COMPONENTS`` is the number of separately noised statistics of each kind: the query's
DpEvent composes that many mechanisms (see ``federation.analytics.noise``).

Every statistic is a whole number, so that the site adds noise on the integers
(``federation.analytics.secure_noise``). Counts are whole already. A sum of real values
is computed on a fixed-point grid that ``noise.plan_noise`` states (``StatisticNoise``:
a power-of-two ``step`` and an integer bound ``sensitivity``): each patient's centred
value (x - c), or its square, is divided by the step, rounded to the nearest whole
number (ties to even) and clipped to [-sensitivity, sensitivity] ([0, sensitivity]
for squares), and these whole numbers are added exactly. One patient then changes the
integer sum by at most ``sensitivity`` by construction, whatever the rounding did.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from federation.analytics.query import Query
from federation.data.dictionary import DataDictionary

COMPONENTS = {
    "count": 1,
    "sum": 2,  # n, sum
    "mean": 2,  # n, sum
    "variance": 3,  # n, sum, sumsq
    "histogram": 1,  # n per cell
    "crosstab": 1,  # n per cell
    "quantiles": 1,  # bins
    "survival": 1,  # events, censored per bin and followed to the end: one cell per patient
}


# Where a statistic's noise goes: (component of the query's DpEvent, sensitivity of the
# real value per patient, or None for a count whose sensitivity is 1).
Statistic = tuple[int, float | None]


def statistics(query: Query) -> dict[str, Statistic]:
    """The statistics ``query`` noises, from public facts only (its kind and bounds)."""
    kind = query.kind
    if kind in ("count", "histogram", "crosstab"):
        return {"n": (0, None)}
    if kind == "quantiles":
        return {"bins": (0, None)}
    if kind == "survival":  # one component: a patient is in one cell of the three arrays together
        return {"events": (0, None), "censored": (0, None), "followed": (0, None)}
    low, high = query.bounds
    half = (high - low) / 2
    found: dict[str, Statistic] = {"n": (0, None), "sum": (1, half)}
    if kind == "variance":
        found["sumsq"] = (2, half * half)
    return found


class Grid(Protocol):
    """What exact_cells needs of a statistic's noise plan (noise.StatisticNoise)."""

    step: float
    sensitivity: int


@dataclass(frozen=True)
class ExactCells:
    """The exact statistics of one query at one site (never leaves the site): whole
    numbers, sums in units of their grid's step."""

    strata: tuple[tuple, ...]
    cells: tuple[tuple, ...]
    cell_names: tuple[str, ...]
    stats: dict[str, np.ndarray]
    centre: float | None = None


def exact_cells(*, query: Query, frame, dictionary: DataDictionary, grids: Mapping[str, Grid]) -> ExactCells:
    """The exact (noise-free) statistics of ``query`` on ``frame``; the sums on ``grids``
    (the noise plan's statistics, ``noise.NoisePlan.statistics``)."""
    keep = np.ones(len(frame), dtype=bool)
    for f in query.where:
        keep &= f.mask(frame)
    strata, stratum = _strata(query=query, frame=frame, dictionary=dictionary)
    keep &= stratum >= 0
    kind = query.kind
    if kind == "count":
        n = _count(stratum[keep], len(strata), 1, np.zeros(keep.sum(), dtype=int))
        return ExactCells(strata, ((),), (), {"n": n})
    if kind in ("histogram", "crosstab"):
        return _histogram(query, frame, dictionary, strata, stratum, keep)
    if kind == "survival":
        return _survival(query, frame, strata, stratum, keep)
    values = _numeric(frame, query.column)
    keep &= ~np.isnan(values)
    low, high = query.bounds
    x = np.clip(values[keep], low, high)
    s = stratum[keep]
    if kind == "quantiles":
        edges = np.asarray(query.bins)
        bins = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
        counts = _count(s, len(strata), len(edges) - 1, bins)
        cells = tuple((float(a), float(b)) for a, b in zip(edges, edges[1:], strict=False))
        return ExactCells(strata, cells, ("bin",), {"bins": counts})
    centre = (low + high) / 2
    centred = x - centre
    zero = np.zeros(len(s), dtype=int)
    stats = {"n": _count(s, len(strata), 1, zero), "sum": _total(s, len(strata), on_grid(centred, grids["sum"]))}
    if kind == "variance":
        stats["sumsq"] = _total(s, len(strata), on_grid(centred**2, grids["sumsq"], low=0))
    return ExactCells(strata, ((),), (), stats, centre=centre)


def on_grid(values: np.ndarray, grid: Grid, *, low: int | None = None) -> np.ndarray:
    """``values`` in whole units of ``grid.step``: rounded to the nearest (ties to even),
    then clipped to [-sensitivity, sensitivity] (or [low, sensitivity]), so that one
    value moves an integer sum by at most ``grid.sensitivity``."""
    bound = int(grid.sensitivity)
    units = np.rint(np.asarray(values, dtype=float) / grid.step)
    return np.clip(units, -bound if low is None else low, bound).astype(np.int64)


def _strata(*, query: Query, frame, dictionary: DataDictionary) -> tuple[tuple[tuple, ...], np.ndarray]:
    """Every combination of the by columns' public categories, and each row's index (-1: missing)."""
    if not query.by:
        return ((),), np.zeros(len(frame), dtype=int)
    levels = [query.categories(dictionary, name) for name in query.by]
    codes = [_codes(frame[name], level) for name, level in zip(query.by, levels, strict=False)]
    stacked = np.stack(codes)
    valid = (stacked >= 0).all(axis=0)
    index = np.full(len(frame), -1, dtype=int)
    if valid.any():
        index[valid] = np.ravel_multi_index(tuple(stacked[:, valid]), tuple(len(level) for level in levels))
    return tuple(itertools.product(*levels)), index


def _codes(series, levels: tuple) -> np.ndarray:
    """Each value's position among ``levels``; -1 for a missing or unknown value."""
    import pandas as pd

    return pd.Index(list(levels), dtype=object).get_indexer(series.astype("object")).astype(int)


def _numeric(frame, column: str) -> np.ndarray:
    return frame[column].to_numpy(dtype=float, na_value=np.nan)


def _count(stratum: np.ndarray, n_strata: int, n_cells: int, cell: np.ndarray) -> np.ndarray:
    flat = np.bincount(stratum * n_cells + cell, minlength=n_strata * n_cells)
    return flat.reshape(n_strata, n_cells).astype(np.int64)


def _total(stratum: np.ndarray, n_strata: int, units: np.ndarray) -> np.ndarray:
    """Exact integer sums per stratum (added in 64-bit integers, never in floats)."""
    totals = np.zeros(n_strata, dtype=np.int64)
    np.add.at(totals, stratum, units.astype(np.int64))
    return totals.reshape(n_strata, 1)


def _histogram(query, frame, dictionary, strata, stratum, keep) -> ExactCells:
    if query.kind == "crosstab" or query.bounds is None:
        names = query.columns if query.kind == "crosstab" else (query.column,)
        levels = [query.categories(dictionary, name) for name in names]
        codes = np.stack([_codes(frame[name], level) for name, level in zip(names, levels, strict=False)])
        keep = keep & (codes >= 0).all(axis=0)
        shape = tuple(len(level) for level in levels)
        cell = np.ravel_multi_index(tuple(codes[:, keep]), shape) if keep.any() else np.zeros(0, dtype=int)
        cells = tuple(itertools.product(*levels))
        n = _count(stratum[keep], len(strata), int(np.prod(shape)), cell)
        return ExactCells(strata, cells, tuple(names), {"n": n})
    values = _numeric(frame, query.column)
    keep = keep & ~np.isnan(values)
    edges = np.asarray(query.bins)
    x = np.clip(values[keep], edges[0], edges[-1])
    cell = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
    cells = tuple(((float(a), float(b)),) for a, b in zip(edges, edges[1:], strict=False))
    n = _count(stratum[keep], len(strata), len(edges) - 1, cell)
    return ExactCells(strata, cells, (query.column,), {"n": n})


def _survival(query, frame, strata, stratum, keep) -> ExactCells:
    time = _numeric(frame, query.column)
    event = _numeric(frame, query.event)
    keep = keep & ~np.isnan(time) & ~np.isnan(event)
    edges = np.asarray(query.bins)
    t, e = time[keep], event[keep] == 1
    e &= t <= edges[-1]  # followed beyond the grid's end: censored there
    t = np.clip(t, edges[0], edges[-1])
    k = len(edges) - 1
    # As in Kaplan-Meier, an event at t counts at t and a patient censored at t was at
    # risk at t: events fall in (edge[k], edge[k+1]], censorings in [edge[k], edge[k+1]),
    # and a patient censored at the grid's end (or later) was at risk in every bin.
    event_bin = np.clip(np.searchsorted(edges, t, side="left") - 1, 0, k - 1)
    censor_bin = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, k)
    s = stratum[keep]
    events = _count(s[e], len(strata), k, event_bin[e])
    censored_all = _count(s[~e], len(strata), k + 1, censor_bin[~e])
    cells = tuple((float(b),) for b in edges[1:])
    return ExactCells(
        strata,
        cells,
        ("time",),
        {"events": events, "censored": censored_all[:, :k], "followed": censored_all[:, k:]},
    )
