"""What a perfect implementation of the same mechanism would audit to, by simulation.

Canary ``j``'s score in the real audit is its weight after training. For an exact
implementation it is, up to one constant factor (learning rate over the batch divisor),

    sum over steps t of  w_t (C b_tj + sigma C z_tj),

with ``b_tj`` ~ Bernoulli(q) when the canary is included (0 when not), ``z_tj`` standard
normal, and ``w_t = (1 - mu^(k - i)) / (1 - mu)`` the weight SGD with momentum ``mu`` gives
step ``i`` of an epoch of ``k`` steps (the optimizer starts afresh each epoch, as
``train_round`` does). The noise part is Gaussian with variance ``sigma^2 C^2 sum w_t^2``.
Drawing those scores and guessing exactly as ``audit_dp_sgd`` does gives the bound a
correct engine should reach: the real engines should audit near it, never far above.
"""

from __future__ import annotations

import numpy as np

from federation.training.privacy_audit import epsilon_lower_bound, guess_counts


def step_weights(*, steps: int, steps_per_epoch: int, momentum: float) -> np.ndarray:
    i = np.arange(steps) % steps_per_epoch
    if momentum == 0:
        return np.ones(steps)
    return (1 - momentum ** (steps_per_epoch - i)) / (1 - momentum)


def ideal_bounds(
    *,
    noise_multiplier: float,
    sampling_rate: float,
    steps: int,
    canaries: int,
    momentum: float,
    delta: float = 1e-5,
    confidence: float = 0.95,
    runs: int = 20,
    seed: int = 0,
) -> np.ndarray:
    """The audit's bound in ``runs`` simulated runs of an exact implementation."""
    rng = np.random.default_rng(seed)
    k = round(1 / sampling_rate)
    w = step_weights(steps=steps, steps_per_epoch=k, momentum=momentum)
    noise_sd = noise_multiplier * float(np.sqrt((w**2).sum()))
    tried = guess_counts(canaries=canaries)
    per_test = 1 - (1 - confidence) / len(tried)
    bounds = []
    for _ in range(runs):
        included = rng.random(canaries) < 0.5
        sampled = (rng.random((steps, canaries)) < sampling_rate) & included
        scores = w @ sampled + noise_sd * rng.standard_normal(canaries)
        order = np.lexsort((rng.random(canaries), scores))
        best = 0.0
        for r in tried:
            half = r // 2
            correct = int((~included[order[:half]]).sum() + included[order[-half:]].sum())
            best = max(
                best,
                epsilon_lower_bound(canaries=canaries, guesses=r, correct=correct, delta=delta, confidence=per_test),
            )
        bounds.append(best)
    return np.array(bounds)
