"""What a connected study leaves on the coordinator's disk, and how it is read.

The workbench writes a *study file* (what to run) and starts a Flower run; the
deployed ServerApp (study_server_app.py) writes the *run folder* (what happened).
Both sides use this module, so the file names and shapes live in one place.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from federation.coordinator.events import RoundReport, SiteReply
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
                },
                indent=2,
            )
        )

    @classmethod
    def load(cls, path: Path) -> StudyFile:
        data = json.loads(path.read_text())
        return cls(
            spec=TrainingSpec.from_config(data["spec"]),
            encoder=FeatureEncoder.from_json(data["encoder"]),
            n_sites=int(data["n_sites"]),
            run_folder=Path(data["run_folder"]),
            timeout=float(data.get("timeout", 600.0)),
            prompt_grid=bool(data.get("prompt_grid", True)),
        )


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
                reports.append(_round_from_json(json.loads(line)))
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

    def outcome(self) -> dict[str, Any] | None:
        if not self.outcome_path.exists():
            return None
        return json.loads(self.outcome_path.read_text())


def _round_from_json(data: dict[str, Any]) -> RoundReport:
    def reply(d: dict[str, Any]) -> SiteReply:
        return SiteReply(**{**d, "receipts": tuple(d.get("receipts", ()))})

    return RoundReport(
        round=int(data["round"]),
        rounds=int(data["rounds"]),
        train=tuple(reply(d) for d in data["train"]),
        evaluate=tuple(reply(d) for d in data["evaluate"]),
        seconds=float(data["seconds"]),
    )
