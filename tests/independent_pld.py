"""An accountant independent of the project's: a ledger entry's mechanism (its JSON) as one
privacy loss distribution, built directly from dp_accounting's PLD library (add-or-remove
neighbours, as dp_accounting's PLDAccountant does), never through ``privacy_budgets``."""

from __future__ import annotations

from dp_accounting.pld import common as pld_common
from dp_accounting.pld import privacy_loss_distribution as pld_lib

INTERVAL = 1e-4  # the value discretisation the ledger uses too


def pld_of(plain: dict, *, interval: float = INTERVAL) -> pld_lib.PrivacyLossDistribution:
    """The PLD of one mechanism's JSON: composed, self-composed, Gaussian, discrete
    Gaussian (no DpEvent in dp_accounting, but its PLD library has the mechanism),
    Poisson-sampled Gaussian (a DP-SGD step) and a proven (epsilon, delta) pair."""
    kind = plain["type"]
    if kind == "ComposedDpEvent":
        parts = [pld_of(inner, interval=interval) for inner in plain["events"]]
        whole = parts[0]
        for part in parts[1:]:
            whole = whole.compose(part)
        return whole
    if kind == "SelfComposedDpEvent":
        return pld_of(plain["event"], interval=interval).self_compose(plain["count"])
    if kind == "GaussianDpEvent":
        return pld_lib.from_gaussian_mechanism(
            standard_deviation=plain["noise_multiplier"], value_discretization_interval=interval
        )
    if kind == "DiscreteGaussianDpEvent":
        return pld_lib.from_discrete_gaussian_mechanism(
            sigma=plain["sigma"], sensitivity=plain["sensitivity"], value_discretization_interval=interval
        )
    if kind == "PrivacyParametersDpEvent":  # a proven (epsilon, delta) pair: the pessimistic PLD of any such mechanism
        return pld_lib.from_privacy_parameters(
            pld_common.DifferentialPrivacyParameters(epsilon=plain["epsilon"], delta=plain["delta"]),
            value_discretization_interval=interval,
        )
    assert kind == "PoissonSampledDpEvent" and plain["event"]["type"] == "GaussianDpEvent", kind
    return pld_lib.from_gaussian_mechanism(
        standard_deviation=plain["event"]["noise_multiplier"],
        sampling_prob=plain["sampling_probability"],
        value_discretization_interval=interval,
    )


def epsilon_of(plains: list[dict], *, delta: float, interval: float = INTERVAL) -> float:
    """The epsilon at ``delta`` of every mechanism in ``plains`` composed."""
    assert plains, "nothing to compose"
    whole = None
    for plain in plains:
        piece = pld_of(plain, interval=interval)
        whole = piece if whole is None else whole.compose(piece)
    return whole.get_epsilon_for_delta(delta)
