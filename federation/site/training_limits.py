"""What a training, evaluation or range request may ask of this site: checked before
any data is read and before any privacy loss is computed.

A coordinator picks many sizes (rounds, epochs, batch size, model width, clipping
norm, learning rate) and the study's outcome and features. Each is held to the site's
own policy (node.toml [training]; defaults in node_keys.py). A request outside them is
an ``InvalidRequest`` whose text states the rule, the value sent and the fix: built
from the request and the policy only, so it is sent to the requester as it is.

The held-out split is not a request's to choose at all (``protocol.spec.SITE_OWNED``);
the split the site's policy gives is checked here too, once the data is read, against
the site's minimum sizes (``check_split``: its refusal names no row count).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import torch
from flwr.app import ArrayRecord, Message

from federation.data.dictionary import DataDictionary
from federation.errors import InvalidRequest, PolicyRefused
from federation.protocol.spec import SiteOwnedParameter, SpecError, TrainingSpec
from federation.training.features import FeatureEncoder, SiteArrays
from federation.training.models import build_model

_MAX_COLUMNS = 500  # columns one range query may name


@dataclass(frozen=True)
class TrainingRequest:
    """A train or evaluate message as the site reads it (nothing of the data yet)."""

    spec: TrainingSpec
    encoder: FeatureEncoder
    server_round: int
    config: Any


def _invalid(text: str) -> InvalidRequest:
    return InvalidRequest(text, public=text)


def read_training_request(*, msg: Message, what: str) -> TrainingRequest:
    """The spec, the feature encoder and the round of a train/evaluate message, or an
    InvalidRequest saying what is wrong with the message (never with the data)."""
    if "config" not in msg.content:
        raise _invalid(f"a {what} request carries a 'config' record; this one has none.")
    config = msg.content["config"]
    try:
        server_round = config["server-round"]
    except KeyError:
        raise _invalid(f"a {what} request names its round (server-round); this one does not.") from None
    if isinstance(server_round, bool) or not isinstance(server_round, int) or server_round < 1:
        raise _invalid(f"server-round must be a whole number of at least 1; got {server_round!r}.")
    try:
        spec = TrainingSpec.from_config(config)
    except (SpecError, SiteOwnedParameter) as err:
        raise _invalid(f"malformed {what} request: {err}") from None
    except TypeError as err:  # a value of the wrong type where the spec compares it
        raise _invalid(f"malformed {what} request: a parameter has the wrong type ({err}).") from None
    try:
        encoder = FeatureEncoder.from_json(str(config["feature-encoder"]))
    except KeyError:
        raise _invalid(f"a {what} request carries the study's feature encoder; this one does not.") from None
    except (ValueError, TypeError, AttributeError) as err:
        raise _invalid(
            f"malformed {what} request: the feature encoder cannot be read ({type(err).__name__})."
        ) from None
    if server_round > spec.rounds:
        raise _invalid(
            f"round {server_round} is beyond the {spec.rounds} rounds of this run; a run plans its noise for "
            "its rounds once. Fix: start a new run."
        )
    return TrainingRequest(spec=spec, encoder=encoder, server_round=server_round, config=config)


def _within(name: str, value: float, bounds: tuple[float, float], key: str) -> None:
    low, high = bounds
    if not low <= value <= high:
        raise _invalid(
            f"{name} {value!r} is outside this site's range [{low:g}, {high:g}] ([training] {key} in its "
            f"node.toml). Fix: ask for {name} between {low:g} and {high:g}."
        )


def _at_most(name: str, value: int, most: int, key: str) -> None:
    if value > most:
        raise _invalid(
            f"{name} {value!r} is above this site's most of {most} ([training] {key} in its node.toml). "
            f"Fix: ask for {name} of at most {most}."
        )


def check_sizes(*, spec: TrainingSpec, policy: Any) -> None:
    """Every size of ``spec`` within the site's limits."""
    _at_most("rounds", spec.rounds, policy.max_rounds, "max_rounds")
    _at_most("local_epochs", spec.local_epochs, policy.max_local_epochs, "max_local_epochs")
    if spec.model == "mlp":
        _at_most("hidden", spec.hidden, policy.max_hidden, "max_hidden")
    _within("batch_size", spec.batch_size, policy.batch_size_range, "batch_size_range")
    _within("max_grad_norm", spec.max_grad_norm, policy.max_grad_norm_range, "max_grad_norm_range")
    _within("learning_rate", spec.learning_rate, policy.learning_rate_range, "learning_rate_range")


def allowed_targets(*, policy: Any, own: DataDictionary | None) -> tuple[str, ...]:
    """The outcomes a study may predict here: the policy's list, else the site's own
    dictionary's target; never an excluded column."""
    if policy.allowed_targets is not None:
        targets = tuple(policy.allowed_targets)
    elif own is not None and own.target is not None:
        targets = (own.target,)
    else:
        targets = ()
    return tuple(t for t in targets if t not in policy.excluded_columns)


def check_columns(*, encoder: FeatureEncoder, policy: Any, own: DataDictionary | None) -> None:
    """The study's outcome and features are ones this site allows.

    ``own`` is the site's own data dictionary (None when it has none: then the policy
    must list its allowed targets, and features are held to its excluded columns).
    A feature must be a column the dictionary offers as a feature, with at most the
    dictionary's categories (a coordinator cannot widen the model by inventing them).
    """
    targets = allowed_targets(policy=policy, own=own)
    if encoder.target not in targets:
        allowed = ", ".join(targets) if targets else "none (the site lists them in [training] allowed_targets)"
        raise _invalid(
            f"this site does not allow {encoder.target!r} as a study's outcome; it allows {allowed}. "
            "Fix: predict an allowed outcome, or ask the site's IT to allow this one."
        )
    excluded = set(policy.excluded_columns) | {encoder.target}
    if policy.split_column:
        excluded.add(policy.split_column)
    offered = set(own.feature_columns) if own is not None else None
    for feature in encoder.features:
        if feature.name in excluded or (offered is not None and feature.name not in offered):
            raise _invalid(
                f"this site does not allow column {feature.name!r} as a feature (its data dictionary's "
                "features, less [training] excluded_columns and the outcome). Fix: leave it out."
            )
        if feature.kind == "categorical":
            column = own.column(feature.name) if own is not None else None
            known = set(column.categories or ()) if column is not None else set()
            extra = [c for c in feature.categories or () if c not in known]
            if extra or len(feature.categories or ()) > len(known):
                raise _invalid(
                    f"feature {feature.name!r} names categories its data dictionary does not have. Fix: use "
                    "the categories of the public data dictionary."
                )


def check_model(*, msg: Message, spec: TrainingSpec, encoder: FeatureEncoder) -> dict[str, torch.Tensor]:
    """The model the message carries has exactly the names and shapes of the study's
    model (built here from the spec's bounded sizes); returns its state dict."""
    if "arrays" not in msg.content or not isinstance(msg.content["arrays"], ArrayRecord):
        raise _invalid("a train or evaluate request carries the global model ('arrays'); this one does not.")
    expected = {
        name: tuple(t.shape)
        for name, t in build_model(name=spec.model, n_features=encoder.n_features, hidden=spec.hidden)
        .state_dict()
        .items()
    }
    record = msg.content["arrays"]
    got = {name: tuple(record[name].shape) for name in record.keys()}
    if got != expected:
        raise _invalid(
            f"the model sent does not have the shapes of a {spec.model} of width {spec.hidden} on "
            f"{encoder.n_features} inputs: expected {expected}, got {got}. Fix: send the study's model."
        )
    try:
        state = record.to_torch_state_dict()
    except Exception:  # an array that cannot be read as a tensor
        raise _invalid("the model sent cannot be read as tensors. Fix: send the study's model.") from None
    for name, tensor in state.items():
        if not torch.is_floating_point(tensor) or not bool(torch.isfinite(tensor).all()):
            raise _invalid(f"the model sent holds non-finite or non-float values in {name!r}. Fix: send real weights.")
    return state


def check_split(*, arrays: SiteArrays, policy: Any) -> None:
    """The site's own split leaves enough rows on both sides (no row count is named:
    the refusal may reach the coordinator)."""
    if len(arrays.y_train) < policy.min_cell_size:
        raise PolicyRefused(
            f"the training rows of this site ({len(arrays.y_train)}) are fewer than its min_cell_size "
            f"({policy.min_cell_size}).",
            public="this site's training split is smaller than its minimum cell size: it trains no model.",
        )
    if len(arrays.y_test) < policy.min_holdout_rows:
        raise PolicyRefused(
            f"the held-out rows of this site ({len(arrays.y_test)}) are fewer than its min_holdout_rows "
            f"({policy.min_holdout_rows}).",
            public=(
                "this site's held-out split is smaller than its minimum ([training] min_holdout_rows): it "
                "evaluates no model on it. Ask the site's IT."
            ),
        )


def check_range_request(*, columns: Any, noise_std: Any, policy: Any) -> list[str]:
    """A range query's columns and noise within the site's limits; returns the columns."""
    if not isinstance(columns, list) or not columns or not all(isinstance(c, str) and c for c in columns):
        raise _invalid("a range query names a non-empty list of columns. Fix: list the numeric columns to range.")
    if len(set(columns)) != len(columns) or len(columns) > _MAX_COLUMNS:
        raise _invalid(f"a range query names each column once, at most {_MAX_COLUMNS}. Fix: list them once.")
    excluded = [c for c in columns if c in policy.excluded_columns or c == policy.split_column]
    if excluded:
        raise _invalid(f"this site does not allow a range of {', '.join(map(repr, excluded))}. Fix: leave it out.")
    if isinstance(noise_std, bool) or not isinstance(noise_std, (int, float)) or not math.isfinite(noise_std):
        raise _invalid(f"noise-std must be a positive finite number; got {noise_std!r}.")
    multiplier = noise_std / math.sqrt(len(columns)) if noise_std > 0 else 0.0
    low, high = policy.noise_multiplier_range
    if not low <= multiplier <= high:
        raise _invalid(
            f"a range query's noise (noise-std {noise_std:g} over {len(columns)} columns, a noise multiplier of "
            f"{multiplier:.4g}) is outside this site's range [{low:g}, {high:g}] ([training] "
            "noise_multiplier_range). Fix: ask with noise in that range."
        )
    return list(columns)


def read_columns(config: Any) -> Any:
    try:
        return json.loads(str(config["columns"]))
    except (KeyError, ValueError):
        raise _invalid("a range query carries its columns as a JSON list ('columns').") from None
