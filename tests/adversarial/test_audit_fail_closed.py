"""An audit that fails closed (issue 13, item 7): a request the site cannot record is
refused before anything is charged or computed; an answer whose record cannot be written
is withheld; `node check` fails on an audit log it cannot append to.

The tests run as root on the test machines, where a read-only mode does not stop a write:
the log is made unwritable as a directory in its place, or as a link to /dev/full (every
write fails as on a full disk, after the file opened fine)."""

from __future__ import annotations

import os

import pytest
from _site_under_attack import (
    ask,
    ask_client_app,
    assert_tells_no_data,
    hospitals,  # noqa: F401 (a fixture)
    refusal_of,
    request,
    site,  # noqa: F401 (a fixture)
)

from federation.analytics.query import Query
from federation.site import preflight, query_answers, tasks
from federation.site.audit import append_audit, verify_audit

UNTOUCHED = ["genesis", "set_cap", "allocate"]
COUNT = Query(kind="count", by=("sex",), epsilon=0.2)


def _break_with_directory(path):
    if path.exists():
        path.unlink()
    path.mkdir(parents=True)


def _break_with_full_disk(path):
    if path.exists():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink("/dev/full", path)


@pytest.mark.parametrize("breaks", [_break_with_directory, _break_with_full_disk], ids=["directory", "full-disk"])
def test_a_request_that_cannot_be_audited_is_refused_before_anything_is_computed_or_charged(site, monkeypatch, breaks):
    reads = []
    monkeypatch.setattr(query_answers, "load_site_data", lambda **kwargs: reads.append(kwargs) or 1 / 0)
    breaks(site.audit)
    for reply in (ask(site, request(COUNT)), ask_client_app(site, request(COUNT))):
        refused = refusal_of(reply)
        assert refused["kind"] == "error"
        assert (
            "cannot write its audit log" in refused["reason"] and "nothing was computed or charged" in refused["reason"]
        )
        assert_tells_no_data(refused["reason"], site)
    assert reads == [] and site.ledger_kinds() == UNTOUCHED


def test_an_answer_whose_record_cannot_be_written_is_withheld(site, monkeypatch):
    """The write-ahead line went in, then the disk filled: the answer never leaves. Its
    charge stands in the ledger (an over-count, never a hidden release)."""
    real = tasks.append_audit

    def fail_on_the_decision(*, path, entry):
        if entry.get("kind") == "request":
            raise OSError(28, "No space left on device")
        return real(path=path, entry=entry)

    monkeypatch.setattr(tasks, "append_audit", fail_on_the_decision)
    reply = ask(site, request(COUNT))
    refused = refusal_of(reply)
    assert refused["kind"] == "error" and "the answer is withheld" in refused["reason"]
    assert "answer" not in reply.content and "site" not in reply.content
    assert site.ledger_kinds()[-2:] == ["reserve", "commit"]  # charged, not released
    lines = site.requests()
    assert [line["kind"] for line in lines] == ["received"]  # the request is on record all the same
    assert lines[0]["task"] == "query:count" and lines[0]["project"] == "curious-study"
    assert verify_audit(site.audit).ok


def test_every_served_request_is_written_ahead_then_decided(site):
    assert "refusal" not in ask(site, request(COUNT)).content
    lines = site.requests()
    assert [line["kind"] for line in lines] == ["received", "request"]
    received, decided = lines
    assert received["request_hash"] == decided["request_hash"] and received["time"] == decided["received"]
    assert decided["decision"]["outcome"] == "served" and decided["epsilon_charged"] > 0
    assert verify_audit(site.audit).ok


@pytest.mark.parametrize("breaks", [_break_with_directory, _break_with_full_disk], ids=["directory", "device"])
def test_node_check_fails_on_an_audit_log_that_is_not_a_file(site, breaks):
    append_audit(path=site.audit, entry={"kind": "request", "task": "query:count"})
    breaks(site.audit)
    audit = _audit_check(site)
    assert audit.status == "fail" and "not a regular file" in audit.detail and "move it aside" in audit.fix


def test_node_check_fails_on_an_audit_log_it_cannot_append_to(site, monkeypatch):
    append_audit(path=site.audit, entry={"kind": "request", "task": "query:count"})

    def full(*, path, entry):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(preflight, "append_audit", full)
    audit = _audit_check(site)
    assert audit.status == "fail" and "cannot be appended to (OSError: No space left on device)" in audit.detail
    assert "writable by the node's user" in audit.fix


def _audit_check(site):
    return {c.name: c for c in preflight.run_preflight(config_path=site.toml, require_coordinator=False).checks}[
        "audit log"
    ]


def test_node_check_passes_on_a_log_it_can_append_to_and_says_so_in_the_chain(site):
    assert _audit_check(site).status == "ok"
    assert [line["kind"] for line in site.requests()] == ["check"]
    assert verify_audit(site.audit).ok
