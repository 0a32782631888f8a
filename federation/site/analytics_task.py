"""The site's analytics handlers: one per query kind, and one for a query's cost.

A query message names its kind in ``config["query-kind"]`` (the ClientApp routes it to
"query:<kind>") and carries the query itself as JSON. Each handler answers only its
own kind, so a policy that allows "query:count" but not "query:survival" cannot be
side-stepped by a message that says one kind and carries another.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from flwr.app import ConfigRecord, Message, RecordDict

from federation.analytics.errors import QueryError
from federation.analytics.query import KINDS
from federation.errors import InvalidRequest
from federation.protocol.query_request import QueryRequest
from federation.protocol.replies import ANSWER_KEY, COST_KEY, RELEASE_KEY, site_record
from federation.protocol.task_kinds import COST_KIND
from federation.site.config import NodePolicy
from federation.site.query_answers import answer_query, query_cost
from federation.site.site_config import SiteConfig


def _request(msg: Message) -> QueryRequest:
    """The query request of ``msg``, or an InvalidRequest about the message (never the data)."""
    try:
        if "config" not in msg.content:
            raise QueryError("A query message carries a 'config' record; this one has none.")
        return QueryRequest.from_config(msg.content["config"])
    except (QueryError, KeyError, ValueError) as err:
        text = f"malformed query: {err}"
        raise InvalidRequest(text, public=text) from None


def handler_for(kind: str) -> Callable[[Message, SiteConfig, NodePolicy], Message]:
    """The handler of "query:<kind>" (a refusal raises; ``tasks.serve`` replies with it)."""

    def handle(msg: Message, site: SiteConfig, policy: NodePolicy) -> Message:
        request = _request(msg)
        if request.query.kind != kind:
            text = f"the message was routed as query:{kind} but carries a {request.query.kind} query."
            raise InvalidRequest(text, public=text)
        answer = answer_query(request=request, site=site)
        record = site_record(
            site_id=site.site_id,
            receipts=answer.receipts,
            dataset=site.dataset,
            replay=answer.replay,
            epsilon=answer.epsilon,
            uncovered=answer.uncovered,
            **{"query-id": answer.query_id, "noise-multiplier": answer.noise_multiplier},
        )
        content = RecordDict({ANSWER_KEY: ConfigRecord({RELEASE_KEY: answer.release_text}), "site": record})
        return Message(content=content, reply_to=msg)

    handle.__name__ = f"handle_{kind}_query"
    return handle


def handle_cost(msg: Message, site: SiteConfig, policy: NodePolicy) -> Message:
    """What a query would cost at this site, without running it (reads no values)."""
    request = _request(msg)
    try:
        cost = query_cost(request=request, site=site)
    except (QueryError, KeyError, ValueError) as err:
        text = f"malformed query: {err}"
        raise InvalidRequest(text, public=text) from None
    content = RecordDict(
        {COST_KEY: ConfigRecord({COST_KEY: json.dumps(cost)}), "site": site_record(site_id=site.site_id)}
    )
    return Message(content=content, reply_to=msg)


ANALYTICS_HANDLERS = {f"query:{kind}": handler_for(kind) for kind in KINDS}
ANALYTICS_HANDLERS[f"query:{COST_KIND}"] = handle_cost
