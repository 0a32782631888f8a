"""The site's Flower ClientApp.

``build_client_app`` is used by the simulation (sites mapped from partition ids);
the module-level ``app`` is what a hospital's SuperNode runs, locating its data and
state from the node config that hospital IT wrote (``node-toml`` in it points at the
node.toml holding the site's policy; see federation/site/config.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from federation.errors import InternalFault
from federation.protocol.replies import new_incident, refusal
from federation.protocol.task_kinds import QUERY_KIND_KEY, message_kind
from federation.site.config import NODE_TOML_KEY
from federation.site.site_config import SITE_ID_KEY, SiteConfig, resolve_from_node_config
from federation.site.tasks import serve

SiteResolver = Callable[[dict[str, Any]], SiteConfig]
log = logging.getLogger(__name__)


def build_client_app(*, resolve_site: SiteResolver = resolve_from_node_config) -> ClientApp:
    app = ClientApp()

    def answer(kind: str, msg: Message, context: Context) -> Message:
        node_config = dict(context.node_config)
        try:
            site = resolve_site(node_config)
        except (KeyError, ValueError, IndexError) as err:
            # Without its site the node cannot gate, serve or audit: refuse, never crash.
            # Its log (not the requester) gets the details, under the incident id.
            incident = new_incident()
            log.error("the node is misconfigured (incident %s): %s", incident, err)
            return refusal(
                msg,
                site_id=str(node_config.get(SITE_ID_KEY, "unknown")),
                error=InternalFault(f"the node is misconfigured: {err}"),
                incident=incident,
            )
        return serve(kind=kind, msg=msg, site=site, node_toml=node_config.get(NODE_TOML_KEY))

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        return answer("train", msg, context)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        return answer("evaluate", msg, context)

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        name = str(msg.content["config"].get(QUERY_KIND_KEY, "")) if "config" in msg.content else ""
        return answer(message_kind(name), msg, context)

    return app


app = build_client_app()
