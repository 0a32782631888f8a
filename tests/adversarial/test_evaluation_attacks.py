"""A curious coordinator reads patients through evaluation. Issue 13's attack: pick the
held-out split (a tiny ``test_fraction``, a known ``split_seed``) so that one patient is
held out, then send evaluate messages and read that patient's outcome from the exact
metrics, for free. Every variant must now be refused, or cost its honest epsilon."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _adversary import PROJECT, leaks, refusal, reply_text, set_key, study_message

from federation.analytics.count_release import evaluation_event
from federation.training.evaluation import evaluation_counts
from privacy_budgets import accounting
from privacy_budgets.mechanisms import event_from_json, gaussian_event


def _entry_kinds(site) -> list[str]:
    return [e.kind for e in site.ledger_entries()]


def test_the_issues_attack_a_one_row_held_out_split_read_ten_times_is_refused(site):
    """Ten evaluate messages with test_fraction 1e-4 and a chosen split_seed (issue 13):
    each is refused before any data is read, and the ledger records nothing."""
    before = _entry_kinds(site)
    for seed in range(10):
        reply = site.ask(
            study_message(
                "evaluate",
                extra={"spec-test-fraction": 1e-4, "spec-split-seed": seed, "spec-split-column": ""},
            )
        )
        refused = refusal(reply)
        assert refused["kind"] == "invalid"
        assert "test_fraction (the site's [training] holdout_fraction)" in refused["reason"]
        assert "evaluation" not in reply.content and not leaks(reply_text(reply), site=site)
    assert _entry_kinds(site) == before
    assert [e["decision"]["refusal_kind"] for e in site.audit()] == ["invalid"] * 10


def test_a_site_whose_own_split_is_too_small_evaluates_nothing(site):
    """Even a site's IT cannot be talked into a one-row held-out split: the policy's
    minimum (at least min_cell_size) refuses it, without naming the row count."""
    set_key(site.toml, "holdout_fraction", "0.001")
    before = _entry_kinds(site)
    refused = refusal(site.ask(study_message("evaluate")))
    assert refused["kind"] == "policy" and "held-out split is smaller than its minimum" in refused["reason"]
    assert not any(ch.isdigit() for ch in refused["reason"])  # no row count leaves
    assert _entry_kinds(site) == before


def test_evaluating_the_same_round_again_is_refused_and_each_evaluation_costs_its_epsilon(site):
    """Ten evaluations of one round: the first is charged (discrete Gaussians on the
    noisy counts and the loss sum, at the noise the site's plan set), the other nine
    are refused."""
    replies = [site.ask(study_message("evaluate", server_round=1)) for _ in range(10)]
    assert "evaluation" in replies[0].content
    for reply in replies[1:]:
        refused = refusal(reply)
        assert refused["kind"] == "invalid" and "was already evaluated at this site" in refused["reason"]
    commits = [e for e in site.ledger_entries() if e.kind == "commit"]
    assert len(commits) == 1
    event = event_from_json(commits[0].mechanism)
    noise = float(replies[0].content["site"]["noise-multiplier"])
    assert event == evaluation_event(noise_multiplier=noise)
    assert commits[0].epsilon == pytest.approx(accounting.epsilon(events=[event], delta=1e-5), rel=1e-6)
    # what came back is noisy counts, at the noise that was charged
    sent = json.loads(str(replies[0].content["evaluation"]["evaluation"]))
    assert sent["noise_std"] == pytest.approx(noise * np.sqrt(2))
    cells = np.array([*sent["negatives"], *sent["positives"]])
    empty, _ = evaluation_counts(y_true=np.zeros(0), proba=np.zeros(0))
    assert cells.shape == empty.shape and np.allclose(cells, np.round(cells))  # noise on the integers


def test_ten_evaluations_of_ten_rounds_cost_their_honest_epsilon_and_stay_within_the_target(site):
    """The coordinator asks for every round it planned: each charged, all within the
    study's target (the plan set aside the evaluation share), none exact."""
    for server_round in range(1, 11):
        assert "evaluation" in site.ask(study_message("evaluate", rounds=10, server_round=server_round)).content
    commits = [e for e in site.ledger_entries() if e.kind == "commit"]
    assert len(commits) == 10 and all(e.epsilon > 0 for e in commits)
    assert site.spent() <= 1.0  # the planned evaluations alone cost their share of the target
    assert 0 < site.spent() <= 0.2 + 1e-6  # evaluation_share 0.2 of the room, with the row count's part unspent
    refused = refusal(site.ask(study_message("evaluate", rounds=10, server_round=11)))
    assert refused["kind"] == "invalid" and "beyond the 10 rounds of this run" in refused["reason"]


def test_evaluation_is_refused_when_the_project_cannot_pay_and_says_nothing_of_the_data(site):
    """With the allocation spent (issue 13: evaluation was still served, exactly, for
    free), evaluation is a budget refusal in the project's own numbers."""
    from privacy_budgets import Ledger

    config = site.config.site_config()
    with Ledger.open(config.ledger_path, site_id=config.site_id) as ledger:
        ledger.commit(
            ledger.reserve(
                dataset=config.dataset,
                project=PROJECT,
                event=gaussian_event(noise_multiplier=1.5),  # epsilon 2.75 of the allocation of 3
                actor="earlier",
                purpose="spends most of the project's allocation",
            )
        )
    before = _entry_kinds(site)
    reply = site.ask(study_message("evaluate", target_epsilon=30.0, rounds=1))  # beyond the allocation
    refused = refusal(reply)
    assert refused["kind"] == "budget" and f"project '{PROJECT}'" in refused["reason"]
    assert "10" not in refused["reason"]  # the dataset's cap of 10 stays at the site
    assert "other-study" not in refused["reason"] and not leaks(reply_text(reply), site=site)
    assert _entry_kinds(site) == before


def test_the_outcome_cannot_be_smuggled_in_as_a_feature(site):
    """An encoder whose features hold the outcome itself (or a column the site excludes)."""
    from dataclasses import replace

    from _adversary import ENCODER

    from federation.training.features import FeatureSpec

    with_target = replace(ENCODER, features=(*ENCODER.features, FeatureSpec("cardiac_event", "binary")))
    refused = refusal(site.ask(study_message("evaluate", encoder=with_target)))
    assert refused["kind"] == "invalid" and "does not allow column 'cardiac_event' as a feature" in refused["reason"]
    set_key(site.toml, "excluded_columns", '["bmi"]')
    refused = refusal(site.ask(study_message("evaluate")))
    assert refused["kind"] == "invalid" and "does not allow column 'bmi' as a feature" in refused["reason"]


def test_another_outcome_than_the_site_allows_is_refused(site):
    """A study predicting a column the site does not offer as an outcome."""
    from dataclasses import replace

    from _adversary import ENCODER

    as_target = replace(ENCODER, target="diabetes", features=tuple(f for f in ENCODER.features if f.name != "diabetes"))
    refused = refusal(site.ask(study_message("evaluate", encoder=as_target)))
    assert refused["kind"] == "invalid"
    assert "does not allow 'diabetes' as a study's outcome; it allows cardiac_event" in refused["reason"]
    set_key(site.toml, "allowed_targets", '["diabetes"]')
    assert "evaluation" in site.ask(study_message("evaluate", encoder=as_target)).content


def test_no_release_without_noise_unless_the_site_opts_in_and_then_bounded(site):
    """Default policy: an evaluation and a training round leave no uncovered entry. With
    uncovered_releases = 1: exactly one exact number goes, recorded as uncovered."""
    assert "evaluation" in site.ask(study_message("evaluate")).content
    assert "uncovered" not in _entry_kinds(site)
    set_key(site.toml, "uncovered_releases", "1")
    first = site.ask(study_message("evaluate", run_id="run-2"))
    second = site.ask(study_message("evaluate", run_id="run-2", server_round=2))
    assert "exact-metrics" in first.content["evaluation"] and "exact-metrics" not in second.content["evaluation"]
    uncovered = [e for e in site.ledger_entries() if e.kind == "uncovered"]
    assert len(uncovered) == 1 and uncovered[0].run_id == "run-2"
    assert "opt-in: uncovered_releases" in uncovered[0].details["what"]
    kinds = [r["kind"] for r in json.loads(str(first.content["site"]["receipts"]))]
    assert kinds == ["commit", "uncovered"]


def test_the_notebook_api_refuses_a_chosen_split_before_anything_runs(tmp_path):
    """``Workbench.simulate(...).train(test_fraction=..., split_column=...)``: the split is
    each hospital's; the call fails at once, naming the site's key (no engine started)."""
    from federation.protocol.spec import SiteOwnedParameter
    from workbench import Workbench

    wb = Workbench.simulate(sites=2, rows=200, workdir=tmp_path)
    with pytest.raises(
        SiteOwnedParameter, match=r"may not set test_fraction \(the site's \[training\] holdout_fraction\)"
    ):
        wb.train(target_epsilon=1.0, rounds=2, project="attack", test_fraction=1e-4, split_seed=3)
    with pytest.raises(TypeError, match=r"split_column \(the site's \[training\] split_column\)"):
        wb.train(target_epsilon=1.0, rounds=2, project="attack", split_column="age")
    with pytest.raises(SiteOwnedParameter, match="each site chooses its own held-out split"):
        wb.plan_training(target_epsilon=1.0, rounds=2, test_fraction=0.5)
    for site in wb.site_configs():  # nothing was allocated, reserved or charged
        from privacy_budgets import Ledger

        with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger:
            assert [e.kind for e in ledger.entries()] == ["genesis", "board", "set_cap"]
