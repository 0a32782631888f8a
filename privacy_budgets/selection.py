"""Private selection: the best of a random number of private runs, as one ledger entry.

Papernot & Steinke (2022, "Hyperparameter tuning with Renyi differential privacy")
bound the privacy of this procedure: draw K from a known distribution, run a private
mechanism Q K times (each run tries a candidate, trains and scores it privately), and
release only the best run's output. Its cost is a small multiple of one run's, not K
runs composed. dp_accounting implements their bounds as ``RepeatAndSelectDpEvent``,
in Renyi DP only (its PLD accountant rejects the event). A ledger composes in PLD, so
the selection is recorded as the one pair the RDP bound proves,
``PrivacyParametersDpEvent(epsilon, delta)`` (``privacy_budgets.mechanisms``), whose PLD
is the pessimistic one of every (epsilon, delta)-DP mechanism.

Three choices make the proof apply:

- **One mechanism Q for every run.** Each run tries a candidate drawn uniformly at
  random; Renyi divergence is quasi-convex, so Q is within any RDP curve that lies above
  every candidate's. The first candidate at the calibrated noise is that reference; every
  other candidate gets the least noise (in an explicit bracket) whose RDP curve lies
  under the reference's at every order the accountant uses (``dominated_noise``).
  dp_accounting's fractional orders near 1 are pessimistic for small sampling rates at
  large noise, so a candidate sampling far more than the reference may find no noise
  that fits: it is refused, never charged less.
- **The ledger's events in RDP.** A discrete Gaussian of parameter sigma and integer
  sensitivity d is (d^2 / (2 sigma^2))-zCDP (Canonne, Kamath & Steinke 2020, Theorem 4),
  which is dp_accounting's ``ZCDpEvent(rho)``; a discrete Laplace of parameter a is
  (a d)-DP, hence (a d)^2 / 2-zCDP (Bun & Steinke 2016, Proposition 3.3). DP-SGD's
  Poisson-sampled Gaussian steps are dp_accounting's own (``rdp_event``).
- **K's distribution as the accountant assumes it.** Only the two whose parameter is
  exactly the mean: geometric (``shape=1``, Liu & Talwar 2019's random stopping, halting
  probability 1 / mean) and Poisson (``shape=inf``, where K = 0 releases nothing).

Its delta: the pair's delta is chosen by the caller as a share of the dataset's delta
(a tenth by default where the workbench uses it) and must lie strictly below it; in the
ledger's PLD it is infinite mass, so the dataset's other releases keep what is left.

>>> from privacy_budgets.mechanisms import dpsgd_event
>>> run = dpsgd_event(noise_multiplier=2.0, sampling_rate=0.1, steps=100)
>>> eps = selection_epsilon(event=run, mean=4, shape=1, delta=1e-6)
>>> 0 < eps < 20
True
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import dp_accounting as dpa
import numpy as np
from dp_accounting.dp_event import DiscreteLaplaceDpEvent, RepeatAndSelectDpEvent
from dp_accounting.rdp import rdp_privacy_accountant

from privacy_budgets.accounting import calibrate_noise, check_delta, check_epsilon
from privacy_budgets.errors import InvalidBudget, InvalidMechanism
from privacy_budgets.mechanisms import DiscreteGaussianDpEvent, PrivacyParametersDpEvent, privacy_parameters_event

GEOMETRIC = 1.0
POISSON = math.inf
SHAPES = {"geometric": GEOMETRIC, "poisson": POISSON}

__all__ = [
    "GEOMETRIC",
    "POISSON",
    "SHAPES",
    "SelectionPlan",
    "calibrate_selection",
    "dominated_noise",
    "draw_repetitions",
    "rdp_curve",
    "rdp_event",
    "selection_epsilon",
    "selection_event",
]


def rdp_event(event: dpa.DpEvent) -> dpa.DpEvent:
    """``event`` in the vocabulary of dp_accounting's RDP accountant (see the module
    docstring for the discrete kinds); a proven pair has no RDP curve and is refused."""
    if isinstance(event, DiscreteGaussianDpEvent):
        return dpa.ZCDpEvent(rho=event.sensitivity**2 / (2.0 * event.sigma**2))
    if isinstance(event, DiscreteLaplaceDpEvent):
        return dpa.ZCDpEvent(rho=(event.noise_parameter * event.sensitivity) ** 2 / 2.0)
    if isinstance(event, PrivacyParametersDpEvent):
        raise InvalidMechanism(
            "a release proven only as an (epsilon, delta) pair has no Renyi curve, so it cannot be one run of a "
            "private selection. Fix: describe each run by its noise (DP-SGD steps, discrete Gaussian releases)."
        )
    if isinstance(event, dpa.SelfComposedDpEvent):
        return dpa.SelfComposedDpEvent(event=rdp_event(event.event), count=event.count)
    if isinstance(event, dpa.ComposedDpEvent):
        return dpa.ComposedDpEvent(events=[rdp_event(e) for e in event.events])
    return event


def _accountant() -> rdp_privacy_accountant.RdpAccountant:
    return rdp_privacy_accountant.RdpAccountant(neighboring_relation=dpa.NeighboringRelation.ADD_OR_REMOVE_ONE)


@contextmanager
def _quiet_rdp() -> Iterator[None]:
    """dp_accounting logs a warning for every fractional order whose series does not
    converge at large sampling rates; it then leaves that order out (an infinite RDP
    there, which only loosens a bound). The curves say so themselves."""
    logger = logging.getLogger("absl")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


def rdp_curve(event: dpa.DpEvent) -> np.ndarray:
    """The RDP of ``event`` at each of the accountant's orders (``rdp_orders``); an
    order the accountant cannot evaluate is infinite."""
    accountant = _accountant()
    with _quiet_rdp():
        accountant.compose(rdp_event(event))
    return accountant.rdp


def rdp_orders() -> np.ndarray:
    """The Renyi orders every curve here is computed at (dp_accounting's defaults)."""
    return _accountant().orders


def _check_repetitions(*, mean: float, shape: float) -> None:
    if isinstance(mean, bool) or not isinstance(mean, (int, float)) or not math.isfinite(mean) or mean < 1:
        raise InvalidBudget(
            f"the mean number of runs of a private selection must be a finite number >= 1; got {mean!r}. "
            "Fix: e.g. mean=4 (about as many runs as candidates you would try)."
        )
    if shape not in (GEOMETRIC, POISSON):
        raise InvalidBudget(
            f"the number of runs of a private selection must be geometric (shape 1) or Poisson (shape inf); got "
            f"shape {shape!r}. Those two are drawn with exactly the parameter the accountant assumes. Fix: "
            "shape='geometric' or shape='poisson'."
        )


def selection_epsilon(*, event: dpa.DpEvent, mean: float, shape: float, delta: float) -> float:
    """Epsilon at ``delta`` of repeating ``event`` a random number of times (mean
    ``mean``, distribution ``shape``) and releasing the best run: dp_accounting's RDP
    bound for ``RepeatAndSelectDpEvent``, converted at ``delta``."""
    _check_repetitions(mean=mean, shape=shape)
    check_delta(delta)
    accountant = _accountant()
    with _quiet_rdp():
        accountant.compose(RepeatAndSelectDpEvent(event=rdp_event(event), mean=float(mean), shape=float(shape)))
        return float(accountant.get_epsilon(delta))


def selection_event(*, event: dpa.DpEvent, mean: float, shape: float, delta: float) -> dpa.DpEvent:
    """The ledger's event for a private selection whose every run is within ``event``:
    the (epsilon, ``delta``) pair of ``selection_epsilon``."""
    return privacy_parameters_event(
        epsilon=selection_epsilon(event=event, mean=mean, shape=shape, delta=delta), delta=delta
    )


def dominated_noise(
    *,
    reference: dpa.DpEvent,
    run: Callable[[float], dpa.DpEvent],
    minimum: float,
    maximum: float,
) -> float:
    """The least noise multiplier in ``[minimum, maximum]`` at which ``run(noise)``'s RDP
    curve lies at or under ``reference``'s at every order; InvalidBudget when even
    ``maximum`` does not."""
    limit = rdp_curve(reference)

    def ratio(noise: float) -> float:
        """The largest curve / limit over the orders: 0 where the run costs nothing or
        the limit is infinite (any run is within it there), infinite where the run is
        infinite or positive over a limit of 0."""
        curve = rdp_curve(run(noise))
        quotients = []
        for value, bound in zip(curve, limit, strict=True):
            if value <= 0 or bound == math.inf:
                quotients.append(0.0)
            elif value == math.inf or bound <= 0:
                quotients.append(math.inf)
            else:
                quotients.append(value / bound)
        return max(quotients)

    # dp_accounting's fractional orders are pessimistic and not monotone in the noise
    # at large multipliers (its series), so the ratio is not monotone either: walk up a
    # geometric grid to the first noise that fits, then bisect below it. The result is
    # checked exactly, so the walk's steps only affect how tight it is, never soundness.
    if not 0 < minimum < maximum or not math.isfinite(maximum):
        raise InvalidBudget(
            f"a noise bracket needs 0 < minimum < maximum, both finite; got [{minimum!r}, {maximum!r}]."
        )
    below, noise = None, float(minimum)
    while ratio(noise) > 1.0:
        if noise >= maximum:
            raise InvalidBudget(
                f"no noise multiplier in [{minimum:g}, {maximum:g}] keeps this run within the reference run's Renyi "
                "curve. Fix: give the candidates fewer steps (fewer rounds or epochs, larger batches) or allow more "
                "noise."
            )
        below, noise = noise, min(noise * 1.25, float(maximum))
    if below is not None:
        for _ in range(20):
            middle = (below + noise) / 2
            if ratio(middle) <= 1.0:
                noise = middle
            else:
                below = middle
            if noise - below < 1e-4 * noise:
                break
    if ratio(noise) > 1.0:  # cannot happen: every candidate kept was checked
        raise InvalidMechanism(f"dominance calibration ended above its target (noise {noise!r}); report this.")
    return noise


@dataclass(frozen=True)
class SelectionPlan:
    """A calibrated private selection: each candidate's noise, and what it costs."""

    noise_multipliers: tuple[float, ...]  # per candidate (the first is the reference)
    reference: dpa.DpEvent  # one run of the reference candidate: every run's RDP is within it
    mean: float
    shape: float
    delta: float
    epsilon: float
    target_epsilon: float

    def event(self) -> dpa.DpEvent:
        """What the ledger records for the whole selection."""
        return privacy_parameters_event(epsilon=self.epsilon, delta=self.delta)


def calibrate_selection(
    *,
    runs: Sequence[Callable[[float], dpa.DpEvent]],
    target_epsilon: float,
    delta: float,
    mean: float,
    shape: float,
    minimum: float,
    maximum: float,
) -> SelectionPlan:
    """Noise for every candidate so that the whole selection costs at most
    ``target_epsilon`` at ``delta``.

    ``runs[i](noise)`` is candidate i's event at a noise multiplier (its training and
    its scoring). The first candidate's noise is searched with ``calibrate_noise`` over
    ``[minimum, maximum]`` against the selection's epsilon; every other candidate then
    gets the least noise whose curve stays under the first's (``dominated_noise``).
    """
    check_epsilon(target_epsilon, name="target epsilon")
    check_delta(delta)
    _check_repetitions(mean=mean, shape=shape)
    if not runs:
        raise InvalidBudget("a private selection needs at least one candidate; got none.")

    def cost(noise: float) -> float:
        return selection_epsilon(event=runs[0](noise), mean=mean, shape=shape, delta=delta)

    reference_noise, _ = calibrate_noise(cost=cost, target_epsilon=target_epsilon, minimum=minimum, maximum=maximum)
    reference = runs[0](reference_noise)
    noises = [reference_noise]
    for run in runs[1:]:
        noises.append(dominated_noise(reference=reference, run=run, minimum=minimum, maximum=maximum))
    return SelectionPlan(
        noise_multipliers=tuple(noises),
        reference=reference,
        mean=float(mean),
        shape=float(shape),
        delta=float(delta),
        epsilon=cost(reference_noise),
        target_epsilon=float(target_epsilon),
    )


def draw_repetitions(*, mean: float, shape: float, rng: np.random.Generator) -> int:
    """K, the number of runs, from the distribution the accountant assumes: geometric
    on {1, 2, ...} with halting probability 1 / ``mean``, or Poisson with ``mean``."""
    _check_repetitions(mean=mean, shape=shape)
    if shape == GEOMETRIC:
        return int(rng.geometric(1.0 / mean))
    return int(rng.poisson(mean))
