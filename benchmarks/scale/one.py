"""python -m benchmarks.scale.one --sites S --rows N --rounds R --workdir DIR

One growth configuration in its own process (so its memory is its own): write S
synthetic hospitals of N rows, then run the workbench's study on them on Flower's
simulation engine while sampling the resident memory of this process and all its
descendants (the Ray processes that host the sites). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import threading
import time
from pathlib import Path

import psutil

from benchmarks.demo_sites import demo_sites
from federation.engines.simulation import run_simulated_training
from federation.protocol.spec import TrainingSpec

PROJECT = "scale"


class TreeMemory:
    """Peak summed RSS of a process and its descendants, sampled every ``interval`` s."""

    def __init__(self, *, interval: float = 0.25) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_one(*, sites: int, rows: int, rounds: int, workdir: Path) -> dict:
    """Write the data, run the study, return the figures of this configuration."""
    t0 = time.monotonic()
    configs, encoder = demo_sites(workdir=workdir, sites=sites, rows=rows, size_spread=0.0, projects={PROJECT: 1.0})
    data_s = time.monotonic() - t0
    gc.collect()
    # The demo's study, with the vectorised DP-SGD engine (benchmarks/dp_overhead).
    spec = TrainingSpec(project=PROJECT, target_epsilon=1.0, rounds=rounds, engine="vectorized")
    round_s: list[float] = []

    class Clock:
        def round_finished(self, report) -> None:
            round_s.append(report.seconds)

        def study_stopped(self, reason: str) -> None:
            raise RuntimeError(f"the scale study stopped: {reason}")

    t1 = time.monotonic()
    with TreeMemory() as memory:
        run_simulated_training(sites=configs, spec=spec, encoder=encoder, observer=Clock())
    study_s = time.monotonic() - t1
    return {
        "sites": sites,
        "rows_per_site": rows,
        "total_rows": sites * rows,
        "rounds": rounds,
        "data_s": data_s,
        "study_s": study_s,
        "round_s": round_s,
        "last_round_s": round_s[-1] if round_s else float("nan"),
        "peak_tree_rss_mib": memory.peak / 2**20,
        "peak_driver_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "data_mib": sum(p.stat().st_size for p in (workdir / "data").glob("*.parquet")) / 2**20,
        "load_average": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale.one")
    parser.add_argument("--sites", type=int, required=True)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args(argv)
    print(json.dumps(run_one(sites=args.sites, rows=args.rows, rounds=args.rounds, workdir=args.workdir)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
