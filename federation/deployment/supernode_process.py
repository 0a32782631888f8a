"""``flower-supernode``, with its idle waits shortened.

Flower 1.42's SuperNode waits a fixed 3 s after every empty pull from the
SuperLink and 0.5 s between checks for a finished reply
(flwr/supernode/start_client_internal.py). A message therefore waits 1.5 s on
average before a site even sees it, twice a round (train, evaluate). This entry
point runs Flower's own ``flower-supernode`` unchanged except that those waits
are capped at ``WORKBENCH_NODE_POLL_SECONDS`` (0.25 s by default): the SuperNode
polls the SuperLink four times a second instead of once in three seconds.
Everything else (TLS, node authentication, node config, trusted entities) is
Flower's code with the arguments given.
"""

from __future__ import annotations

import os
import sys
import time as _time

POLL_ENV = "WORKBENCH_NODE_POLL_SECONDS"
DEFAULT_POLL_SECONDS = 0.25


class _CappedSleep:
    """The ``time`` module, with ``sleep`` capped; everything else unchanged."""

    def __init__(self, cap: float) -> None:
        self.cap = cap

    def sleep(self, seconds: float) -> None:
        _time.sleep(min(seconds, self.cap))

    def __getattr__(self, name: str):
        return getattr(_time, name)


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
    import flwr.supernode.start_client_internal as node_loop
    from flwr.supernode.cli import flower_supernode

    node_loop.time = _CappedSleep(poll_seconds())  # this module's waits only
    sys.argv = ["flower-supernode", *sys.argv[1:]]
    flower_supernode()


if __name__ == "__main__":
    main()
