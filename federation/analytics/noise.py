"""The noise a query gets and what it costs, in the ledger's vocabulary (DpEvents).

Every query releases ``k`` noisy statistics ("components", see
``federation.analytics.cells.COMPONENTS``): a count, a sum, a histogram... All
components of a query share one ``noise_multiplier`` m: each gets noise of parameter
m x its sensitivity. The noise is drawn on the integers from a cryptographically secure
source (``federation.analytics.secure_noise``), so each component is exactly one of

- ``DiscreteGaussianDpEvent(sigma=m x d, sensitivity=d)`` (mechanism "gaussian"), or
- ``DiscreteLaplaceDpEvent`` of scale m x d, sensitivity d (mechanism "laplace"),

where d is the component's integer sensitivity; the query is their composition
(``NoisePlan.event``). A continuous Gaussian or Laplace event is never recorded for
them: it is a different mechanism, and its accounting would under-charge.

The fixed-point grid of a sum. A count changes by 1 when one patient comes or goes:
d = 1, no grid. A sum of real values (x - c, or (x - c)^2, with x clipped to the bounds
and c their centre) whose real sensitivity is D is added on a grid of step 2^e (a power
of two, so that whole multiples of it are exact floats), with e the smallest whole
number such that m x D / 2^e <= GRID_NOISE_STEPS; then d = ceil(D / 2^e). So the noise
spans between GRID_NOISE_STEPS / 2 and GRID_NOISE_STEPS (+ m) grid steps: a value's
rounding to the grid (at most half a step, ties to even) moves it by less than 1/1000
of the noise's standard deviation, and the discrete Gaussian's privacy-loss
distribution (whose size grows with sigma x d) stays small enough to compute in
milliseconds. Each value is clipped to [-d, d] grid steps after rounding
(``cells.on_grid``), so d is its sensitivity by construction. The grid follows from
public numbers only (the bounds, the multiplier) and each release states it.

Given ``epsilon`` instead of a multiplier, the site calibrates the multiplier itself at
its own dataset's delta with ``privacy_budgets.accounting.calibrate_noise`` over the
explicit bracket [MIN_NOISE_MULTIPLIER (or the site's floor), MAX_NOISE_MULTIPLIER]: the
smallest multiplier whose event, composed by the ledger's own PLD arithmetic (the
same function that later charges it: bit-identical), costs at most ``epsilon``.

>>> from federation.analytics.query import Query
>>> q = Query(kind="mean", column="age", bounds=(18, 95), epsilon=0.5)
>>> m = noise_multiplier(query=q, delta=1e-5)
>>> from privacy_budgets import epsilon
>>> epsilon(events=[query_event(query=q, noise_multiplier=m)], delta=1e-5) <= 0.5
True
>>> plan = plan_noise(query=q, noise_multiplier=m)
>>> plan.statistics["sum"].step, plan.statistics["sum"].sensitivity  # a grid of half a year, 77 steps
(0.5, 77)
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType

import dp_accounting as dpa
import numpy as np

from federation.analytics.cells import on_grid, statistics
from federation.analytics.errors import NoiseError, QueryError
from federation.analytics.query import Query
from federation.analytics.secure_noise import MECHANISMS, add_secure_noise, check_scale, noise_event
from privacy_budgets.accounting import calibrate_noise
from privacy_budgets.accounting import epsilon as composed_epsilon
from privacy_budgets.mechanisms import composed_event

# Bisection stops when the bracket is this tight relative to the multiplier: far
# below the noise's own effect on any answer.
CALIBRATION_RTOL = 1e-6
# The bracket of a calibrated query. One count at the least noise already costs
# epsilon 17 at delta 1e-5. At the most noise one count costs about epsilon 0.0016, near
# the floor of the ledger's PLD arithmetic (its discretisation is 1e-3); a discrete
# Gaussian's PLD grows with its sigma, so more noise would only cost time.
MIN_NOISE_MULTIPLIER = 0.3
MAX_NOISE_MULTIPLIER = 2000.0
# A sum's noise spans between half this and this many steps of its grid.
GRID_NOISE_STEPS = 1024


@dataclass(frozen=True)
class StatisticNoise:
    """The noise of one released statistic: on a grid of ``step`` (value units per
    whole unit; 1 for counts), one patient moves it by at most ``sensitivity`` whole
    units, and it gets noise of parameter ``scale`` = multiplier x sensitivity, in
    whole units. ``component``: which event of the query's composition it is."""

    component: int
    sensitivity: int
    step: float
    scale: float


@dataclass(frozen=True)
class NoisePlan:
    """Everything about a query's noise that is decided before any data is read."""

    mechanism: str
    noise_multiplier: float
    statistics: MappingProxyType  # name -> StatisticNoise

    def event(self) -> dpa.DpEvent:
        """The query's DpEvent: one discrete event per component, composed."""
        leaves: dict[int, dpa.DpEvent] = {}
        for stat in self.statistics.values():
            leaf = noise_event(mechanism=self.mechanism, scale=stat.scale, sensitivity=stat.sensitivity)
            if leaves.setdefault(stat.component, leaf) != leaf:
                raise NoiseError(f"component {stat.component} of a query has two different noises; a bug.")
        ordered = [leaves[c] for c in sorted(leaves)]
        return ordered[0] if len(ordered) == 1 else composed_event(ordered)

    def grid(self) -> dict[str, float]:
        """Step of each statistic's grid (1.0 for counts), as a release states it."""
        return {name: stat.step for name, stat in self.statistics.items()}


def plan_noise(*, query: Query, noise_multiplier: float) -> NoisePlan:
    """The noise ``query`` (checked against the site's dictionary) gets with ``noise_multiplier``."""
    multiplier = check_scale(name="noise_multiplier", scale=noise_multiplier)
    if query.mechanism not in MECHANISMS:
        raise QueryError(f"The noise mechanism is 'gaussian' or 'laplace'; got {query.mechanism!r}.")
    plan = _plan_for(statistics(query), query.mechanism, multiplier)
    for name, stat in plan.statistics.items():  # defence in depth: the release checks again
        scale = check_scale(name=f"the noise scale of {name}", scale=stat.scale)
        if not stat.step * scale >= sys.float_info.min:
            raise NoiseError(f"the noise of {name} is below what a float holds (step {stat.step!r}); nothing released.")
    return plan


def _grid(real: float, multiplier: float) -> tuple[float, int]:
    """(step 2^e, whole sensitivity d) of a sum whose real sensitivity is ``real``."""
    if not (math.isfinite(real) and real >= sys.float_info.min):
        raise NoiseError(
            f"a sum's sensitivity must be a positive normal float; got {real!r}. Its bounds are degenerate: "
            "nothing is released."
        )
    target = real * multiplier / GRID_NOISE_STEPS
    mantissa, exponent = math.frexp(target)  # target = mantissa * 2^exponent, mantissa in [0.5, 1)
    e = exponent - 1 if mantissa == 0.5 else exponent  # the smallest e with 2^e >= target
    step = math.ldexp(1.0, e)
    if not sys.float_info.min <= step < math.inf:
        raise NoiseError(f"a sum's grid step 2^{e} is not a normal float; its bounds are degenerate.")
    return step, max(1, math.ceil(real / step))


def query_event(*, query: Query, noise_multiplier: float) -> dpa.DpEvent:
    """The DpEvent of ``query`` with noise ``noise_multiplier`` x sensitivity per component."""
    return plan_noise(query=query, noise_multiplier=noise_multiplier).event()


def noise_multiplier(*, query: Query, delta: float, minimum: float = MIN_NOISE_MULTIPLIER) -> float:
    """The multiplier the query states, or the one its ``epsilon`` calls for at ``delta``
    (the least noise searched is ``minimum``: a site's floor, never below MIN_NOISE_MULTIPLIER)."""
    if query.noise_multiplier is not None:
        return query.noise_multiplier
    shape = tuple(sorted(statistics(query).items()))
    return _calibrated(float(query.epsilon), float(delta), query.mechanism, shape, max(minimum, MIN_NOISE_MULTIPLIER))


@lru_cache(maxsize=256)
def _calibrated(target: float, delta: float, mechanism: str, shape: tuple, minimum: float) -> float:
    """Smallest multiplier m in [minimum, MAX_NOISE_MULTIPLIER] (to CALIBRATION_RTOL)
    with epsilon(event(m)) <= target, by the ledger's own PLD arithmetic. A target so
    generous that the least noise fits gets the least noise (the ledger then charges what
    that noise costs, below the target)."""
    statistics_of = dict(shape)

    def cost(m: float) -> float:
        plan = _plan_for(statistics_of, mechanism, m)
        return composed_epsilon(events=[plan.event()], delta=delta)

    multiplier, _ = calibrate_noise(
        cost=cost,
        target_epsilon=target,
        minimum=minimum,
        maximum=MAX_NOISE_MULTIPLIER,
        rtol=CALIBRATION_RTOL,
    )
    return multiplier


def _plan_for(statistics_of: dict, mechanism: str, m: float) -> NoisePlan:
    planned = {}
    for name, (component, real) in statistics_of.items():
        step, sensitivity = (1.0, 1) if real is None else _grid(real, m)
        planned[name] = StatisticNoise(component=component, sensitivity=sensitivity, step=step, scale=m * sensitivity)
    return NoisePlan(mechanism=mechanism, noise_multiplier=m, statistics=MappingProxyType(planned))


def clipped_sum_noise(*, low: float, high: float, noise_multiplier: float) -> StatisticNoise:
    """The grid and noise of a clipped sum of values in [low, high] (one per patient):
    real sensitivity max(|low|, |high|) (no centring: the count is not known), noise
    ``noise_multiplier`` x that, on the fixed-point grid above. Decided from public
    numbers only, so a caller can reserve its event before any value is read."""
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise NoiseError(f"a clipped sum needs finite bounds with low < high; got ({low!r}, {high!r}).")
    multiplier = check_scale(name="noise_multiplier", scale=noise_multiplier)
    step, sensitivity = _grid(max(abs(low), abs(high)), multiplier)
    return StatisticNoise(component=0, sensitivity=sensitivity, step=step, scale=multiplier * sensitivity)


def clipped_sum_event(*, low: float, high: float, noise_multiplier: float, mechanism: str = "gaussian") -> dpa.DpEvent:
    """The exact DpEvent ``secure_noisy_sum`` releases with these public numbers."""
    grid = clipped_sum_noise(low=low, high=high, noise_multiplier=noise_multiplier)
    return noise_event(mechanism=mechanism, scale=grid.scale, sensitivity=grid.sensitivity)


def secure_noisy_sum(
    values: np.ndarray,
    *,
    low: float,
    high: float,
    noise_multiplier: float,
    mechanism: str = "gaussian",
    sampler: Callable[..., np.ndarray] = add_secure_noise,
) -> tuple[float, dpa.DpEvent]:
    """The sum of ``values`` (one per patient) clipped to [low, high], added on the
    fixed-point grid of ``clipped_sum_noise`` with secure noise, and the exact DpEvent of
    its release (``clipped_sum_event``): for callers outside a query (a study's noisy
    clipped loss sum, ``federation/analytics/count_release.py``). Reserve the event
    before calling, commit after; returns (noisy sum, event).
    """
    grid = clipped_sum_noise(low=low, high=high, noise_multiplier=noise_multiplier)
    units = on_grid(np.clip(np.asarray(values, dtype=float), float(low), float(high)), grid)
    total = np.array([int(units.sum())], dtype=np.int64)
    event = noise_event(mechanism=mechanism, scale=grid.scale, sensitivity=grid.sensitivity)
    noisy = np.asarray(sampler(total, mechanism=mechanism, scale=check_scale(name="the sum's noise", scale=grid.scale)))
    return float(noisy[0]) * grid.step, event


def noise_std(*, mechanism: str, scale: float) -> float:
    """Standard deviation of one integer noise draw of parameter ``scale``, or (discrete
    Gaussian) the parameter itself, which bounds it from above (Canonne, Kamath and
    Steinke 2020): intervals built on it are, if anything, wider than needed."""
    if mechanism == "laplace":
        p = math.exp(-1.0 / scale)
        return math.sqrt(2.0 * p) / -math.expm1(-1.0 / scale)
    return scale
