"""Analytics queries on Flower's simulation engine, in this process.

One ``run_simulation`` per batch of queries: the engine's start (Ray, about 25 s on
two cores) is paid once for all of them, so ask several questions together. The
sites' handlers are the same as in deployment; only the sites' locations come from
the simulation (``SimulatedSites``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

from federation.analytics.site_answers import QueryRequest
from federation.coordinator.analytics import SiteQueryReply
from federation.coordinator.analytics_app import AnswersBox, build_analytics_server_app
from federation.node.client_app import build_client_app
from federation.node.site import SimulatedSites, SiteConfig
from federation.simulation import quiet_flower


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
    from flwr.simulation import run_simulation

    box = AnswersBox()
    server_app = build_analytics_server_app(
        requests=requests, n_sites=len(sites), box=box, costs=costs, answers=answers, on_answer=on_answer
    )
    client_app = build_client_app(resolve_site=SimulatedSites(tuple(sites)))
    # One CPU per virtual site, as for training (Flower's default of two runs one
    # site at a time on a 2-core machine).
    backend_config = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {
            "num_cpus": cpus or os.cpu_count() or 2,
            "num_gpus": 0,
            "include_dashboard": False,
            "logging_level": logging.INFO if verbose else logging.ERROR,
            "log_to_driver": verbose,
        },
    }
    with quiet_flower(verbose):
        run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=len(sites),
            backend_config=backend_config,
            verbose_logging=verbose,
        )
    if box.errors:
        raise box.errors[0]
    if (answers and box.answers is None) or (costs and box.costs is None):
        raise RuntimeError("the simulation ended without answers; run again with verbose=True to see Flower's log.")
    return box
