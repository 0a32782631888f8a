"""Shorter waits inside Flower 1.42's own loops, for the processes the workbench runs.

Flower's deployed components wait on fixed timers that suit a federation of phones,
not three hospitals: a SuperNode sleeps 3 s after every empty pull and 0.5 s between
checks for a finished reply; and every pull of a message's objects that comes before
the objects are there (common: a message becomes visible before its content has been
pushed) backs off 1 s, then 2 s, 4 s... up to 10 s. Measured on loopback, these timers
made up almost all of a round (see benchmarks/deployment/RESULTS.md).

Each function here changes one process's timers and nothing else: the logic, the
messages, the security (TLS, node authentication) stay Flower's. They rebind names in
Flower's modules, so they are tied to flwr 1.42.0 (the project's pin), and
``check_flower_version`` refuses another version.
"""

from __future__ import annotations

import functools
import time as _time

FLOWER_VERSION = "1.42.0"
OBJECT_PULL_INITIAL_BACKOFF = 0.02  # Flower: 1 s
OBJECT_PULL_BACKOFF_CAP = 0.5  # Flower: 10 s


def check_flower_version() -> None:
    import flwr

    if flwr.__version__ != FLOWER_VERSION:
        raise RuntimeError(
            f"the workbench's deployment tunes Flower {FLOWER_VERSION}'s timers; this environment has "
            f"flwr {flwr.__version__}. Install flwr=={FLOWER_VERSION} (the project's pin)."
        )


class CappedSleep:
    """The ``time`` module, with ``sleep`` capped; everything else unchanged."""

    def __init__(self, cap: float) -> None:
        self.cap = cap

    def sleep(self, seconds: float) -> None:
        _time.sleep(min(seconds, self.cap))

    def __getattr__(self, name: str):
        return getattr(_time, name)


def _prompt(pull_objects):
    if getattr(pull_objects, "_workbench_prompt", False):
        return pull_objects

    @functools.wraps(pull_objects)
    def prompt_pull_objects(*args, **kwargs):
        # Flower's helpers pass their own defaults explicitly: take the smaller.
        kwargs["initial_backoff"] = min(
            kwargs.get("initial_backoff", OBJECT_PULL_INITIAL_BACKOFF), OBJECT_PULL_INITIAL_BACKOFF
        )
        kwargs["backoff_cap"] = min(kwargs.get("backoff_cap", OBJECT_PULL_BACKOFF_CAP), OBJECT_PULL_BACKOFF_CAP)
        return pull_objects(*args, **kwargs)

    prompt_pull_objects._workbench_prompt = True
    return prompt_pull_objects


def prompt_object_pulls(*modules) -> None:
    """Retry a not-yet-available object after 20 ms (doubling up to 0.5 s) instead of
    1 s (doubling up to 10 s), in ``modules`` that call ``pull_objects`` by name and in
    flwr's own inflatable_utils (whose helpers call it)."""
    from flwr.supercore.inflatable import inflatable_utils

    check_flower_version()
    for module in (inflatable_utils, *modules):
        module.pull_objects = _prompt(module.pull_objects)


def prompt_supernode(*, poll_seconds: float) -> None:
    """A SuperNode (this process) that polls every ``poll_seconds`` and pulls promptly."""
    import flwr.supernode.start_client_internal as node_loop

    check_flower_version()
    node_loop.time = CappedSleep(poll_seconds)  # this module's waits only
    prompt_object_pulls(node_loop)


def prompt_serverapp() -> None:
    """The deployed Grid of a ServerApp (this process) pulls reply objects promptly."""
    import flwr.superlink.grid.http_grid as http_grid

    prompt_object_pulls(http_grid)
