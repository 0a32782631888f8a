"""The DP evaluation's mathematics (no Flower): the vector a site noises, the metrics
the coordinator computes from it, the noisy-count helper and the plan's split of a
study's target between DP-SGD and its evaluations."""

from __future__ import annotations

import numpy as np
import pytest

from federation.analytics.count_release import noisy_counts
from federation.training.evaluation import (
    EVALUATION_SENSITIVITY,
    EVALUATION_THRESHOLDS,
    LOSS_CLIP,
    NoisyEvaluation,
    binary_metrics,
    evaluation_cells,
)
from privacy_budgets.mechanisms import gaussian_event


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


def test_noisy_counts_returns_the_event_of_the_noise_it_added():
    values, event = noisy_counts(counts=np.zeros(20000), noise_multiplier=3.0, sensitivity=2.0)
    assert event == gaussian_event(noise_multiplier=3.0)
    assert np.std(values) == pytest.approx(6.0, rel=0.05)
    for bad in (0.0, 5e-324, float("nan"), float("inf"), -1.0):
        with pytest.raises(ValueError, match="noise_multiplier must be a positive"):
            noisy_counts(counts=[1.0], noise_multiplier=bad, sensitivity=1.0)
    with pytest.raises(ValueError, match="sensitivity must be a positive"):
        noisy_counts(counts=[1.0], noise_multiplier=1.0, sensitivity=0.0)


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
