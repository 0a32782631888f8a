"""The coordinator's side of analytics: send queries, collect the noisy site answers,
combine them into per-site and pooled answers with standard errors and intervals.

Works over any Flower Grid (simulation or deployment). Queries go one after the
other, every site at once for each: a site's ledger then sees them in the order the
analyst wrote them, and a query that would exceed a budget is refused on its own.
The coordinator never recomputes a privacy number: each site states what it charged
and signs it (receipts); the estimates below are post-processing of the releases.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from federation.analytics.estimates import answer_frame
from federation.analytics.release import Release
from federation.coordinator.events import SiteReply
from federation.coordinator.reply_check import SiteRegistry, checked
from federation.protocol.query_request import QueryRequest
from federation.protocol.replies import ANSWER_KEY, COST_KEY, RELEASE_KEY
from federation.protocol.task_kinds import COST_KIND, QUERY_KIND_KEY


@dataclass(frozen=True)
class SiteQueryReply:
    """One site's reply to one query: its status and, when it answered, its release."""

    reply: SiteReply
    release: Release | None = None

    @property
    def site_id(self) -> str:
        return self.reply.site_id

    @property
    def replay(self) -> bool:
        return bool(self.reply.info.get("replay", False))

    @property
    def epsilon(self) -> float:
        """What this answer cost at the site now (0 for a replay or a refusal)."""
        return float(self.reply.info.get("epsilon", 0.0)) if self.reply.status == "ok" else 0.0

    def to_json(self) -> dict[str, Any]:
        """Plain JSON, for a deployed coordinator's run folder (the workbench reads it back)."""
        from dataclasses import asdict

        return {
            "reply": {**asdict(self.reply), "receipts": list(self.reply.receipts)},
            "release": self.release.to_json() if self.release is not None else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SiteQueryReply:
        reply = SiteReply(**{**data["reply"], "receipts": tuple(data["reply"].get("receipts", ()))})
        release = Release.from_json(data["release"]) if data.get("release") is not None else None
        return cls(reply=reply, release=release)


def query_messages(*, request: QueryRequest, node_ids: Sequence[int], kind: str | None = None) -> list[Message]:
    config = request.to_config()
    if kind is not None:
        config[QUERY_KIND_KEY] = kind
    return [
        Message(
            content=RecordDict({"config": ConfigRecord(config)}),
            message_type=MessageType.QUERY,
            dst_node_id=node,
            group_id=request.query.query_id,
        )
        for node in node_ids
    ]


def parse_reply(msg: Message, *, node_names: dict[int, str], registry: SiteRegistry | None = None) -> SiteQueryReply:
    reply = checked(msg, node_names=node_names, registry=registry)
    release = None
    if reply.status == "ok" and ANSWER_KEY in msg.content:
        release = Release.from_json(str(msg.content[ANSWER_KEY][RELEASE_KEY]))
    return SiteQueryReply(reply=reply, release=release)


def ask_sites(
    *,
    grid: Grid,
    requests: Sequence[QueryRequest],
    node_ids: Sequence[int],
    timeout: float,
    on_answer: Callable[[QueryRequest, list[SiteQueryReply]], None] | None = None,
    registry: SiteRegistry | None = None,
) -> list[list[SiteQueryReply]]:
    """Every request to every site, in order; replies sorted by site id (each checked
    against ``registry``: its claimed site and its receipts, reply_check.py)."""
    answers = []
    for request in requests:
        replies = grid.send_and_receive(messages=query_messages(request=request, node_ids=node_ids), timeout=timeout)
        parsed = sorted((parse_reply(m, node_names={}, registry=registry) for m in replies), key=lambda r: r.site_id)
        answers.append(parsed)
        if on_answer is not None:
            on_answer(request, parsed)
    return answers


def ask_costs(
    *,
    grid: Grid,
    requests: Sequence[QueryRequest],
    node_ids: Sequence[int],
    timeout: float,
    registry: SiteRegistry | None = None,
) -> pd.DataFrame:
    """What each request would cost at each site, without running any (one row each)."""
    rows: list[dict[str, Any]] = []
    for request in requests:
        messages = query_messages(request=request, node_ids=node_ids, kind=COST_KIND)
        for msg in grid.send_and_receive(messages=messages, timeout=timeout):
            reply = checked(msg, node_names={}, registry=registry)
            if reply.status == "ok":
                rows.append(json.loads(str(msg.content[COST_KEY][COST_KEY])))
            else:
                rows.append(
                    {
                        "site": reply.site_id,
                        "query_id": request.query.query_id,
                        "fits": False,
                        "binding": f"{reply.status}: {reply.reason}",
                    }
                )
    return pd.DataFrame(rows)


def combine(*, request: QueryRequest, replies: Sequence[SiteQueryReply], level: float = 0.95) -> pd.DataFrame:
    """Per-site and pooled answers from the sites that answered (see estimates.py).

    The pooled rows cover only the sites that answered; the caller reports the others.
    """
    releases = [r.release for r in replies if r.release is not None]
    return answer_frame(query=request.query, releases=releases, level=level)
