"""``flower-supernode``, with its waits shortened.

Flower 1.42's SuperNode waits a fixed 3 s after every empty pull from the
SuperLink, 0.5 s between checks for a finished reply, and backs off 1 s (then 2,
4...) when a message's objects are not there yet (flwr/supernode/
start_client_internal.py). A message therefore waits 1.5 s on average before a site
even sees it, twice a round (train, evaluate). This entry point runs Flower's own
``flower-supernode`` unchanged except for those timers (flwr_compat.py): waits
capped at ``WORKBENCH_NODE_POLL_SECONDS`` (0.25 s by default), object pulls retried
after 20 ms, and heartbeats every ``WORKBENCH_NODE_HEARTBEAT_SECONDS`` (Flower's 30 s by
default; a node that crashed is marked offline at the coordinator after two of them,
and a restarted node is refused until then). Everything else (TLS, node
authentication, node config, trusted entities) is Flower's code with the arguments
given. A timer that the installed Flower no longer has is left as Flower's, with a
warning in the node's log.
"""

from __future__ import annotations

import os
import sys

POLL_ENV = "WORKBENCH_NODE_POLL_SECONDS"
HEARTBEAT_ENV = "WORKBENCH_NODE_HEARTBEAT_SECONDS"
DEFAULT_POLL_SECONDS = 0.25
TUNED_LINE = "workbench: Flower's timers tuned"  # the node's log says which patches took effect


def poll_seconds() -> float:
    raw = os.environ.get(POLL_ENV, str(DEFAULT_POLL_SECONDS))
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.01 <= value <= 3.0:
        raise SystemExit(f"{POLL_ENV} must be a number of seconds from 0.01 to 3 (Flower's own wait); got {raw!r}.")
    return value


def heartbeat_seconds() -> float:
    from federation.site.flwr_compat import FLOWER_HEARTBEAT_SECONDS, check_heartbeat_seconds

    raw = os.environ.get(HEARTBEAT_ENV, str(FLOWER_HEARTBEAT_SECONDS))
    try:
        return check_heartbeat_seconds(float(raw))
    except ValueError as err:
        raise SystemExit(f"{HEARTBEAT_ENV}: {err}") from None


def main() -> None:
    from flwr.supernode.cli import flower_supernode

    from federation.site.flwr_compat import timestamp_flower_log, tune_supernode

    poll, heartbeat = poll_seconds(), heartbeat_seconds()
    warnings = tune_supernode(poll_seconds=poll, heartbeat_seconds=heartbeat)
    # Hospital IT reads this log: give Flower's lines a time.
    timestamp_flower_log()
    for warning in warnings:
        print(f"WARNING workbench: {warning}", file=sys.stderr, flush=True)
    print(
        f"{TUNED_LINE}: waits capped at {poll:g} s, heartbeat every {heartbeat:g} s"
        + (f", {len(warnings)} left as Flower's (see the warnings above)" if warnings else ""),
        file=sys.stderr,
        flush=True,
    )
    sys.argv = ["flower-supernode", *sys.argv[1:]]
    flower_supernode()


if __name__ == "__main__":
    main()
