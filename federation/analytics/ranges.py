"""Finding feature ranges with a differentially private query, when no data
dictionary gives them.

Each site counts its values into bins of a fixed public grid (1-2-5 steps over
powers of ten, both signs), adds Gaussian noise to every count, and keeps the bins
whose noisy count clears a threshold. Only the outermost kept edges leave the site:
post-processing of the noisy counts, so the whole release is covered by one Gaussian
mechanism. One patient adds one to one bin of each column's histogram, so the
L2 sensitivity of all d histograms together is sqrt(d).

The ranges are deliberately coarse (a bin edge, not a minimum): scaling needs an
order of magnitude, not a record's value.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from federation.analytics.secure_noise import add_secure_noise
from privacy_budgets import accounting
from privacy_budgets.mechanisms import discrete_gaussian_event

# Edges at 0, +-1e-3 ... +-5e6 in 1-2-5 steps: public, the same at every site.
_POSITIVE = sorted(m * 10.0**k for k in range(-3, 7) for m in (1, 2, 5))
GRID = np.array([-e for e in reversed(_POSITIVE)] + [0.0] + _POSITIVE)
# A bin is kept when its noisy count clears this many noise deviations, and only
# bins in one run around the fullest bin count: an empty bin far out that noise
# pushed over the threshold must not stretch the range by orders of magnitude.
THRESHOLD_SIGMAS = 3.5


def range_noise(*, epsilon: float, delta: float, n_columns: int) -> float:
    """Noise (the discrete Gaussian's sigma, in counts) of every count so that all
    ``n_columns`` histograms together cost ``epsilon``, by the ledger's own arithmetic."""
    root = math.sqrt(n_columns)
    sigma, _ = accounting.calibrate_noise(
        cost=lambda s: accounting.epsilon(events=[range_event(noise_std=s, n_columns=n_columns)], delta=delta),
        target_epsilon=epsilon,
        minimum=accounting.MIN_NOISE_MULTIPLIER * root,  # a generous target gets the least noise, and costs less
        maximum=1e4 * root,
        rtol=1e-4,
    )
    return sigma


def range_event(*, noise_std: float, n_columns: int):
    """The mechanism one site's range release is: one discrete Gaussian histogram per
    column (sigma ``noise_std``; one patient adds one to one bin of each)."""
    return discrete_gaussian_event(sigma=noise_std, sensitivity=1, count=n_columns)


def noisy_range(
    *, values: np.ndarray, noise_std: float, sampler: Callable[..., np.ndarray] = add_secure_noise
) -> tuple[float, float] | None:
    """The outer edges of the run of bins, around the fullest noisy bin, whose noisy
    counts clear the threshold.

    The counts get discrete Gaussian noise of sigma ``noise_std`` from a secure source
    (``sampler``: tests pass their own). Values below or above the whole grid fall into
    its first or last bin. None when no bin clears the threshold (too few records for
    this noise).
    """
    finite = values[np.isfinite(values)]
    clipped = np.clip(finite, GRID[0], GRID[-1])
    counts, _ = np.histogram(clipped, bins=GRID)
    noisy = np.asarray(sampler(counts.astype(np.int64), mechanism="gaussian", scale=noise_std), dtype=float)
    above = noisy > THRESHOLD_SIGMAS * noise_std
    peak = int(np.argmax(noisy))
    if not above[peak]:
        return None
    low = high = peak
    while low > 0 and above[low - 1]:
        low -= 1
    while high < len(above) - 1 and above[high + 1]:
        high += 1
    return float(GRID[low]), float(GRID[high + 1])


def union_ranges(site_ranges: list[dict[str, list[float] | None]]) -> dict[str, tuple[float, float]]:
    """Combine the sites' ranges: the smallest low and the largest high per column."""
    columns = sorted({c for r in site_ranges for c in r})
    out: dict[str, tuple[float, float]] = {}
    for column in columns:
        found = [r[column] for r in site_ranges if r.get(column)]
        if found:
            out[column] = (min(f[0] for f in found), max(f[1] for f in found))
    return out
