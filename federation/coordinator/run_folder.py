"""What a connected study leaves on the coordinator's disk, and how it is read.

The workbench writes a *study file* (what to run) and starts a Flower run; the
deployed ServerApp (study_server_app.py) writes the *run folder* (what happened).
Both sides use this module, so the file names and shapes live in one place.

Besides the rounds and the outcome, the ServerApp keeps a journal of every exchange
as it happens (``exchanges.jsonl``: what was sent to which site, each reply with its
signed receipts, each reply that never came) and a snapshot of what it waits for
(``waiting.json``). Whatever stops a study (a refusal, a node killed mid-round, a
cancel, the coordinator stopped), ``charges()`` reads from them what each site was
charged and what could not be confirmed. The workbench writes ``cancel.json`` to stop
a run, and touches ``follower`` while it follows one: a ServerApp that sees neither
for ``StudyFile.unfollowed_after`` seconds stops on its own.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from federation.coordinator.events import RoundReport, SiteReply
from federation.protocol.authorization import Authorization
from federation.protocol.spec import TrainingSpec
from federation.training.features import FeatureEncoder


@dataclass(frozen=True)
class StudyFile:
    """One study as the coordinator's ServerApp reads it."""

    spec: TrainingSpec
    encoder: FeatureEncoder
    n_sites: int
    run_folder: Path
    timeout: float = 600.0  # how long the ServerApp waits for the sites' replies, per exchange
    prompt_grid: bool = True  # False: Flower's own Grid (pulls replies every 3 s), for comparison
    site_names: dict[int, str] = field(default_factory=dict)  # Flower node id -> site id (the registry)
    deadline: float | None = None  # epoch seconds: the sites refuse the run's messages after it
    unfollowed_after: float = 60.0  # seconds without a follower before the run stops on its own
    authorization: Authorization | None = None  # the researcher's signature on the study, relayed as is
    ledger_keys: dict[str, str] = field(default_factory=dict)  # site id -> its registered ledger key (hex)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(
                {
                    "spec": self.spec.to_config(),
                    "encoder": self.encoder.to_json(),
                    "n_sites": self.n_sites,
                    "run_folder": str(self.run_folder),
                    "timeout": self.timeout,
                    "prompt_grid": self.prompt_grid,
                    "site_names": {str(k): v for k, v in self.site_names.items()},
                    "deadline": self.deadline,
                    "unfollowed_after": self.unfollowed_after,
                    "authorization": None if self.authorization is None else self.authorization.to_json(),
                    "ledger_keys": self.ledger_keys,
                },
                indent=2,
            )
        )

    @classmethod
    def load(cls, path: Path) -> StudyFile:
        data = json.loads(path.read_text())
        deadline = data.get("deadline")
        return cls(
            spec=TrainingSpec.from_config(data["spec"]),
            encoder=FeatureEncoder.from_json(data["encoder"]),
            n_sites=int(data["n_sites"]),
            run_folder=Path(data["run_folder"]),
            timeout=float(data.get("timeout", 600.0)),
            prompt_grid=bool(data.get("prompt_grid", True)),
            site_names={int(k): str(v) for k, v in data.get("site_names", {}).items()},
            deadline=None if deadline is None else float(deadline),
            unfollowed_after=float(data.get("unfollowed_after", 60.0)),
            authorization=Authorization.from_json(data.get("authorization")),
            ledger_keys={str(k): str(v) for k, v in data.get("ledger_keys", {}).items()},
        )


@dataclass(frozen=True)
class SiteCharge:
    """What one site's signed receipts say this run charged it, and what is unknown.

    ``rounds_charged``: the training rounds for which the site sent a commit receipt;
    ``epsilon_project``: the project's total at the site after the last of them, as the
    site's ledger composed it (None: no receipt); ``unconfirmed``: the steps sent to the
    site whose answer never came (no reply, or a failure in its place: the site may have
    spent budget on them; its own ledger says).
    """

    site: str
    rounds_charged: tuple[int, ...] = ()
    epsilon_project: float | None = None
    releases: int = 0
    unconfirmed: tuple[str, ...] = ()

    def line(self) -> str:
        spent = "nothing confirmed" if self.epsilon_project is None else f"epsilon {self.epsilon_project:.3f}"
        rounds = ", ".join(map(str, self.rounds_charged)) or "none"
        text = f"{self.site}: {spent} for the project (rounds charged: {rounds})"
        if self.unconfirmed:
            text += (
                f"; NOT CONFIRMED: {', '.join(self.unconfirmed)} (no reply came; the site may have spent "
                "budget on it: its ledger says, `workbench node status` at the site)"
            )
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "rounds_charged": list(self.rounds_charged),
            "epsilon_project": self.epsilon_project,
            "releases": self.releases,
            "unconfirmed": list(self.unconfirmed),
        }


def charges_from_exchanges(exchanges: list[dict[str, Any]], *, sites: list[str] = ()) -> list[SiteCharge]:
    """Per site, from a run's journal: rounds charged, the project's epsilon, what is unconfirmed."""
    rounds: dict[str, set[int]] = {s: set() for s in sites}
    last: dict[str, tuple[int, float]] = {}
    releases: dict[str, int] = {}
    pending: dict[tuple[str, str], str] = {}  # (site, step) -> step, sent and not answered
    for event in exchanges:
        kind, step = event.get("event"), str(event.get("step", ""))
        if kind == "sent":
            for site in event.get("sites", []):
                rounds.setdefault(site, set())
                pending[(site, step)] = step
        elif kind == "reply":
            site = str(event.get("site"))
            rounds.setdefault(site, set())
            if event.get("status") != "failed":  # a failure says nothing of what the site spent
                pending.pop((site, step), None)
            commits = [r for r in event.get("receipts", []) if r.get("kind") == "commit"]
            for receipt in commits:
                releases[site] = releases.get(site, 0) + 1
                seq = int(receipt.get("seq", -1))
                if site not in last or seq > last[site][0]:
                    last[site] = (seq, float(receipt.get("project_epsilon_after") or 0.0))
            if commits and event.get("task") == "train" and event.get("round") is not None:
                rounds[site].add(int(event["round"]))
    unconfirmed: dict[str, list[str]] = {}
    for site, step in pending:
        unconfirmed.setdefault(site, []).append(step)
    return [
        SiteCharge(
            site=site,
            rounds_charged=tuple(sorted(rounds[site])),
            epsilon_project=last[site][1] if site in last else None,
            releases=releases.get(site, 0),
            unconfirmed=tuple(unconfirmed.get(site, ())),
        )
        for site in sorted(rounds)
    ]


class RunFolder:
    """``rounds.jsonl`` (one line per finished round), ``outcome.json``, ``model.pt``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    @property
    def rounds_path(self) -> Path:
        return self.path / "rounds.jsonl"

    @property
    def outcome_path(self) -> Path:
        return self.path / "outcome.json"

    @property
    def model_path(self) -> Path:
        return self.path / "model.pt"

    @property
    def study_path(self) -> Path:
        return self.path / "study.json"

    @property
    def flower_run_path(self) -> Path:
        """Flower's id of the run (for ``flwr log``/``flwr stop``), written by the workbench."""
        return self.path / "flower-run.txt"

    def flower_run(self) -> str | None:
        return self.flower_run_path.read_text().strip() if self.flower_run_path.exists() else None

    # --- the journal of exchanges, and what is waited for -----------------------------

    @property
    def exchanges_path(self) -> Path:
        return self.path / "exchanges.jsonl"

    @property
    def waiting_path(self) -> Path:
        return self.path / "waiting.json"

    @property
    def cancel_path(self) -> Path:
        return self.path / "cancel.json"

    @property
    def follower_path(self) -> Path:
        return self.path / "follower"

    def journal(self, event: dict[str, Any]) -> None:
        """One exchange event, on disk before the ServerApp goes on (fsync). A reply's heads
        go to the coordinator's mirror too (head_mirror.py); a head that goes backwards or
        forks is journalled at once as a ``ledger_head_alert``."""
        with self.exchanges_path.open("a") as fh:
            fh.write(json.dumps({"time": time.time(), **event}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        if event.get("event") == "reply" and event.get("status") == "ok":
            from federation.coordinator.head_mirror import HEADS_FILE, HeadMirror

            problems = HeadMirror(self.path.parent / HEADS_FILE).observe(
                site=str(event.get("site")),
                receipts=list(event.get("receipts") or []),
                audit_head=event.get("audit_head"),
                run=self.path.name,
            )
            if problems:
                self.journal({"event": "ledger_head_alert", "site": event.get("site"), "problems": problems})

    def exchanges(self) -> list[dict[str, Any]]:
        """The journal so far (complete lines only)."""
        if not self.exchanges_path.exists():
            return []
        out = []
        for line in self.exchanges_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:  # a line cut off by a crash
                continue
        return out

    def charges(self, *, sites: list[str] = ()) -> list[SiteCharge]:
        """Per site: what the run's receipts confirm, and what was sent without a reply."""
        return charges_from_exchanges(self.exchanges(), sites=list(sites))

    def receipts(self) -> list[dict[str, Any]]:
        """The signed receipts of this run: the outcome's when it finished, else the journal's."""
        outcome = self.outcome()
        if outcome is not None and outcome.get("status") == "finished":
            return list(outcome.get("receipts", []))
        return [r for e in self.exchanges() if e.get("event") == "reply" for r in e.get("receipts", [])]

    def write_waiting(self, state: dict[str, Any] | None) -> None:
        """What the ServerApp waits for now (None: nothing)."""
        if state is None:
            self.waiting_path.unlink(missing_ok=True)
            return
        partial = self.waiting_path.with_suffix(".partial")
        partial.write_text(json.dumps(state))
        partial.replace(self.waiting_path)

    def waiting(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.waiting_path.read_text())
        except (OSError, ValueError):
            return None

    def request_cancel(self, *, reason: str, who: str) -> None:
        """Ask the ServerApp to stop (it checks between pulls); the first reason stays."""
        if self.cancel_path.exists():
            return
        partial = self.cancel_path.with_suffix(".partial")
        partial.write_text(json.dumps({"reason": reason, "who": who, "time": time.time()}))
        partial.replace(self.cancel_path)

    def cancel_request(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.cancel_path.read_text())
        except (OSError, ValueError):
            return None

    def touch_follower(self) -> None:
        self.follower_path.touch()

    def unfollowed_for(self, *, now: float | None = None) -> float:
        """Seconds since a client last followed the run (since its study file was
        written, if never)."""
        now = time.time() if now is None else now
        for path in (self.follower_path, self.study_path):
            try:
                return now - path.stat().st_mtime
            except OSError:
                continue
        return 0.0

    def append_round(self, report: dict[str, Any]) -> None:
        with self.rounds_path.open("a") as fh:
            fh.write(json.dumps(report) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def rounds(self) -> list[RoundReport]:
        """The rounds finished so far (complete lines only)."""
        if not self.rounds_path.exists():
            return []
        reports = []
        for line in self.rounds_path.read_text().splitlines():
            if line.strip():
                reports.append(round_from_json(json.loads(line)))
        return reports

    def _write_outcome(self, data: dict[str, Any]) -> None:
        partial = self.outcome_path.with_suffix(".partial")
        partial.write_text(json.dumps(data, indent=2))
        partial.replace(self.outcome_path)  # readers never see half a file

    def finish(self, *, receipts: list[dict[str, Any]], stopped_reason: str) -> None:
        self._write_outcome({"status": "finished", "receipts": receipts, "stopped_reason": stopped_reason})

    def finish_queries(self, *, answers: list | None, costs: list | None) -> None:
        """An analytics batch: every site's reply to every query, as JSON (query_file.py)."""
        receipts = [r for replies in answers or [] for reply in replies for r in reply["reply"]["receipts"]]
        self._write_outcome(
            {"status": "finished", "answers": answers, "costs": costs, "receipts": receipts, "stopped_reason": ""}
        )

    def fail(self, *, error: str, trace: str = "") -> None:
        self._write_outcome({"status": "failed", "error": error, "trace": trace})

    def stopped(self, *, reason: str) -> None:
        """The ServerApp was stopped from outside (its SuperLink stopping, ``flwr stop``)."""
        self._write_outcome({"status": "stopped", "reason": reason, "receipts": self.receipts()})

    def cancelled(self, *, reason: str, receipts: list[dict[str, Any]]) -> None:
        self._write_outcome({"status": "cancelled", "reason": reason, "receipts": receipts, "stopped_reason": reason})

    def outcome(self) -> dict[str, Any] | None:
        if not self.outcome_path.exists():
            return None
        return json.loads(self.outcome_path.read_text())


def round_from_json(data: dict[str, Any]) -> RoundReport:
    """A round as written to ``rounds.jsonl`` (or sent by the study service), read back."""

    def reply(d: dict[str, Any]) -> SiteReply:
        return SiteReply(**{**d, "receipts": tuple(d.get("receipts", ()))})

    return RoundReport(
        round=int(data["round"]),
        rounds=int(data["rounds"]),
        train=tuple(reply(d) for d in data["train"]),
        evaluate=tuple(reply(d) for d in data["evaluate"]),
        seconds=float(data["seconds"]),
    )
