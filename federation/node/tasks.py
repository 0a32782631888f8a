"""Every kind of task a site serves, by name, and the one door they all go through.

A task kind is "train", "evaluate" or "query:<name>" (a query message's
``query-kind``). Adding an analysis means registering one handler here; the site's
policy gate and audit log sit in ``serve``, in front of all of them.
"""

from __future__ import annotations

from collections.abc import Callable

from flwr.app import Message

from federation.node.analytics_task import ANALYTICS_HANDLERS
from federation.node.evaluation_task import handle_evaluate
from federation.node.range_task import RANGES, handle_ranges
from federation.node.replies import refusal
from federation.node.site import SiteConfig
from federation.node.training_task import handle_train

Handler = Callable[[Message, SiteConfig], Message]

HANDLERS: dict[str, Handler] = {
    "train": handle_train,
    "evaluate": handle_evaluate,
    f"query:{RANGES}": handle_ranges,
    **ANALYTICS_HANDLERS,  # query:count, query:mean, ..., query:survival, query:cost
}


def serve(*, kind: str, msg: Message, site: SiteConfig) -> Message:
    handler = HANDLERS.get(kind)
    if handler is None:
        known = ", ".join(sorted(HANDLERS))
        return refusal(msg, site_id=site.site_id, kind="policy", reason=f"unknown task {kind!r}; this site serves {known}.")
    return handler(msg, site)
