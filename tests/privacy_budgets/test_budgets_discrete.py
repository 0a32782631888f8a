"""The ledger's discrete mechanisms: the discrete Laplace (dp_accounting's own event) and
the discrete Gaussian (a base kind of this package), composed against dp_accounting's PLD
library directly; serialised, validated and described like every other kind; and ledgers
written before them still read and verify."""

from __future__ import annotations

import math
from fractions import Fraction

import dp_accounting as dpa
import pytest
from dp_accounting.dp_event import DiscreteLaplaceDpEvent
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.pld import privacy_loss_distribution as pld_lib

from privacy_budgets import Ledger
from privacy_budgets.accounting import calibrate_noise, epsilon
from privacy_budgets.errors import InvalidMechanism
from privacy_budgets.mechanisms import (
    DiscreteGaussianDpEvent,
    base_counts,
    canonical_json,
    composed_event,
    describe_event,
    discrete_gaussian_event,
    discrete_laplace_event,
    dpsgd_event,
    event_from_json,
    event_to_json,
    gaussian_event,
    laplace_event,
)
from privacy_budgets.statements import what_released

DELTA = 1e-5


@pytest.fixture
def roomy(tmp_path):
    with Ledger.open(tmp_path / "discrete.ledger", site_id="ref") as ledger:
        ledger.set_cap(dataset="d", epsilon=100.0, delta=DELTA, actor="t", reason="reference")
        ledger.allocate(dataset="d", project="p", epsilon=100.0, actor="t", reason="reference")
        yield ledger


def spend_all(ledger: Ledger, events: list[dpa.DpEvent]) -> float:
    for i, event in enumerate(events):
        ledger.commit(ledger.reserve(dataset="d", project="p", event=event, actor="test", purpose=f"release {i}"))
    return ledger.spent(dataset="d", project="p")


def test_discrete_events_serialise_and_read_back_exactly():
    events = [
        discrete_gaussian_event(sigma=7.5, sensitivity=3),
        discrete_gaussian_event(sigma=2.0, count=4),
        discrete_laplace_event(scale=3.0, sensitivity=2),
        composed_event([discrete_gaussian_event(sigma=9.0), discrete_laplace_event(scale=1.5)]),
    ]
    for event in events:
        assert event_from_json(event_to_json(event)) == event
        assert event_from_json(canonical_json(event)) == event
    assert canonical_json(events[0]) == (
        '{"event":{"sensitivity":3,"sigma":7.5,"type":"DiscreteGaussianDpEvent"},"format":"dp_accounting/0.6"}'
    )
    assert describe_event(events[0]) == "discrete Gaussian noise with sigma 7.5 on integers of sensitivity 3"
    assert describe_event(events[2]) == "discrete Laplace noise with scale 3 on integers of sensitivity 2"
    assert what_released(events[1]) == (
        "4 statistics, each with discrete Gaussian noise with sigma 2 on integers of sensitivity 1"
    )


@pytest.mark.parametrize("scale", [3.0, 0.1, 7.0, 1 / 3, 41.7, 1024.0])
def test_the_discrete_laplace_parameter_is_rounded_towards_the_larger_charge(scale):
    """dp_accounting states exp(-a |x|); the sampler draws exp(-|x| / scale). a = 1 / scale
    rounded up to a float: the ledger never records more noise than ran."""
    event = discrete_laplace_event(scale=scale)
    a = event.noise_parameter
    assert isinstance(event, DiscreteLaplaceDpEvent)
    assert Fraction(a) * Fraction(scale) >= 1
    assert Fraction(math.nextafter(a, 0.0)) * Fraction(scale) < 1  # and no more than one float above


@pytest.mark.parametrize(
    "bad",
    [0.0, -1.0, 5e-324, 1e-310, math.inf, math.nan, True, "2"],
)
def test_degenerate_noise_is_never_an_event(bad):
    for make in (
        lambda: discrete_gaussian_event(sigma=bad),
        lambda: discrete_laplace_event(scale=bad),
        lambda: gaussian_event(noise_multiplier=bad),
        lambda: laplace_event(noise_multiplier=bad),
    ):
        with pytest.raises(InvalidMechanism, match="must be a|must be a finite, positive normal number"):
            make()


def test_a_ledger_file_with_degenerate_discrete_noise_does_not_read():
    for plain in (
        {"type": "DiscreteGaussianDpEvent", "sigma": 5e-324, "sensitivity": 1},
        {"type": "DiscreteGaussianDpEvent", "sigma": 2.0, "sensitivity": 0},
        {"type": "DiscreteGaussianDpEvent", "sigma": 2.0, "sensitivity": 1.5},
        {"type": "DiscreteLaplaceDpEvent", "noise_parameter": 0.0, "sensitivity": 1},
        {"type": "DiscreteLaplaceDpEvent", "noise_parameter": float("inf"), "sensitivity": 1},
        {"type": "DiscreteGaussianDpEvent", "sigma": 2.0},
    ):
        with pytest.raises(InvalidMechanism):
            event_from_json({"format": "dp_accounting/0.6", "event": plain})
    with pytest.raises(InvalidMechanism, match="whole number >= 1"):
        discrete_gaussian_event(sigma=2.0, sensitivity=0)


def test_discrete_laplace_composes_as_dp_accountings_own_pld_accountant(roomy):
    events = [
        discrete_laplace_event(scale=4.0, sensitivity=1),
        discrete_laplace_event(scale=300.0, sensitivity=77, count=2),
        gaussian_event(noise_multiplier=9.0),
    ]
    ours = spend_all(roomy, events)
    accountant = pld_privacy_accountant.PLDAccountant(value_discretization_interval=1e-3)
    # in the ledger's order: each mechanism where it last appeared
    for text, count in sum((base_counts(e) for e in events), start=base_counts(dpa.NoOpDpEvent())).items():
        event = event_from_json(text)
        accountant.compose(event if count == 1 else dpa.SelfComposedDpEvent(event, count))
    assert ours == accountant.get_epsilon(DELTA)  # the same arithmetic, bit for bit
    # and against dp_accounting's default, finer discretisation: within its rounding
    fine = pld_privacy_accountant.PLDAccountant()
    for event in events:
        fine.compose(event)
    assert ours == pytest.approx(fine.get_epsilon(DELTA), rel=5e-3)
    assert ours >= fine.get_epsilon(DELTA) - 1e-9  # pessimistic rounding never under-charges


def test_the_discrete_gaussian_composes_as_dp_accountings_pld_library(roomy):
    """dp_accounting has no DpEvent for it: the reference is its PLD library, called here."""
    releases = [
        (discrete_gaussian_event(sigma=12.0), [(12.0, 1)]),
        (
            composed_event([discrete_gaussian_event(sigma=30.0), discrete_gaussian_event(sigma=900.0, sensitivity=30)]),
            [(30.0, 1), (900.0, 30)],
        ),
        (discrete_gaussian_event(sigma=12.0, count=3), [(12.0, 1)] * 3),
    ]
    ours = spend_all(roomy, [event for event, _ in releases])
    reference = pld_lib.identity(value_discretization_interval=1e-4)
    for _, parts in releases:
        for sigma, sensitivity in parts:
            reference = reference.compose(
                pld_lib.from_discrete_gaussian_mechanism(
                    sigma=sigma, sensitivity=sensitivity, value_discretization_interval=1e-4
                )
            )
    assert ours == pytest.approx(reference.get_epsilon_for_delta(DELTA), rel=5e-3)
    assert ours >= reference.get_epsilon_for_delta(DELTA) - 1e-9
    assert roomy.verify(deep=True).ok


def test_a_discrete_gaussian_is_charged_as_itself_not_as_the_continuous_one():
    """Near the lattice's scale the two differ, either way: at sigma 1.5 the continuous
    Gaussian's accounting would under-charge the discrete noise that ran by 1.6%."""
    for sigma in (0.8, 1.0, 1.5, 2.0):
        discrete = epsilon(events=[discrete_gaussian_event(sigma=sigma)], delta=DELTA)
        reference = pld_lib.from_discrete_gaussian_mechanism(sigma=sigma, value_discretization_interval=1e-3)
        assert discrete == pytest.approx(reference.get_epsilon_for_delta(DELTA), rel=1e-12)
    discrete = epsilon(events=[discrete_gaussian_event(sigma=1.5)], delta=DELTA)
    continuous = epsilon(events=[gaussian_event(noise_multiplier=1.5)], delta=DELTA)
    assert discrete > continuous * 1.01
    # far from the lattice's scale, they agree (a sanity check of the parameterisation)
    assert epsilon(events=[discrete_gaussian_event(sigma=40.0)], delta=DELTA) == pytest.approx(
        epsilon(events=[gaussian_event(noise_multiplier=40.0)], delta=DELTA), rel=0.02
    )


def test_discrete_noise_calibrates_through_the_ledgers_own_bracket():
    for target in (0.1, 0.5, 2.0):
        sigma, at_minimum = calibrate_noise(
            cost=lambda s: epsilon(events=[discrete_gaussian_event(sigma=s, count=2)], delta=DELTA),
            target_epsilon=target,
            minimum=0.3,
            maximum=2000.0,
            rtol=1e-4,
        )
        charged = epsilon(events=[discrete_gaussian_event(sigma=sigma, count=2)], delta=DELTA)
        assert not at_minimum and charged <= target and charged >= 0.99 * target


# Mechanisms exactly as ledgers written before the discrete kinds hold them (their
# canonical JSON is part of each entry's hash: it must read back to the same text).
OLD_TEXTS = [
    '{"event":{"noise_multiplier":3.0,"type":"GaussianDpEvent"},"format":"dp_accounting/0.6"}',
    '{"event":{"count":2,"event":{"noise_multiplier":15.94,"type":"GaussianDpEvent"},"type":"SelfComposedDpEvent"},'
    '"format":"dp_accounting/0.6"}',
    '{"event":{"noise_multiplier":2.5,"type":"LaplaceDpEvent"},"format":"dp_accounting/0.6"}',
    '{"event":{"count":200,"event":{"event":{"noise_multiplier":1.1,"type":"GaussianDpEvent"},'
    '"sampling_probability":0.01,"type":"PoissonSampledDpEvent"},"type":"SelfComposedDpEvent"},'
    '"format":"dp_accounting/0.6"}',
]


def test_ledgers_written_before_the_discrete_kinds_still_read_compose_and_verify(roomy):
    for text in OLD_TEXTS:
        assert canonical_json(event_from_json(text)) == text
    old = [event_from_json(text) for text in OLD_TEXTS]
    assert epsilon(events=[gaussian_event(noise_multiplier=2.0)] * 4, delta=DELTA) == pytest.approx(4.3772, abs=1e-4)
    before = spend_all(roomy, old)
    after = spend_all(roomy, [discrete_gaussian_event(sigma=20.0), discrete_laplace_event(scale=10.0)])
    assert after > before
    report = roomy.verify(deep=True)
    assert report.ok, report
    assert dpsgd_event(noise_multiplier=1.1, sampling_rate=0.01, steps=200) == old[3]


def test_the_rdp_cross_check_says_it_cannot_compose_a_discrete_mechanism():
    with pytest.raises(InvalidMechanism, match="accountant is PLD"):
        epsilon(events=[discrete_gaussian_event(sigma=5.0)], delta=DELTA, accountant="rdp")
    assert isinstance(event_from_json(canonical_json(discrete_gaussian_event(sigma=5.0))), DiscreteGaussianDpEvent)
