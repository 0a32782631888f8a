"""Every kind of task a site serves, by name, and the one door they all go through.

A task kind is "train", "evaluate" or "query:<name>" (a query message's
``query-kind``). Adding an analysis means registering one handler here. ``serve`` is
the door: the request is first written to the site's audit log (a "received" line),
then the policy gate decides (gate.py), then the handler runs; whatever happens
(served, refused, or a handler's exception, turned into an "error" refusal so the node
never crashes on a request) a "request" line records the decision, and suspicious
requests raise alerts (alerts.py).

The audit fails closed. A request whose "received" line cannot be written is refused
before the gate, the ledger or the data are touched: nothing computed, nothing charged.
An answer whose "request" line cannot be written is withheld (the reply becomes an
"error" refusal): a charge may then stand in the ledger for a release that never left
the site, which over-counts and never hides a release.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from flwr.app import Message

from federation.errors import InternalFault
from federation.protocol.replies import REFUSAL_KEY, SITE_KEY, refusal
from federation.protocol.request_info import RequestInfo, describe_request
from federation.protocol.task_kinds import RANGES
from federation.site.alerts import alerts_for, raise_alerts
from federation.site.analytics_task import ANALYTICS_HANDLERS
from federation.site.audit import append_audit, audit_path, utc_now
from federation.site.config import NodeConfigError, NodePolicy, load_node_config
from federation.site.evaluation_task import handle_evaluate
from federation.site.gate import GateDecision, check_request
from federation.site.range_task import handle_ranges
from federation.site.site_config import SiteConfig
from federation.site.training_task import handle_train

Handler = Callable[[Message, SiteConfig], Message]

HANDLERS: dict[str, Handler] = {
    "train": handle_train,
    "evaluate": handle_evaluate,
    f"query:{RANGES}": handle_ranges,
    **ANALYTICS_HANDLERS,  # query:count, query:mean, ..., query:survival, query:cost
}

log = logging.getLogger(__name__)


def serve(*, kind: str, msg: Message, site: SiteConfig, node_toml: str | Path | None = None) -> Message:
    """Gate, run and record one request; always returns a reply (an answer or a refusal).

    ``node_toml`` (the node config key ``node-toml``) is where a deployed node's policy
    lives; without it (the simulation) every task is allowed with the site's own
    disclosure settings (``NodePolicy.default_for``).
    """
    received = utc_now()
    info = describe_request(kind=kind, msg=msg)
    site, policy, broken = _site_and_policy(site=site, node_toml=node_toml)
    try:
        _record_received(info=info, site=site, received=received)
    except Exception:
        log.exception("site %s cannot write its audit log at %s", site.site_id, audit_path(site.state_dir))
        return refusal(
            msg,
            site_id=site.site_id,
            error=InternalFault(
                f"site {site.site_id} cannot write its audit log, so it serves nothing until its IT fixes that "
                "(fail closed): nothing was computed or charged."
            ),
        )
    decision = GateDecision(InternalFault(broken)) if broken else check_request(info=info, site=site, policy=policy)
    if decision.allowed:
        reply = _run(kind=kind, msg=msg, site=site)
    else:
        reply = refusal(msg, site_id=site.site_id, error=decision.refusal)
    try:
        alerts = _record(info=info, site=site, policy=policy, reply=reply, received=received)
    except Exception:
        log.exception("site %s could not record its answer at %s", site.site_id, audit_path(site.state_dir))
        return refusal(
            msg,
            site_id=site.site_id,
            error=InternalFault(
                f"site {site.site_id} could not record its answer in its audit log, so the answer is withheld "
                "(fail closed); any charge stands in its ledger, and nothing was released."
            ),
        )
    try:
        raise_alerts(alerts=alerts, policy=policy, audit_file=audit_path(site.state_dir))
    except Exception:  # the request's own line is written: the answer may go; the operator sees this
        log.exception("site %s could not raise its alerts", site.site_id)
    return reply


def _record_received(*, info: RequestInfo, site: SiteConfig, received: str) -> None:
    """The write-ahead line: who asks for what, before anything is decided or computed."""
    append_audit(
        path=audit_path(site.state_dir),
        entry={
            "kind": "received",
            "time": received,
            "site": site.site_id,
            "run_id": info.run_id,
            "message_id": info.message_id,
            "coordinator": info.coordinator(),
            "task": info.kind,
            "project": info.project,
            "request_hash": info.identity,
        },
    )


def _site_and_policy(*, site: SiteConfig, node_toml: str | Path | None) -> tuple[SiteConfig, NodePolicy, str | None]:
    if not node_toml:
        return site, NodePolicy.default_for(site), None
    try:
        node = load_node_config(Path(str(node_toml)))
    except NodeConfigError as err:
        # Fail closed: without its policy the site cannot say what it allows.
        return (
            site,
            NodePolicy.default_for(site),
            (f"site {site.site_id} cannot read its node.toml, so it serves nothing until fixed: {err}"),
        )
    return node.site_config(), node.policy, None


def _run(*, kind: str, msg: Message, site: SiteConfig) -> Message:
    try:
        return HANDLERS[kind](msg, site)
    except Exception as err:
        log.exception("site %s: the %s handler failed", site.site_id, kind)
        return refusal(
            msg,
            site_id=site.site_id,
            error=InternalFault(f"site {site.site_id} could not complete {kind}: {type(err).__name__}: {err}"),
        )


def _record(*, info: RequestInfo, site: SiteConfig, policy: NodePolicy, reply: Message, received: str) -> list:
    """Write the request's decision line; returns the alerts it raises (not yet sent)."""
    file = audit_path(site.state_dir)
    refused = reply.content[REFUSAL_KEY] if REFUSAL_KEY in reply.content else None
    refusal_kind = None if refused is None else str(refused["kind"])
    reason = None if refused is None else str(refused["reason"])
    epsilon, entries, replay = _charged(reply)
    # Decided before this request's own line is written, so "earlier answers" is exact.
    alerts = alerts_for(
        info=info,
        site_id=site.site_id,
        refusal_kind=refusal_kind,
        reason=reason,
        policy=policy,
        audit_file=file,
        replay=replay,
    )
    append_audit(
        path=file,
        entry={
            "kind": "request",
            "time": utc_now(),  # when decided and answered
            "received": received,
            "site": site.site_id,
            "run_id": info.run_id,
            "message_id": info.message_id,
            "coordinator": info.coordinator(),
            "task": info.kind,
            "project": info.project,
            "parameters": info.parameters,
            "request_hash": info.identity,
            "question": info.question,
            "decision": {
                "outcome": "refused" if refused is not None else "served",
                "refusal_kind": refusal_kind,
                "reason": reason,
            },
            "epsilon_charged": epsilon,
            "ledger_entries": entries,
            "replay": replay,
        },
    )
    return alerts


def _charged(reply: Message) -> tuple[float, list[int], bool]:
    """Epsilon newly charged by this reply (its commit receipts; 0 for a replay), the
    ledger entries its receipts name, and whether it was a replay."""
    if SITE_KEY not in reply.content:
        return 0.0, [], False
    record = reply.content[SITE_KEY]
    receipts = json.loads(str(record.get("receipts", "[]")))
    replay = bool(record.get("replay", False))
    entries = [int(r["seq"]) for r in receipts if "seq" in r]
    if replay:
        return 0.0, entries, True
    epsilon = sum(float(r["epsilon"]) for r in receipts if r.get("kind") == "commit" and r.get("epsilon") is not None)
    return epsilon, entries, False
