"""DP-SGD without Opacus's per-step overhead: the same mechanism, vectorised.

What runs per step is exactly what the accountant charges and what Opacus does with
``poisson_sampling=True`` and ``loss_reduction="mean"``:

1. a Poisson batch: every row independently with rate q = ``planned_sampling``'s rate;
2. each sample's gradient clipped to L2 norm C over all parameters jointly (flat);
3. Gaussian noise N(0, (sigma C)^2) per coordinate added to the SUM of clipped gradients;
4. that divided by the expected batch size, ``int(n * q)`` as Opacus computes it;
5. an SGD step; an empty batch still takes a noise-only step, and every step counts.

The speed comes from doing each of those as a few whole-tensor operations: rows are
gathered by index (no DataLoader, no collate), clipped sums come from
``per_sample_clipping`` (no hooks, no per-sample gradient storage for linear models),
and parameters live in one flat vector so noise and update are one operation each.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from federation.training.per_sample_clipping import PerSampleLoss, make_clipper
from federation.training.poisson_sampling import entropy_generator, poisson_indices


def expected_batch_size(*, n_train: int, sampling_rate: float) -> int:
    """The divisor of the noisy sum, computed as Opacus's ``make_private`` does."""
    return int(n_train * sampling_rate)


def _flatten_parameters(model: nn.Module) -> torch.Tensor:
    """Move ``model``'s parameters into one vector and make each parameter a view of it,
    so that updating the vector updates the model."""
    params = list(model.parameters())
    flat = torch.cat([p.detach().reshape(-1) for p in params]) if params else torch.zeros(0)
    offset = 0
    for p in params:
        p.requires_grad_(False)  # gradients are computed by the clipper, not by .grad
        p.data = flat[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    return flat


class VectorizedDPSGD:
    """DP-SGD on a private copy of ``model``; call ``run_steps`` then read ``state_dict``."""

    def __init__(
        self,
        *,
        model: nn.Module,
        per_sample_loss: PerSampleLoss,
        noise_multiplier: float,
        max_grad_norm: float,
        learning_rate: float,
        momentum: float = 0.0,
        method: str = "auto",
        sampling_generator: torch.Generator | None = None,
        noise_generator: torch.Generator | None = None,
    ) -> None:
        if noise_multiplier < 0 or max_grad_norm <= 0:
            raise ValueError(
                f"need noise_multiplier >= 0 and max_grad_norm > 0; got {noise_multiplier!r}, {max_grad_norm!r}"
            )
        self.model = copy.deepcopy(model)
        self.model.train()
        self._flat = _flatten_parameters(self.model)
        self._clip = make_clipper(
            model=self.model, per_sample_loss=per_sample_loss, max_grad_norm=max_grad_norm, method=method
        )
        self._noise_std = float(noise_multiplier) * float(max_grad_norm)
        self._lr = float(learning_rate)
        self._momentum = float(momentum)
        self._grad = torch.zeros_like(self._flat)
        self._noise = torch.zeros_like(self._flat)
        self._velocity: torch.Tensor | None = None
        self._sampling = sampling_generator or entropy_generator()
        self._noise_gen = noise_generator or entropy_generator()

    def noisy_gradient(self, *, x: torch.Tensor, y: torch.Tensor, divisor: int) -> tuple[torch.Tensor, float]:
        """(sum of clipped per-sample gradients + noise) / divisor, flat; and the summed loss."""
        if len(x) == 0:
            self._grad.zero_()  # noise-only step
            loss = 0.0
        else:
            loss = float(self._clip(x=x, y=y, out=self._grad))
        if self._noise_std > 0:
            self._grad.add_(self._noise.normal_(0.0, self._noise_std, generator=self._noise_gen))
        return self._grad.div_(divisor), loss

    def _apply(self, gradient: torch.Tensor) -> None:
        # torch.optim.SGD's rule (dampening 0, no Nesterov, no weight decay).
        if self._momentum:
            if self._velocity is None:
                self._velocity = gradient.clone()
            else:
                self._velocity.mul_(self._momentum).add_(gradient)
            gradient = self._velocity
        self._flat.add_(gradient, alpha=-self._lr)

    def run_steps(
        self, *, x: torch.Tensor, y: torch.Tensor, sampling_rate: float, steps: int
    ) -> tuple[int, float, int]:
        """Run ``steps`` DP-SGD steps over the rows of ``x``; return (empty batches,
        summed loss, rows seen)."""
        n = len(x)
        divisor = expected_batch_size(n_train=n, sampling_rate=sampling_rate)
        if divisor < 1:
            raise ValueError(f"expected batch size int({n} * {sampling_rate}) is below 1")
        empty = rows = 0
        total_loss = 0.0
        for _ in range(steps):
            idx = poisson_indices(n=n, rate=sampling_rate, generator=self._sampling)
            gradient, loss = self.noisy_gradient(x=x.index_select(0, idx), y=y.index_select(0, idx), divisor=divisor)
            self._apply(gradient)
            if len(idx) == 0:
                empty += 1
            total_loss += loss
            rows += len(idx)
        return empty, total_loss, rows

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}
