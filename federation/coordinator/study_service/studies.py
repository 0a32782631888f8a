"""The studies the service runs: who owns each, its events, its end.

A study is started through study_runs.start_study and followed by a thread of the
service, not by the client: the service touches the run's follower mark, so a
researcher who closes the laptop mid-study finds it finished when they come back.
Each study keeps an event list (``seq`` from 1: ``started``, ``round``, ``waiting``,
then one ``end``) in memory and in the run folder (``service-events.jsonl``), and an
``owner.json`` naming the key that signed it; both are read back after a restart of
the service, which follows again every study of its that has not ended
(``resume_following``).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from federation.coordinator import study_runs
from federation.coordinator.registry import registered_nodes
from federation.coordinator.run_folder import RunFolder, StudyFile
from federation.coordinator.superlink import Coordinator
from federation.protocol.authorization import Authorization
from federation.protocol.query_request import QueryRequest

EVENTS_FILE = "service-events.jsonl"
OWNER_FILE = "owner.json"
END = "end"


@dataclass
class StudyRecord:
    study: str
    owner: str  # the fingerprint of the key that signed it
    project: str
    folder: RunFolder
    events: list[dict[str, Any]] = field(default_factory=list)
    run: study_runs.StartedRun | None = None
    lock: threading.Condition = field(default_factory=threading.Condition)

    @property
    def ended(self) -> bool:
        return bool(self.events) and self.events[-1]["kind"] == END

    def add(self, kind: str, **data: Any) -> None:
        with self.lock:
            event = {"seq": len(self.events) + 1, "time": round(time.time(), 3), "kind": kind, **data}
            self.events.append(event)
            with (self.folder.path / EVENTS_FILE).open("a") as fh:
                fh.write(json.dumps(event, default=float) + "\n")
            self.lock.notify_all()


def _public(text: str, *, coordinator: Coordinator) -> str:
    """A run error's words for the researcher: the coordinator's own paths left out."""
    return " ".join(str(text).replace(str(coordinator.folder), "the coordinator folder").split())


def end_event(error: BaseException, *, coordinator: Coordinator) -> dict[str, Any]:
    kinds = {
        study_runs.RunCancelled: "cancelled",
        study_runs.RunRefused: "refused",
        study_runs.RunUnreachable: "unreachable",
        study_runs.RunFailed: "failed",
    }
    status = next((word for cls, word in kinds.items() if isinstance(error, cls)), "failed")
    message = (
        "the coordinator's ServerApp failed; nothing more was trained. Its operator has the details "
        "(the service log and `workbench coordinator status`)."
        if status == "failed"
        else _public(str(error), coordinator=coordinator)
    )
    return {
        "status": status,
        "message": message,
        "stopped_reason": getattr(error, "stopped_reason", ""),
        "charges": [c.to_json() for c in getattr(error, "charges", [])],
    }


class Studies:
    """Every study this service started, by id (the signed run id)."""

    def __init__(self, *, coordinator: Coordinator, unfollowed_after: float = study_runs.UNFOLLOWED_AFTER_SECONDS):
        self.coordinator = coordinator
        self.unfollowed_after = unfollowed_after
        self._records: dict[str, StudyRecord] = {}
        self._lock = threading.Lock()

    # --- reading ----------------------------------------------------------------------

    def get(self, study: str, *, owner: str) -> StudyRecord | None:
        """The study if ``owner`` started it (None otherwise: the caller cannot tell why)."""
        with self._lock:
            record = self._records.get(study)
        if record is None:
            record = self._load(study)
        return record if record is not None and record.owner == owner else None

    def _load(self, study: str) -> StudyRecord | None:
        if not study.replace("-", "").replace("_", "").isalnum() or len(study) > 80:
            return None
        path = self.coordinator.runs_dir / study
        try:
            owner = json.loads((path / OWNER_FILE).read_text())
        except (OSError, ValueError):
            return None
        events_path = path / EVENTS_FILE
        events = []
        for line in events_path.read_text().splitlines() if events_path.exists() else []:
            try:
                events.append(json.loads(line))
            except ValueError:  # a line cut off when the service stopped
                break
        record = StudyRecord(
            study=study, owner=owner["fingerprint"], project=owner["project"], folder=RunFolder(path), events=events
        )
        with self._lock:
            return self._records.setdefault(study, record)

    def resume_following(self) -> list[str]:
        """At the service's start: follow again every study it started that has not ended
        (its run may still go on: a restart must not leave it unfollowed). Returns their ids."""
        resumed = []
        for path in sorted(self.coordinator.runs_dir.glob(f"*/{OWNER_FILE}")):
            record = self._load(path.parent.name)
            folder = path.parent
            if record is None or record.ended or not (folder / "study.json").exists():
                continue
            flower_run = record.folder.flower_run()
            if flower_run is None:
                record.add(END, status="failed", message="the study never started its Flower run", model=False)
                continue
            study = StudyFile.load(record.folder.study_path)
            record.run = study_runs.StartedRun(
                coordinator=self.coordinator,
                folder=record.folder,
                flower_run=flower_run,
                run_id=record.study,
                sites=tuple(sorted(study.site_names.values())),
            )
            left = (study.deadline or time.time() + 600.0) - time.time()
            threading.Thread(
                target=self._follow, args=(record, max(left, 1.0)), name=f"study-{record.study}", daemon=True
            ).start()
            resumed.append(record.study)
        return resumed

    def studies_of(self, owner: str) -> list[dict[str, Any]]:
        """The studies ``owner`` started (never anyone else's), newest first: id, project,
        when it started, its status (``running`` until its end) and the rounds done."""
        rows = []
        for path in self.coordinator.runs_dir.glob(f"*/{OWNER_FILE}"):
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if data.get("fingerprint") != owner or data.get("kind") != "study":
                continue
            record = self.get(path.parent.name, owner=owner)
            if record is None:
                continue
            rows.append(
                {
                    "study": record.study,
                    "project": record.project,
                    "started": float(data.get("time") or 0.0),
                    "status": record.events[-1].get("status", "failed") if record.ended else "running",
                    "rounds_done": sum(1 for e in record.events if e["kind"] == "round"),
                }
            )
        return sorted(rows, key=lambda row: row["started"], reverse=True)

    def projects_of(self, owner: str) -> set[str]:
        """The projects ``owner`` sent a study or a query batch for (from the run folders)."""
        projects = set()
        for path in self.coordinator.runs_dir.glob(f"*/{OWNER_FILE}"):
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if data.get("fingerprint") == owner:
                projects.add(str(data.get("project")))
        return projects

    def receipts(self, *, projects: set[str]) -> list[dict[str, Any]]:
        """The coordinator's mirror of the sites' signed receipts, for ``projects`` only."""
        out, seen = [], set()
        for path in sorted(self.coordinator.runs_dir.glob("*/"), key=lambda p: p.stat().st_mtime):
            for receipt in RunFolder(path).receipts():
                key = (str(receipt.get("site_id")), int(receipt.get("seq", -1)))
                if receipt.get("project") in projects and key not in seen:
                    seen.add(key)
                    out.append(receipt)
        return out

    # --- doing ------------------------------------------------------------------------

    def _claim(self, *, run_folder: Path, owner: str, key: str, project: str, kind: str) -> None:
        """Write the run's owner before anything runs; a run id used before is refused."""
        run_folder.mkdir(parents=True, exist_ok=True)
        with (run_folder / OWNER_FILE).open("x") as fh:  # FileExistsError: the id was used
            json.dump({"fingerprint": owner, "key": key, "project": project, "kind": kind, "time": time.time()}, fh)

    def start(
        self,
        *,
        owner: str,
        key: str,
        spec_config: dict[str, Any],
        encoder_json: str,
        authorization: Authorization,
        n_sites: int | None,
        site_timeout: float,
        timeout: float,
    ) -> StudyRecord:
        from federation.protocol.spec import TrainingSpec

        spec = TrainingSpec.from_config(spec_config)
        run_id, project = spec.run_id, spec.project
        folder_path = self.coordinator.runs_dir / run_id
        self._claim(run_folder=folder_path, owner=owner, key=key, project=project, kind="study")
        record = StudyRecord(study=run_id, owner=owner, project=project, folder=RunFolder(folder_path))
        with self._lock:
            self._records[run_id] = record
        record.run = study_runs.start_study(
            coordinator=self.coordinator,
            spec_config=spec_config,
            encoder_json=encoder_json,
            authorization=authorization,
            n_sites=n_sites or len(registered_nodes(self.coordinator)),
            site_timeout=site_timeout,
            timeout=timeout,
            unfollowed_after=self.unfollowed_after,
        )
        record.add("started", study=run_id, project=project, rounds=spec.rounds)
        threading.Thread(target=self._follow, args=(record, timeout), name=f"study-{run_id}", daemon=True).start()
        return record

    def _follow(self, record: StudyRecord, timeout: float) -> None:
        run = record.run
        assert run is not None
        last_wait: list[Any] = [None]

        told = {e["report"]["round"] for e in record.events if e["kind"] == "round"}  # before a restart

        def on_round(report: Any) -> None:
            if report.round not in told:
                record.add("round", report=dataclasses.asdict(report))

        def on_wait(state: dict[str, Any] | None) -> None:
            what = None if state is None else {k: v for k, v in state.items() if k != "time"}
            if what != last_wait[0]:  # a change of who is waited for, not the clock
                last_wait[0] = what
                record.add("waiting", waiting=state)

        try:
            outcome = study_runs.follow_study(run=run, timeout=timeout, on_round=on_round, on_wait=on_wait)
            finished = study_runs.study_outcome(run=run, outcome=outcome)
            record.add(
                END,
                status="finished",
                stopped_reason=finished.stopped_reason,
                charges=[c.to_json() for c in finished.charges],
                receipts=finished.receipts,
                model=run.folder.model_path.exists(),
            )
        except Exception as err:  # every way a run ends is told to its researcher as an event
            record.add(END, **end_event(err, coordinator=self.coordinator), model=False)

    def cancel(self, record: StudyRecord, *, who: str) -> str:
        if record.ended:
            return f"the study had already ended ({record.events[-1]['status']})"
        _, said = study_runs.cancel_run(
            coordinator=self.coordinator, folder=record.folder, reason=f"cancelled by its researcher ({who})", who=who
        )
        return said

    def run_queries(
        self, *, owner: str, key: str, requests: list[QueryRequest], costs: bool, timeout: float
    ) -> dict[str, Any]:
        from federation.coordinator.query_file import answers_to_json

        run_id, project = str(requests[0].run_id), requests[0].project
        self._claim(
            run_folder=self.coordinator.runs_dir / f"queries-{run_id}",
            owner=owner,
            key=key,
            project=project,
            kind="costs" if costs else "queries",
        )
        run = study_runs.start_queries(
            coordinator=self.coordinator,
            requests=requests,
            n_sites=len(registered_nodes(self.coordinator)),
            costs=costs,
            timeout=timeout,
        )
        answers, cost_table = study_runs.await_queries(run=run, timeout=timeout)
        return answers_to_json(answers=answers, costs=cost_table)


def wait_for_events(
    record: StudyRecord, *, after: int, wait: float, now: Callable[[], float] = time.monotonic
) -> list[dict[str, Any]]:
    """The events after ``after``, waiting up to ``wait`` seconds for one (a thread's wait)."""
    deadline = now() + wait
    with record.lock:
        while len(record.events) <= after and not record.ended and now() < deadline:
            record.lock.wait(timeout=max(0.0, deadline - now()))
        return record.events[after:]
