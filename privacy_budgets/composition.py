"""PLD composition that keeps its intermediate distributions, so a ledger check is fast.

The arithmetic is exactly that of ``dp_accounting``'s ``PLDAccountant`` composing
``events_from_counts(counts)`` in order: start from the identity, compose each base
mechanism self-composed ``count`` times. The discrete Gaussian, which PLDAccountant
does not know, is built the same way from dp_accounting's own
``from_discrete_gaussian_mechanism`` and self-composed like the Laplace kinds; so is a
release proven as one (epsilon, delta) pair (``PrivacyParametersDpEvent``), from
dp_accounting's ``from_privacy_parameters``. Only the bookkeeping differs: each
self-composed leaf and each prefix of the composition is kept in memory, so when a
reservation changes one mechanism's count, only that leaf and the prefixes after it
are recomputed. Results are bit-identical to the accountant (tests pin this), so
calibration and the ledger never disagree by a rounding difference.

Only floats and dp_accounting objects built here are cached; nothing is read from disk.

>>> from privacy_budgets.mechanisms import base_counts, gaussian_event
>>> key = tuple(sorted(base_counts(gaussian_event(noise_multiplier=2.0, count=4)).items()))
>>> round(pld_epsilon(key, delta=1e-5), 3)
4.377
"""

from __future__ import annotations

import math
from functools import lru_cache

import dp_accounting as dpa
from dp_accounting.pld import common as pld_common
from dp_accounting.pld import privacy_loss_distribution as pld_lib

from privacy_budgets.errors import InvalidMechanism
from privacy_budgets.mechanisms import (
    DiscreteGaussianDpEvent,
    DiscreteLaplaceDpEvent,
    PrivacyParametersDpEvent,
    event_from_json,
)

# One discretisation everywhere, so calibration and the ledger do the same arithmetic.
# 1e-3 is within 0.1% of 1e-4 on DP-SGD and ten times faster (see shared/notes/stack.md).
PLD_VALUE_DISCRETIZATION = 1e-3

_ADD_REMOVE = dpa.NeighboringRelation.ADD_OR_REMOVE_ONE

Key = tuple[tuple[str, int], ...]


def pld_epsilon(key: Key, *, delta: float) -> float:
    """Epsilon at ``delta`` of the sorted multiset ``key`` of (base mechanism JSON, count)."""
    if not key:
        return 0.0
    return float(_prefix(key).get_epsilon_for_delta(delta))


@lru_cache(maxsize=48)
def _prefix(key: Key) -> pld_lib.PrivacyLossDistribution:
    # Same order of operations as PLDAccountant: identity, then compose each leaf.
    if not key:
        return pld_lib.identity(value_discretization_interval=PLD_VALUE_DISCRETIZATION)
    return _prefix(key[:-1]).compose(_leaf(*key[-1]))


@lru_cache(maxsize=48)
def _leaf(text: str, count: int) -> pld_lib.PrivacyLossDistribution:
    event = event_from_json(text)
    if isinstance(event, dpa.GaussianDpEvent):
        # PLDAccountant folds a Gaussian's count into its standard deviation.
        return pld_lib.from_gaussian_mechanism(
            standard_deviation=event.noise_multiplier / math.sqrt(count),
            value_discretization_interval=PLD_VALUE_DISCRETIZATION,
            neighboring_relation=_ADD_REMOVE,
        )
    return _base(text).self_compose(count)


@lru_cache(maxsize=64)
def _base(text: str) -> pld_lib.PrivacyLossDistribution:
    event = event_from_json(text)
    if isinstance(event, dpa.LaplaceDpEvent):
        return pld_lib.from_laplace_mechanism(
            parameter=event.noise_multiplier,
            value_discretization_interval=PLD_VALUE_DISCRETIZATION,
        )
    if isinstance(event, DiscreteLaplaceDpEvent):
        # As PLDAccountant builds it (both neighbouring directions, pessimistic rounding).
        return pld_lib.from_discrete_laplace_mechanism(
            parameter=event.noise_parameter,
            sensitivity=event.sensitivity,
            value_discretization_interval=PLD_VALUE_DISCRETIZATION,
        )
    if isinstance(event, DiscreteGaussianDpEvent):
        # dp_accounting has no DpEvent for it, but this PLD: add-or-remove (both
        # directions), pessimistic rounding, noise truncated where its mass is below 1e-30.
        return pld_lib.from_discrete_gaussian_mechanism(
            sigma=event.sigma,
            sensitivity=event.sensitivity,
            value_discretization_interval=PLD_VALUE_DISCRETIZATION,
        )
    if isinstance(event, PrivacyParametersDpEvent):
        # The pessimistic PLD of any (epsilon, delta)-DP mechanism: loss +epsilon or
        # -epsilon, and infinity with probability delta (symmetric, so it serves both
        # directions of add-or-remove). Its delta adds to the history's infinite mass:
        # it is taken out of the dataset's delta when the ledger reads epsilon there.
        return pld_lib.from_privacy_parameters(
            pld_common.DifferentialPrivacyParameters(epsilon=event.epsilon, delta=event.delta),
            value_discretization_interval=PLD_VALUE_DISCRETIZATION,
        )
    if isinstance(event, dpa.PoissonSampledDpEvent):
        inner = event.event
        if isinstance(inner, dpa.GaussianDpEvent):
            return pld_lib.from_gaussian_mechanism(
                standard_deviation=inner.noise_multiplier,
                value_discretization_interval=PLD_VALUE_DISCRETIZATION,
                sampling_prob=event.sampling_probability,
                neighboring_relation=_ADD_REMOVE,
            )
        if isinstance(inner, dpa.LaplaceDpEvent):
            return pld_lib.from_laplace_mechanism(
                parameter=inner.noise_multiplier,
                value_discretization_interval=PLD_VALUE_DISCRETIZATION,
                sampling_prob=event.sampling_probability,
            )
    raise InvalidMechanism(
        f"The PLD accountant cannot compose {type(event).__name__} as a base mechanism "
        f"({text[:120]}). Poisson sampling must wrap a single Gaussian or Laplace step: "
        "describe repeated steps as SelfComposed(PoissonSampled(step), count)."
    )


def clear_caches() -> None:
    """Forget every kept distribution (for memory-bound processes and benchmarks)."""
    for cached in (_prefix, _leaf, _base):
        cached.cache_clear()
