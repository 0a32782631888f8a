"""Every private name of Flower the coordinator's processes touch, declared and checked here.

Two kinds, treated differently on a Flower that no longer matches:

- **security** (``SUPERLINK_APP``): the pieces of ``flower-superlink`` that the
  workbench's SuperLink process (superlink_process.py) runs itself so that it can wrap
  Flower's HTTP app in ``api_gate.ApiGate`` (only Fleet and health on the address the
  sites dial; Control and Runtime on loopback). On a mismatch ``locked_superlink_app``
  raises ``FlowerContractError`` and the coordinator does not start: an unlocked
  SuperLink is never the fallback. ``FLEET_ROUTER`` is where the Fleet calls the gate
  lets through are checked to exist.
- **speed** (``SERVERAPP_TIMERS``): the deployed Grid of a ServerApp pulls a
reply's objects with Flower's 1 s back-off (doubling up to 10 s), for up to 2 hours;
``tune_serverapp`` makes those pulls prompt (20 ms) and bounded (the study's wait for
a site). On a Flower that no longer matches, Flower's own
behaviour is kept and a warning says so. Replies themselves are collected through
the Grid's public calls (prompt_grid.py). ``tests/test_flwr_compat.py`` checks the
declarations and that the patch takes effect.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import Any

from federation.coordinator.api_gate import FLEET_PREFIX, SITE_FLEET_CALLS, ApiGate
from federation.flwr_contract import (
    OBJECT_PULL_MAX_SECONDS,
    PULL_OBJECTS,
    Private,
    prompt_object_pulls,
    pull_objects_in,
    require,
)

HTTP_GRID = "flwr.superlink.grid.http_grid"
SERVERAPP_TIMERS: tuple[Private, ...] = (PULL_OBJECTS, pull_objects_in(HTTP_GRID))


def tune_serverapp(*, object_pull_seconds: float = OBJECT_PULL_MAX_SECONDS) -> list[str]:
    """In this process (a deployed ServerApp): reply objects pulled after 20 ms, not
    Flower's 1 s back-off, and given up after ``object_pull_seconds`` (a site that died
    half-way through pushing its reply then reads as a failed site, not a study that
    hangs for Flower's 2 hours). Returns the warnings for patches left out."""
    warnings: list[str] = []
    prompt_object_pulls(HTTP_GRID, max_seconds=object_pull_seconds, warnings=warnings)
    return warnings


SUPERLINK_CLI = "flwr.superlink.cli.flower_superlink"
SUPERLINK_APP: tuple[Private, ...] = (
    Private(
        SUPERLINK_CLI, "_parse_superlink_lifespan_config", why="flower-superlink's own arguments, read as it reads them"
    ),
    Private(
        SUPERLINK_CLI,
        "SuperLinkLifespan",
        why="what flower-superlink starts and stops with its app (ServerApp executor)",
    ),
    Private(
        "flwr.superlink.main",
        "create_app",
        why="Flower's SuperLink app (Fleet, Control, Runtime), to be wrapped in the API gate",
        params=("config", "superlink_lifespan_class"),
    ),
    Private(
        "flwr.superlink.config_loader",
        "SuperLinkLifespanConfig",
        why="where the parsed arguments keep the TLS files and the operator's host and port",
        params=("host", "port", "ssl_certfile", "ssl_keyfile"),
    ),
    Private("flwr.supercore.http_logging", "get_uvicorn_log_config", why="Flower's log format", params=("log_level",)),
    Private("flwr.supercore.logger", "console_handler", why="Flower's log level", callable=False, fields=("level",)),
)
FLEET_ROUTER = Private(
    "flwr.superlink.routers.fleet.router", "router", why="the Fleet calls the API gate lets through", callable=False
)


def fleet_call_problems() -> list[str]:
    """The Fleet calls the gate lets through that Flower's Fleet router no longer has."""
    problems = FLEET_ROUTER.problems()
    if problems:
        return problems
    paths = {getattr(route, "path", "") for route in FLEET_ROUTER.resolve().routes}
    return [
        f"Flower's Fleet API has no {FLEET_PREFIX}{call} (api_gate.SITE_FLEET_CALLS)"
        for call in sorted(SITE_FLEET_CALLS)
        if f"{FLEET_PREFIX}{call}" not in paths
    ]


@dataclass(frozen=True)
class LockedSuperLink:
    """Flower's SuperLink app inside the API gate, and what uvicorn needs to serve it."""

    app: ApiGate
    ssl_certfile: str | None
    ssl_keyfile: str | None
    log_config: dict[str, Any]


def locked_superlink_app(*, flower_args: list[str], operator_port: int) -> LockedSuperLink:
    """Flower's SuperLink app for ``flower_args`` (flower-superlink's own arguments, with
    ``--host 127.0.0.1 --port <operator_port>``: its ServerApps reach the Runtime API
    there), wrapped in the API gate. FlowerContractError when Flower changed."""
    require(
        SUPERLINK_APP,
        what="the coordinator's SuperLink (its Control and Runtime APIs are locked to loopback)",
        declared_in="federation/coordinator/flwr_compat.py",
    )
    # The package flwr.superlink.cli exports a function of the module's name: import by path.
    cli = importlib.import_module(SUPERLINK_CLI)
    from flwr.supercore.http_logging import get_uvicorn_log_config
    from flwr.supercore.logger import console_handler
    from flwr.superlink.main import create_app

    # Flower's parser reads sys.argv; this process runs nothing else.
    sys.argv = ["flower-superlink", *flower_args]
    config = cli._parse_superlink_lifespan_config()
    app = create_app(config, cli.SuperLinkLifespan)
    return LockedSuperLink(
        app=ApiGate(app, operator_port=operator_port),
        ssl_certfile=config.ssl_certfile,
        ssl_keyfile=config.ssl_keyfile,
        log_config=get_uvicorn_log_config(console_handler.level),
    )
