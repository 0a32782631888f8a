"""Refusals say what was refused, never what the data holds (issue 13). A coordinator
provokes failures on purpose (a row that breaks the dictionary, a split by any column,
a project out of budget beside a richer one, a missing file) and reads the refusal:
it must get a kind and an incident id, never a value, a row, a path, the dataset's
cap or another project's spending. The story stays in the site's audit log."""

from __future__ import annotations

import re

import pytest
from _adversary import OTHER, PROJECT, leaks, refusal, reply_text, set_key, study_message
from flwr.app import MessageType

from federation.analytics.query import Query
from federation.protocol.query_request import QueryRequest
from privacy_budgets import Ledger
from privacy_budgets.mechanisms import gaussian_event

GENERIC_ERROR = "the site could not complete this request; nothing was released."
NOT_VALID = (
    "site hospital-a cannot answer: its data does not validate against its data dictionary "
    "(its IT sees where in the site's audit log)."
)


def _count_message(project: str = PROJECT, epsilon: float = 0.2):
    from _adversary import message

    config = QueryRequest(query=Query(kind="count", epsilon=epsilon), project=project).to_config()
    return message(config, message_type=MessageType.QUERY)


def _story(site, incident: str) -> str:
    line = next(e for e in site.audit() if e["decision"].get("incident") == incident)
    return str(line["decision"]["reason"])


def test_a_row_that_breaks_the_dictionary_is_not_named_to_the_coordinator(site):
    """Issue 13: a validation error named the row and its value."""
    broken = site.frame.copy()
    broken.loc[17, "age"] = 187.3  # outside the dictionary's 18-95: the loader refuses the file
    broken.to_parquet(site.config.data_path, index=False)
    for reply in (site.ask(study_message("train")), site.ask(study_message("evaluate")), site.ask(_count_message())):
        refused = refusal(reply)
        # the site's state in words (the data does not validate), never where or which value
        assert refused["kind"] == "error" and refused["reason"] in (GENERIC_ERROR, NOT_VALID)
        assert "187.3" not in reply_text(reply) and "row" not in refused["reason"]
        assert not leaks(reply_text(reply), site=site)
        story = _story(site, refused["incident"])
        assert "187.3" in story  # the site's IT reads where and why in its audit log


def test_a_split_by_any_column_cannot_list_its_values(site):
    """Issue 13: split_column=<any column> listed that column's smallest values. A
    coordinator cannot name one at all; a site's own bad split column stays internal."""
    reply = site.ask(study_message("evaluate", extra={"spec-split-column": "age"}))
    refused = refusal(reply)
    assert refused["kind"] == "invalid" and not leaks(reply_text(reply), site=site)
    set_key(site.toml, "split_column", '"followup_days"')  # the site's own mistake: not a train/test column
    reply = site.ask(study_message("evaluate"))
    refused = refusal(reply)
    assert refused["reason"] == GENERIC_ERROR
    smallest = sorted(site.frame["followup_days"].astype(str).unique())[:3]
    assert not any(value in reply_text(reply) for value in smallest)
    story = _story(site, refused["incident"])
    assert "must hold only 'train' or 'test'" in story and smallest[0] in story


def test_a_budget_refusal_names_the_projects_own_numbers_only(site):
    config = site.config.site_config()
    with Ledger.open(config.ledger_path, site_id=config.site_id) as ledger:
        for project, noise in ((OTHER, 1.3), (PROJECT, 1.5)):  # the other project spends more
            ledger.commit(
                ledger.reserve(
                    dataset=config.dataset,
                    project=project,
                    event=gaussian_event(noise_multiplier=noise),
                    actor="earlier",
                    purpose="earlier spending",
                )
            )
        other_spent = ledger.spent(dataset=config.dataset, project=OTHER)
        total = ledger.spent(dataset=config.dataset)
    replies = [
        site.ask(study_message("train", target_epsilon=30.0)),  # more than its allocation
        site.ask(study_message("train", target_epsilon=2.0, run_id="run-2")),  # already spent beyond its target
        site.ask(_count_message(epsilon=2.0)),  # a query it cannot pay
    ]
    for reply in replies:
        refused = refusal(reply)
        text = reply_text(reply)
        assert refused["kind"] == "budget" and f"project '{PROJECT}'" in refused["reason"]
        assert OTHER not in text and "cap" not in refused["reason"]
        for secret in (other_spent, total, 10.0):  # the other project's, the dataset's, the cap
            for shown in {f"{secret:.2f}", f"{secret:.3g}", f"{secret:g}"}:
                assert not re.search(rf"(?<![\d.]){re.escape(shown)}(?![\d])", refused["reason"]), shown
        assert "set by" not in refused["reason"] and "site IT" not in refused["reason"]
    assert "Requested epsilon" in _story(site, refusal(replies[2])["incident"])  # the ledger's own words stay


@pytest.mark.parametrize("what", ["data file", "ledger"])
def test_no_refusal_carries_a_path_of_the_site(site, what):
    """Issue 13: refusal reasons carried the site's absolute file paths."""
    if what == "data file":
        site.config.data_path.unlink()
    else:
        config = site.config.site_config()
        config.ledger_path.write_bytes(b"not a ledger")
    replies = [
        site.ask(study_message("train")),
        site.ask(study_message("evaluate")),
        site.ask(_count_message()),
        site.ask(_count_message(project="no-such-project")),
    ]
    for reply in replies:
        refused = refusal(reply)
        assert str(site.root) not in reply_text(reply) and "/" not in refused["reason"].replace("n/a", "")
        assert refused["incident"] and not leaks(reply_text(reply), site=site)
    assert all(e["decision"]["outcome"] == "refused" for e in site.audit())


def test_every_refusal_has_an_incident_the_audit_log_explains(site):
    set_key(site.toml, "allowed_tasks", '["train"]')
    reply = site.ask(study_message("evaluate"))
    refused = refusal(reply)
    assert refused["kind"] == "policy" and refused["reason"].startswith("site hospital-a does not allow evaluate")
    line = site.audit()[-1]
    assert line["decision"]["incident"] == refused["incident"] and line["decision"]["public"] == refused["reason"]
