"""What a request asks, read from its Flower message without touching the site's data.

The gate decides on it and the audit log records it: who claims to ask (the
coordinator named in the request, and the SuperLink's sender node id), the project
to charge, the run, and a compact summary of the parameters (long values, such as a
feature encoder or a data dictionary, are replaced by their sha256 so the log stays
small and never holds anything the site could not show).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from flwr.app import Message

from federation.analytics.errors import QueryError
from federation.analytics.query import Query
from federation.protocol.query_request import QUERY_CONFIG_KEY
from federation.protocol.task_kinds import COST_KIND, EVALUATE, QUERY_PREFIX, RANGES, TRAIN, TUNE

RUN_DEADLINE_KEY = "run-deadline"  # epoch seconds: the run's messages are refused after it
_LONG = 1000  # characters: a longer parameter (an encoder, a dictionary) is kept as its hash
# Keys that differ between otherwise identical requests (a fresh run id per call);
# left out of the identity used to spot repeated queries.
_NOT_IDENTITY = ("spec-run-id", "run-id", RUN_DEADLINE_KEY)
# Query tasks that release nothing from the data's values under a query of their own.
_PRICED_OR_RANGES = (f"{QUERY_PREFIX}{COST_KIND}", f"{QUERY_PREFIX}{RANGES}")
# What each kind of task is called in a malformed-request refusal (as its handler says it).
_MALFORMED = {
    TRAIN: "malformed training request",
    EVALUATE: "malformed evaluation request",
    "query:ranges": "malformed range query",
    TUNE: "malformed local tuning request",
}


@dataclass(frozen=True)
class RequestInfo:
    """One request as the site sees it. ``problem`` is set when it cannot be read."""

    kind: str
    project: str | None
    claimed_coordinator: str | None
    run_id: str | None
    flower_run_id: int | None
    message_id: str | None
    src_node_id: int | None
    parameters: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None
    expires_at: float | None = None  # epoch seconds: the message's own TTL, or the run's deadline
    expires_why: str = ""  # which of the two
    query_question: str | None = None  # Query.question_id of an analytics query (read from the full text)

    def expired(self, *, now: float, tolerance: float = 0.0) -> bool:
        """Past its deadline (beyond ``tolerance`` seconds of clock difference)."""
        return self.expires_at is not None and now > self.expires_at + tolerance

    @property
    def identity(self) -> str:
        """sha256 of the task and its parameters (run ids left out): equal for repeats."""
        same = {k: v for k, v in self.parameters.items() if k not in _NOT_IDENTITY}
        text = json.dumps({"task": self.kind, "parameters": same}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def question(self) -> str:
        """What the repeated-query check counts: for an analytics query, its question
        (``Query.question_id``: epsilon, noise and label left out, the filter in canonical
        order), so an offset of 1e-12 in epsilon is the same question; for other tasks
        (and a query that cannot be read) the request's identity."""
        return self.query_question or self.identity

    @property
    def malformed_reason(self) -> str:
        prefix = _MALFORMED.get(
            self.kind, "malformed query" if self.kind.startswith(QUERY_PREFIX) else "malformed request"
        )
        return f"{prefix}: {self.problem}"

    def coordinator(self) -> dict[str, Any]:
        return {
            "claimed": self.claimed_coordinator,
            "src_node_id": self.src_node_id,
            "flower_run_id": self.flower_run_id,
        }


def describe_request(*, kind: str, msg: Message) -> RequestInfo:
    """Read ``msg`` as a request of ``kind``; never raises (a problem is recorded instead)."""
    meta = _metadata(msg)
    try:
        config = dict(msg.content["config"]) if "config" in msg.content else None
    except Exception as err:  # a content that cannot be read is the sender's problem, not a crash
        return RequestInfo(
            kind=kind,
            project=None,
            claimed_coordinator=None,
            run_id=None,
            problem=f"its content cannot be read ({err})",
            **meta,
        )
    if config is None:
        problem = (
            "A query request carries a 'config' record; this one has none."
            if kind.startswith(QUERY_PREFIX)
            else "the message carries no 'config' record."
        )
        return RequestInfo(kind=kind, project=None, claimed_coordinator=None, run_id=None, problem=problem, **meta)
    parameters = {str(k): _summary(v) for k, v in sorted(config.items())}
    meta.update(_expiry(msg, config))
    if kind.startswith(QUERY_PREFIX) and kind != "query:ranges":
        project, coordinator, run_id = config.get("project"), config.get("actor"), config.get("run-id")
        missing = "query" if "query" not in config else "project" if project is None else None
        problem = f"A query request carries query and project; this one lacks {missing}." if missing else None
    else:  # train, evaluate, tune and range finding carry a TrainingSpec
        project, coordinator, run_id = (
            config.get("spec-project"),
            config.get("spec-coordinator"),
            config.get("spec-run-id"),
        )
        problem = None if project is not None else "the request names no project (spec-project)."
    return RequestInfo(
        kind=kind,
        project=None if project is None else str(project),
        claimed_coordinator=None if coordinator is None else str(coordinator),
        run_id=None if run_id is None else str(run_id),
        parameters=parameters,
        problem=problem,
        query_question=_question(kind, config),
        **meta,
    )


def _expiry(msg: Message, config: dict[str, Any]) -> dict[str, Any]:
    """When the request stops being valid: its message's TTL (Flower's ``created_at +
    ttl``: the coordinator stopped waiting then) or the run's deadline, the earlier."""
    found: list[tuple[float, str]] = []
    try:
        created, ttl = float(msg.metadata.created_at), float(msg.metadata.ttl)
        if math.isfinite(created + ttl) and created > 0:
            found.append((created + ttl, f"the coordinator stopped waiting for this message after {ttl:.0f} s"))
    except Exception:  # a message built without metadata (a test, a local call)
        pass
    if RUN_DEADLINE_KEY in config:
        try:
            found.append((float(config[RUN_DEADLINE_KEY]), "the run's deadline passed"))
        except (TypeError, ValueError):
            pass
    if not found:
        return {}
    at, why = min(found)
    return {"expires_at": at, "expires_why": why}


def _question(kind: str, config: dict[str, Any]) -> str | None:
    """The question of an analytics query, from its whole text (a long query is kept in
    ``parameters`` only by its hash, so the question is read here); None otherwise."""
    if not kind.startswith(QUERY_PREFIX) or kind in _PRICED_OR_RANGES or QUERY_CONFIG_KEY not in config:
        return None
    try:
        return Query.from_json(str(config[QUERY_CONFIG_KEY])).question_id
    except (QueryError, TypeError, ValueError, KeyError):
        return None


def _metadata(msg: Message) -> dict[str, Any]:
    try:
        meta = msg.metadata
        return {
            "flower_run_id": int(meta.run_id),
            "message_id": str(meta.message_id),
            "src_node_id": int(meta.src_node_id),
        }
    except Exception:  # a message built without metadata (a test, a local call)
        return {"flower_run_id": None, "message_id": None, "src_node_id": None}


def _summary(value: Any) -> Any:
    """A parameter as the log keeps it: short values as they are, long ones by hash."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    if isinstance(value, bytes):
        return f"<{len(value)} bytes, sha256 {hashlib.sha256(value).hexdigest()[:16]}>"
    if isinstance(value, list):
        text = json.dumps([_summary(v) for v in value], default=str)
    else:
        text = str(value)
    if len(text) <= _LONG:
        return text if not isinstance(value, list) else json.loads(text)
    return f"<{len(text)} characters, sha256 {hashlib.sha256(text.encode()).hexdigest()[:16]}>"
