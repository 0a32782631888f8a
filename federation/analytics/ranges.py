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

import numpy as np

from privacy_budgets import accounting
from privacy_budgets.mechanisms import gaussian_event

# Edges at 0, +-1e-3 ... +-5e6 in 1-2-5 steps: public, the same at every site.
_POSITIVE = sorted(m * 10.0**k for k in range(-3, 7) for m in (1, 2, 5))
GRID = np.array([-e for e in reversed(_POSITIVE)] + [0.0] + _POSITIVE)
# A bin is kept when its noisy count clears this many noise deviations, and only
# bins in one run around the fullest bin count: an empty bin far out that noise
# pushed over the threshold must not stretch the range by orders of magnitude.
THRESHOLD_SIGMAS = 3.5


def range_noise(*, epsilon: float, delta: float, n_columns: int) -> float:
    """Standard deviation of each count so that all histograms together cost ``epsilon``."""
    multiplier, _ = accounting.calibrate_noise(
        cost=lambda m: accounting.epsilon(events=[gaussian_event(noise_multiplier=m)], delta=delta),
        target_epsilon=epsilon,
        minimum=accounting.MIN_NOISE_MULTIPLIER,  # a generous target gets the least noise, and costs less
        maximum=1e6,
        rtol=1e-4,
    )
    return multiplier * math.sqrt(n_columns)


def range_event(*, noise_std: float, n_columns: int):
    """The mechanism one site's range release is: Gaussian, sensitivity sqrt(d)."""
    return gaussian_event(noise_multiplier=noise_std / math.sqrt(n_columns))


def noisy_range(*, values: np.ndarray, noise_std: float, rng: np.random.Generator) -> tuple[float, float] | None:
    """The outer edges of the run of bins, around the fullest noisy bin, whose noisy
    counts clear the threshold.

    Values below or above the whole grid fall into its first or last bin. None when
    no bin clears the threshold (too few records for this noise).
    """
    finite = values[np.isfinite(values)]
    clipped = np.clip(finite, GRID[0], GRID[-1])
    counts, _ = np.histogram(clipped, bins=GRID)
    noisy = counts + rng.normal(0.0, noise_std, size=counts.shape)
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
