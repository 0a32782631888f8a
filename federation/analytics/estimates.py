"""From noisy releases to answers with standard errors and confidence intervals.

Everything here is post-processing of what the sites released: it runs at the
coordinator (or in a notebook) and costs no privacy. The pooled answer adds the
sites' released statistics cell by cell (a pooled cell is suppressed when any site
suppressed its part: a partial sum would mislead) and their noise variances.

Standard errors and intervals describe the DP noise, which is known exactly: the
interval covers, at the stated level, the value the same computation WITHOUT noise
would give on the same records (the site's exact answer). Direct counts use the
noise's own distribution (normal, or the exact discrete Laplace for one site's Laplace
draw; a discrete Gaussian's parameter, used as its deviation, bounds it from above); ratios and
curves use the delta method, so their coverage is approximate and holds when counts
are well above the noise. Survival answers also carry Greenwood's sampling error
(computed from the noisy counts) and intervals for both errors together.

Estimators (c the centre of the bounds; n, S, Q the noisy count, centred sum and
centred sum of squares; s_x the noise standard deviation of x):

- count: n, se s_n;
- sum: c n + S, se^2 = c^2 s_n^2 + s_S^2;
- mean: c + S / n, se^2 = (s_S^2 + (S/n)^2 s_n^2) / n^2;
- variance: (Q - S^2/n) / (n - 1), clipped at 0, delta method over (n, S, Q);
- histogram/crosstab: each count, and its share of its stratum's total when no cell of
  the stratum is suppressed (a share over a partial total would mislead);
- quantiles: linear interpolation of the noisy distribution function (made
  monotone); the interval spans from the highest grid edge whose noisy count below
  it is significantly under p n to the lowest edge significantly over it;
- survival: the life-table (actuarial) Kaplan-Meier on the public grid, hazard
  d / (n - c/2) per bin; noise se by the exact gradient over all 2K noisy cells.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from federation.analytics.query import Query
from federation.analytics.release import Release

POOLED = "pooled"


def z_value(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"A confidence level lies strictly between 0 and 1; got {level!r}, e.g. 0.95.")
    return NormalDist().inv_cdf(0.5 + level / 2)


def pool(releases: list[Release]) -> Release:
    """The releases of several sites added cell by cell, noise variances added."""
    if not releases:
        raise ValueError("Pooling needs at least one site's release.")
    first = releases[0]
    if any(r.query_id != first.query_id for r in releases):
        raise ValueError("Only releases of the same query pool; got different query ids.")
    stats = {k: np.sum([r.stats[k] for r in releases], axis=0) for k in first.stats}
    stds = {k: math.sqrt(sum(r.noise_std[k] ** 2 for r in releases)) for k in first.noise_std}
    return Release(
        site_id=POOLED,
        query_id=first.query_id,
        kind=first.kind,
        by=first.by,
        strata=first.strata,
        cell_names=first.cell_names,
        cells=first.cells,
        stats=stats,
        noise_std=stds,
        mechanism=first.mechanism,
        noise_multiplier=float("nan"),
        suppressed=np.any([r.suppressed for r in releases], axis=0),
        stratum_suppressed=np.any([r.stratum_suppressed for r in releases], axis=0),
        rules=first.rules,
        centre=first.centre,
        edges=first.edges,
        single_draw=len(releases) == 1,
        parts=tuple(r.site_id for r in releases),
    )


def answer_frame(*, query: Query, releases: list[Release], level: float = 0.95) -> pd.DataFrame:
    """One row per site, stratum and cell, and the same for the pooled answer."""
    frames = [_estimate(query, r, level) for r in releases]
    if releases:
        pooled = pool(releases)
        frame = _estimate(query, pooled, level)
        if frame["suppressed"].any():
            frame["note"] = [_pooled_note(row, releases) for _, row in frame.iterrows()]
        frames.append(frame)
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True).drop(columns=_PRIVATE)


def _pooled_note(row: pd.Series, releases: list[Release]) -> str:
    """Name the sites that suppressed a pooled cell's parts."""
    if not row["suppressed"]:
        return row["note"]
    s, c = int(row["_stratum"]), row["_cell"]
    if c is None or (isinstance(c, float) and np.isnan(c)):
        sites = [r.site_id for r in releases if r.stratum_suppressed[s]]
    else:
        sites = [r.site_id for r in releases if r.suppressed.reshape(-1)[int(c)]]
    return f"suppressed at {', '.join(sites)}" if sites else row["note"]


def estimate(*, query: Query, release: Release, level: float = 0.95) -> pd.DataFrame:
    """The answer of one release (one site's, or a pooled one) as a DataFrame."""
    return _estimate(query, release, level).drop(columns=_PRIVATE)


_PRIVATE = ["_stratum", "_cell"]  # where a row sits in the release, for the pooled notes


def _estimate(query: Query, release: Release, level: float) -> pd.DataFrame:
    z = z_value(level)
    return pd.DataFrame(_ESTIMATORS[query.kind](query, release, z, level))


# --- helpers --------------------------------------------------------------------------


def _base(release: Release, s: int, c: int | None, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"site": release.site_id, "_stratum": s, "_cell": None}
    row.update(dict(zip(release.by, release.strata[s], strict=False)))
    if c is not None:
        row.update(_cell_labels(release, c))
    row.update(values)
    return row


def _cell_labels(release: Release, c: int) -> dict[str, Any]:
    if release.kind == "histogram" and release.edges:
        low, high = release.cells[c][0]
        last = c == len(release.cells) - 1
        name = release.cell_names[0]
        return {name: f"[{low:g}, {high:g}{']' if last else ')'}", "low": low, "high": high}
    return dict(zip(release.cell_names, release.cells[c], strict=False))


def _interval(estimate: float, se: float, z: float, level: float, laplace_half: float | None = None):
    if np.isnan(estimate):
        return float("nan"), float("nan")
    half = laplace_half if laplace_half is not None else z * se
    return estimate - half, estimate + half


def _laplace_scale(release: Release, name: str, level: float) -> float | None:
    """Half-width of the exact interval of a single Laplace draw at ``level``; None for
    Gaussian or pooled noise (those use the normal approximation).

    On the integers (a release with a grid): the discrete Laplace of scale t (in steps)
    has P(|X| > k) = 2 exp(-(k + 1) / t) / (1 + exp(-1 / t)), so the half-width is the
    least whole k (times the step) that brings it to 1 - level or below. A release of the
    continuous Laplace (kept before the noise moved to the integers) has its own formula.
    """
    if release.mechanism != "laplace" or not release.single_draw:
        return None
    if name in release.noise_scale and name in release.grid:
        t, step = release.noise_scale[name], release.grid[name]
        alpha = 1 - level
        k = math.ceil(t * math.log(2 / (alpha * (1 + math.exp(-1 / t))))) - 1
        return max(k, 0) * step
    return release.noise_std[name] / math.sqrt(2) * math.log(1 / (1 - level))


def _suppression_note(release: Release, s: int, suppressed: bool) -> str:
    if not suppressed:
        return ""
    rules = release.rules
    floor = f" or true count below {rules.true_count_floor}" if rules.true_count_floor else ""
    what = "stratum" if release.stratum_suppressed[s] else "cell"
    return f"{what} suppressed: noisy count below {rules.min_cell_size}{floor}"


# --- estimators -------------------------------------------------------------------------


def _moments(query: Query, r: Release, z: float, level: float) -> list[dict[str, Any]]:
    rows = []
    c = r.centre or 0.0
    sd = r.noise_std
    for s in range(len(r.strata)):
        n = r.stats["n"][s, 0]
        suppressed = bool(r.suppressed[s, 0])
        laplace = None
        if query.kind == "count":
            est, se, laplace = n, sd["n"], _laplace_scale(r, "n", level)
        elif query.kind == "sum":
            total = r.stats["sum"][s, 0]
            est, se = c * n + total, math.sqrt(c**2 * sd["n"] ** 2 + sd["sum"] ** 2)
        elif query.kind == "mean":
            est, se = _mean(n, r.stats["sum"][s, 0], c, sd)
        else:
            est, se = _variance(n, r.stats["sum"][s, 0], r.stats["sumsq"][s, 0], sd)
        if suppressed:
            est = se = float("nan")
        low, high = _within(query, *_interval(est, se, z, level, laplace))
        rows.append(
            _base(
                r,
                s,
                None,
                estimate=est,
                se=se,
                ci_low=low,
                ci_high=high,
                n=n,
                suppressed=suppressed,
                note=_suppression_note(r, s, suppressed),
                _cell=s,
            )
        )
    return rows


def _within(query: Query, low: float, high: float) -> tuple[float, float]:
    """The interval cut to what the exact answer can be (counts and variances are not
    negative, a mean of clipped values lies within the bounds): coverage is unchanged."""
    if query.kind in ("count", "variance"):
        return max(low, 0.0), high
    if query.kind == "mean":
        return max(low, query.bounds[0]), min(high, query.bounds[1])
    return low, high


def _mean(n: float, total: float, c: float, sd: dict[str, float]) -> tuple[float, float]:
    if not n > 0:
        return float("nan"), float("nan")
    ratio = total / n
    se = math.sqrt(sd["sum"] ** 2 + ratio**2 * sd["n"] ** 2) / n
    return c + ratio, se


def _variance(n: float, total: float, squares: float, sd: dict[str, float]) -> tuple[float, float]:
    if not n > 1:
        return float("nan"), float("nan")
    value = (squares - total**2 / n) / (n - 1)
    d_q = 1 / (n - 1)
    d_s = -2 * total / (n * (n - 1))
    d_n = total**2 / (n**2 * (n - 1)) - value / (n - 1)
    se = math.sqrt((d_q * sd["sumsq"]) ** 2 + (d_s * sd["sum"]) ** 2 + (d_n * sd["n"]) ** 2)
    return max(value, 0.0), se


def _histogram(query: Query, r: Release, z: float, level: float) -> list[dict[str, Any]]:
    rows = []
    sd = r.noise_std["n"]
    laplace = _laplace_scale(r, "n", level)
    n_cells = len(r.cells)
    for s in range(len(r.strata)):
        counts = r.stats["n"][s]
        complete = not r.suppressed[s].any()
        total = float(counts.sum()) if complete else float("nan")
        for c in range(n_cells):
            est = counts[c]
            suppressed = bool(r.suppressed[s, c])
            low, high = _interval(est, sd, z, level, laplace)
            low = max(low, 0.0)  # a count is never negative: the interval keeps its coverage
            share = share_se = float("nan")
            if complete and total > 0:
                share = min(max(est / total, 0.0), 1.0)
                share_se = sd * math.sqrt((1 - share) ** 2 + share**2 * (n_cells - 1)) / total
            rows.append(
                _base(
                    r,
                    s,
                    c,
                    estimate=est,
                    se=float("nan") if suppressed else sd,
                    ci_low=low,
                    ci_high=high,
                    n=est,
                    suppressed=suppressed,
                    proportion=share,
                    proportion_se=share_se,
                    note=_suppression_note(r, s, suppressed),
                    _cell=s * n_cells + c,
                )
            )
    return rows


def _quantiles(query: Query, r: Release, z: float, level: float) -> list[dict[str, Any]]:
    rows = []
    edges = np.asarray(r.edges)
    bin_var = r.noise_std["bins"] ** 2
    for s in range(len(r.strata)):
        n = float(r.stats["n"][s, 0])
        below = r.stats["below"][s]
        for p in query.probabilities:
            est, low, high = quantile_with_interval(edges=edges, below=below, n=n, p=p, bin_var=bin_var, z=z)
            suppressed = bool(r.stratum_suppressed[s]) or np.isnan(est)
            note = (
                _suppression_note(r, s, True)
                if r.stratum_suppressed[s]
                else (
                    "suppressed: the quantile lies in a tail with fewer records than the minimum" if suppressed else ""
                )
            )
            rows.append(
                _base(
                    r,
                    s,
                    None,
                    probability=p,
                    estimate=est,
                    se=float("nan"),
                    ci_low=low,
                    ci_high=high,
                    n=n,
                    suppressed=suppressed,
                    note=note,
                )
            )
    return rows


def quantile_with_interval(
    *, edges: np.ndarray, below: np.ndarray, n: float, p: float, bin_var: float, z: float
) -> tuple[float, float, float]:
    """The p-quantile from noisy counts below the inner edges, and its noise interval.

    NaN when the stratum is suppressed or the quantile falls in a suppressed tail.
    Interval: [highest edge e_j whose count is below p n by more than z sd_j, lowest
    edge whose count is above p n by more than z sd_j], where the noise of
    (count below e_j) - p n has variance s^2 ((1-p)^2 j + p^2 (K - j)) for K bins.
    """
    nan = float("nan")
    if np.isnan(n) or n <= 0:
        return nan, nan, nan
    released = ~np.isnan(below)
    if not released.any():
        return nan, nan, nan
    inner = np.arange(1, len(edges) - 1)
    target = p * n
    j = inner[released]
    counts = np.clip(np.maximum.accumulate(below[released]), 0, n)
    if target < counts[0] and j[0] > 1 or target > counts[-1] and j[-1] < len(edges) - 2:
        return nan, nan, nan  # in a suppressed tail
    xs = np.concatenate([[edges[0]], edges[j], [edges[-1]]])
    ys = np.concatenate([[0.0], counts, [n]])
    k = int(np.searchsorted(ys, target, side="left"))
    k = min(max(k, 1), len(xs) - 1)
    y0, y1 = ys[k - 1], ys[k]
    est = xs[k - 1] if y1 <= y0 else xs[k - 1] + (target - y0) / (y1 - y0) * (xs[k] - xs[k - 1])
    n_bins = len(edges) - 1
    sd = np.sqrt(bin_var * ((1 - p) ** 2 * j + p**2 * (n_bins - j)))
    diff = below[released] - target
    above = edges[j][diff > z * sd]
    high = float(above.min()) if above.size else float(edges[-1])
    under = edges[j][(diff < -z * sd) & (edges[j] < high)]
    low = float(under.max()) if under.size else float(edges[0])
    return float(est), low, high


def _survival(query: Query, r: Release, z: float, level: float) -> list[dict[str, Any]]:
    rows = []
    unit_var = r.noise_std["events"] ** 2
    n_bins = len(r.cells)
    for s in range(len(r.strata)):
        curve = km_curve(
            events=r.stats["events"][s],
            censored=r.stats["censored"][s],
            at_risk=r.stats["at_risk"][s],
            unit_var=unit_var,
        )
        for k in range(n_bins):
            suppressed = bool(r.suppressed[s, k])
            est, se, se_sampling = (
                (float("nan"),) * 3 if suppressed else (curve["survival"][k], curve["se"][k], curve["se_sampling"][k])
            )
            low, high = _interval(est, se, z, level)
            total = math.hypot(se, se_sampling) if not suppressed else float("nan")
            low_t, high_t = _interval(est, total, z, level)
            rows.append(
                _base(
                    r,
                    s,
                    k,
                    estimate=est,
                    se=se,
                    ci_low=max(low, 0.0),
                    ci_high=min(high, 1.0),
                    n=r.stats["at_risk"][s, k],
                    suppressed=suppressed,
                    at_risk=r.stats["at_risk"][s, k],
                    events=r.stats["events"][s, k],
                    se_sampling=se_sampling,
                    ci_low_total=max(low_t, 0.0),
                    ci_high_total=min(high_t, 1.0),
                    note=_suppression_note(r, s, suppressed),
                    _cell=s * n_bins + k,
                )
            )
    return rows


def km_curve(
    *, events: np.ndarray, censored: np.ndarray, at_risk: np.ndarray, unit_var: float
) -> dict[str, np.ndarray]:
    """Life-table survival at the end of each released bin, with its noise se (gradient
    over every noisy cell: events and censored per bin, and the patients followed to the
    grid's end, suppressed ones included through the numbers at risk) and Greenwood's
    sampling se. Bins after the first suppressed one are NaN."""
    released = ~np.isnan(at_risk)
    stop = int(np.argmin(released)) if not released.all() else len(at_risk)
    k = len(at_risk)
    d = np.zeros(k)
    nprime = np.ones(k)
    d[:stop] = events[:stop]
    nprime[:stop] = at_risk[:stop] - censored[:stop] / 2
    nprime = np.maximum(nprime, 1e-9)
    d = np.clip(d, 0.0, nprime)
    left = np.maximum(nprime - d, 0.5)  # a bin that empties its risk set would divide by 0
    survival = np.cumprod(1 - d / nprime)
    a = np.where(np.arange(k) < stop, d / (nprime * left), 0.0)
    b = np.where(np.arange(k) < stop, 1 / left, 0.0)
    cum_a = np.cumsum(a)
    rows, cols = np.indices((k, k))
    # d f_k / d events_i: each n'_j with j <= min(k, i) contains events_i; events_k itself also enters the numerator.
    grad_d = cum_a[np.minimum(rows, cols)] - b[cols] * (cols <= rows)
    # d f_k / d censored_i: n'_j contains censored_i fully for j < i, half for j = i.
    earlier = np.where(cols > 0, cum_a[np.maximum(np.minimum(rows, cols - 1), 0)], 0.0)
    earlier = np.where(cols > 0, earlier, 0.0)
    grad_c = earlier + 0.5 * a[cols] * (cols <= rows)
    # d f_k / d followed: every n'_j contains it.
    grad_f = cum_a
    var_log = unit_var * ((grad_d**2).sum(axis=1) + (grad_c**2).sum(axis=1) + grad_f**2)
    se = survival * np.sqrt(var_log)
    se_sampling = survival * np.sqrt(cum_a)
    nan = np.arange(k) >= stop
    for array in (survival, se, se_sampling):
        array[nan] = np.nan
    return {"survival": survival, "se": se, "se_sampling": se_sampling}


_ESTIMATORS = {
    "count": _moments,
    "sum": _moments,
    "mean": _moments,
    "variance": _moments,
    "histogram": _histogram,
    "crosstab": _histogram,
    "quantiles": _quantiles,
    "survival": _survival,
}
