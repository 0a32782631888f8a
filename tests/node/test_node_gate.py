"""The policy gate behind serve(), with real Flower messages, a real ledger and a real
audit log: a paused node refuses, a policy is enforced before any data is read, every
request leaves one audit line with the epsilon it charged, and a handler's failure is
a refusal, never a crash."""

from __future__ import annotations

import json
import re

import pytest
from _node_helpers import PROJECT, received, set_key
from flwr.app import MessageType

from datasets_synthetic import SYNTHETIC_HOSPITALS_DICTIONARY
from federation.analytics.query import Query
from federation.protocol.query_request import QueryRequest
from federation.site.audit import audit_path, recent_entries, verify_audit
from federation.site.pause import pause_node, resume_node
from federation.site.tasks import serve
from privacy_budgets import Ledger


def _count(epsilon=0.2, project=PROJECT, run_id=None, **more) -> dict:
    return QueryRequest(query=Query(kind="count", epsilon=epsilon, **more), project=project, run_id=run_id).to_config()


def _ask(node, config: dict, kind: str = "query:count", **message):
    return serve(kind=kind, msg=received(config, **message), site=node.site, node_toml=node.toml)


def _requests(node) -> list[dict]:
    return [e for e in reversed(recent_entries(path=audit_path(node.config.state_dir)))]


def _ledger_kinds(node) -> list[str]:
    site = node.site
    with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger:
        return [e.kind for e in ledger.entries()]


def _train_message(*, server_round: int = 1):
    from federation.coordinator.server_app import initial_arrays
    from federation.protocol.spec import TrainingSpec
    from federation.training.features import FeatureEncoder

    spec = TrainingSpec(
        project=PROJECT,
        target_epsilon=1.0,
        rounds=2,
        model="logreg",
        batch_size=32,
        coordinator="coordinator-eu",
        run_id="run-7",
    )
    encoder = FeatureEncoder.from_dictionary(dictionary=SYNTHETIC_HOSPITALS_DICTIONARY)
    config = {**spec.to_config(), "server-round": server_round, "feature-encoder": encoder.to_json()}
    return received(config, message_type=MessageType.TRAIN, arrays=initial_arrays(spec=spec, encoder=encoder))


def test_a_paused_node_refuses_a_query_records_it_and_serves_again_once_resumed(node):
    pause_node(state_dir=node.config.state_dir, reason="ethics review of project access", who="it-officer")
    before = _ledger_kinds(node)
    reply = _ask(node, _count())
    refusal = reply.content["refusal"]
    assert refusal["kind"] == "paused" and refusal["site-id"] == "hospital-a"
    assert refusal["reason"] == "site hospital-a is paused by its IT and serves no task until it is resumed."
    assert "ethics review" not in refusal["reason"] and "it-officer" not in refusal["reason"]  # the site's business
    assert _ledger_kinds(node) == before  # nothing reserved, nothing read

    request, alert = _requests(node)[-2:]
    assert request["kind"] == "request" and request["task"] == "query:count" and request["project"] == PROJECT
    decision = request["decision"]
    assert (decision["outcome"], decision["refusal_kind"], decision["public"]) == (
        "refused",
        "paused",
        refusal["reason"],
    )
    assert decision["incident"] == refusal["incident"] and len(refusal["incident"]) == 12
    assert (
        "paused since" in decision["reason"] and "by it-officer: ethics review of project access" in decision["reason"]
    )
    assert "workbench node resume" in decision["reason"]
    assert request["epsilon_charged"] == 0.0 and request["coordinator"]["src_node_id"] == 1
    assert request["message_id"] == "m-1" and json.loads(request["parameters"]["query"])["kind"] == "count"
    assert alert["kind"] == "alert" and alert["alert"] == "paused"

    resume_node(state_dir=node.config.state_dir)
    served = _ask(node, _count(), message_id="m-2")
    assert "refusal" not in served.content
    receipts = json.loads(served.content["site"]["receipts"])
    last = _requests(node)[-1]
    assert last["decision"]["outcome"] == "served" and last["message_id"] == "m-2"
    assert last["epsilon_charged"] == pytest.approx(receipts[0]["epsilon"]) and last["epsilon_charged"] > 0
    assert last["ledger_entries"] == [r["seq"] for r in receipts]
    assert verify_audit(audit_path(node.config.state_dir)).ok


def test_a_paused_node_refuses_training_before_the_handler_runs(node):
    pause_node(state_dir=node.config.state_dir, reason="incident 4711")
    # Only a spec: had the handler run, the missing model and encoder would have failed it.
    from federation.protocol.spec import TrainingSpec

    spec = TrainingSpec(project=PROJECT, target_epsilon=1.0, rounds=2, coordinator="coordinator-eu")
    reply = _ask(node, {**spec.to_config(), "server-round": 1}, kind="train", message_type=MessageType.TRAIN)
    assert reply.content["refusal"]["kind"] == "paused" and "incident 4711" not in reply.content["refusal"]["reason"]
    request = _requests(node)[-2]
    assert "incident 4711" in request["decision"]["reason"]
    assert request["task"] == "train" and request["coordinator"]["claimed"] == "coordinator-eu"
    assert request["run_id"] == spec.run_id


def test_training_through_the_door_charges_what_ran_and_the_log_says_so(node):
    reply = serve(kind="train", msg=_train_message(), site=node.site, node_toml=node.toml)
    assert "refusal" not in reply.content, reply.content.get("refusal")
    receipts = json.loads(reply.content["site"]["receipts"])
    last = _requests(node)[-1]
    assert last["task"] == "train" and last["decision"]["outcome"] == "served" and last["run_id"] == "run-7"
    assert last["epsilon_charged"] == pytest.approx(receipts[0]["epsilon"]) and last["epsilon_charged"] > 0
    assert last["parameters"]["feature-encoder"].startswith("<")  # long values are kept as their hash
    assert last["parameters"]["server-round"] == 1


def test_a_failing_handler_is_an_error_refusal_and_still_logged(node):
    node.config.data_path.unlink()  # the data file vanished under a running node
    reply = serve(kind="train", msg=_train_message(), site=node.site, node_toml=node.toml)
    refusal = reply.content["refusal"]
    assert refusal["kind"] == "error"
    assert refusal["reason"] == "the site could not complete this request; nothing was released."
    request, alert = _requests(node)[-2:]
    # The alert names the node's own trouble, not a refusal by policy or budget.
    assert request["decision"]["refusal_kind"] == "error" and alert["alert"] == "fault"
    # the story (with the site's path) stays in its audit log, under the incident id;
    # said as it is: the data file is missing (not "no data dictionary"), with the fix
    story = request["decision"]["reason"]
    assert story.startswith("site hospital-a's data file ")
    assert f"data file {node.config.data_path} is missing ([site] data in its node.toml)" in story
    assert "workbench node check" in story and "dictionary" not in story
    assert request["decision"]["incident"] == refusal["incident"]


def test_a_training_cohort_below_the_site_minimum_is_refused(node):
    set_key(node.toml, "min_cell_size", "100000")
    set_key(node.toml, "min_holdout_rows", "100000")  # never below min_cell_size
    reply = serve(kind="train", msg=_train_message(), site=node.site, node_toml=node.toml)
    assert reply.content["refusal"]["kind"] == "policy"
    assert reply.content["refusal"]["reason"] == (
        "this site's training split is smaller than its minimum cell size: it trains no model."
    )
    detail = _requests(node)[-2]["decision"]["reason"]
    assert "are fewer than its min_cell_size (100000)" in detail


def test_a_task_the_policy_does_not_allow_is_refused_before_any_data_is_read(node):
    set_key(node.toml, "allowed_tasks", '["train", "evaluate", "query:count"]')
    before = _ledger_kinds(node)
    request = QueryRequest(query=Query(kind="mean", column="age", bounds=(18, 95), epsilon=0.2), project=PROJECT)
    reply = _ask(node, request.to_config(), kind="query:mean")
    assert reply.content["refusal"]["kind"] == "policy"
    assert reply.content["refusal"]["reason"] == (
        "site hospital-a does not allow query:mean tasks; its policy allows train, evaluate, query:count. "
        "Ask the site whether the study may run it."
    )
    assert _ledger_kinds(node) == before
    assert "refusal" not in _ask(node, _count()).content
    assert [e.get("alert") for e in _requests(node) if e["kind"] == "alert"] == ["refused"]


def test_a_project_without_an_allocation_is_refused_by_the_gate(node):
    reply = _ask(node, _count(project="other-study"))
    refusal = reply.content["refusal"]
    assert refusal["kind"] == "budget"
    assert refusal["reason"].startswith("project 'other-study' has no allocation at site hospital-a")
    assert str(node.site.ledger_path) not in refusal["reason"]  # no path leaves the site
    assert _requests(node)[-1]["alert"] == "over-cap"
    detail = _requests(node)[-2]["decision"]["reason"]
    assert "workbench budget allocate" in detail and str(node.site.ledger_path) in detail


def test_the_per_request_cap_is_checked_on_the_cost_the_site_computes(node):
    set_key(node.toml, "max_epsilon_per_request", "0.1")
    before = _ledger_kinds(node)
    reply = _ask(node, _count(epsilon=0.5))
    refusal = reply.content["refusal"]
    assert refusal["kind"] == "budget" and "above the site's cap of 0.1 per request" in refusal["reason"]
    assert re.search(r"would cost epsilon (0\.5|0\.49\d*) at site", refusal["reason"])
    assert _ledger_kinds(node) == before  # refused before reserving
    priced = json.loads(_ask(node, _count(epsilon=0.5), kind="query:cost").content["cost"]["cost"])
    assert priced["fits"] is False and priced["binding"] == "the site's cap of 0.1 per request"
    assert "refusal" not in _ask(node, _count(epsilon=0.1)).content


def test_the_per_request_cap_holds_for_a_training_round_too(node):
    set_key(node.toml, "max_epsilon_per_request", "0.01")
    before = _ledger_kinds(node)
    refusal = serve(kind="train", msg=_train_message(), site=node.site, node_toml=node.toml).content["refusal"]
    assert refusal["kind"] == "budget" and "above the site's cap of 0.01 per request" in refusal["reason"]
    assert _ledger_kinds(node) == before


def test_a_node_toml_broken_while_running_refuses_everything_clearly(node):
    site = node.site  # as the running node resolved it from its node config
    set_key(node.toml, "min_cell_size", "2")
    refusal = serve(kind="query:count", msg=received(_count()), site=site, node_toml=node.toml).content["refusal"]
    assert refusal["kind"] == "error" and "node.toml" not in refusal["reason"]
    request = recent_entries(path=audit_path(site.state_dir), limit=2)[1]
    assert request["kind"] == "request" and request["decision"]["refusal_kind"] == "error"
    reason = request["decision"]["reason"]
    assert reason.startswith("site hospital-a cannot read its node.toml, so it serves nothing until fixed")
    assert "[policy] min_cell_size must be a whole number of at least 3; got 2" in reason


def test_an_unknown_task_is_refused_and_logged(node):
    refusal = _ask(node, _count(), kind="query:everything").content["refusal"]
    assert refusal["kind"] == "policy" and refusal["reason"].startswith("unknown task 'query:everything'")


def test_replays_of_one_answer_raise_no_repeated_query_alert(node):
    for i in range(5):  # a fresh run id each time: still the same question, replayed for free
        assert "refusal" not in _ask(node, _count(run_id=f"r{i}"), message_id=f"m{i}").content
    entries = _requests(node)
    assert not [e for e in entries if e.get("alert") == "repeated"]
    charged = [e["epsilon_charged"] for e in entries if e["kind"] == "request"]
    assert charged[0] > 0 and charged[1:] == [0.0, 0.0, 0.0, 0.0]  # replays of a released answer are free
    assert [e["replay"] for e in entries if e["kind"] == "request"] == [False, True, True, True, True]


def test_fresh_answers_to_one_question_raise_an_alert_after_the_limit(node):
    # Each epsilon is another query (a fresh, charged answer) but the same question.
    for i, epsilon in enumerate((0.2, 0.2 + 1e-12, 0.21, 0.2 + 2e-12)):
        assert "refusal" not in _ask(node, _count(epsilon=epsilon), message_id=f"m{i}").content
    entries = _requests(node)
    repeated = [e for e in entries if e.get("alert") == "repeated"]
    assert len(repeated) == 1 and "answered afresh 4 times within 24 h" in repeated[0]["message"]
    assert [e["replay"] for e in entries if e["kind"] == "request"] == [False] * 4
    assert len({e["question"] for e in entries if e["kind"] == "request"}) == 1


def test_a_training_on_a_spent_project_is_the_projects_budget_refusal_and_nothing_runs(node):
    from privacy_budgets import gaussian_event

    site = node.site
    with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger:
        ledger.allocate(dataset=site.dataset, project="other-study", epsilon=2.0, actor="ethics board", reason="r")
        for project in (PROJECT, "other-study"):  # the target of 1.0 is already spent by PROJECT
            ledger.commit(
                ledger.reserve(
                    dataset=site.dataset,
                    project=project,
                    actor="coordinator-eu",
                    purpose="earlier",
                    event=gaussian_event(noise_multiplier=3.0),
                )
            )
        spent = ledger.spent(dataset=site.dataset, project=PROJECT)
    before = _ledger_kinds(node)
    reply = serve(kind="train", msg=_train_message(), site=node.site, node_toml=node.toml)
    refusal = reply.content["refusal"]
    assert refusal["kind"] == "budget"
    assert refusal["reason"].startswith(f"Refused: project '{PROJECT}' has already spent epsilon {spent:.3g} at site")
    assert "its allocation there is 3.00" in refusal["reason"] and "Fix:" in refusal["reason"]
    # The coordinator learns the project's own numbers only: not the cap, not other projects.
    assert "other-study" not in refusal["reason"] and "cap" not in refusal["reason"]
    assert not re.search(r"\b10(\.0+)?\b", refusal["reason"]), "the dataset's cap of 10 stays at the site"
    assert _ledger_kinds(node) == before


def test_a_simulated_site_with_a_broken_policy_refuses_instead_of_crashing(node):
    from dataclasses import replace

    site = replace(node.site, policy_overrides=(("holdout_fraction", 0.9),))
    refusal = serve(kind="query:count", msg=received(_count()), site=site).content["refusal"]
    assert refusal["kind"] == "error" and "holdout_fraction" not in refusal["reason"]
    line = [e for e in recent_entries(path=audit_path(site.state_dir)) if e["kind"] == "request"][0]
    assert "policy is invalid" in line["decision"]["reason"] and "at most 0.5" in line["decision"]["reason"]
