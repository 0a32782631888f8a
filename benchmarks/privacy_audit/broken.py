"""Deliberately broken DP-SGD, for the audit to catch: kept here, never in the product.

Each context manager breaks one line of both engines for as long as it is open, while
the ledger goes on charging the configured mechanism: the bug the audit must expose.

- ``noise_off``: the engines add no Gaussian noise (a forgotten ``add_noise``).
- ``clipping_off``: the engines sum per-sample gradients unclipped, while the noise is
  still scaled to the clipping norm (a forgotten ``clip``).

They patch the engines' internals (Opacus's ``_generate_noise`` and
``DPOptimizer.clip_and_accumulate``; ``VectorizedDPSGD``'s noise scale and
``per_sample_clipping.clip_factors``), so they follow those names if the engines move.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from unittest import mock

import torch
from opacus.optimizers import optimizer as opacus_optimizer

from federation.training import fast_dp_sgd, per_sample_clipping


@contextmanager
def noise_off() -> Iterator[None]:
    """Both engines skip the noise; the step is otherwise unchanged."""
    original_init = fast_dp_sgd.VectorizedDPSGD.__init__

    def init_without_noise(self, **kwargs):
        original_init(self, **kwargs)
        self._noise_std = 0.0

    def no_noise(std, reference, generator=None, secure_mode=False):
        return torch.zeros_like(reference)

    with (
        mock.patch.object(opacus_optimizer, "_generate_noise", no_noise),
        mock.patch.object(fast_dp_sgd.VectorizedDPSGD, "__init__", init_without_noise),
    ):
        yield


@contextmanager
def clipping_off() -> Iterator[None]:
    """Both engines sum gradients without clipping; the noise keeps its scale sigma * C."""
    original_clip = opacus_optimizer.DPOptimizer.clip_and_accumulate

    def clip_nothing(self):
        norm = self.max_grad_norm
        self.max_grad_norm = float("inf")  # factor min(1, inf / norm) = 1 for every sample
        try:
            original_clip(self)
        finally:
            self.max_grad_norm = norm  # add_noise reads it next: noise std stays sigma * C

    def ones(*, squared_norms, max_grad_norm):
        return torch.ones_like(squared_norms)

    with (
        mock.patch.object(opacus_optimizer.DPOptimizer, "clip_and_accumulate", clip_nothing),
        mock.patch.object(per_sample_clipping, "clip_factors", ones),
    ):
        yield


BROKEN: dict[str, Callable[[], AbstractContextManager[None]]] = {
    "noise off": noise_off,
    "clipping off": clipping_off,
}
