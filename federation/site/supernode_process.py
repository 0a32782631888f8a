"""``flower-supernode``, with its waits shortened.

Flower 1.42's SuperNode waits a fixed 3 s after every empty pull from the
SuperLink, 0.5 s between checks for a finished reply, and backs off 1 s (then 2,
4...) when a message's objects are not there yet (flwr/supernode/
start_client_internal.py). A message therefore waits 1.5 s on average before a site
even sees it, twice a round (train, evaluate). This entry point runs Flower's own
``flower-supernode`` unchanged except for those timers (flower_tuning.py): waits
capped at ``WORKBENCH_NODE_POLL_SECONDS`` (0.25 s by default), object pulls retried
after 20 ms. Everything else (TLS, node authentication, node config, trusted
entities) is Flower's code with the arguments given.
"""

from __future__ import annotations

import logging
import os
import sys

POLL_ENV = "WORKBENCH_NODE_POLL_SECONDS"
DEFAULT_POLL_SECONDS = 0.25


def poll_seconds() -> float:
    raw = os.environ.get(POLL_ENV, str(DEFAULT_POLL_SECONDS))
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.01 <= value <= 3.0:
        raise SystemExit(f"{POLL_ENV} must be a number of seconds from 0.01 to 3 (Flower's own wait); got {raw!r}.")
    return value


def main() -> None:
    from flwr.supernode.cli import flower_supernode

    from federation.flower_tuning import prompt_supernode

    prompt_supernode(poll_seconds=poll_seconds())
    # Hospital IT reads this log: give Flower's lines a time.
    for handler in logging.getLogger("flwr").handlers:
        if hasattr(handler, "timestamps"):  # flwr.supercore.logger.ConsoleHandler
            handler.timestamps = True
    sys.argv = ["flower-supernode", *sys.argv[1:]]
    flower_supernode()


if __name__ == "__main__":
    main()
