"""The DP evaluation's mathematics (no Flower): the vector a site noises, the metrics
the coordinator computes from it, the noisy-count helper and the plan's split of a
study's target between DP-SGD and its evaluations."""

from __future__ import annotations

import numpy as np
import pytest

from federation.analytics.count_release import count_event, evaluation_event, release_count, release_evaluation
from federation.analytics.errors import NoiseError
from federation.training.evaluation import (
    EVALUATION_SENSITIVITY,
    EVALUATION_THRESHOLDS,
    LOSS_CLIP,
    NoisyEvaluation,
    binary_metrics,
    evaluation_cells,
    evaluation_counts,
)
from privacy_budgets.accounting import epsilon
from privacy_budgets.mechanisms import DiscreteGaussianDpEvent, gaussian_event


@pytest.fixture(scope="module")
def scores():
    rng = np.random.default_rng(0)
    y = (rng.random(3000) < 0.2).astype(np.float32)
    proba = 1 / (1 + np.exp(-(-1.8 + 1.5 * y + rng.normal(0, 1, y.size))))
    return y, proba


def test_one_patient_moves_the_vector_by_at_most_its_sensitivity(scores):
    y, proba = scores
    full = evaluation_cells(y_true=y, proba=proba)
    for i in (0, 7, 123):
        without = evaluation_cells(y_true=np.delete(y, i), proba=np.delete(proba, i))
        change = full - without
        assert np.linalg.norm(change) <= EVALUATION_SENSITIVITY + 1e-12
        assert sorted(change[:-1].tolist()).count(1.0) == 1 and 0 <= change[-1] <= 1


def test_without_noise_the_estimates_are_the_binned_metrics(scores):
    y, proba = scores
    exact = binary_metrics(y_true=y, proba=proba)
    metrics = NoisyEvaluation.from_cells(cells=evaluation_cells(y_true=y, proba=proba), noise_std=1e-9).metrics()
    assert metrics["num-examples"] == pytest.approx(len(y))
    assert metrics["accuracy"] == pytest.approx(exact["accuracy"])  # 0.5 is on the grid
    assert metrics["auc"] == pytest.approx(exact["auc"], abs=0.02)  # ties within a bin count half
    assert metrics["loss"] == pytest.approx(exact["loss"], rel=0.01)  # few losses reach the clip
    assert 0.5 in EVALUATION_THRESHOLDS and LOSS_CLIP == 5.0


def test_noisy_estimates_carry_their_spread_and_pool_over_sites(scores):
    y, proba = scores
    cells = evaluation_cells(y_true=y, proba=proba)
    rng = np.random.default_rng(1)
    sites = [
        NoisyEvaluation.from_cells(cells=cells + rng.normal(0, 30.0, cells.size), noise_std=30.0) for _ in range(4)
    ]
    pooled = NoisyEvaluation.pooled(sites)
    assert pooled.noise_std == pytest.approx(60.0)
    assert pooled.metrics()["num-examples"] == pytest.approx(4 * len(y), rel=0.05)
    one = sites[0].metrics()
    assert one["auc-sd"] > 0 and one["accuracy-sd"] > 0 and pooled.metrics()["auc-sd"] < one["auc-sd"]
    again = NoisyEvaluation.from_json(pooled.to_json())
    assert again == pooled


def test_releases_return_the_exact_discrete_event_of_the_noise_they_added(scores):
    value, event = release_count(count=120, noise_multiplier=3.0)
    assert isinstance(value, int) and event == count_event(noise_multiplier=3.0)
    assert event == DiscreteGaussianDpEvent(sigma=3.0, sensitivity=1)

    y, proba = scores
    counts, losses = evaluation_counts(y_true=y, proba=proba)
    assert counts.dtype == np.int64 and counts.sum() == len(y) and ((0 <= losses) & (losses <= 1)).all()
    cells, event, noise_std = release_evaluation(counts=counts, loss_units=losses, noise_multiplier=2.0)
    assert event == evaluation_event(noise_multiplier=2.0)  # what the site reserved is what ran
    assert noise_std == pytest.approx(2.0 * np.sqrt(2.0))
    assert np.all(cells[:-1] == np.rint(cells[:-1]))  # whole numbers: noise on the integers
    # two discrete releases at sqrt(2) x the multiplier cost about one Gaussian of it
    two = epsilon(events=[event], delta=1e-5)
    assert two == pytest.approx(epsilon(events=[gaussian_event(noise_multiplier=2.0)], delta=1e-5), rel=0.05)
    for bad in (0.0, 5e-324, float("nan"), float("inf"), -1.0):
        with pytest.raises(NoiseError):
            release_count(count=1, noise_multiplier=bad)


@pytest.mark.parametrize("target, rounds, share", [(1.0, 5, 0.1), (0.5, 3, 0.2), (3.0, 1, 0.1)])
def test_the_plan_fits_every_release_within_the_target(tmp_path, target, rounds, share):
    from federation.protocol.spec import TrainingSpec
    from federation.site.config import NodePolicy
    from federation.site.plan import calibrate_plan
    from privacy_budgets import Ledger, accounting

    with Ledger.open(tmp_path / "ledger.sqlite", site_id="s") as ledger:
        ledger.set_cap(dataset="d", epsilon=10.0, delta=1e-5, actor="it", reason="r")
        ledger.allocate(dataset="d", project="p", epsilon=5.0, actor="board", reason="r")
        policy = NodePolicy(allowed_tasks=("train",), evaluation_share=share)
        spec = TrainingSpec(project="p", target_epsilon=target, rounds=rounds)
        plan = calibrate_plan(ledger=ledger, spec=spec, dataset="d", n_train=2000, policy=policy)
    total = accounting.epsilon(events=plan.planned_events(), delta=1e-5)
    assert total <= target * (1 + 1e-6)
    assert plan.release_epsilon() == pytest.approx(share * target, rel=2e-3)
    # the final round's evaluation gets the most precise noise
    assert plan.final_evaluation_noise < plan.weight_noise
    if rounds > 1:
        assert plan.final_evaluation_noise < plan.evaluation_noise
