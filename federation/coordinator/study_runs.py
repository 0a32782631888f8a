"""Run a study or a query batch on a coordinator folder, from already-signed requests.

The researcher signs (federation/protocol/authorization.py); whoever asks the coordinator
to run it (the workbench on the coordinator's machine, or the study service for a
researcher elsewhere) goes through here. It writes the study (or query) file into the
run folder, starts the Flower run through the loopback Control API (``flwr run`` with
federation/app_bundle), follows what the deployed ServerApp writes round by round, and
reads back the outcome, the receipts, each site's charges and the trained weights.

>>> run = start_study(coordinator=c, spec_config=spec.to_config(), encoder_json=enc,  # doctest: +SKIP
...                   authorization=signed, n_sites=2)
>>> outcome = follow_study(run=run, timeout=600, on_round=print)                      # doctest: +SKIP
>>> finished = study_outcome(run=run, outcome=outcome)                                # doctest: +SKIP

Whatever stops a run raises one of the errors below with what each site was charged
(``charges``): ``RunCancelled`` (a cancel, Ctrl-C), ``RunUnreachable`` (a site or the
coordinator did not answer, the timeout), ``RunFailed`` (the ServerApp failed) and
``RunRefused`` (every site refused before training). Plain data in and out: no
workbench type crosses this module, so the coordinator's own service can use it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from federation.coordinator.events import RoundReport
from federation.coordinator.registry import ledger_keys, registered_nodes, site_names
from federation.coordinator.run_folder import RunFolder, SiteCharge, StudyFile
from federation.coordinator.superlink import CONNECTION, Coordinator, CoordinatorError, CoordinatorUnreachable
from federation.errors import Cancelled, InternalFault, PartyFailed, Refused
from federation.processes import split_address
from federation.protocol.authorization import Authorization
from federation.protocol.query_request import QueryRequest
from federation.protocol.spec import TrainingSpec
from federation.training.features import FeatureEncoder

APP_BUNDLE = Path(__file__).resolve().parents[1] / "app_bundle"
UNFOLLOWED_AFTER_SECONDS = 60.0  # a run no client follows stops on its own after this
CANCEL_GRACE_SECONDS = 10.0  # how long a cancel waits for the ServerApp to say it stopped
STATUS_EVERY_SECONDS = 5.0  # how often a follower asks the SuperLink whether the run still lives
POLL_SECONDS = 0.2


class _Charged:
    """An error that carries what each site was charged (run_folder.SiteCharge)."""

    charges: list[SiteCharge]

    def _keep(self, charges: Sequence[SiteCharge] | None) -> None:
        self.charges = list(charges or [])


class RunCancelled(_Charged, Cancelled):
    """The run was cancelled (a cancel request, Ctrl-C, its follower gone); its Flower run stopped."""

    def __init__(self, message: str, *, charges: Sequence[SiteCharge] | None = None) -> None:
        super().__init__(message)
        self._keep(charges)


class RunUnreachable(_Charged, PartyFailed):
    """A site or the coordinator did not answer in time, or stopped."""

    def __init__(self, message: str, *, charges: Sequence[SiteCharge] | None = None) -> None:
        super().__init__(message)
        self._keep(charges)


class RunFailed(_Charged, InternalFault, RuntimeError):
    """The coordinator's ServerApp failed; the message carries its error."""

    def __init__(self, message: str, *, charges: Sequence[SiteCharge] | None = None) -> None:
        super().__init__(message)
        self._keep(charges)


class RunRefused(_Charged, Refused):
    """Every site refused the study before anything was trained (``stopped_reason`` says why)."""

    def __init__(self, stopped_reason: str, *, charges: Sequence[SiteCharge] | None = None) -> None:
        super().__init__(stopped_reason)
        self.stopped_reason = stopped_reason
        self._keep(charges)


@dataclass(frozen=True)
class StartedRun:
    """A Flower run started on the coordinator, and where its ServerApp writes."""

    coordinator: Coordinator
    folder: RunFolder
    flower_run: str
    run_id: str
    sites: tuple[str, ...]  # the registered site names, for each site's charges

    def charges(self) -> list[SiteCharge]:
        return self.folder.charges(sites=list(self.sites))


@dataclass(frozen=True)
class FinishedStudy:
    """A study that ran to its end (possibly stopped by a site's refusal after a round)."""

    receipts: list[dict[str, Any]]
    stopped_reason: str
    charges: list[SiteCharge] = field(default_factory=list)
    rounds: list[RoundReport] = field(default_factory=list)


# --- opening the coordinator ---------------------------------------------------------


def open_coordinator(coordinator: str | Path) -> Coordinator:
    """The coordinator in ``coordinator`` (its folder); an address is refused with why."""
    path = Path(coordinator)
    if path.is_dir():
        return Coordinator.open(path)
    try:
        split_address(str(coordinator))
    except ValueError:
        raise CoordinatorError(
            f"coordinator must be a coordinator folder (made by `workbench coordinator init`); "
            f"{str(coordinator)!r} is not a folder."
        ) from None
    raise CoordinatorError(
        f"{coordinator} is an address; connected studies run on the coordinator's machine and need its "
        "folder (they share the run folder with the SuperLink's ServerApp). Pass the folder given to "
        "`workbench coordinator init --folder`."
    )


# --- starting ------------------------------------------------------------------------


def start_study(
    *,
    coordinator: Coordinator,
    spec_config: dict[str, Any],
    encoder_json: str,
    authorization: Authorization | None,
    n_sites: int,
    site_timeout: float = 600.0,
    timeout: float = 1800.0,
    prompt_grid: bool = True,
    unfollowed_after: float = UNFOLLOWED_AFTER_SECONDS,
) -> StartedRun:
    """Write the study file (the researcher's signature relayed as is) and start its Flower run."""
    spec = TrainingSpec.from_config(spec_config)
    encoder = FeatureEncoder.from_json(encoder_json)
    folder = RunFolder(coordinator.runs_dir / spec.run_id)
    names = site_names(coordinator)
    StudyFile(
        spec=spec,
        encoder=encoder,
        n_sites=n_sites,
        run_folder=folder.path,
        timeout=site_timeout,
        prompt_grid=prompt_grid,
        site_names=names,
        ledger_keys=ledger_keys(coordinator),
        deadline=time.time() + timeout,
        unfollowed_after=unfollowed_after,
        authorization=authorization,
    ).save(folder.study_path)
    folder.touch_follower()
    flower_run = _start_flower_run(coordinator=coordinator, key="study-file", path=folder.study_path, folder=folder)
    return StartedRun(
        coordinator=coordinator,
        folder=folder,
        flower_run=flower_run,
        run_id=spec.run_id,
        sites=tuple(sorted(names.values())),
    )


def start_queries(
    *, coordinator: Coordinator, requests: Sequence[QueryRequest], n_sites: int, costs: bool, timeout: float = 600.0
) -> StartedRun:
    """Write the query file (each request carries the researcher's signature) and start its run.
    ``costs``: the sites only say what each query would cost; else they answer."""
    from federation.coordinator.query_file import QueryFile

    if not requests:
        raise ValueError("a query batch needs at least one query; got none.")
    run_id = str(requests[0].run_id or "")
    if not run_id or any(r.run_id != run_id for r in requests):
        raise ValueError(
            "every query of a batch carries the batch's one run id (the researcher signed it); "
            f"got {sorted({str(r.run_id) for r in requests})}."
        )
    folder = RunFolder(coordinator.runs_dir / f"queries-{run_id}")
    query_path = folder.path / "queries.json"
    names = site_names(coordinator)
    QueryFile(
        requests=tuple(requests),
        n_sites=n_sites,
        run_folder=folder.path,
        costs=costs,
        answers=not costs,
        timeout=timeout,
        site_names=names,
        ledger_keys=ledger_keys(coordinator),
    ).save(query_path)
    flower_run = _start_flower_run(coordinator=coordinator, key="query-file", path=query_path, folder=folder)
    return StartedRun(
        coordinator=coordinator,
        folder=folder,
        flower_run=flower_run,
        run_id=run_id,
        sites=tuple(sorted(names.values())),
    )


def _start_flower_run(*, coordinator: Coordinator, key: str, path: Path, folder: RunFolder) -> str:
    answer = coordinator.flwr("run", str(APP_BUNDLE), CONNECTION, "--run-config", f"{key}='{path}'")
    flower_run = str(answer["run-id"])
    folder.flower_run_path.write_text(flower_run + "\n")
    return flower_run


# --- following -----------------------------------------------------------------------


def await_outcome(
    *,
    run: StartedRun,
    timeout: float,
    timeout_message: str,
    on_tick: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Poll the run folder until the ServerApp writes its outcome (``on_tick`` first, each
    time), touching the run's follower mark. A ServerApp that died, or a coordinator that
    stopped, is reported with what each site was charged; Ctrl-C and ``timeout`` cancel
    the run (the ServerApp, then the Flower run) before ``RunCancelled`` or
    ``RunUnreachable(timeout_message)`` is raised."""
    deadline = time.monotonic() + timeout
    next_status = time.monotonic() + STATUS_EVERY_SECONDS
    try:
        while True:
            run.folder.touch_follower()
            if on_tick is not None:
                on_tick()
            outcome = run.folder.outcome()
            if outcome is not None:
                return outcome
            if time.monotonic() > next_status:
                check_flower_run(run=run)
                next_status = time.monotonic() + STATUS_EVERY_SECONDS
            if time.monotonic() > deadline:
                charges, _ = cancel_run(
                    coordinator=run.coordinator, folder=run.folder, reason=f"the study's timeout ({timeout:.0f} s)"
                )
                raise RunUnreachable(timeout_message, charges=charges)
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        charges, said = cancel_run(coordinator=run.coordinator, folder=run.folder, reason="interrupted (Ctrl-C)")
        raise RunCancelled(
            f"interrupted: the study (run {run.folder.path.name}) was cancelled and {said}; no site is asked "
            "anything more for it.",
            charges=charges,
        ) from None


def follow_study(
    *,
    run: StartedRun,
    timeout: float,
    on_round: Callable[[RoundReport], None] | None = None,
    on_wait: Callable[[dict[str, Any] | None], None] | None = None,
) -> dict[str, Any]:
    """Tell ``on_round`` each round as the ServerApp writes it, and ``on_wait`` what it waits
    for (the ServerApp's ``waiting.json``, None when nothing); return its outcome."""
    seen = 0

    def report_progress() -> None:
        nonlocal seen
        rounds = run.folder.rounds()
        for report in rounds[seen:]:
            if on_round is not None:
                on_round(report)
        seen = len(rounds)
        if on_wait is not None:
            on_wait(run.folder.waiting())

    return await_outcome(
        run=run,
        timeout=timeout,
        on_tick=report_progress,
        timeout_message=(
            f"the study (Flower run {run.flower_run}) did not finish within {timeout:.0f} s; it was stopped."
        ),
    )


def study_outcome(*, run: StartedRun, outcome: dict[str, Any]) -> FinishedStudy:
    """What a study's outcome means: a ``FinishedStudy``, or the error that says why not."""
    charges = run.charges()
    coordinator, flower_run = run.coordinator, run.flower_run
    if outcome["status"] == "cancelled":
        raise RunCancelled(
            f"the study (run {run.run_id}, Flower run {flower_run}) was cancelled: {outcome.get('reason')}. "
            "Its Flower run was stopped: no site is asked anything more for it.",
            charges=charges,
        )
    if outcome["status"] == "stopped":  # stopped from outside: the SuperLink going down, or `flwr stop`
        if coordinator.wait_stopped():
            raise coordinator_stopped(coordinator=coordinator, flower_run=flower_run, charges=charges)
        raise RunUnreachable(
            f"{outcome.get('reason')} at the coordinator (Flower run {flower_run}), while the SuperLink still "
            "runs: someone stopped the run there. What each site was charged is below.",
            charges=charges,
        )
    if outcome["status"] != "finished" and coordinator.running_pid() is None:
        raise coordinator_stopped(coordinator=coordinator, flower_run=flower_run, charges=charges)
    if outcome["status"] != "finished":
        error = str(outcome.get("error", ""))
        if error.startswith("TimeoutError"):
            raise RunUnreachable(
                f"{error.removeprefix('TimeoutError: ')} Nothing was trained. What to do: ask "
                "each missing hospital's IT to run `workbench node status --config node.toml`, or "
                "connect with sites=N for the hospitals that are up.",
                charges=charges,
            )
        raise RunFailed(
            f"the study's ServerApp failed (Flower run {flower_run}): {outcome.get('error')}", charges=charges
        )
    rounds = run.folder.rounds()
    stopped = str(outcome.get("stopped_reason", ""))
    if stopped and not any(s.status == "ok" for r in rounds for s in r.train):
        raise RunRefused(stopped, charges=charges)
    return FinishedStudy(receipts=list(outcome["receipts"]), stopped_reason=stopped, charges=charges, rounds=rounds)


def model_arrays(*, folder: RunFolder) -> dict[str, Any]:
    """The trained model's weights as numpy arrays, by parameter name (no pickle leaves here:
    the ServerApp's file is read with ``weights_only``)."""
    import torch

    state = torch.load(folder.model_path, weights_only=True)
    return {name: tensor.detach().cpu().numpy() for name, tensor in state.items()}


def await_queries(*, run: StartedRun, timeout: float) -> tuple[list | None, Any]:
    """Wait for a query batch's outcome: (each query's site replies, the cost table)."""
    from federation.coordinator.query_file import answers_from_json

    outcome = await_outcome(
        run=run,
        timeout=timeout,
        timeout_message=(
            f"the sites did not answer within {timeout:.0f} s (Flower run {run.flower_run}, "
            "now stopped). What to do: check each site's `workbench node status`."
        ),
    )
    if outcome["status"] != "finished":
        raise RunFailed(
            f"the coordinator's ServerApp failed (Flower run {run.flower_run}): {outcome.get('error')}",
            charges=run.charges(),
        )
    return answers_from_json(outcome)


def coordinator_stopped(*, coordinator: Coordinator, flower_run: str, charges: list[SiteCharge]) -> RunUnreachable:
    return RunUnreachable(
        f"the coordinator's SuperLink ({coordinator.folder}) stopped while the study ran (Flower run "
        f"{flower_run}); the study did not finish. What each site was charged is below, from the receipts "
        "that reached the coordinator; a step marked NOT CONFIRMED may have been charged at the site (its "
        "ledger says). What to do: `workbench coordinator start --folder "
        f"{coordinator.folder}` (it stops the runs left unfinished), then start a new study.",
        charges=charges,
    )


def check_flower_run(*, run: StartedRun) -> None:
    """A ServerApp that died before writing its outcome (e.g. an import error), or a
    coordinator that stopped mid-study."""
    coordinator, flower_run, folder = run.coordinator, run.flower_run, run.folder
    charges = folder.charges(sites=sorted(site_names(coordinator).values()))
    if coordinator.running_pid() is None:
        raise coordinator_stopped(coordinator=coordinator, flower_run=flower_run, charges=charges)
    try:
        runs = coordinator.flwr("ls", CONNECTION, "--run-id", flower_run, timeout=30).get("runs", [])
    except CoordinatorUnreachable as err:
        if coordinator.wait_stopped():  # a stop under way when this check began
            raise coordinator_stopped(coordinator=coordinator, flower_run=flower_run, charges=charges) from None
        raise RunUnreachable(
            f"the coordinator's SuperLink did not answer about Flower run {flower_run}: {err}", charges=charges
        ) from None
    status = str(runs[0].get("status", "")) if runs else ""
    if status.startswith("finished:") and status != "finished:completed":
        if folder.outcome() is not None:  # written just now
            return
        details = runs[0].get("status-details", "")
        raise RunFailed(
            f"Flower run {flower_run} ended as {status} ({details}) without a study outcome; see "
            f"`FLWR_HOME={coordinator.flwr_home} flwr log {flower_run} {CONNECTION} --show` and "
            f"{coordinator.log_path}.",
            charges=charges,
        )


# --- cancelling ----------------------------------------------------------------------


def cancel_run(
    *, coordinator: Coordinator, folder: RunFolder, reason: str, who: str = "", grace: float = CANCEL_GRACE_SECONDS
) -> tuple[list[SiteCharge], str]:
    """Stop a study's run: tell its ServerApp (it stops between two pulls and writes
    what it saw), then stop the Flower run itself (``flwr stop``: the SuperLink drops
    every message of the run that a site has not taken yet). Returns each site's
    charges from the run's journal, and a sentence on how the Flower run stopped."""
    folder.request_cancel(reason=reason, who=who or _operator())
    deadline = time.monotonic() + grace
    while folder.outcome() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    flower_run = folder.flower_run()
    if flower_run is None:
        said = "it had no Flower run yet"
    else:
        try:
            coordinator.flwr("stop", flower_run, CONNECTION, timeout=30)
            said = f"Flower run {flower_run} stopped"
        except CoordinatorError as err:  # already finished: the ServerApp stopped it first
            said = (
                f"Flower run {flower_run} had already ended"
                if "finished" in str(err).lower()
                else f"Flower run {flower_run}: {err}"
            )
        except (CoordinatorUnreachable, OSError) as err:
            said = f"the coordinator's SuperLink did not answer ({' '.join(str(err).split())[:200]})"
    return folder.charges(sites=study_sites(coordinator=coordinator, folder=folder)), said


def _operator() -> str:
    """Who is at the keyboard, as ``user@host`` (recorded with a cancel)."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def study_sites(*, coordinator: Coordinator, folder: RunFolder) -> list[str]:
    """The sites of a run (its study file's, else every registered site)."""
    try:
        return sorted(StudyFile.load(folder.study_path).site_names.values())
    except (OSError, ValueError, KeyError):
        return sorted(registered_nodes(coordinator))


def cancel_study(
    *, coordinator: str | Path, run: str, reason: str = "cancelled by `workbench study cancel`"
) -> tuple[RunFolder, list[SiteCharge], str]:
    """``workbench study cancel RUN``: stop a connected study (the run id, or its Flower run
    id); returns (run folder, charges, how the Flower run stopped)."""
    opened = open_coordinator(coordinator)
    folder = RunFolder(opened.runs_dir / run) if (opened.runs_dir / run).is_dir() else None
    if folder is None:
        for candidate in opened.runs_dir.glob("*/"):
            if RunFolder(candidate).flower_run() == str(run):
                folder = RunFolder(candidate)
                break
    if folder is None:
        known = sorted(p.name for p in opened.runs_dir.glob("*/") if (p / "study.json").exists())
        raise CoordinatorError(
            f"no study run {run!r} in {opened.runs_dir}; give a run id (the study prints it as it starts) or its "
            f"Flower run id. Runs there: {', '.join(known[-5:]) or 'none'}."
        )
    outcome = folder.outcome()
    if outcome is not None:
        return (
            folder,
            folder.charges(sites=study_sites(coordinator=opened, folder=folder)),
            f"the run had already ended ({outcome.get('status')})",
        )
    charges, said = cancel_run(coordinator=opened, folder=folder, reason=reason)
    return folder, charges, said
