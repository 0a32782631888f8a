"""Every private name of Flower the coordinator's processes touch, declared and checked here.

Only speed is at stake on this side: the deployed Grid of a ServerApp pulls a
reply's objects with Flower's 1 s back-off (doubling up to 10 s), for up to 2 hours;
``tune_serverapp`` makes those pulls prompt (20 ms) and bounded (the study's wait for
a site). On a Flower that no longer matches, Flower's own
behaviour is kept and a warning says so. Replies themselves are collected through
the Grid's public calls (prompt_grid.py). ``tests/test_flwr_compat.py`` checks the
declarations and that the patch takes effect.
"""

from __future__ import annotations

from federation.flwr_contract import (
    OBJECT_PULL_MAX_SECONDS,
    PULL_OBJECTS,
    Private,
    prompt_object_pulls,
    pull_objects_in,
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
