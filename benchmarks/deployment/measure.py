"""Measuring rounds of one 3-site study: Flower's simulation engine, Flower's stock
deployment, and the workbench's deployment (site executor, short polls).

A round's wall time is the coordinator's (RoundReport.seconds: from sending the
training messages to the last evaluation reply). Its *site work* is, per round, the
slowest site's training plus evaluation handler time as the site executor logs it
("task train of run R took X s"); everything else is the engine's overhead
(transport, polling, process starts and imports).
"""

from __future__ import annotations

import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from federation.coordinator.run_folder import RunFolder
from federation.engines.loopback import LoopbackFederation
from federation.processes import BIN_DIR, ProcessHandle, engine_env, spawn, stop_process_group
from federation.site.supernode import supernode_command

TASK_LINE = re.compile(r"task (\w+) of run (\d+) took ([0-9.]+) s")


@dataclass
class VariantResult:
    name: str
    round_seconds: list[float]
    site_seconds: list[float | None] = field(default_factory=list)  # per round, None when not measurable
    train_seconds: list[float | None] = field(default_factory=list)
    note: str = ""

    @property
    def per_round(self) -> float:
        return statistics.mean(self.round_seconds)

    @property
    def steady(self) -> float:
        """Mean of rounds 2 and later: round 1 also pays first-time costs (the site's data
        load and noise calibration; Ray's start in simulation)."""
        later = self.round_seconds[1:] or self.round_seconds
        return statistics.mean(later)

    @property
    def site_work(self) -> float | None:
        known = [s for s in self.site_seconds if s is not None]
        return statistics.mean(known) if known and len(known) == len(self.site_seconds) else None

    @property
    def training(self) -> float | None:
        known = [s for s in self.train_seconds if s is not None]
        return statistics.mean(known) if known and len(known) == len(self.train_seconds) else None


def site_task_seconds(fed: LoopbackFederation, *, flower_run: str) -> dict[str, list[tuple[str, float]]]:
    """Per site, the executor's (task, seconds) for ``flower_run``, in order."""
    out: dict[str, list[tuple[str, float]]] = {}
    for site in fed.sites:
        log = Path(fed.node_config(site).state_dir) / "logs" / "executor.log"
        rows = []
        for line in log.read_text().splitlines() if log.exists() else []:
            m = TASK_LINE.search(line)
            if m and m.group(2) == flower_run:
                rows.append((m.group(1), float(m.group(3))))
        out[site] = rows
    return out


def split_rounds(tasks: dict[str, list[tuple[str, float]]], rounds: int) -> tuple[list, list]:
    """Per round: the slowest site's train + evaluate seconds, and its train seconds."""
    site_work, training = [], []
    for r in range(rounds):
        per_site, per_site_train = [], []
        for rows in tasks.values():
            pair = rows[2 * r : 2 * r + 2]
            if len(pair) != 2:
                return [None] * rounds, [None] * rounds
            per_site.append(sum(s for _, s in pair))
            per_site_train.append(next(s for kind, s in pair if kind == "train"))
        site_work.append(max(per_site))
        training.append(max(per_site_train))
    return site_work, training


def connected_study(fed: LoopbackFederation, *, project: str, rounds: int, prompt_replies: bool, epsilon: float):
    from workbench.session import Workbench

    fed.allocate(project=project, epsilon=epsilon)
    wb = Workbench.connect(
        coordinator=fed.coordinator.folder, dictionary=fed.dictionary_path, researcher=fed.researcher_key
    )
    result = wb.train(target_epsilon=epsilon, rounds=rounds, project=project, prompt_replies=prompt_replies)
    if result.stopped_reason:
        raise RuntimeError(f"the benchmark study stopped: {result.stopped_reason}")
    folder = RunFolder(fed.coordinator.runs_dir / result.spec.run_id)
    return folder.rounds(), result


def measure_deployment(
    fed: LoopbackFederation, *, name: str, project: str, rounds: int, prompt_replies: bool = True, epsilon: float = 2.0
) -> VariantResult:
    reports, result = connected_study(
        fed, project=project, rounds=rounds, prompt_replies=prompt_replies, epsilon=epsilon
    )
    flower_run = RunFolder(fed.coordinator.runs_dir / result.spec.run_id).flower_run()
    site, train = split_rounds(site_task_seconds(fed, flower_run=flower_run), rounds)
    return VariantResult(name=name, round_seconds=[r.seconds for r in reports], site_seconds=site, train_seconds=train)


def start_stock_nodes(fed: LoopbackFederation) -> dict[str, ProcessHandle]:
    """Flower's default node: ``flower-supernode --isolation subprocess`` (a
    ``flwr-clientapp`` process per message, importing the site's real ClientApp)."""
    handles = {}
    for site in fed.sites:
        config = fed.node_config(site)
        command = supernode_command(config=config)
        command = [str(BIN_DIR / "flower-supernode")] + command[3:]
        command[command.index("--isolation") + 1] = "subprocess"
        log = Path(config.state_dir) / "logs" / "stock-supernode.log"
        handles[site] = spawn(command=command, log_path=log, env=engine_env())
    deadline = time.monotonic() + 120
    for site, handle in handles.items():
        while "SuperNode ID:" not in handle.log_path.read_text(errors="replace"):
            if time.monotonic() > deadline or not handle.alive():
                raise RuntimeError(f"stock node {site} did not connect; see {handle.log_path}")
            time.sleep(0.5)
    return handles


def stop_stock_nodes(handles: dict[str, ProcessHandle]) -> None:
    for handle in handles.values():
        stop_process_group(handle.pid, reap=handle.popen.poll if handle.popen else None)


def measure_simulation(fed: LoopbackFederation, *, project: str, rounds: int, epsilon: float = 2.0) -> VariantResult:
    from federation.coordinator.events import RoundReport
    from federation.data.dictionary import DataDictionary
    from federation.engines.simulation import run_simulated_training
    from federation.protocol.spec import TrainingSpec
    from federation.training.features import FeatureEncoder

    fed.allocate(project=project, epsilon=epsilon)
    reports: list[RoundReport] = []

    class Collect:
        def round_finished(self, report: RoundReport) -> None:
            reports.append(report)

        def study_stopped(self, reason: str) -> None:
            raise RuntimeError(f"the simulated study stopped: {reason}")

    encoder = FeatureEncoder.from_dictionary(dictionary=DataDictionary.load(fed.dictionary_path))
    sites = [fed.node_config(s).site_config() for s in fed.sites]
    started = time.monotonic()
    run_simulated_training(
        sites=sites,
        spec=TrainingSpec(project=project, target_epsilon=epsilon, rounds=rounds),
        encoder=encoder,
        observer=Collect(),
        cpus=2,
    )
    total = time.monotonic() - started
    return VariantResult(
        name="Flower simulation engine (Ray, in-process ServerApp)",
        round_seconds=[r.seconds for r in reports],
        site_seconds=[None] * len(reports),
        train_seconds=[None] * len(reports),
        note=f"{total:.1f} s in all, Ray's start included",
    )
