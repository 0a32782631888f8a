"""The site's Flower ClientApp.

``build_client_app`` is used by the simulation (sites mapped from partition ids);
the module-level ``app`` is what a hospital's SuperNode runs, locating its data and
state from the node config that hospital IT wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from federation.node.range_task import QUERY_KIND_KEY
from federation.node.site import SiteConfig, resolve_from_node_config
from federation.node.tasks import serve

SiteResolver = Callable[[dict[str, Any]], SiteConfig]


def build_client_app(*, resolve_site: SiteResolver = resolve_from_node_config) -> ClientApp:
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        return serve(kind="train", msg=msg, site=resolve_site(dict(context.node_config)))

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        return serve(kind="evaluate", msg=msg, site=resolve_site(dict(context.node_config)))

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        name = str(msg.content["config"].get(QUERY_KIND_KEY, "")) if "config" in msg.content else ""
        return serve(kind=f"query:{name}", msg=msg, site=resolve_site(dict(context.node_config)))

    return app


app = build_client_app()
