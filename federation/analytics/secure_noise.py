"""Noise from a cryptographically secure source, on the integers, for every analytics release.

Why not numpy: a floating-point Laplace or Gaussian sample (``rng.laplace``,
``rng.normal``) added to a float leaves traces of the exact value in the low bits of
the result, and some noisy outputs can only come from some inputs (Mironov 2012, "On
significance of the least significant bits for differential privacy"); numpy's
generator is also not a cryptographically secure one. Here the exact statistic is a
whole number (a count, or a sum on a fixed-point grid: federation.analytics.noise) and
the noise is a whole number too, drawn exactly from the discrete Laplace or discrete
Gaussian distribution (Canonne, Kamath and Steinke 2020) by OpenDP 0.16. The 0.16
wheel takes its random bits from OpenSSL's RAND_bytes, a CTR-DRBG seeded from the
operating system's entropy. No floating-point arithmetic touches the noise, so every
released value is an integer, and every integer is a possible output for every input.

OpenDP marks these measurements as "contrib" (their proofs are written, not yet
vetted by its committee) and refuses to build them until a program opts in with
``enable_features("contrib")``. We opt in, here and only here, because the two
measurements we use (``make_laplace`` and ``make_gaussian`` on integer vectors) are
the library's own exact samplers with published proofs, because the workbench does not
rely on OpenDP's privacy arithmetic (the ledger accounts for the release itself:
``privacy_budgets.mechanisms`` records each as ``DiscreteLaplaceDpEvent`` or
``DiscreteGaussianDpEvent`` and composes it with dp_accounting's PLD), and because the
alternative, floating-point noise, is the known attack above.

OpenDP adds no noise at all for a scale of 0 and next to none for a subnormal one: so
every scale is checked here, where the noise is drawn, as well as when the query is
validated (defence in depth).

The interface a release needs, also for the evaluation counts of a study
(``federation/analytics/count_release.py`` calls ``secure_noisy_counts``; a clipped sum of
real values, such as a loss, goes through ``noise.secure_noisy_sum``, which puts it on a
fixed-point grid first):

>>> noisy, event = secure_noisy_counts(np.array([120, 7, 0]), noise_multiplier=4.0)
>>> noisy.dtype.kind, noisy.shape
('i', (3,))
>>> event
DiscreteGaussianDpEvent(sigma=4.0, sensitivity=1)
"""

from __future__ import annotations

import threading
from functools import lru_cache

import dp_accounting as dpa
import numpy as np

from federation.analytics.errors import NoiseError
from privacy_budgets.errors import InvalidMechanism
from privacy_budgets.mechanisms import check_noise_scale, discrete_gaussian_event, discrete_laplace_event

MECHANISMS = ("gaussian", "laplace")
# Integers stay well inside OpenDP's 64-bit arithmetic (which saturates, silently, at
# its ends): an exact statistic or a noise scale beyond this is refused.
MAX_ABS_VALUE = 2**52
_LOCK = threading.Lock()


def check_scale(*, name: str, scale: float) -> float:
    """``scale`` as a float, if it is a positive, finite, normal float of at most
    ``MAX_ABS_VALUE``; raises NoiseError (nothing is released) otherwise."""
    try:
        value = check_noise_scale(name, scale)
    except InvalidMechanism as err:
        raise NoiseError(str(err)) from None
    if value > MAX_ABS_VALUE:
        raise NoiseError(
            f"{name} must be at most {MAX_ABS_VALUE:g} (noise in 64-bit integers); got {value!r}. "
            "Ask for less noise: a larger epsilon or a smaller noise multiplier."
        )
    return value


def add_secure_noise(values: np.ndarray, *, mechanism: str, scale: float) -> np.ndarray:
    """``values`` (whole numbers) plus independent noise on the integers: discrete
    Gaussian with parameter ``scale`` or discrete Laplace with scale ``scale``, drawn by
    OpenDP from a cryptographically secure source. Returns int64, same shape.

    The privacy of the result is what ``noise_event`` states for the same arguments
    and the values' integer sensitivity.
    """
    if mechanism not in MECHANISMS:
        raise NoiseError(f"secure noise is 'gaussian' or 'laplace'; got {mechanism!r}.")
    scale = check_scale(name=f"the {mechanism} noise scale", scale=scale)
    array = np.asarray(values)
    if array.dtype.kind not in "iu":
        raise NoiseError(
            f"secure noise is added to whole numbers (integer arrays); got values of dtype {array.dtype}. "
            "Put real values on a fixed-point grid first (federation.analytics.noise)."
        )
    flat = array.astype(np.int64).reshape(-1)
    if flat.size and int(np.abs(flat).max()) > MAX_ABS_VALUE:
        raise NoiseError(f"an exact statistic is beyond {MAX_ABS_VALUE:g} in size; secure noise is not drawn.")
    if flat.size == 0:
        return flat.reshape(array.shape)
    measurement = _measurement(mechanism, scale)
    with _LOCK:  # one draw at a time through the library
        noisy = measurement(flat.tolist())
    return np.asarray(noisy, dtype=np.int64).reshape(array.shape)


def noise_event(*, mechanism: str, scale: float, sensitivity: int = 1) -> dpa.DpEvent:
    """The DpEvent of one ``add_secure_noise`` release whose integer values one patient
    changes by at most ``sensitivity`` (L2 for Gaussian, L1 for Laplace): exactly the
    mechanism that ran, never its continuous cousin."""
    if mechanism not in MECHANISMS:
        raise NoiseError(f"secure noise is 'gaussian' or 'laplace'; got {mechanism!r}.")
    scale = check_scale(name=f"the {mechanism} noise scale", scale=scale)
    try:
        if mechanism == "laplace":
            return discrete_laplace_event(scale=scale, sensitivity=sensitivity)
        return discrete_gaussian_event(sigma=scale, sensitivity=sensitivity)
    except InvalidMechanism as err:
        raise NoiseError(str(err)) from None


def secure_noisy_counts(
    counts: np.ndarray, *, noise_multiplier: float, mechanism: str = "gaussian"
) -> tuple[np.ndarray, dpa.DpEvent]:
    """Noisy counts and the exact DpEvent of their release, for callers outside a query
    (a study's DP evaluation metrics: ``federation/analytics/count_release.py``).

    ``counts``: whole numbers such that one patient changes one of them by at most 1
    (a patient is counted in one cell: per-class counts, correct predictions at one
    threshold). Counts that one patient changes several of at once (a count per
    threshold of a grid: one patient is in each cell up to its score) are several
    releases: call once per sensitivity-1 vector, and compose the events.
    ``noise_multiplier``: the discrete Gaussian's sigma, or the discrete Laplace's
    scale, in counts. Returns (noisy int64 counts, event) where event is
    ``DiscreteGaussianDpEvent(sigma=noise_multiplier, sensitivity=1)`` or
    ``DiscreteLaplaceDpEvent`` of that scale: reserve that event in the site's ledger
    BEFORE calling this, and commit it after.
    """
    event = noise_event(mechanism=mechanism, scale=noise_multiplier, sensitivity=1)
    return add_secure_noise(np.asarray(counts), mechanism=mechanism, scale=noise_multiplier), event


@lru_cache(maxsize=64)
def _measurement(mechanism: str, scale: float):
    # Imported here: OpenDP's import costs about 0.5 s, paid only by a process that
    # releases something (a node's ClientApp process is started afresh for every message).
    from opendp.domains import atom_domain, vector_domain
    from opendp.measurements import make_gaussian, make_laplace
    from opendp.metrics import l1_distance, l2_distance
    from opendp.mod import enable_features

    enable_features("contrib")  # see the module docstring: why, and why only here
    domain = vector_domain(atom_domain(T="i64"))
    if mechanism == "gaussian":
        return make_gaussian(domain, l2_distance(T="i64"), scale=scale)
    return make_laplace(domain, l1_distance(T="i64"), scale=scale)
