"""The coordinator's Flower ServerApp for a private training study."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp

from federation.coordinator.events import StudyObserver
from federation.coordinator.range_phase import RangeFinding
from federation.coordinator.study_loop import StudyOutcome, run_training
from federation.protocol.authorization import Authorization
from federation.protocol.spec import TrainingSpec
from federation.training.features import FeatureEncoder
from federation.training.models import build_model


def initial_arrays(*, spec: TrainingSpec, encoder: FeatureEncoder) -> ArrayRecord:
    """The starting model, made at the coordinator from public information only."""
    torch.manual_seed(spec.init_seed)
    model = build_model(name=spec.model, n_features=encoder.n_features, hidden=spec.hidden)
    return ArrayRecord(model.state_dict())


@dataclass
class OutcomeBox:
    """Carries the study's outcome out of the ServerApp's thread."""

    outcome: StudyOutcome | None = None
    errors: list[BaseException] = field(default_factory=list)


def build_server_app(
    *,
    spec: TrainingSpec,
    encoder: FeatureEncoder | None,
    n_sites: int,
    range_finding: RangeFinding | None = None,
    observer: StudyObserver | None = None,
    box: OutcomeBox | None = None,
    authorization: Authorization | None = None,
) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            outcome = run_training(
                grid=grid,
                spec=spec,
                encoder=encoder,
                initial_arrays=lambda enc: initial_arrays(spec=spec, encoder=enc),
                n_sites=n_sites,
                range_finding=range_finding,
                observer=observer,
                authorization=authorization,
            )
        except BaseException as err:  # re-raised in the caller's thread
            if box is not None:
                box.errors.append(err)
            raise
        if box is not None:
            box.outcome = outcome

    return app
