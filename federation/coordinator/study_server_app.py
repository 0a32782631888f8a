"""The ServerApp a coordinator's SuperLink runs for a connected study.

``flwr run`` sends only the app bundle (federation/app_bundle); what to study comes
from a JSON *study file* on the coordinator's disk, named by the run config key
``study-file``. The ServerApp runs the same study loop as the simulation and
writes what happens into the study's run folder: one line per finished round in
``rounds.jsonl`` (read live by the workbench), the journal of every exchange and
what it waits for (run_folder.py) and, at the end, ``outcome.json`` (receipts
mirror, stop reason, or the error) and ``model.pt``.

Between two pulls it checks whether it must stop: the workbench asked (Ctrl-C,
``workbench study cancel``, the study's timeout: ``cancel.json``), or no client has
followed the run for ``StudyFile.unfollowed_after`` seconds. It then writes a
``cancelled`` outcome with the receipts it holds and stops its own Flower run, so
the SuperLink hands no site a message of it any more.
"""

from __future__ import annotations

import subprocess
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from federation.coordinator.prompt_grid import PromptGrid, RunCancelled
from federation.coordinator.reply_check import SiteRegistry
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


def stop_check(folder: RunFolder, *, unfollowed_after: float) -> Callable[[], str | None]:
    """Why the run must stop now (None: it goes on): a cancel, or nobody following it."""

    def check() -> str | None:
        cancel = folder.cancel_request()
        if cancel is not None:
            who = f" (by {cancel['who']})" if cancel.get("who") else ""
            return f"{cancel.get('reason', 'cancelled')}{who}"
        idle = folder.unfollowed_for()
        if idle > unfollowed_after:
            return (
                f"no client has followed the run for {idle:.0f} s (a run stops on its own after "
                f"{unfollowed_after:.0f} s without one)"
            )
        return None

    return check


def stop_own_run(*, folder: RunFolder, flower_run: int, timeout: float = 60.0) -> None:
    """``flwr stop`` this run, from its own ServerApp (the SuperLink then drops its
    messages that no site took yet, which a run that merely completes would leave);
    started in a session of its own, as it may end this process first."""
    from federation.coordinator.superlink import CONFIG_NAME, CONNECTION
    from federation.processes import BIN_DIR, engine_env

    coordinator = folder.path.parent.parent  # <coordinator>/runs/<run id>
    if not (coordinator / CONFIG_NAME).exists():
        return
    stopping = subprocess.Popen(
        [str(BIN_DIR / "flwr"), "stop", str(flower_run), CONNECTION],
        env=engine_env({"FLWR_HOME": str(coordinator / "flwr-home")}),
        cwd=coordinator,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        stopping.wait(timeout=timeout)  # the run is stopped at the SuperLink before main() returns
    except subprocess.TimeoutExpired:
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
        # Reply objects pulled after 20 ms, not Flower's 1 s back-off, and never longer than the
        # study waits for a site (a node killed half-way through pushing its reply).
        tune_serverapp(object_pull_seconds=study.timeout)
    folder = RunFolder(study.run_folder)
    registry = SiteRegistry(names=study.site_names, ledger_keys=study.ledger_keys)
    try:
        import torch

        from federation.coordinator.server_app import initial_arrays
        from federation.coordinator.study_loop import run_training

        study_grid = (
            PromptGrid(  # replies as they come, not every 3 s; a journal; stops when told
                grid,
                site_names=study.site_names,
                journal=folder,
                registry=registry,
                should_stop=stop_check(folder, unfollowed_after=study.unfollowed_after),
            )
            if study.prompt_grid
            else grid
        )
        outcome = run_training(
            grid=study_grid,
            spec=study.spec,
            encoder=study.encoder,
            initial_arrays=lambda enc: initial_arrays(spec=study.spec, encoder=enc),
            n_sites=study.n_sites,
            observer=_RoundWriter(folder),
            timeout=study.timeout,
            site_names=study.site_names,
            deadline=study.deadline,
            authorization=study.authorization,
            registry=registry,
        )
        torch.save(outcome.arrays.to_torch_state_dict(), folder.model_path)
        folder.finish(receipts=outcome.receipts, stopped_reason=outcome.stopped_reason)
    except RunCancelled as cancelled:
        folder.cancelled(reason=cancelled.reason, receipts=folder.receipts())
        stop_own_run(folder=folder, flower_run=context.run_id)
    except (SystemExit, KeyboardInterrupt) as err:  # told to stop: the SuperLink stopping, `flwr stop`
        folder.stopped(reason=f"the study's ServerApp was stopped ({type(err).__name__}: {err})")
        raise
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
        tune_serverapp(object_pull_seconds=batch.timeout)
    folder = RunFolder(batch.run_folder)
    registry = SiteRegistry(names=batch.site_names or {}, ledger_keys=batch.ledger_keys or {})
    try:
        grid = (
            PromptGrid(grid, site_names=batch.site_names, journal=folder, registry=registry)
            if batch.prompt_grid
            else grid
        )
        nodes = wait_for_sites(grid, batch.n_sites, batch.timeout, site_names=batch.site_names)
        costs = (
            ask_costs(grid=grid, requests=batch.requests, node_ids=nodes, timeout=batch.timeout, registry=registry)
            if batch.costs
            else None
        )
        answers = (
            ask_sites(grid=grid, requests=batch.requests, node_ids=nodes, timeout=batch.timeout, registry=registry)
            if batch.answers
            else None
        )
        folder.finish_queries(**answers_to_json(answers=answers, costs=costs))
    except BaseException as err:
        folder.fail(error=f"{type(err).__name__}: {err}", trace=traceback.format_exc())
        raise
