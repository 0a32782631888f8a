"""One charged path (issue 13, item 4): every release at a site goes through
``charged_path.charged_release``, so a failure half-way can never leave a release
uncharged or a reservation open, and no handler keeps a sequence of its own."""

from __future__ import annotations

import ast
from pathlib import Path

from _adversary import refusal, study_message

import federation.site as site_package

LEDGER_WRITES = {"reserve", "commit", "abort", "record_uncovered"}


def test_no_handler_writes_its_own_ledger_sequence():
    """Only the charged path calls the ledger's spending methods (the ethics board's
    allocate and set_cap belong to the budget commands, never to a request)."""
    offenders = []
    for path in sorted(Path(site_package.__file__).parent.glob("*.py")):
        if path.name == "charged_path.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in LEDGER_WRITES:
                offenders.append(f"{path.name}:{node.lineno} .{node.func.attr}()")
    assert not offenders, offenders


def test_a_failure_inside_a_release_aborts_it_and_tells_the_coordinator_nothing(site, monkeypatch):
    def broken(**_):
        raise RuntimeError("a secret detail: patient 17 is 63.2 years old")

    monkeypatch.setattr("federation.site.training_task.train_round", broken)
    reply = site.ask(study_message("train"))
    refused = refusal(reply)
    assert refused["kind"] == "error" and "secret" not in refused["reason"] and "63.2" not in refused["reason"]
    kinds = [e.kind for e in site.ledger_entries()]
    assert kinds[-2:] == ["reserve", "abort"] and "commit" not in kinds
    assert "patient 17" in site.audit()[-1]["decision"]["reason"]
    # the same round may run again once the failure is fixed (an aborted round is no round)
    monkeypatch.undo()
    assert "refusal" not in site.ask(study_message("train")).content
