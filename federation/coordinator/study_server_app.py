"""The ServerApp a coordinator's SuperLink runs for a connected study.

``flwr run`` sends only the app bundle (federation/app_bundle); what to study comes
from a JSON *study file* on the coordinator's disk, named by the run config key
``study-file``. The ServerApp runs the same study loop as the simulation and
writes what happens into the study's run folder: one line per finished round in
``rounds.jsonl`` (read live by the workbench) and, at the end, ``outcome.json``
(receipts mirror, stop reason, or the error) and ``model.pt``.
"""

from __future__ import annotations

import traceback
from dataclasses import asdict
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from federation.coordinator.prompt_grid import PromptGrid
from federation.coordinator.run_folder import RunFolder, StudyFile

app = ServerApp()


class _RoundWriter:
    """Appends each finished round to the run folder, as it happens."""

    def __init__(self, folder: RunFolder) -> None:
        self.folder = folder

    def round_finished(self, report) -> None:
        self.folder.append_round(asdict(report))

    def study_stopped(self, reason: str) -> None:
        pass


@app.main()
def main(grid: Grid, context: Context) -> None:
    query_path = str(context.run_config.get("query-file", ""))
    if query_path:
        _answer_queries(grid=grid, query_path=Path(query_path))
        return
    study_path = str(context.run_config.get("study-file", ""))
    if not study_path:
        raise ValueError("the run config lacks study-file; run studies with Workbench.connect(...).train(...).")
    from federation.coordinator.flwr_compat import tune_serverapp

    study = StudyFile.load(Path(study_path))
    if study.prompt_grid:
        tune_serverapp()  # reply objects pulled after 20 ms, not Flower's 1 s back-off
    folder = RunFolder(study.run_folder)
    try:
        import torch

        from federation.coordinator.server_app import initial_arrays
        from federation.coordinator.study_loop import run_training

        outcome = run_training(
            grid=PromptGrid(grid) if study.prompt_grid else grid,  # replies as they come, not every 3 s
            spec=study.spec,
            encoder=study.encoder,
            initial_arrays=lambda enc: initial_arrays(spec=study.spec, encoder=enc),
            n_sites=study.n_sites,
            observer=_RoundWriter(folder),
            timeout=study.timeout,
        )
        torch.save(outcome.arrays.to_torch_state_dict(), folder.model_path)
        folder.finish(receipts=outcome.receipts, stopped_reason=outcome.stopped_reason)
    except BaseException as err:
        folder.fail(error=f"{type(err).__name__}: {err}", trace=traceback.format_exc())
        raise


def _answer_queries(*, grid: Grid, query_path: Path) -> None:
    """A batch of analytics queries: the sites' replies, as they sent them, to the run folder."""
    from federation.coordinator.analytics import ask_costs, ask_sites
    from federation.coordinator.flwr_compat import tune_serverapp
    from federation.coordinator.query_file import QueryFile, answers_to_json
    from federation.coordinator.study_loop import wait_for_sites

    batch = QueryFile.load(query_path)
    if batch.prompt_grid:
        tune_serverapp()
    folder = RunFolder(batch.run_folder)
    try:
        grid = PromptGrid(grid) if batch.prompt_grid else grid
        nodes = wait_for_sites(grid, batch.n_sites, batch.timeout)
        costs = (
            ask_costs(grid=grid, requests=batch.requests, node_ids=nodes, timeout=batch.timeout)
            if batch.costs
            else None
        )
        answers = (
            ask_sites(grid=grid, requests=batch.requests, node_ids=nodes, timeout=batch.timeout)
            if batch.answers
            else None
        )
        folder.finish_queries(**answers_to_json(answers=answers, costs=costs))
    except BaseException as err:
        folder.fail(error=f"{type(err).__name__}: {err}", trace=traceback.format_exc())
        raise
