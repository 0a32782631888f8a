"""Noisy counts, and the exact mechanism that ran, for releases outside the query language.

A site's evaluation of a study's model (per-class counts of predictions at a public
threshold grid and a clipped loss sum) and its one FedAvg weight (its number of
training records) leave the site only through ``noisy_counts``: counts in, noise
and sensitivity in, the noisy values and the ``DpEvent`` the ledger charges out. The
event is built here, from the noise that was actually added, so a caller cannot charge
one mechanism and run another.

Today the noise is Gaussian from fresh OS entropy on floats (the same source as the
analytics' queries, ``noise.fresh_rng``). Issue 13's discrete secure noise replaces
the internals here (and the event with the one that matches it); the signature stays.

>>> values, event = noisy_counts(counts=[120, 30], noise_multiplier=4.0, sensitivity=1.0)
>>> values.shape, type(event).__name__, event.noise_multiplier
((2,), 'GaussianDpEvent', 4.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import dp_accounting as dpa
import numpy as np

from federation.analytics.noise import fresh_rng
from privacy_budgets.mechanisms import gaussian_event


def noisy_counts(
    *,
    counts: Sequence[float] | np.ndarray,
    noise_multiplier: float,
    sensitivity: float,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, dpa.DpEvent]:
    """``counts`` with Gaussian noise of standard deviation ``noise_multiplier`` x
    ``sensitivity`` added to each, and the event that covers them all at once.

    ``sensitivity`` is the L2 norm of the largest change one patient can make to the
    whole vector (adding or removing that patient). Both numbers must be positive and
    finite (a zero or subnormal noise would be no noise: refused here, where the noise
    is added, whatever the caller checked). ``rng`` is for tests; by default the noise
    comes from fresh OS entropy.
    """
    for name, value in (("noise_multiplier", noise_multiplier), ("sensitivity", sensitivity)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ValueError(f"{name} must be a positive finite number; got {value!r}.")
        if value < np.finfo(float).tiny * 1e6:
            raise ValueError(f"{name} must be a positive normal number well above 0; got {value!r}.")
    values = np.asarray(counts, dtype=float)
    if values.ndim != 1 or not np.all(np.isfinite(values)):
        raise ValueError("counts must be a flat list of finite numbers.")
    std = float(noise_multiplier) * float(sensitivity)
    if not math.isfinite(std) or std <= 0:
        raise ValueError(f"the noise's standard deviation must be positive and finite; got {std!r}.")
    generator = rng if rng is not None else fresh_rng()
    noisy = values + generator.normal(0.0, std, size=values.shape)
    return noisy, gaussian_event(noise_multiplier=float(noise_multiplier))
