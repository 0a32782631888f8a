"""Every private name of Flower the site's processes touch, declared and checked here.

Two kinds, treated differently on a Flower that no longer matches:

- **speed** (``SUPERNODE_TIMERS``, ``EXECUTOR_TIMERS``, ``LOG_TIMESTAMPS``): the
  SuperNode's idle waits, its heartbeat interval, object-pull back-offs, timestamps
  on Flower's log lines. On a mismatch Flower's own behaviour is kept and a warning
  says so (``tune_supernode``, ``tune_executor``): only speed is at stake.
- **security** (``RUNTIME_PROTOCOL``): the Runtime API calls the site executor makes
  to acquire a task, pull its message and push the reply, as Flower's SuperExec and
  ``flwr-clientapp`` do. The executor decides what runs at the site; on a mismatch
  ``runtime_protocol()`` raises ``FlowerContractError`` and the executor refuses to
  start.

``tests/test_flwr_compat.py`` checks every declaration and that each patch takes effect.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Any

from federation.flwr_contract import (
    Private,
    capped_time,
    patch,
    prompt_object_pulls,
    require,
)

NODE_LOOP = "flwr.supernode.start_client_internal"
FLEET_CONNECTION = "flwr.supernode.fleet_http_connection"
HEARTBEAT = "flwr.supercore.heartbeat"
FLOWER_HEARTBEAT_SECONDS = 30.0  # Flower's HEARTBEAT_DEFAULT_INTERVAL
HEARTBEAT_RANGE = (10.0, 1800.0)  # what Flower's SuperLink accepts (HEARTBEAT_MIN/MAX_INTERVAL)

SUPERNODE_SLEEPS = Private(
    NODE_LOOP, "time", why="the SuperNode's 3 s wait after an empty pull, capped", callable=False
)
NODE_HEARTBEAT = Private(
    FLEET_CONNECTION,
    "HEARTBEAT_DEFAULT_INTERVAL",
    why="the heartbeat interval the node announces (a crashed node is marked offline after 2 of them)",
    callable=False,
)
SENDER_HEARTBEAT = Private(
    HEARTBEAT,
    "HEARTBEAT_DEFAULT_INTERVAL",
    why="how often the node's heartbeat sender beats (it must match what the node announces)",
    callable=False,
)
SUPERNODE_TIMERS = (SUPERNODE_SLEEPS, NODE_HEARTBEAT, SENDER_HEARTBEAT)
EXECUTOR_TIMERS: tuple[Private, ...] = ()  # inflatable_utils.pull_objects only (flwr_contract.PULL_OBJECTS)
LOG_TIMESTAMPS = Private(
    "flwr.supercore.logger",
    "ConsoleHandler",
    why="time on each of Flower's log lines in the node's log",
    params=("timestamps",),
)

RUNTIME_PROTOCOL = (
    Private(
        "flwr.supercore.runtime",
        "RuntimeHttpClient.from_server_address",
        why="the executor's client of the SuperNode's Runtime API",
        params=("server_address", "insecure", "root_certificates", "interceptors", "retry_invoker"),
    ),
    Private(
        "flwr.supercore.interceptors",
        "RuntimeVersionHttpInterceptor",
        why="the executor names itself as SuperExec / flwr-clientapp",
        params=("component_name",),
    ),
    Private("flwr.supercore.interceptors", "RuntimeTokenHttpInterceptor", why="a task's token", params=("token",)),
    Private(
        "flwr.supercore.interceptors",
        "SuperExecAuthHttpInterceptor",
        why="a task request signed with the node's Runtime API secret (the SuperNode hands tasks to no one else)",
        params=("master_secret", "protected_methods"),
    ),
    Private("flwr.supercore.retry", "make_simple_http_retry_invoker", why="Flower's retries of Runtime calls"),
    Private(
        "flwr.proto.runtime_pb2",
        "AcquireTaskRequest",
        why="acquire a ClientApp task",
        fields=("supported_task_types",),
    ),
    Private("flwr.supercore.constant", "TaskType", why="the ClientApp task type", fields=("CLIENT_APP",)),
    Private("flwr.supercore.heartbeat", "HeartbeatSender", why="the task's heartbeat", params=("heartbeat_fn",)),
    Private(
        "flwr.supercore.heartbeat",
        "make_task_heartbeat_fn_http",
        why="the task's heartbeat over the Runtime API",
        params=("client",),
    ),
    Private(
        "flwr.supernode.runtime.run_clientapp",
        "pull_task_input",
        why="a task's message, context, run and app bundle",
        params=("client",),
    ),
    Private(
        "flwr.supernode.runtime.run_clientapp",
        "push_message",
        why="the reply",
        params=("client", "message", "context"),
    ),
    Private(
        "flwr.supernode.runtime.run_clientapp",
        "push_task_output",
        why="the task's final status",
        params=("client", "context", "sub_status", "details"),
    ),
    Private("flwr.common.config", "get_fab_config", why="which ClientApp a bundle names", params=("fab_file",)),
    Private(
        "flwr.common.constant",
        "ErrorCode",
        why="error replies",
        callable=False,
        fields=("LOAD_CLIENT_APP_EXCEPTION", "CLIENT_APP_RAISED_EXCEPTION"),
    ),
    Private("flwr.common.constant", "SubStatus", why="a task's status", callable=False, fields=("COMPLETED", "FAILED")),
)

logger = logging.getLogger("workbench.site.flwr_compat")


def check_heartbeat_seconds(seconds: float) -> float:
    low, high = HEARTBEAT_RANGE
    if not low <= seconds <= high:
        raise ValueError(
            f"a node's heartbeat interval must be from {low:g} to {high:g} s (what Flower's SuperLink accepts); "
            f"got {seconds!r}."
        )
    return seconds


def tune_supernode(*, poll_seconds: float, heartbeat_seconds: float = FLOWER_HEARTBEAT_SECONDS) -> list[str]:
    """In this process (a SuperNode): idle waits capped at ``poll_seconds``, object pulls
    prompt, heartbeats every ``heartbeat_seconds``. Returns the warnings for patches
    left out (Flower's behaviour kept)."""
    check_heartbeat_seconds(heartbeat_seconds)
    warnings: list[str] = []
    patch(SUPERNODE_SLEEPS, capped_time(poll_seconds), warnings=warnings)
    prompt_object_pulls(NODE_LOOP, warnings=warnings)
    if heartbeat_seconds != FLOWER_HEARTBEAT_SECONDS:
        # Both or neither: a node that announces 10 s but beats every 30 s goes offline.
        if patch(NODE_HEARTBEAT, lambda _: heartbeat_seconds, also=[SENDER_HEARTBEAT], warnings=warnings):
            patch(SENDER_HEARTBEAT, lambda _: heartbeat_seconds, warnings=warnings)
    return warnings


def tune_executor() -> list[str]:
    """In this process (the site executor): object pulls prompt. Returns the warnings."""
    warnings: list[str] = []
    prompt_object_pulls(warnings=warnings)
    return warnings


def timestamp_flower_log() -> bool:
    """Give Flower's console log lines a time (hospital IT reads that log)."""
    if LOG_TIMESTAMPS.problems():
        logger.warning("Flower's log lines keep no time: %s", "; ".join(LOG_TIMESTAMPS.problems()))
        return False
    handler_class = LOG_TIMESTAMPS.resolve()
    done = False
    for handler in logging.getLogger("flwr").handlers:
        if isinstance(handler, handler_class):
            handler.timestamps = True
            done = True
    return done


@dataclass(frozen=True)
class RuntimeProtocol:
    """The checked Runtime API calls of the site executor (see RUNTIME_PROTOCOL)."""

    RuntimeHttpClient: Any
    RuntimeVersionHttpInterceptor: Any
    RuntimeTokenHttpInterceptor: Any
    SuperExecAuthHttpInterceptor: Any
    make_simple_http_retry_invoker: Any
    AcquireTaskRequest: Any
    TaskType: Any
    HeartbeatSender: Any
    make_task_heartbeat_fn_http: Any
    pull_task_input: Any
    push_message: Any
    push_task_output: Any
    get_fab_config: Any
    ErrorCode: Any
    SubStatus: Any


def runtime_protocol() -> RuntimeProtocol:
    """The executor's Runtime API calls; FlowerContractError when any is not as declared."""
    require(
        RUNTIME_PROTOCOL,
        what="the site executor (it decides what runs at the site)",
        declared_in="federation/site/flwr_compat.py",
    )
    resolved = {p.name.split(".")[0]: p for p in RUNTIME_PROTOCOL}
    values = {}
    for name, private in resolved.items():
        # RuntimeHttpClient.from_server_address is checked; the class is what the executor uses.
        values[name] = getattr(importlib.import_module(private.module), name)
    return RuntimeProtocol(**values)
