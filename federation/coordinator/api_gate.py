"""Which of the SuperLink's HTTP endpoints answer on which listener.

Flower 1.42 serves its Fleet API (the sites), its Control API (``flwr run``,
``flwr supernode register``, ``flwr stop``: no login without Flower's Enterprise
package) and its Runtime API (the ServerApps' ServerAppIo) from one FastAPI app on one
port. The workbench's SuperLink process (superlink_process.py) serves that app on two
listeners and wraps it in ``ApiGate``:

- the **sites' listener** (the address in coordinator.toml, the one the sites dial)
  answers the Fleet endpoints a registered node uses and the health check, nothing
  else: a Control or Runtime request there gets 403 before Flower sees it;
- the **operator's listener** (``127.0.0.1:<control-port>``) answers everything, to
  loopback peers only: the workbench, the flwr CLI in the coordinator folder and the
  ServerApps on the coordinator's machine.

Why a filter around Flower's app rather than a separate TLS-terminating proxy: the
Fleet traffic (model arrays every round) reaches Flower's app directly, with one
string comparison per request; no second TLS hop, no second process to supervise,
and Flower's own TLS, node authentication and error handling stay as they are. The
filter fails closed: a request on any listener but the operator's is treated as a
site's; a Fleet path Flower does not know is refused (it would be 404 anyway).
Pure ASGI, no Flower import: the Flower names it wraps are in flwr_compat.py.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

HEALTH_PATH = "/health"
FLEET_PREFIX = "/v1/fleet/"
# What a registered SuperNode calls (flwr 1.42, flwr/superlink/routers/fleet/router.py).
# Left out on purpose: register-node and unregister-node (Flower refuses both under
# --enable-supernode-auth; a node is admitted only by the operator, on loopback).
SITE_FLEET_CALLS = frozenset(
    {
        "activate-node",
        "deactivate-node",
        "send-node-heartbeat",
        "pull-messages",
        "push-messages",
        "get-run",
        "get-fab",
        "push-object",
        "pull-object",
        "confirm-message-received",
    }
)

SITES_ONLY = (
    "this address serves the sites' Fleet API only; the Control and Runtime APIs answer on the "
    "coordinator's machine (loopback) only. Fix: run the command on the coordinator's machine "
    "(`workbench coordinator ...`, or the flwr CLI with FLWR_HOME=<coordinator folder>/flwr-home)."
)
LOOPBACK_ONLY = "the operator's API answers loopback peers only. Fix: run the command on the coordinator's machine."


def is_loopback(host: str | None) -> bool:
    """Whether a peer address is a loopback address (an unknown peer is not)."""
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def site_may_call(path: str, *, fleet_calls: Collection[str] = SITE_FLEET_CALLS) -> bool:
    """Whether ``path`` (ASGI's decoded path) is one a site may call on the sites' listener:
    the health check or one Fleet call, matched whole (no dot segments, no sub-paths)."""
    if path == HEALTH_PATH:
        return True
    return path.startswith(FLEET_PREFIX) and path[len(FLEET_PREFIX) :] in fleet_calls


class ApiGate:
    """ASGI middleware: Fleet and health on every listener, the rest on the operator's
    listener (``operator_port``) to loopback peers only; everything else gets 403."""

    def __init__(self, app: App, *, operator_port: int, fleet_calls: Collection[str] = SITE_FLEET_CALLS) -> None:
        self.app = app
        self.operator_port = int(operator_port)
        self.fleet_calls = frozenset(fleet_calls)

    def refusal(self, scope: Scope) -> str | None:
        """Why this request is refused (None: it passes)."""
        server = scope.get("server") or (None, None)
        client = scope.get("client") or (None, None)
        if server[1] == self.operator_port:
            return None if is_loopback(client[0]) else LOOPBACK_ONLY
        return None if site_may_call(scope.get("path", ""), fleet_calls=self.fleet_calls) else SITES_ONLY

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan: Flower's own start and stop
            await self.app(scope, receive, send)
            return
        reason = self.refusal(scope)
        if reason is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": reason[:120]})
        else:
            body = json.dumps({"detail": reason}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 403,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
