"""Poisson sampling of training rows for DP-SGD, drawn in time proportional to the batch.

The privacy accountant charges the sampled Gaussian mechanism: every record enters a
step's batch independently with probability ``rate``. Opacus draws that as
``torch.rand(n) < rate`` and then collates the chosen rows one by one; both cost
time proportional to ``n`` per step. Here the same set is drawn from the gaps between
chosen rows instead: in a sequence of independent Bernoulli(rate) trials the gaps are
independent Geometric(rate) variables, so about ``rate * n`` draws give the batch.
"""

from __future__ import annotations

import math
import os

import torch


def entropy_generator() -> torch.Generator:
    """A CPU generator seeded from the operating system's entropy pool.

    Never seed sampling or noise with a constant in production: noise an observer can
    predict protects nothing. (Like Opacus without ``secure_mode``, the stream itself is
    a Mersenne Twister, not a cryptographic generator.)
    """
    generator = torch.Generator()
    generator.manual_seed(int.from_bytes(os.urandom(8), "little"))
    return generator


def poisson_indices(*, n: int, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Sorted indices of the rows in one Poisson batch: each of ``n`` rows independently
    with probability ``rate``; the batch may be empty."""
    if n < 1:
        raise ValueError(f"n must be a whole number >= 1, got {n!r}")
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"rate must be in (0, 1], got {rate!r}")
    if rate == 1.0:
        return torch.arange(n)
    expected = n * rate
    # Enough gaps to pass the last row almost always; the loop below tops up otherwise.
    draws = int(expected + 6.0 * math.sqrt(expected) + 16)
    # geometric_ counts trials up to and including the first success (values 1, 2, ...).
    positions = torch.empty(draws, dtype=torch.float64).geometric_(rate, generator=generator).cumsum_(0)
    while positions[-1].item() <= n:
        more = torch.empty(draws, dtype=torch.float64).geometric_(rate, generator=generator).cumsum_(0)
        positions = torch.cat([positions, more.add_(positions[-1])])
    # positions are 1-based; float64 holds whole numbers exactly up to 2**53.
    inside = int(torch.searchsorted(positions, float(n), right=True))
    return positions[:inside].to(torch.int64).sub_(1)
