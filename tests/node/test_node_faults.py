"""Right diagnoses at a node, and a site that stops serving a run on its own.

An unwritable state folder or a full disk is named as the machine's trouble, with its fix,
never as a damaged ledger to restore from a backup (that would roll back recorded
spending), and raises a "fault" alert, not "over-cap". A request past its deadline (the
message's time to live, or its run's ``run-deadline``) is refused before anything runs:
a cancelled or abandoned run stays stopped at the site whatever the coordinator does.
No Flower process: the site's door (tasks.serve) is called directly."""

from __future__ import annotations

import sqlite3
import time

import pytest
from _node_helpers import PROJECT, received

from federation.analytics.query import Query
from federation.protocol.query_request import QueryRequest
from federation.protocol.request_info import RUN_DEADLINE_KEY
from federation.site.audit import audit_path, recent_entries
from federation.site.preflight import run_preflight
from federation.site.tasks import serve
from privacy_budgets import Ledger, store
from privacy_budgets.errors import LedgerUnavailable


def _count() -> dict:
    return QueryRequest(query=Query(kind="count", epsilon=0.1), project=PROJECT).to_config()


def _log(node) -> list[dict]:
    return list(reversed(recent_entries(path=audit_path(node.config.state_dir))))


def _kinds(node) -> list[str]:
    with Ledger.open(node.site.ledger_path, site_id=node.site.site_id) as ledger:
        return [e.kind for e in ledger.entries()]


@pytest.fixture
def unwritable(monkeypatch):
    """The ledger's folder as a non-root user meets it when it may not write there (the
    tests run as root, whom permissions do not stop): SQLite's own error."""
    real = store.connect

    def connect(path, *, read_only=False):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(store, "connect", connect)
    return real


def test_an_unwritable_state_folder_is_named_as_such_with_a_fault_alert(node, unwritable):
    reply = serve(kind="query:count", msg=received(_count()), site=node.site, node_toml=node.toml)
    refusal = reply.content["refusal"]
    assert refusal["kind"] == "error"
    # the requester learns only that the site could not do it; the site's IT reads why
    assert refusal["reason"] == "the site could not complete this request; nothing was released."
    request, alert = _log(node)[-2:]
    assert request["decision"]["refusal_kind"] == "error"
    assert request["decision"]["incident"] == refusal["incident"]
    reason = request["decision"]["reason"]
    assert "cannot read its ledger, so it serves nothing" in reason
    assert "cannot be written (permissions, or a read-only mount)" in reason
    assert "the ledger is not damaged and nothing was written to it" in reason
    assert "backup" not in reason and "Never replace the ledger with an older copy" in reason
    assert alert["alert"] == "fault"  # the node's own trouble, not a budget ("over-cap")
    with pytest.raises(LedgerUnavailable, match=r"cannot be used: the ledger or its folder cannot be written"):
        Ledger.open(node.site.ledger_path, site_id=node.site.site_id, create=False)


def test_node_check_names_an_unwritable_ledger_with_its_fix(node, unwritable):
    check = next(c for c in run_preflight(config_path=node.toml).checks if c.name == "ledger")
    assert check.status == "fail"
    assert "cannot be written" in check.detail and "give the user that runs it write access" in check.detail
    assert "the check itself failed" not in check.detail and "backup" not in check.line()


def test_a_full_disk_during_a_write_is_named_as_such(tmp_path):
    class Full:
        in_transaction = False

        def execute(self, sql, *args):
            if sql.startswith("PRAGMA database_list"):
                return type("Rows", (), {"fetchone": lambda self: (0, "main", str(tmp_path / "ledger.sqlite"))})()
            raise sqlite3.OperationalError("database or disk is full")

    with pytest.raises(LedgerUnavailable) as caught:
        with store.write_transaction(Full()):
            pass
    text = str(caught.value)
    assert "the disk is full" in text and f"df -h {tmp_path}" in text and "backup" not in text


def test_a_request_past_its_time_to_live_is_refused_before_anything_runs(node):
    before = _kinds(node)
    stale = received(_count())
    stale.metadata.__dict__["_created_at"] = time.time() - 120  # sent 2 minutes ago, 60 s to live
    stale.metadata.ttl = 60.0
    reply = serve(kind="query:count", msg=stale, site=node.site, node_toml=node.toml)
    refusal = reply.content["refusal"]
    assert refusal["kind"] == "policy"
    assert "serves no stale request" in refusal["reason"]
    assert "the coordinator stopped waiting for this message after 60 s" in refusal["reason"]
    assert "Nothing was run or charged" in refusal["reason"]
    assert _kinds(node) == before
    assert _log(node)[-2]["decision"]["outcome"] == "refused"


def test_a_request_past_its_run_deadline_is_refused(node):
    config = {**_count(), RUN_DEADLINE_KEY: time.time() - 30}
    reply = serve(kind="query:count", msg=received(config), site=node.site, node_toml=node.toml)
    assert "the run's deadline passed" in reply.content["refusal"]["reason"]
    fresh = {**_count(), RUN_DEADLINE_KEY: time.time() + 300}
    assert "refusal" not in serve(kind="query:count", msg=received(fresh), site=node.site, node_toml=node.toml).content
