"""The shapes of what a site sends back: an answer, or a refusal with its reason."""

from __future__ import annotations

import json
import uuid
from typing import Any

from flwr.app import ConfigRecord, Message, RecordDict

from federation.errors import public_reason, refusal_kind

REFUSAL_KEY = "refusal"
SITE_KEY = "site"
RECEIPT_KEY = "receipt"
# An analytics answer: the release as JSON; a cost query's answer: the cost as JSON.
ANSWER_KEY = "answer"
RELEASE_KEY = "release"
COST_KEY = "cost"
# An evaluation's answer: the noisy evaluation vector as JSON (training/evaluation.py).
EVALUATION_KEY = "evaluation"


INCIDENT_KEY = "incident"


def new_incident() -> str:
    """An id for one refusal: the requester gets it, the site's audit log holds the story."""
    return uuid.uuid4().hex[:12]


def refusal(msg: Message, *, site_id: str, error: BaseException, incident: str) -> Message:
    """A clear no, sent as content (not a crash), so the coordinator can report it.

    Its ``kind`` comes from the class of ``error`` (federation/errors.py refusal_kind):
    "budget" (a cap, an allocation or the site's per-request cap would be exceeded, or
    the project has no allocation), "policy" (the site does not allow this task),
    "invalid" (the site cannot read the request, or it is outside the site's limits),
    "paused" (the site's kill switch is on) or "error" (the site could not do it;
    nothing released). Its ``reason`` is ``public_reason(error)``: words from the
    request, the site's policy and the project's own budget, never the error's message
    (which stays in the site's audit log under ``incident``).
    """
    record = ConfigRecord(
        {
            "site-id": site_id,
            "kind": refusal_kind(error),
            "reason": public_reason(error),
            INCIDENT_KEY: incident,
        }
    )
    return Message(content=RecordDict({REFUSAL_KEY: record}), reply_to=msg)


def site_record(*, site_id: str, receipts: list[dict[str, Any]] | None = None, **extra: Any) -> ConfigRecord:
    """Who answered, and the ledger receipts of what the answer cost."""
    return ConfigRecord({"site-id": site_id, "receipts": json.dumps(receipts or []), **extra})
