"""Helpers of the analytics tests (a module of its own: conftest names are not unique)."""

from __future__ import annotations

import math
import time

import numpy as np
from flwr.app import ConfigRecord, Message, MessageType, Metadata, RecordDict

from datasets_synthetic import SYNTHETIC_HOSPITALS_DICTIONARY
from federation.analytics.cells import exact_cells
from federation.analytics.disclosure import DisclosureRules
from federation.analytics.estimates import estimate
from federation.analytics.noise import noise_multiplier as calibrated
from federation.analytics.noise import plan_noise
from federation.analytics.release import make_release

PROJECT = "explore"
DELTA = 1e-5


DEFAULT_RULES = DisclosureRules(min_cell_size=5)  # the site policy's default minimum


def seeded_sampler(rng: np.random.Generator):
    """The site's integer noise, drawn from a seeded numpy generator so that a test is
    reproducible (tests only: a site always draws from OpenDP's secure sampler). Exact
    discrete Laplace (a difference of two geometric draws) and discrete Gaussian
    (Canonne, Kamath and Steinke 2020, Algorithm 3: rejection from a discrete Laplace)."""

    def sample(values, *, mechanism, scale):
        values = np.asarray(values, dtype=np.int64)
        noise = (discrete_laplace if mechanism == "laplace" else discrete_gaussian)(rng, scale, values.shape)
        return values + noise

    return sample


def discrete_laplace(rng: np.random.Generator, scale: float, shape) -> np.ndarray:
    p = -math.expm1(-1.0 / scale)
    return (rng.geometric(p, size=shape) - rng.geometric(p, size=shape)).astype(np.int64)


def discrete_gaussian(rng: np.random.Generator, sigma: float, shape) -> np.ndarray:
    t = math.floor(sigma) + 1
    out = np.zeros(int(np.prod(shape)), dtype=np.int64)
    todo = np.arange(out.size)
    while todo.size:
        y = discrete_laplace(rng, t, todo.size)
        accept = rng.random(todo.size) < np.exp(-((np.abs(y) - sigma**2 / t) ** 2) / (2 * sigma**2))
        out[todo[accept]] = y[accept]
        todo = todo[~accept]
    return out.reshape(shape)


def no_noise(values, *, mechanism, scale):
    """The same computation without noise (what the intervals claim to cover)."""
    return np.asarray(values, dtype=np.int64)


def _plan(query, noise_multiplier):
    return plan_noise(query=query, noise_multiplier=noise_multiplier)


def released(query, frame, *, noise_multiplier, rng, rules=DEFAULT_RULES, site_id="s", sampler=None):
    """The site's release of ``query`` on ``frame`` with a given generator (tests only:
    the site itself always draws from the secure sampler)."""
    query = query.check(dictionary=SYNTHETIC_HOSPITALS_DICTIONARY)
    plan = _plan(query, noise_multiplier)
    exact = exact_cells(query=query, frame=frame, dictionary=SYNTHETIC_HOSPITALS_DICTIONARY, grids=plan.statistics)
    return make_release(
        query=query, exact=exact, plan=plan, rules=rules, site_id=site_id, sampler=sampler or seeded_sampler(rng)
    )


def repeated_releases(query, frame, *, noise_multiplier, seed, repeats, site_id="s"):
    """``repeats`` independent releases of the same exact cells (the site's computation
    after the data is read), for coverage checks."""
    query = query.check(dictionary=SYNTHETIC_HOSPITALS_DICTIONARY)
    plan = _plan(query, noise_multiplier)
    exact = exact_cells(query=query, frame=frame, dictionary=SYNTHETIC_HOSPITALS_DICTIONARY, grids=plan.statistics)
    sampler = seeded_sampler(np.random.default_rng(seed))
    for _ in range(repeats):
        yield make_release(
            query=query,
            exact=exact,
            plan=plan,
            rules=DisclosureRules(min_cell_size=5),
            site_id=site_id,
            sampler=sampler,
        )


def exact_answer(query, frame, *, rules=DEFAULT_RULES, noise_multiplier=None):
    """The same computation without noise, on the same grid as the releases it is
    compared with (those of ``noise_multiplier``; by default the query's own)."""
    checked = query.check(dictionary=SYNTHETIC_HOSPITALS_DICTIONARY)
    if noise_multiplier is None:
        noise_multiplier = calibrated(query=checked, delta=DELTA)
    release = released(query, frame, noise_multiplier=noise_multiplier, rng=None, rules=rules, sampler=no_noise)
    return estimate(query=checked, release=release)


def received(config: dict) -> Message:
    """A query message as a site receives it from the SuperLink (a real Flower Message,
    with the metadata the SuperLink would have set)."""
    metadata = Metadata(
        run_id=1,
        message_id="m-1",
        src_node_id=0,
        dst_node_id=7,
        reply_to_message_id="",
        group_id="",
        created_at=time.time(),
        ttl=600.0,
        message_type=MessageType.QUERY,
    )
    return Message(content=RecordDict({"config": ConfigRecord(config)}), metadata=metadata)
