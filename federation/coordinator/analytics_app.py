"""The coordinator's ServerApp for a batch of analytics queries: one Flower run asks
them all, so a notebook pays the engine's start-up once for many questions.

With ``costs``, every site first states what each query would cost it (``query:cost``,
nothing run or spent); with ``answers``, the sites then answer them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from federation.coordinator.analytics import SiteQueryReply, ask_costs, ask_sites
from federation.coordinator.study_loop import wait_for_sites
from federation.protocol.query_request import QueryRequest


@dataclass
class AnswersBox:
    """Carries the answers (or the costs) out of the ServerApp's thread."""

    answers: list[list[SiteQueryReply]] | None = None
    costs: pd.DataFrame | None = None
    errors: list[BaseException] = field(default_factory=list)


def build_analytics_server_app(
    *,
    requests: Sequence[QueryRequest],
    n_sites: int,
    box: AnswersBox,
    costs: bool = False,
    answers: bool = True,
    on_answer: Callable[[QueryRequest, list[SiteQueryReply]], None] | None = None,
    timeout: float = 600.0,
) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            nodes = wait_for_sites(grid, n_sites, timeout)
            if costs:
                box.costs = ask_costs(grid=grid, requests=requests, node_ids=nodes, timeout=timeout)
            if answers:
                box.answers = ask_sites(
                    grid=grid, requests=requests, node_ids=nodes, timeout=timeout, on_answer=on_answer
                )
        except BaseException as err:  # re-raised in the caller's thread
            box.errors.append(err)
            raise

    return app
