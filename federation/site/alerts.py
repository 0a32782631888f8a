"""Alerts on suspicious activity at a site: to the audit log, and to the site's own
command or webhook (``[alerts]`` in node.toml).

Raised for: a refused request ("refused"), a request that would exceed a budget or
the per-request cap ("over-cap"), a paused node being asked ("paused"), a request the
node could not serve because of its own trouble ("fault": its ledger or data cannot be
read, a disk, a permission; refusal kind "error"), and the same
question answered afresh more than ``repeated_query_limit`` times within
``REPEAT_WINDOW`` ("repeated"; the audit log is the memory, so this holds across
ClientApp processes). For an analytics query the question is its normalised identity
(``Query.question_id``: kind, columns, canonical filter, bounds, bins and strata;
epsilon, noise and label ignored), so nudging epsilon by 1e-12 asks the same question
again; for other tasks, the task and its parameters. Only fresh answers count: a free
replay of a kept answer releases nothing new, and a refusal releases nothing. Delivery runs in the ClientApp process with short timeouts; a
failing command or webhook is itself written to the audit log and never stops the node.
"""

from __future__ import annotations

import json
import logging
import subprocess
import urllib.request
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from federation.protocol.request_info import RequestInfo
from federation.site.audit import TIME_FORMAT, append_audit, count_recent, utc_now
from federation.site.config import NodePolicy

REFUSED, OVER_CAP, PAUSED, REPEATED, FAULT = "refused", "over-cap", "paused", "repeated", "fault"
REPEAT_WINDOW = timedelta(hours=24)
COMMAND_TIMEOUT_S = 10.0
WEBHOOK_TIMEOUT_S = 5.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alert:
    """One alert, as the audit log, the command and the webhook receive it."""

    alert: str
    message: str
    site_id: str
    task: str
    project: str | None
    run_id: str | None
    coordinator: dict[str, Any]
    request_hash: str
    time: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": "alert", **asdict(self)}


def alerts_for(
    *,
    info: RequestInfo,
    site_id: str,
    refusal_kind: str | None,
    reason: str | None,
    policy: NodePolicy,
    audit_file: Path,
    replay: bool = False,
) -> list[Alert]:
    """The alerts one request raises, given how the site decided it (``replay``: it was
    answered with a kept answer, for free)."""
    found: list[tuple[str, str]] = []
    if refusal_kind == "paused":
        found.append((PAUSED, f"a paused node was asked for {info.kind}: {reason}"))
    elif refusal_kind == "budget":
        found.append((OVER_CAP, f"a {info.kind} request would exceed a budget: {reason}"))
    elif refusal_kind == "error":
        found.append((FAULT, f"the node could not serve a {info.kind} request: {reason}"))
    elif refusal_kind is not None:
        found.append((REFUSED, f"a {info.kind} request was refused ({refusal_kind}): {reason}"))
    fresh = refusal_kind is None and not replay
    repeats = _earlier_fresh_answers(info=info, audit_file=audit_file) + 1 if fresh else 0
    if repeats > policy.repeated_query_limit:
        found.append(
            (
                REPEATED,
                (
                    f"the same question ({info.kind}, whatever its epsilon or noise) was answered afresh {repeats} "
                    f"times within {REPEAT_WINDOW.total_seconds() / 3600:g} h; the site allows "
                    f"{policy.repeated_query_limit} before alerting (repeated_query_limit)"
                ),
            )
        )
    now = utc_now()
    return [
        Alert(
            alert=kind,
            message=message,
            site_id=site_id,
            task=info.kind,
            project=info.project,
            run_id=info.run_id,
            coordinator=info.coordinator(),
            request_hash=info.identity,
            time=now,
        )
        for kind, message in found
    ]


def _earlier_fresh_answers(*, info: RequestInfo, audit_file: Path) -> int:
    """Earlier requests of the same question answered afresh (served, not a replay)."""
    since = (datetime.now(UTC) - REPEAT_WINDOW).strftime(TIME_FORMAT)
    # The question as the log writes it (compact JSON), so only its lines match.
    return count_recent(
        path=audit_file,
        since=since,
        kind="request",
        contains=f'"question":"{info.question}"',
        where=_fresh_answer,
    )


def _fresh_answer(record: dict[str, Any]) -> bool:
    decision = record.get("decision") or {}
    return decision.get("outcome") == "served" and not record.get("replay", False)


def raise_alerts(*, alerts: list[Alert], policy: NodePolicy, audit_file: Path) -> None:
    """Write each alert to the audit log and send it to the site's command and webhook."""
    for alert in alerts:
        append_audit(path=audit_file, entry=alert.to_json())
        log.warning("site alert (%s): %s", alert.alert, alert.message)
        body = json.dumps(alert.to_json()).encode("utf-8")
        if policy.alert_command:
            _deliver(
                alert,
                "command",
                policy.alert_command,
                lambda body=body: _run_command(policy.alert_command, body),
                audit_file,
            )
        if policy.alert_webhook:
            _deliver(
                alert, "webhook", policy.alert_webhook, lambda body=body: _post(policy.alert_webhook, body), audit_file
            )


def _deliver(alert: Alert, target: str, where: str, send: Any, audit_file: Path) -> None:
    try:
        send()
    except Exception as err:  # an alert that cannot be sent must not stop the node
        log.error("site alert could not be sent to its %s %s: %s", target, where, err)
        append_audit(
            path=audit_file,
            entry={
                "kind": "alert-delivery-failed",
                "time": utc_now(),
                "target": target,
                "where": where,
                "alert": alert.alert,
                "request_hash": alert.request_hash,
                "error": f"{type(err).__name__}: {err}",
            },
        )


def _run_command(command: str, body: bytes) -> None:
    done = subprocess.run(command, shell=True, input=body, capture_output=True, timeout=COMMAND_TIMEOUT_S)
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", errors="replace").strip()[-500:]
        raise RuntimeError(f"the alert command exited with status {done.returncode}: {tail or '(no stderr)'}")


def _post(url: str, body: bytes) -> None:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:
        if not 200 <= response.status < 300:
            raise RuntimeError(f"the webhook answered HTTP {response.status}")
