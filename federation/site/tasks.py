"""Every kind of task a site serves, by name, and the one door they all go through.

A task kind is "train", "evaluate", "tune" or "query:<name>" (a query message's
``query-kind``; a query message whose query-kind is "tune" is the task "tune"). Adding an analysis means registering one handler here. ``serve`` is
the door: the request is first written to the site's audit log (a "received" line),
then the policy gate decides (gate.py), then the handler runs; whatever happens
(served, refused, or a handler's exception, turned into an "error" refusal so the node
never crashes on a request) a "request" line records the decision, and suspicious
requests raise alerts (alerts.py).

Handlers raise their refusals; only ``serve`` turns one into a reply. The reply says
what kind of refusal it is, carries an incident id, and holds only the refusal's
public words (``federation.errors.public_reason``: built from the request, the site's
policy and the project's own budget). The whole story (exception text, values, paths)
goes to the audit log under that incident id and never leaves the site.

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

from federation.errors import BudgetRefused, InternalFault, Refused, public_reason
from federation.protocol.replies import REFUSAL_KEY, SITE_KEY, new_incident, refusal
from federation.protocol.request_info import RequestInfo, describe_request
from federation.protocol.task_kinds import RANGES, TUNE
from federation.site.alerts import alerts_for, raise_alerts
from federation.site.analytics_task import ANALYTICS_HANDLERS
from federation.site.audit import HEAD_EVERY, append_audit, audit_path, utc_now
from federation.site.audit_heads import AUDIT_HEAD_KEY, last_signed_head, sealer
from federation.site.authorization import Researcher
from federation.site.config import NodeConfigError, NodePolicy, NodePolicyError, load_node_config
from federation.site.evaluation_task import handle_evaluate
from federation.site.gate import check_request
from federation.site.local_tuning import handle_tune
from federation.site.range_task import handle_ranges
from federation.site.site_config import SiteConfig
from federation.site.training_task import handle_train
from privacy_budgets.errors import BudgetRefused as LedgerRefused

Handler = Callable[[Message, SiteConfig, NodePolicy], Message]

HANDLERS: dict[str, Handler] = {
    "train": handle_train,
    "evaluate": handle_evaluate,
    TUNE: handle_tune,  # local tuning by private selection (local_tuning.py)
    f"query:{RANGES}": handle_ranges,
    **ANALYTICS_HANDLERS,  # query:count, query:mean, ..., query:survival, query:cost
}

log = logging.getLogger(__name__)


def serve(*, kind: str, msg: Message, site: SiteConfig, node_toml: str | Path | None = None) -> Message:
    """Gate, run and record one request; always returns a reply (an answer or a refusal).

    ``node_toml`` (the node config key ``node-toml``) is where a deployed node's policy
    lives; without it (the simulation) every task is allowed with the site's own
    disclosure settings and training policy (``NodePolicy.default_for``).
    """
    received = utc_now()
    info = describe_request(kind=kind, msg=msg)
    site, policy, checkpoint, broken = _site_and_policy(site=site, node_toml=node_toml)
    try:
        _record_received(info=info, site=site, received=received)
    except Exception:
        log.exception("site %s cannot write its audit log at %s", site.site_id, audit_path(site.state_dir))
        return _fail_closed(
            msg,
            site=site,
            why=f"site {site.site_id} cannot write its audit log, so it serves nothing until its IT fixes that "
            "(fail closed): nothing was computed or charged.",
        )
    refused: _Refusal | None = None
    researcher = None
    try:
        if broken:
            raise InternalFault(broken)
        decision = check_request(info=info, site=site, policy=policy, config=_config(msg), board_checkpoint=checkpoint)
        researcher = decision.researcher
        if not decision.allowed:
            raise decision.refusal
        reply = HANDLERS[kind](msg, site, policy)
    except (Refused, InternalFault) as err:
        refused = _Refusal(error=err)
    except LedgerRefused as err:  # the ledger's own refusal, outside the charged path
        refused = _Refusal(error=BudgetRefused(str(err)))
    except Exception as err:
        log.exception("site %s: the %s handler failed", site.site_id, kind)
        refused = _Refusal(
            error=InternalFault(f"site {site.site_id} could not complete {kind}: {type(err).__name__}: {err}")
        )
    if refused is not None:
        reply = refusal(msg, site_id=site.site_id, error=refused.error, incident=refused.incident)
    try:
        alerts = _record(
            info=info, site=site, policy=policy, reply=reply, received=received, refused=refused, researcher=researcher
        )
    except Exception:
        log.exception("site %s could not record its answer at %s", site.site_id, audit_path(site.state_dir))
        return _fail_closed(
            msg,
            site=site,
            why=f"site {site.site_id} could not record its answer in its audit log, so the answer is withheld "
            "(fail closed); any charge stands in its ledger, and nothing was released.",
        )
    try:
        raise_alerts(alerts=alerts, policy=policy, audit_file=audit_path(site.state_dir))
    except Exception:  # the request's own line is written: the answer may go; the operator sees this
        log.exception("site %s could not raise its alerts", site.site_id)
    _attach_audit_head(reply, site=site)
    return reply


def _attach_audit_head(reply: Message, *, site: SiteConfig) -> None:
    """The newest signed audit head travels with the answer's receipts to the coordinator's
    mirror (audit_heads.py): copies outside the site catch a log signed again locally."""
    if SITE_KEY not in reply.content:
        return
    try:
        head = last_signed_head(audit_path(site.state_dir), limit=2 * HEAD_EVERY)
    except OSError:
        return
    if head is not None:
        reply.content[SITE_KEY][AUDIT_HEAD_KEY] = json.dumps(head)


def _config(msg: Message) -> dict | None:
    """The message's config record as a dict (None when it cannot be read: the gate's
    malformed-request check says why)."""
    try:
        return dict(msg.content["config"]) if "config" in msg.content else None
    except Exception:
        return None


class _Refusal:
    """A refusal on its way out: the error (its whole story, for the audit log) and
    the incident id the requester is given instead."""

    def __init__(self, *, error: BaseException) -> None:
        self.error = error
        self.incident = new_incident()


def _fail_closed(msg: Message, *, site: SiteConfig, why: str) -> Message:
    """The refusal of a request the audit log could not record (the log itself is the
    problem, so this incident lives in the node's own log, not in the audit log)."""
    failure = _Refusal(error=InternalFault(why, public=why))
    return refusal(msg, site_id=site.site_id, error=failure.error, incident=failure.incident)


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


def _site_and_policy(
    *, site: SiteConfig, node_toml: str | Path | None
) -> tuple[SiteConfig, NodePolicy, Path | None, str | None]:
    """The site, its policy, the board's checkpoint (node.toml's; None in a simulation) and
    why the node serves nothing (None: it may serve)."""
    if not node_toml:
        try:
            return site, NodePolicy.default_for(site), None, None
        except NodePolicyError as err:  # a simulated site's overrides break a rule: serve nothing
            fallback = NodePolicy.default_for(SiteConfig(**{**site.__dict__, "policy_overrides": ()}))
            why = f"site {site.site_id}'s policy is invalid, so it serves nothing until fixed: {err}"
            return site, fallback, None, why
    try:
        node = load_node_config(Path(str(node_toml)))
    except NodeConfigError as err:
        # Fail closed: without its policy the site cannot say what it allows.
        return (
            site,
            NodePolicy.default_for(site),
            None,
            (f"site {site.site_id} cannot read its node.toml, so it serves nothing until fixed: {err}"),
        )
    return node.site_config(), node.policy, node.board_checkpoint, None


def _record(
    *,
    info: RequestInfo,
    site: SiteConfig,
    policy: NodePolicy,
    reply: Message,
    received: str,
    refused: _Refusal | None,
    researcher: Researcher | None = None,
) -> list:
    """Write the request's decision line; returns the alerts it raises (not yet sent)."""
    file = audit_path(site.state_dir)
    sent = reply.content[REFUSAL_KEY] if REFUSAL_KEY in reply.content else None
    refusal_kind = None if sent is None else str(sent["kind"])
    # The whole story stays here; the requester got ``public`` and the incident id.
    reason = None if refused is None else str(refused.error)
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
        seal=sealer(site),  # a signed head at least every HEAD_EVERY lines (audit_heads.py)
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
            # who signed it (name and key the site's board approved); None: unsigned, or refused before
            "researcher": None if researcher is None else researcher.to_json(),
            "parameters": info.parameters,
            "request_hash": info.identity,
            "question": info.question,
            "decision": {
                "outcome": "refused" if sent is not None else "served",
                "refusal_kind": refusal_kind,
                "reason": reason,
                "incident": None if refused is None else refused.incident,
                "public": None if refused is None else public_reason(refused.error),
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
