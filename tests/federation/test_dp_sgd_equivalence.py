"""The vectorised DP-SGD engine runs the mechanism the accountant charges, as Opacus does.

Opacus (hooks mode) is the reference: same clipped sums, same noise scale, same
Poisson sampling, same steps and rate, same update.
"""

import copy
import warnings

import numpy as np
import pytest
import torch
from opacus import GradSampleModule, PrivacyEngine
from opacus.optimizers import DPOptimizer
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from federation.training.dp_sgd import binary_logit_loss, planned_sampling, train_round
from federation.training.fast_dp_sgd import VectorizedDPSGD, expected_batch_size
from federation.training.models import build_model
from federation.training.per_sample_clipping import make_clipper, supports_linear
from federation.training.poisson_sampling import entropy_generator, poisson_indices

# Opacus's hooks fire on module outputs when the inputs need no gradient: expected here.
pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing:UserWarning")


def class_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(output, target.long(), reduction="none")


def _mean_binary(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(output.squeeze(-1), target)  # train_round's Opacus loss


def _cases():
    torch.manual_seed(0)
    demo = build_model(name="mlp", n_features=11, hidden=32)
    deep = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 2))
    normed = nn.Sequential(nn.Linear(6, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 1))  # not "linear"
    return [
        ("demo-mlp", demo, 11, binary_logit_loss, _mean_binary),
        ("20-64-64-2", deep, 20, class_loss, lambda out, t: F.cross_entropy(out, t.long())),
        ("layernorm", normed, 6, binary_logit_loss, _mean_binary),
    ]


def _batch(n_features: int, rows: int = 64, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(rows, n_features, generator=g)
    x[: rows // 4] *= 40.0  # large inputs, large gradients: these rows get clipped
    y = (torch.rand(rows, generator=g) < 0.4).float()
    return x, y


def _opacus_clipped_sum(model, x, y, mean_loss, max_grad_norm):
    gsm = GradSampleModule(copy.deepcopy(model))
    optimizer = DPOptimizer(
        torch.optim.SGD(gsm.parameters(), lr=0.1),
        noise_multiplier=0.0,
        max_grad_norm=max_grad_norm,
        expected_batch_size=len(x),
    )
    mean_loss(gsm(x), y).backward()
    norms = torch.stack([g.reshape(len(x), -1).norm(dim=1) for g in optimizer.grad_samples], dim=1).norm(dim=1)
    optimizer.clip_and_accumulate()
    return torch.cat([p.summed_grad.reshape(-1) for p in gsm.parameters()]), norms


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0])
@pytest.mark.parametrize("method", ["auto", "functorch"])
def test_clipped_sums_equal_opacus_hooks(case, method):
    _, model, n_features, per_sample_loss, mean_loss = case
    x, y = _batch(n_features)
    _, norms = _opacus_clipped_sum(model, x, y, mean_loss, 1e9)
    max_grad_norm = float(norms.median())  # about half the samples are clipped
    reference, _ = _opacus_clipped_sum(model, x, y, mean_loss, max_grad_norm)
    assert (norms > max_grad_norm * 1.01).sum() >= 16 and (norms < max_grad_norm).sum() >= 16

    mine = copy.deepcopy(model)
    out = torch.full_like(reference, float("nan"))
    clipper = make_clipper(model=mine, per_sample_loss=per_sample_loss, max_grad_norm=max_grad_norm, method=method)
    loss = clipper(x=x, y=y, out=out)

    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss, per_sample_loss(model(x), y).sum().detach(), rtol=1e-5, atol=1e-5)


def test_the_closed_form_is_used_exactly_for_linear_stacks():
    names = {name: supports_linear(model) for name, model, *_ in _cases()}
    assert names == {"demo-mlp": True, "20-64-64-2": True, "layernorm": False}
    with pytest.raises(ValueError, match="functorch"):
        make_clipper(model=_cases()[2][1], per_sample_loss=binary_logit_loss, max_grad_norm=1.0, method="linear")


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_steps_with_zero_noise_reproduce_opacus_training(momentum):
    """Same batches, noise 0: parameters after several steps match Opacus's, so the
    expected batch size, scaling and SGD update are the same."""
    n, batch, steps, lr = 300, 32, 12, 0.5
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.random((n, 11), dtype=np.float32))
    y = torch.from_numpy((rng.random(n) < 0.3).astype(np.float32))
    torch.manual_seed(3)
    model = build_model(name="mlp", n_features=11, hidden=32)
    rate, _ = planned_sampling(n_train=n, batch_size=batch, local_epochs=1)

    sampling = torch.Generator().manual_seed(4)
    replay = torch.Generator().set_state(sampling.get_state())
    mine = VectorizedDPSGD(
        model=model,
        per_sample_loss=binary_logit_loss,
        noise_multiplier=0.0,
        max_grad_norm=0.3,
        learning_rate=lr,
        momentum=momentum,
        sampling_generator=sampling,
    )
    mine.run_steps(x=x, y=y, sampling_rate=rate, steps=steps)

    reference = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        private, optimizer, _ = PrivacyEngine(accountant="rdp").make_private(
            module=reference,
            optimizer=torch.optim.SGD(reference.parameters(), lr=lr, momentum=momentum),
            data_loader=DataLoader(TensorDataset(x, y), batch_size=batch),
            noise_multiplier=0.0,
            max_grad_norm=0.3,
            poisson_sampling=True,
        )
    assert optimizer.expected_batch_size == expected_batch_size(n_train=n, sampling_rate=rate)
    for _ in range(steps):
        idx = poisson_indices(n=n, rate=rate, generator=replay)
        optimizer.zero_grad(set_to_none=True)
        F.binary_cross_entropy_with_logits(private(x[idx]).squeeze(-1), y[idx]).backward()
        optimizer.step()

    for key, value in reference.state_dict().items():
        torch.testing.assert_close(mine.state_dict()[key], value, rtol=1e-5, atol=1e-6)


def test_noise_has_std_sigma_c_over_expected_batch_per_coordinate():
    sigma, clip, divisor = 1.3, 0.7, 25
    torch.manual_seed(5)
    model = build_model(name="mlp", n_features=11, hidden=32)
    x, y = _batch(11, rows=40)
    noisy = VectorizedDPSGD(
        model=model,
        per_sample_loss=binary_logit_loss,
        noise_multiplier=sigma,
        max_grad_norm=clip,
        learning_rate=0.1,
        noise_generator=torch.Generator().manual_seed(6),
    )
    exact = VectorizedDPSGD(
        model=model, per_sample_loss=binary_logit_loss, noise_multiplier=0.0, max_grad_norm=clip, learning_rate=0.1
    )
    signal = exact.noisy_gradient(x=x, y=y, divisor=divisor)[0].clone()
    assert signal.abs().max() > 0
    draws = torch.stack([noisy.noisy_gradient(x=x, y=y, divisor=divisor)[0] - signal for _ in range(3000)])
    noise = draws.double()
    expected = sigma * clip / divisor
    assert noise.std().item() == pytest.approx(expected, rel=0.005)  # about 1.25 M values
    assert abs(noise.mean().item()) < 5 * expected / noise.numel() ** 0.5
    per_coordinate = noise.std(dim=0) / expected
    assert per_coordinate.min() > 0.85 and per_coordinate.max() < 1.15  # every coordinate, not an average
    kurtosis = ((noise / noise.std()) ** 4).mean().item()
    assert kurtosis == pytest.approx(3.0, abs=0.05)  # Gaussian tails
    correlation = torch.corrcoef(noise[:, :50].T)
    assert (correlation - torch.eye(50, dtype=noise.dtype)).abs().max() < 0.1  # independent coordinates


def test_an_empty_batch_takes_a_noise_only_step():
    torch.manual_seed(7)
    model = build_model(name="logreg", n_features=3)
    trainer = VectorizedDPSGD(
        model=model, per_sample_loss=binary_logit_loss, noise_multiplier=1.0, max_grad_norm=1.0, learning_rate=1.0
    )
    gradient, loss = trainer.noisy_gradient(x=torch.zeros(0, 3), y=torch.zeros(0), divisor=2)
    assert loss == 0.0 and gradient.abs().min() > 0  # pure noise, in every coordinate


def test_poisson_batches_have_binomial_size_and_independent_rows():
    n, rate, draws = 1000, 0.05, 20000
    g = torch.Generator().manual_seed(8)
    included = torch.zeros(draws, n, dtype=torch.bool)
    for i in range(draws):
        idx = poisson_indices(n=n, rate=rate, generator=g)
        assert (idx[1:] > idx[:-1]).all() and (idx.numel() == 0 or (0 <= idx[0] and idx[-1] < n))
        included[i, idx] = True
    sizes = included.sum(dim=1).double()
    mean, var = n * rate, n * rate * (1 - rate)
    assert sizes.mean().item() == pytest.approx(mean, abs=5 * (var / draws) ** 0.5)
    assert sizes.var().item() == pytest.approx(var, abs=5 * var * (2 / draws) ** 0.5)
    per_row = included.double().mean(dim=0)
    assert (per_row - rate).abs().max() < 5 * (rate * (1 - rate) / draws) ** 0.5 + 1e-3  # first and last rows too
    both = (included[:, :-1] & included[:, 1:]).double().mean().item()
    assert both == pytest.approx(rate * rate, rel=0.05)  # neighbours independent


def test_rate_one_takes_every_row_and_generators_are_unpredictable():
    g = torch.Generator().manual_seed(9)
    assert poisson_indices(n=7, rate=1.0, generator=g).tolist() == list(range(7))
    first = [torch.rand(4, generator=entropy_generator()) for _ in range(2)]
    assert not torch.equal(*first)
    with pytest.raises(ValueError, match="rate"):
        poisson_indices(n=10, rate=0.0, generator=g)


@pytest.mark.parametrize(("n", "batch", "epochs"), [(1000, 128, 1), (1000, 100, 2), (37, 128, 3), (20000, 256, 1)])
def test_vectorized_round_runs_the_planned_steps_at_the_planned_rate(n, batch, epochs):
    rng = np.random.default_rng(0)
    x = rng.random((n, 5), dtype=np.float32)
    y = (rng.random(n) < 0.3).astype(np.float32)
    rate, steps = planned_sampling(n_train=n, batch_size=batch, local_epochs=epochs)
    kwargs = dict(
        model=build_model(name="mlp", n_features=5, hidden=8),
        x=x,
        y=y,
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        batch_size=batch,
        local_epochs=epochs,
        learning_rate=0.1,
    )
    mine = train_round(**kwargs, engine="vectorized")
    reference = train_round(**kwargs, engine="opacus")
    assert mine.steps == reference.steps == steps
    assert mine.sampling_rate == reference.sampling_rate == pytest.approx(rate)
    assert set(mine.state_dict) == set(reference.state_dict) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert np.isfinite(mine.mean_loss)


def test_vectorized_round_learns_and_leaves_the_input_model_alone():
    rng = np.random.default_rng(3)
    x = rng.random((4000, 3), dtype=np.float32)
    y = (x[:, 0] > 0.5).astype(np.float32)
    model = build_model(name="logreg", n_features=3)
    before = copy.deepcopy(model.state_dict())
    outcome = train_round(
        model=model,
        x=x,
        y=y,
        noise_multiplier=0.8,
        max_grad_norm=1.0,
        batch_size=200,
        local_epochs=3,
        learning_rate=2.0,
        engine="vectorized",
    )
    for key, value in before.items():
        assert torch.equal(model.state_dict()[key], value)
    assert all(p.requires_grad for p in model.parameters())  # the engine froze its own copy only
    model.load_state_dict(outcome.state_dict)
    from federation.training.evaluation import binary_metrics, predict_proba

    assert binary_metrics(y_true=y, proba=predict_proba(model=model, x=x))["auc"] > 0.9


def test_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="engine"):
        train_round(
            model=build_model(name="logreg", n_features=2),
            x=np.ones((4, 2), np.float32),
            y=np.ones(4, np.float32),
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            batch_size=2,
            local_epochs=1,
            learning_rate=0.1,
            engine="fast",
        )
