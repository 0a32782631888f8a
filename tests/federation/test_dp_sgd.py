"""Local DP-SGD: the steps and sampling Opacus actually used are what a site charges."""

import numpy as np
import pytest
import torch

from federation.training.dp_sgd import planned_sampling, train_round
from federation.training.models import build_model


@pytest.mark.parametrize(("n", "batch", "epochs"), [(1000, 128, 1), (1000, 100, 2), (37, 128, 3)])
def test_the_plan_matches_the_steps_and_rate_opacus_runs(n, batch, epochs):
    rng = np.random.default_rng(0)
    x = rng.random((n, 5), dtype=np.float32)
    y = (rng.random(n) < 0.3).astype(np.float32)
    rate, steps = planned_sampling(n_train=n, batch_size=batch, local_epochs=epochs)
    outcome = train_round(
        model=build_model(name="mlp", n_features=5, hidden=8),
        x=x,
        y=y,
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        batch_size=batch,
        local_epochs=epochs,
        learning_rate=0.1,
    )
    assert outcome.steps == steps
    assert outcome.sampling_rate == pytest.approx(rate)
    assert set(outcome.state_dict) == {"0.weight", "0.bias", "2.weight", "2.bias"}  # no _module. prefix


def test_empty_poisson_batches_still_take_a_noise_step_and_are_counted():
    # 5 rows, expected batch 1: about a third of the batches are empty.
    x = np.ones((5, 2), np.float32)
    y = np.ones(5, np.float32)
    torch.manual_seed(1)
    outcome = train_round(
        model=build_model(name="logreg", n_features=2),
        x=x,
        y=y,
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        batch_size=1,
        local_epochs=20,
        learning_rate=0.1,
    )
    assert outcome.steps == 100
    assert outcome.empty_batches > 0
    assert all(torch.isfinite(v).all() for v in outcome.state_dict.values())


def test_dp_training_learns_a_separable_signal():
    rng = np.random.default_rng(3)
    x = rng.random((4000, 3), dtype=np.float32)
    y = (x[:, 0] > 0.5).astype(np.float32)
    model = build_model(name="logreg", n_features=3)
    for _ in range(3):
        outcome = train_round(
            model=model,
            x=x,
            y=y,
            noise_multiplier=0.8,
            max_grad_norm=1.0,
            batch_size=200,
            local_epochs=1,
            learning_rate=2.0,
        )
        model.load_state_dict(outcome.state_dict)
    from federation.training.evaluation import binary_metrics, predict_proba

    assert binary_metrics(y_true=y, proba=predict_proba(model=model, x=x))["auc"] > 0.9


@pytest.mark.parametrize("mode", ["hooks", "ghost", "functorch"])
def test_every_grad_sample_mode_the_spec_accepts_trains(mode):
    # "ghost" returns a criterion of its own from make_private; it used to fail to unpack.
    rng = np.random.default_rng(1)
    x = rng.random((500, 4), dtype=np.float32)
    y = (rng.random(500) < 0.4).astype(np.float32)
    outcome = train_round(
        model=build_model(name="mlp", n_features=4, hidden=8),
        x=x,
        y=y,
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        batch_size=100,
        local_epochs=1,
        learning_rate=0.1,
        grad_sample_mode=mode,
    )
    assert outcome.steps == 5 and np.isfinite(outcome.mean_loss)
