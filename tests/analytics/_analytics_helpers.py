"""Helpers of the analytics tests (a module of its own: conftest names are not unique)."""

from __future__ import annotations

import time

import numpy as np
from flwr.app import ConfigRecord, Message, MessageType, Metadata, RecordDict

from datasets_synthetic import SYNTHETIC_HOSPITALS_DICTIONARY
from federation.analytics.cells import exact_cells
from federation.analytics.disclosure import DisclosureRules
from federation.analytics.estimates import estimate
from federation.analytics.release import make_release

PROJECT = "explore"
DELTA = 1e-5


DEFAULT_RULES = DisclosureRules(min_cell_size=5)  # the site policy's default minimum


def released(query, frame, *, noise_multiplier, rng, rules=DEFAULT_RULES, site_id="s"):
    """The site's release of ``query`` on ``frame`` with a given generator (tests only:
    the site itself always draws fresh OS entropy)."""
    query = query.check(dictionary=SYNTHETIC_HOSPITALS_DICTIONARY)
    exact = exact_cells(query=query, frame=frame, dictionary=SYNTHETIC_HOSPITALS_DICTIONARY)
    return make_release(
        query=query, exact=exact, noise_multiplier=noise_multiplier, rules=rules, rng=rng, site_id=site_id
    )


def repeated_releases(query, frame, *, noise_multiplier, seed, repeats, site_id="s"):
    """``repeats`` independent releases of the same exact cells (the site's computation
    after the data is read), for coverage checks."""
    query = query.check(dictionary=SYNTHETIC_HOSPITALS_DICTIONARY)
    exact = exact_cells(query=query, frame=frame, dictionary=SYNTHETIC_HOSPITALS_DICTIONARY)
    rng = np.random.default_rng(seed)
    for _ in range(repeats):
        yield make_release(
            query=query,
            exact=exact,
            noise_multiplier=noise_multiplier,
            rules=DisclosureRules(min_cell_size=5),
            rng=rng,
            site_id=site_id,
        )


def exact_answer(query, frame, *, rules=DEFAULT_RULES):
    """The same computation without noise: what the intervals claim to cover."""
    release = released(query, frame, noise_multiplier=0.0, rng=np.random.default_rng(0), rules=rules)
    return estimate(query=query.check(dictionary=SYNTHETIC_HOSPITALS_DICTIONARY), release=release)


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
