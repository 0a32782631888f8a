"""A local-tuning request as it travels: the study's spec, its feature encoder, the
candidates and the distribution of the number of runs, in one message config.

The coordinator sends it to every site as a Flower query message whose ``query-kind``
is ``tune`` (task kind ``tune``, never admitted by a policy's ``query:*``: it trains
models). Every value here is the requester's choice; the site holds each one to its
own policy (federation/site/local_tuning.py) before any data is read. A researcher
signs ``tuning_hash`` of the request (``authorization.sign_local_tuning``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

CANDIDATES_KEY = "tune-candidates"  # JSON list of dicts of hyperparameters
MEAN_KEY = "tune-mean"  # the mean of the random number of runs
SHAPE_KEY = "tune-shape"  # "geometric" or "poisson"
ENCODER_KEY = "feature-encoder"
MAX_CANDIDATES_TEXT = 20_000  # characters: a longer candidates text is refused unread

# What the site answers (a "local-tuning" record beside the "site" record).
REPLY_KEY = "local-tuning"


def tuning_config(
    *, spec_config: dict[str, Any], encoder_json: str, candidates: list[dict[str, Any]], mean: float, shape: str
) -> dict[str, Any]:
    """The message config of one local-tuning request."""
    return {
        **spec_config,
        ENCODER_KEY: encoder_json,
        CANDIDATES_KEY: json.dumps(candidates, sort_keys=True),
        MEAN_KEY: float(mean),
        SHAPE_KEY: str(shape),
    }


def tuning_hash(config: dict[str, Any]) -> str:
    """sha256 of what a researcher signs beyond the spec and the encoder: the
    candidates, the mean and the shape, exactly as the message carries them."""
    signed = {key: config.get(key) for key in (CANDIDATES_KEY, MEAN_KEY, SHAPE_KEY)}
    return hashlib.sha256(json.dumps(signed, sort_keys=True, default=str).encode()).hexdigest()
