"""Running a study on Flower's simulation engine, in this process.

``flwr.simulation.run_simulation`` runs the ServerApp in a thread of this process
and the sites' ClientApps in Ray workers. That keeps results (and live progress)
in the caller's hands, with no app bundle to package and no runtime environment to
sync. Flower marks this entry point deprecated in favour of ``flwr run``; it is the
one that works from a notebook, and flwr is pinned, so we use it knowingly.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from contextlib import contextmanager

from flwr.serverapp import ServerApp

from federation.coordinator.events import StudyObserver
from federation.coordinator.local_tuning import SiteTuning, TuningBox, build_local_tuning_app
from federation.coordinator.range_phase import RangeFinding
from federation.coordinator.server_app import OutcomeBox, build_server_app
from federation.coordinator.study_loop import StudyOutcome
from federation.protocol.authorization import Authorization
from federation.protocol.spec import TrainingSpec
from federation.site.client_app import build_client_app
from federation.site.site_config import SimulatedSites, SiteConfig
from federation.training.features import FeatureEncoder

# The sites have no internet and a notebook user wants no phoning home.
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@contextmanager
def quiet_flower(verbose: bool):
    """Flower logs every message at INFO; the study reports its own progress."""
    logger = logging.getLogger("flwr")
    previous = logger.level
    if not verbose:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


def run_on_simulation(
    *, server_app: ServerApp, sites: Sequence[SiteConfig], cpus: int | None = None, verbose: bool = False
) -> None:
    """Run ``server_app`` against the sites' ClientApps on the simulation engine.

    Each virtual site gets one CPU (Flower's default of two runs one site at a time
    on a 2-core machine).
    """
    from flwr.simulation import run_simulation

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
            client_app=build_client_app(resolve_site=SimulatedSites(tuple(sites))),
            num_supernodes=len(sites),
            backend_config=backend_config,
            verbose_logging=verbose,
        )


def run_simulated_training(
    *,
    sites: Sequence[SiteConfig],
    spec: TrainingSpec,
    encoder: FeatureEncoder | None,
    range_finding: RangeFinding | None = None,
    observer: StudyObserver | None = None,
    cpus: int | None = None,
    verbose: bool = False,
    authorization: Authorization | None = None,
) -> StudyOutcome:
    """One private federated training across ``sites`` on the simulation engine."""
    box = OutcomeBox()
    server_app = build_server_app(
        spec=spec,
        encoder=encoder,
        n_sites=len(sites),
        range_finding=range_finding,
        observer=observer,
        box=box,
        authorization=authorization,
    )
    run_on_simulation(server_app=server_app, sites=sites, cpus=cpus, verbose=verbose)
    if box.errors:
        raise box.errors[0]
    if box.outcome is None:
        raise RuntimeError(
            "the simulation ended without a study outcome; run again with verbose=True to see Flower's log."
        )
    return box.outcome


def run_simulated_local_tuning(
    *,
    sites: Sequence[SiteConfig],
    config: dict,
    authorization: Authorization | None = None,
    cpus: int | None = None,
    verbose: bool = False,
) -> list[SiteTuning]:
    """One local tuning (``protocol.local_tuning.tuning_config``) at every site, through
    each site's ClientApp on the simulation engine; one answer per site."""
    box = TuningBox()
    app = build_local_tuning_app(config=config, n_sites=len(sites), box=box, authorization=authorization)
    run_on_simulation(server_app=app, sites=sites, cpus=cpus, verbose=verbose)
    if box.errors:
        raise box.errors[0]
    if box.answers is None:
        raise RuntimeError(
            "the simulation ended without the sites' answers; run again with verbose=True to see Flower's log."
        )
    return box.answers
