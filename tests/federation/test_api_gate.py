"""The coordinator's API gate in process: which path passes on which listener.

The loopback test (tests/deployment/test_locked_coordinator.py) plays the outsider
against the real SuperLink; this one tries the paths an attacker could craft (dot
segments, encoded slashes, sub-paths, Flower's own docs) against the gate around a
real ASGI app, over HTTP as httpx sends it, in a fraction of a second.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from federation.coordinator.api_gate import LOOPBACK_ONLY, SITES_ONLY, ApiGate, site_may_call

SITES_PORT, OPERATOR_PORT = 9092, 39093


async def _flower_stand_in(scope, receive, send):
    """Any app behind the gate: answers 200 with the path it was given."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": scope["path"].encode()})


def _get(path: str, *, port: int, peer: str = "203.0.113.7") -> httpx.Response:
    gate = ApiGate(_flower_stand_in, operator_port=OPERATOR_PORT)

    async def app(scope, receive, send):  # the listener and the peer uvicorn would report
        scope["server"], scope["client"] = ("10.0.0.5", port), (peer, 50000)
        await gate(scope, receive, send)

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://c") as client:
            return await client.post(path)

    return asyncio.run(go())


@pytest.mark.parametrize("path", ["/health", "/v1/fleet/pull-messages", "/v1/fleet/push-object", "/v1/fleet/get-fab"])
def test_the_sites_calls_pass_on_the_sites_address(path):
    answer = _get(path, port=SITES_PORT)
    assert answer.status_code == 200 and answer.text == path


@pytest.mark.parametrize(
    "path",
    [
        "/v1/control/start-run",
        "/v1/control/register-supernode",
        "/v1/runtime/acquire-task",
        "/v1/fleet/register-node",  # a node is admitted by the operator only
        "/v1/fleet/unregister-node",
        "/v1/fleet/../control/start-run",
        "/v1/fleet/%2e%2e/control/start-run",
        "/v1/fleet/pull-messages/../../control/start-run",
        "/v1/fleet/pull-messages/extra",
        "/v1/fleet//pull-messages",
        "/docs",
        "/openapi.json",
        "/",
    ],
)
def test_everything_else_is_refused_on_the_sites_address_with_the_fix(path):
    answer = _get(path, port=SITES_PORT, peer="127.0.0.1")  # a loopback peer gets no more there
    assert answer.status_code == 403 and answer.json() == {"detail": SITES_ONLY}
    assert "Fix: run the command on the coordinator's machine" in SITES_ONLY


def test_the_operators_port_answers_loopback_peers_only():
    for peer in ("127.0.0.1", "::1"):
        assert _get("/v1/control/start-run", port=OPERATOR_PORT, peer=peer).status_code == 200
    refused = _get("/v1/control/start-run", port=OPERATOR_PORT, peer="203.0.113.7")
    assert refused.status_code == 403 and refused.json() == {"detail": LOOPBACK_ONLY}


def test_a_listener_the_gate_does_not_know_is_treated_as_the_sites():
    assert _get("/v1/control/start-run", port=1, peer="127.0.0.1").status_code == 403
    assert not site_may_call("/v1/fleet/")


@pytest.mark.parametrize(
    "raw",
    [
        "/v1/fleet/../control/start-run",  # as a raw request could carry it (httpx would normalise it)
        "/v1/fleet/./pull-messages",
        "/v1/fleet/pull-messages/..",
        "/v1/fleet/pull-messages?x",
        "/v1/fleet/PULL-MESSAGES",
    ],
)
def test_crafted_paths_are_refused_as_the_gate_reads_them(raw):
    gate = ApiGate(_flower_stand_in, operator_port=OPERATOR_PORT)
    scope = {"type": "http", "path": raw, "server": ("10.0.0.5", SITES_PORT), "client": ("127.0.0.1", 1)}
    assert gate.refusal(scope) == SITES_ONLY
