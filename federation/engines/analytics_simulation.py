"""Analytics queries on Flower's simulation engine, in this process.

One ``run_simulation`` per batch of queries: the engine's start (Ray, about 25 s on
two cores) is paid once for all of them, so ask several questions together. The
sites' handlers are the same as in deployment; only the sites' locations come from
the simulation (``SimulatedSites``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from federation.coordinator.analytics import SiteQueryReply
from federation.coordinator.analytics_app import AnswersBox, build_analytics_server_app
from federation.engines.simulation import run_on_simulation
from federation.protocol.query_request import QueryRequest
from federation.site.site_config import SiteConfig


def run_simulated_queries(
    *,
    sites: Sequence[SiteConfig],
    requests: Sequence[QueryRequest],
    on_answer: Callable[[QueryRequest, list[SiteQueryReply]], None] | None = None,
    costs: bool = False,
    answers: bool = True,
    cpus: int | None = None,
    verbose: bool = False,
) -> AnswersBox:
    """Every request across ``sites`` in ONE simulation run: with ``costs``, each site
    first states what each request would cost it (nothing run or spent); with
    ``answers`` (the default), the sites answer them."""
    box = AnswersBox()
    server_app = build_analytics_server_app(
        requests=requests, n_sites=len(sites), box=box, costs=costs, answers=answers, on_answer=on_answer
    )
    run_on_simulation(server_app=server_app, sites=sites, cpus=cpus, verbose=verbose)
    if box.errors:
        raise box.errors[0]
    if (answers and box.answers is None) or (costs and box.costs is None):
        raise RuntimeError("the simulation ended without answers; run again with verbose=True to see Flower's log.")
    return box
