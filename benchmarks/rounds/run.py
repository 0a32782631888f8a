"""python -m benchmarks.rounds.run [--quick] [--out benchmarks/rounds/RESULTS.md]

The demo study's wall time on the simulation engine, split into engine start,
first-round extra (Ray actors spawning), per-round time and end, beside a bare
Flower FedAvg app of the same model, data and DP-SGD step and an empty ServerApp
(Flower's own floor), all in this one process; plus the training compute per round,
timed in-process, so the per-round time splits into training, Flower, and our layers.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from benchmarks.demo_sites import DELTA, demo_sites
from benchmarks.rounds.bare_app import (
    BareSite,
    RoundClock,
    build_bare_client_app,
    build_bare_server_app,
    build_empty_server_app,
)
from benchmarks.rounds.in_process import layer_cost
from benchmarks.rounds.report import write_results
from federation.coordinator.server_app import initial_arrays
from federation.engines.simulation import quiet_flower, run_simulated_training
from federation.protocol.spec import TrainingSpec
from federation.site.config import NodePolicy
from federation.site.data_access import site_arrays
from federation.training.dp_sgd import planned_sampling, train_round
from privacy_budgets import accounting

DEFAULT_OUT = Path(__file__).parent / "RESULTS.md"
FULL = {"sites": 4, "rows": 5000, "rounds": 5, "repeats": 3}  # the demo: `workbench demo`'s defaults
QUICK = {"sites": 2, "rows": 300, "rounds": 2, "repeats": 1, "with_floor": False}


@dataclass(frozen=True)
class Timeline:
    """One simulation's wall time, split."""

    app: str
    total: float
    to_round_one: float  # call -> round 1 begins (Ray up, sites registered)
    rounds: tuple[float, ...]

    @property
    def per_round(self) -> float:
        later = self.rounds[1:] or self.rounds
        return statistics.median(later) if later else float("nan")

    @property
    def engine_start(self) -> float:
        """Up to round 1, plus what round 1 takes beyond a later round: the site actors
        spawn (and import torch) when the first messages reach them."""
        if not self.rounds:
            return self.to_round_one
        return self.to_round_one + self.rounds[0] - self.per_round

    @property
    def end(self) -> float:
        return self.total - self.to_round_one - sum(self.rounds)


def _backend(cpus: int) -> dict:
    # The same settings as federation.engines.simulation.run_on_simulation.
    return {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {
            "num_cpus": cpus,
            "num_gpus": 0,
            "include_dashboard": False,
            "logging_level": logging.ERROR,
            "log_to_driver": False,
        },
    }


def _run_flower(*, server_app, client_app, n_sites: int) -> None:
    from flwr.simulation import run_simulation

    with quiet_flower(False):
        run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=n_sites,
            backend_config=_backend(os.cpu_count() or 2),
            verbose_logging=False,
        )


def time_ours(*, sites, spec: TrainingSpec, encoder) -> Timeline:
    """The workbench's study (ClientApp with policy gate, ledger, receipts)."""
    ends: list[tuple[float, float]] = []

    class Clock:
        def round_finished(self, report) -> None:
            ends.append((time.monotonic(), report.seconds))

        def study_stopped(self, reason: str) -> None:
            raise RuntimeError(f"the benchmark study stopped: {reason}")

    t0 = time.monotonic()
    run_simulated_training(sites=sites, spec=spec, encoder=encoder, observer=Clock())
    total = time.monotonic() - t0
    first_begin = ends[0][0] - ends[0][1]
    return Timeline("workbench study", total, first_begin - t0, tuple(s for _, s in ends))


def bare_sites(*, sites, spec: TrainingSpec, encoder) -> list[BareSite]:
    """Each site's arrays and the noise its plan would calibrate (no prior spend)."""
    out = []
    for site in sites:
        arrays = site_arrays(site=site, policy=NodePolicy.default_for(site), encoder=encoder)
        rate, steps = planned_sampling(
            n_train=len(arrays.y_train), batch_size=spec.batch_size, local_epochs=spec.local_epochs
        )
        sigma = accounting.calibrate_dpsgd_noise(
            target_epsilon=spec.target_epsilon, delta=DELTA, sampling_rate=rate, steps=steps * spec.rounds
        )
        out.append(BareSite(site=site, noise_multiplier=sigma))
    return out


def time_bare(*, bare: list[BareSite], spec: TrainingSpec, encoder) -> Timeline:
    """The bare Flower FedAvg app on the same arrays, model and noise."""
    clock = RoundClock()
    server = build_bare_server_app(
        spec=spec, initial=initial_arrays(spec=spec, encoder=encoder), n_sites=len(bare), clock=clock
    )
    client = build_bare_client_app(sites=bare, spec=spec, encoder=encoder)
    t0 = time.monotonic()
    _run_flower(server_app=server, client_app=client, n_sites=len(bare))
    total = time.monotonic() - t0
    first_begin = clock.first_round_started - t0
    return Timeline("bare Flower FedAvg", total, first_begin, tuple(clock.rounds))


def time_empty(*, n_sites: int, encoder) -> Timeline:
    """The engine alone: start, register the sites, stop."""
    clock = RoundClock()
    t0 = time.monotonic()
    _run_flower(
        server_app=build_empty_server_app(n_sites=n_sites, clock=clock),
        client_app=build_bare_client_app(
            sites=[], spec=TrainingSpec(project="x", target_epsilon=1, rounds=1), encoder=encoder
        ),
        n_sites=n_sites,
    )
    total = time.monotonic() - t0
    return Timeline("empty ServerApp (Flower's floor)", total, total, ())


def training_compute(*, bare: list[BareSite], spec: TrainingSpec, encoder, repeats: int = 3) -> dict[str, float]:
    """Seconds of one round's local training per site, in this process, one thread."""
    torch.set_num_threads(1)
    from federation.training.models import build_model

    model = build_model(name=spec.model, n_features=encoder.n_features, hidden=spec.hidden)
    per_site = []
    for site in bare:
        arrays = site_arrays(site=site.site, policy=NodePolicy.default_for(site.site), encoder=encoder)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            train_round(
                model=model,
                x=arrays.x_train,
                y=arrays.y_train,
                noise_multiplier=site.noise_multiplier,
                max_grad_norm=spec.max_grad_norm,
                batch_size=spec.batch_size,
                local_epochs=spec.local_epochs,
                learning_rate=spec.learning_rate,
                momentum=spec.momentum,
                grad_sample_mode=spec.grad_sample_mode,
                engine=spec.engine,
            )
            times.append(time.perf_counter() - t0)
        per_site.append(statistics.median(times))
    lanes = min(os.cpu_count() or 2, len(bare))
    return {"sum_over_sites": sum(per_site), "lanes": lanes, "per_round": sum(per_site) / lanes}


def run(
    *,
    out: Path,
    sites: int,
    rows: int,
    rounds: int,
    repeats: int,
    with_floor: bool = True,
    command: str = "",
    show_progress: bool = True,
) -> pd.DataFrame:
    """Time the simulations, write ``out`` and its plot; return every run's split."""
    load_before = os.getloadavg()
    timelines: list[Timeline] = []
    with tempfile.TemporaryDirectory(prefix="rounds-bench-") as tmp:
        projects = {f"rounds-{k}": 1.0 for k in range(repeats)} | {"rounds-in-process": 1.0}
        site_configs, encoder = demo_sites(workdir=Path(tmp), sites=sites, rows=rows, projects=projects)
        base = TrainingSpec(project="rounds-0", target_epsilon=1.0, rounds=rounds)  # the demo's study
        bare = bare_sites(sites=site_configs, spec=base, encoder=encoder)
        compute = training_compute(bare=bare, spec=base, encoder=encoder)
        in_process = layer_cost(
            site=site_configs[0],
            spec=replace(base, project="rounds-in-process", rounds=8),
            encoder=encoder,
            noise_multiplier=bare[0].noise_multiplier,
            rounds=8,
        )
        # Alternate the two apps; the floor runs after the first pair, so that neither it nor
        # they alone pay for the first engine start of the process.
        steps = [(kind, k) for k in range(repeats) for kind in ("ours", "bare")]
        if with_floor:
            steps.insert(2, ("empty", 0))
        for kind, k in tqdm(steps, desc="rounds: simulations", disable=not show_progress):
            if kind == "empty":
                timelines.append(time_empty(n_sites=sites, encoder=encoder))
            elif kind == "ours":
                timelines.append(
                    time_ours(
                        sites=site_configs,
                        spec=replace(base, project=f"rounds-{k}", run_id=f"rounds{k}"),
                        encoder=encoder,
                    )
                )
            else:
                timelines.append(time_bare(bare=bare, spec=base, encoder=encoder))
    later = {}
    for t in timelines:
        later.setdefault(t.app, []).extend(t.rounds[1:])
    pooled = {app: statistics.median(v) for app, v in later.items() if v}
    table = pd.DataFrame(
        [
            {
                "app": t.app,
                "total_s": t.total,
                "engine_start_s": t.engine_start,
                "per_round_s": t.per_round,
                "end_s": t.end,
                "rounds": len(t.rounds),
            }
            for t in timelines
        ]
    )
    write_results(
        out=out,
        table=table,
        pooled_per_round=pooled,
        compute=compute,
        in_process=in_process,
        sites=sites,
        rows=rows,
        rounds=rounds,
        repeats=repeats,
        command=command,
        load_before=load_before,
        load_after=os.getloadavg(),
    )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rounds.run", description=__doc__.split("\n\n")[1])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--quick", action="store_true", help="2 sites, 300 rows, 2 rounds, one repeat (for tests)")
    args = parser.parse_args(argv)
    command = "python -m benchmarks.rounds.run " + shlex.join(argv if argv is not None else sys.argv[1:])
    table = run(out=args.out, command=command.strip(), **(QUICK if args.quick else FULL))
    with pd.option_context("display.width", 200):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
