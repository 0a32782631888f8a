"""The ClientApp a SuperNode runs finds the site's policy through the node config key
``node-toml`` (as `node start` passes it) and never crashes on a misconfigured node."""

from __future__ import annotations

from _node_helpers import PROJECT, received, set_key
from flwr.app import Context, RecordDict

from federation.analytics.query import Query
from federation.protocol.query_request import QueryRequest
from federation.site.audit import audit_path, recent_entries
from federation.site.client_app import app


def _context(node_config: dict) -> Context:
    return Context(run_id=42, node_id=7, node_config=node_config, state=RecordDict(), run_config={})


def _count() -> dict:
    return QueryRequest(query=Query(kind="count", epsilon=0.2), project=PROJECT).to_config()


def test_the_deployed_client_app_applies_the_policy_named_in_the_node_config(node):
    entries = node.config.node_config_entries()
    assert "refusal" not in app(received(_count()), _context(entries)).content
    set_key(node.toml, "allowed_tasks", '["train", "evaluate"]')
    reply = app(received(_count()), _context(entries))
    assert reply.content["refusal"]["kind"] == "policy"
    assert "does not allow query:count tasks; its policy allows train, evaluate" in reply.content["refusal"]["reason"]
    outcomes = [
        e["decision"]["outcome"]
        for e in reversed(recent_entries(path=audit_path(node.config.state_dir)))
        if e["kind"] == "request"
    ]
    assert outcomes == ["served", "refused"]


def test_a_node_config_without_the_site_keys_is_a_refusal_not_a_crash():
    reply = app(received(_count()), _context({"site-id": "hospital-z"}))
    refusal = reply.content["refusal"]
    assert refusal["kind"] == "error" and refusal["site-id"] == "hospital-z"
    assert refusal["reason"] == "the site could not complete this request; nothing was released."
    assert len(refusal["incident"]) == 12  # the node's log holds the details under it
