"""A hostile coordinator sizes a training to exhaust or trick the site: a huge model, a
negative or huge learning rate, a batch of one, a thousand epochs, a million rounds, a
model of the wrong shape, a file-naming run id, round 1 replayed forever, a run
stretched beyond its plan. Each is refused with the rule, the value and the fix, before
the site reads its data or computes any privacy loss; an honest round costs exactly
the DP-SGD steps that ran and, once, its noisy row count."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _adversary import ENCODER, leaks, refusal, reply_text, set_key, spec, study_message
from flwr.app import ArrayRecord

from federation.analytics.count_release import count_event
from federation.analytics.ranges import range_event
from federation.coordinator.server_app import initial_arrays
from privacy_budgets import accounting
from privacy_budgets.mechanisms import composed_event, dpsgd_event, event_from_json


@pytest.fixture
def untouchable(monkeypatch):
    """Fail loudly if a handler reads the data or computes a plan (any PLD)."""

    def touched(*_, **__):
        raise AssertionError("the site read its data or computed a privacy loss for a request it must refuse")

    for module in ("training_task", "evaluation_task"):
        monkeypatch.setattr(f"federation.site.{module}.site_arrays", touched)
        monkeypatch.setattr(f"federation.site.{module}.site_plan", touched)


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"model": "mlp", "hidden": 1_000_000}, "hidden 1000000 is above this site's most of 512"),
        ({"learning_rate": 1e6}, "learning_rate 1000000.0 is outside this site's range [0.0001, 10]"),
        ({"batch_size": 1}, "batch_size 1 is outside this site's range [16, 4096]"),
        ({"local_epochs": 1000}, "local_epochs 1000 is above this site's most of 10"),
        ({"rounds": 1_000_000}, "rounds 1000000 is above this site's most of 100"),
        ({"max_grad_norm": 1e9}, "max_grad_norm 1000000000.0 is outside this site's range [0.01, 10]"),
    ],
)
@pytest.mark.parametrize("kind", ["train", "evaluate"])
def test_a_size_outside_the_sites_limits_is_refused_before_any_data_or_pld(site, untouchable, kind, overrides, words):
    before = len(site.ledger_entries())
    refused = refusal(site.ask(study_message(kind, **overrides)))
    assert refused["kind"] == "invalid" and words in refused["reason"] and "Fix: ask for" in refused["reason"]
    assert "[training]" in refused["reason"]  # the site's key that sets the limit
    assert len(site.ledger_entries()) == before


def test_a_site_may_set_its_own_limits(site, untouchable):
    set_key(site.toml, "max_hidden", "8")
    refused = refusal(site.ask(study_message("train", model="mlp", hidden=16)))
    assert "hidden 16 is above this site's most of 8 ([training] max_hidden" in refused["reason"]


@pytest.mark.parametrize(
    "raw, words",
    [
        ({"spec-learning-rate": -0.5}, "learning_rate must be a positive number; got -0.5"),
        ({"spec-run-id": "../../state/ledger"}, "run_id must be 1 to 64 letters, digits, '-' or '_'"),
        ({"spec-rounds": True}, "rounds must be a whole number >= 1; got True"),
        ({"server-round": 0}, "server-round must be a whole number of at least 1; got 0"),
        ({"spec-test-fraction": 0.0001}, "each site chooses its own held-out split"),
        ({"spec-split-column": "age"}, "split_column (the site's [training] split_column)"),
        ({"feature-encoder": "{not json"}, "the feature encoder cannot be read"),
    ],
)
def test_a_malformed_or_hostile_value_is_refused_before_any_data_or_pld(site, untouchable, raw, words):
    refused = refusal(site.ask(study_message("train", extra=raw)))
    assert refused["kind"] == "invalid" and words in refused["reason"]


def test_a_model_of_the_wrong_shape_or_with_poisoned_weights_is_refused(site, untouchable):
    wide = initial_arrays(spec=spec(model="mlp", hidden=64), encoder=ENCODER)  # an MLP sent as a logreg
    refused = refusal(site.ask(study_message("train", arrays=wide)))
    assert refused["kind"] == "invalid" and "the model sent does not have the shapes of a logreg" in refused["reason"]
    state = initial_arrays(spec=spec(), encoder=ENCODER).to_torch_state_dict()
    state["0.weight"] = torch.full_like(state["0.weight"], float("nan"))
    refused = refusal(site.ask(study_message("train", arrays=ArrayRecord(state))))
    assert "holds non-finite or non-float values in '0.weight'" in refused["reason"]
    huge = ArrayRecord({"0.weight": torch.zeros(1, 10**6), "0.bias": torch.zeros(1)})
    assert "does not have the shapes" in refusal(site.ask(study_message("evaluate", arrays=huge)))["reason"]


def test_an_honest_round_costs_the_steps_that_ran_and_once_the_noisy_row_count(site):
    first = site.ask(study_message("train"))
    assert "refusal" not in first.content, first.content.get("refusal")
    info = first.content["site"]
    commit = next(e for e in site.ledger_entries() if e.kind == "commit")
    expected = composed_event(
        [
            dpsgd_event(
                noise_multiplier=float(info["noise-multiplier"]),
                sampling_rate=float(info["sampling-rate"]),
                steps=int(info["steps"]),
            ),
            count_event(noise_multiplier=float(info["weight-noise"])),
        ]
    )
    assert event_from_json(commit.mechanism) == expected
    assert commit.epsilon == pytest.approx(accounting.epsilon(events=[expected], delta=1e-5), rel=1e-6)
    # sent: the model, the noisy weight, the steps and the project's own epsilon; no loss, no dataset total
    metrics = dict(first.content["metrics"])
    assert set(metrics) == {"num-examples", "steps", "epsilon-project"}
    assert "epsilon-dataset" not in reply_text(first) and not leaks(reply_text(first), site=site)
    n_train = len(site.frame) - round(len(site.frame) * 0.25)
    assert metrics["num-examples"] != n_train or float(info["weight-noise"]) > 0  # a noisy count, not the count
    # round 2 sends the same weight again, free: only DP-SGD steps are charged
    second = site.ask(study_message("train", server_round=2))
    assert dict(second.content["metrics"])["num-examples"] == metrics["num-examples"]
    commits = [e for e in site.ledger_entries() if e.kind == "commit"]
    assert "GaussianDpEvent" in commits[1].mechanism and '"ComposedDpEvent"' not in commits[1].mechanism
    # the ledger's receipts to the coordinator leave out the dataset's total
    receipts = json.loads(str(second.content["site"]["receipts"]))
    assert receipts[0]["dataset_epsilon_after"] is None and receipts[0]["project_epsilon_after"] > 0


def test_a_coordinator_replaying_round_one_forever_is_refused_and_charged_once(site):
    replies = [site.ask(study_message("train", server_round=1)) for _ in range(5)]
    assert "refusal" not in replies[0].content
    for reply in replies[1:]:
        refused = refusal(reply)
        assert refused["kind"] == "invalid" and "round 1 of run run-1 was already trained" in refused["reason"]
    assert sum(e.kind == "commit" for e in site.ledger_entries()) == 1


def test_a_run_cannot_be_stretched_beyond_the_sites_plan(site):
    assert "refusal" not in site.ask(study_message("train", rounds=2)).content
    before = len(site.ledger_entries())
    refused = refusal(site.ask(study_message("train", rounds=50, server_round=3)))
    assert refused["kind"] == "invalid" and "run run-1 was planned at this site for 2 rounds" in refused["reason"]
    refused = refusal(site.ask(study_message("train", rounds=2, batch_size=16, server_round=2)))
    assert "a later message of the run must repeat the parameters of the first" in refused["reason"]
    assert len(site.ledger_entries()) == before


def test_a_greedy_target_gets_no_less_noise_than_the_sites_floor(site):
    """target_epsilon 1000 with an allocation to match: the site calibrates to no less
    than its noise floor (it then spends less than the target), never to tiny noise."""
    from privacy_budgets import Ledger

    config = site.config.site_config()
    with Ledger.open(config.ledger_path, site_id=config.site_id) as ledger:
        ledger.set_cap(dataset=config.dataset, epsilon=5000.0, delta=1e-5, actor="IT", reason="greedy test")
        ledger.allocate(dataset=config.dataset, project="greedy", epsilon=2000.0, actor="board", reason="test")
    reply = site.ask(study_message("train", project="greedy", target_epsilon=1000.0))
    assert "refusal" not in reply.content, reply.content.get("refusal")
    assert float(reply.content["site"]["noise-multiplier"]) == pytest.approx(0.5)  # the policy's floor
    set_key(site.toml, "noise_multiplier_range", "[2.0, 50.0]")
    reply = site.ask(study_message("train", project="greedy", target_epsilon=1000.0, run_id="run-2"))
    assert float(reply.content["site"]["noise-multiplier"]) == pytest.approx(2.0)


def test_a_range_query_with_tiny_noise_or_an_excluded_column_is_refused_before_reading(site):
    from _adversary import message
    from flwr.app import MessageType

    def ranges(columns, noise):
        config = {**spec().to_config(), "query-kind": "ranges", "columns": json.dumps(columns)}
        return site.ask(message({**config, "noise-std": noise}, message_type=MessageType.QUERY))

    before = len(site.ledger_entries())
    refused = refusal(ranges(["age"], 1e-300))
    assert refused["kind"] == "invalid" and "outside this site's range [0.5, 100]" in refused["reason"]
    set_key(site.toml, "excluded_columns", '["bmi"]')
    assert "does not allow a range of 'bmi'" in refusal(ranges(["age", "bmi"], 5.0))["reason"]
    assert len(site.ledger_entries()) == before
    assert "ranges" in ranges(["age"], 5.0).content  # within limits: served and charged
    assert np.isclose(site.spent(), accounting.epsilon(events=[range_event(noise_std=5.0, n_columns=1)], delta=1e-5))
