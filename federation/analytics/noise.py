"""The noise a query gets and what it costs, in the ledger's vocabulary (DpEvents).

Every query releases ``k`` noisy statistics ("components", see
``federation.analytics.cells.COMPONENTS``): a count, a sum, a histogram... Each
component has an L2 (Gaussian) or L1 (Laplace) sensitivity ``D`` under
add/remove-one-patient, and gets noise of standard deviation (Gaussian) or scale
(Laplace) ``noise_multiplier * D``. All components of a query share one
``noise_multiplier``, so the query is the DpEvent

- Gaussian: ``k`` x ``GaussianDpEvent(noise_multiplier)``, i.e. ``gaussian_event(noise_multiplier=m, count=k)``;
- Laplace: ``k`` x ``LaplaceDpEvent(noise_multiplier)``: pure (k / m)-DP.

Given ``epsilon`` instead, the site calibrates the multiplier itself at its own
dataset's delta: for Gaussian noise the smallest multiplier whose event, composed by
the ledger's own PLD arithmetic, costs at most ``epsilon``; for Laplace ``k / epsilon``
(pure DP; the ledger, which states every release at the dataset's delta, may then
charge slightly less than ``epsilon``).

>>> from federation.analytics.query import Query
>>> q = Query(kind="mean", column="age", bounds=(18, 95), epsilon=0.5)
>>> m = noise_multiplier(query=q, delta=1e-5)
>>> from privacy_budgets import epsilon
>>> epsilon(events=[query_event(query=q, noise_multiplier=m)], delta=1e-5) <= 0.5
True
"""

from __future__ import annotations

import math
from functools import lru_cache

import dp_accounting as dpa
import numpy as np

from federation.analytics.cells import COMPONENTS
from federation.analytics.query import Query
from privacy_budgets.accounting import calibrate_noise
from privacy_budgets.accounting import epsilon as composed_epsilon
from privacy_budgets.mechanisms import gaussian_event, laplace_event

# Bisection stops when the bracket is this tight relative to the multiplier: far
# below the noise's own effect on any answer.
CALIBRATION_RTOL = 1e-6
# The bracket of a calibrated Gaussian query. One statistic at the least noise already
# costs epsilon 19 at delta 1e-5; the most noise is beyond any query's use.
MIN_GAUSSIAN_MULTIPLIER = 0.3
MAX_GAUSSIAN_MULTIPLIER = 1e6


def query_event(*, query: Query, noise_multiplier: float) -> dpa.DpEvent:
    """The DpEvent of ``query`` with noise ``noise_multiplier`` x sensitivity per component."""
    k = COMPONENTS[query.kind]
    if query.mechanism == "laplace":
        return laplace_event(noise_multiplier=noise_multiplier, count=k)
    return gaussian_event(noise_multiplier=noise_multiplier, count=k)


def noise_multiplier(*, query: Query, delta: float) -> float:
    """The multiplier the query states, or the one its ``epsilon`` calls for at ``delta``."""
    if query.noise_multiplier is not None:
        return query.noise_multiplier
    k = COMPONENTS[query.kind]
    if query.mechanism == "laplace":
        return k / query.epsilon
    return _calibrated_gaussian(float(query.epsilon), float(delta), k)


@lru_cache(maxsize=256)
def _calibrated_gaussian(target: float, delta: float, k: int) -> float:
    """Smallest multiplier m in [MIN_GAUSSIAN_MULTIPLIER, MAX_GAUSSIAN_MULTIPLIER] (to
    CALIBRATION_RTOL) with epsilon(k x Gaussian(m)) <= target, by the ledger's own PLD
    arithmetic. A target so generous that the least noise fits gets the least noise
    (the ledger then charges what that noise costs, below the target)."""

    def cost(m: float) -> float:
        return composed_epsilon(events=[gaussian_event(noise_multiplier=m, count=k)], delta=delta)

    multiplier, _ = calibrate_noise(
        cost=cost,
        target_epsilon=target,
        minimum=MIN_GAUSSIAN_MULTIPLIER,
        maximum=MAX_GAUSSIAN_MULTIPLIER,
        rtol=CALIBRATION_RTOL,
    )
    return multiplier


def fresh_rng() -> np.random.Generator:
    """A generator seeded from the operating system's entropy, new for every release:
    noise that can be predicted (a fixed seed) protects nothing."""
    return np.random.default_rng()


def draw(*, rng: np.random.Generator, mechanism: str, scale: float, shape: tuple[int, ...]) -> np.ndarray:
    """Noise for one component: Gaussian with standard deviation ``scale`` or Laplace
    with scale ``scale``."""
    if mechanism == "laplace":
        return rng.laplace(0.0, scale, size=shape)
    return rng.normal(0.0, scale, size=shape)


def noise_std(*, mechanism: str, scale: float) -> float:
    """Standard deviation of one noise draw of the given scale."""
    return scale * math.sqrt(2.0) if mechanism == "laplace" else scale
