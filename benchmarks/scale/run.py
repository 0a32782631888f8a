"""python -m benchmarks.scale.run [--quick] [--budget SECONDS] [--out benchmarks/scale/RESULTS.md]

Growth: 4, 16 and 64 simulated sites x 10k, 100k and 1M rows per site, each in its
own process (``benchmarks.scale.one``): the time to write the data, the study's wall
time and round time, and peak memory. Configurations run from the smallest total;
one whose estimated time (from the growth measured so far) exceeds what is left of
the budget, or whose estimated memory exceeds the machine's, is not run: its row
says why and gives the estimate, labelled as such.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
from tqdm.auto import tqdm

from benchmarks.scale.report import write_results

DEFAULT_OUT = Path(__file__).parent / "RESULTS.md"
FULL = {
    "sites": (4, 16, 64),
    "rows": (10_000, 100_000, 1_000_000),
    "rounds": 2,
    "budget_s": 1200.0,
    "per_config_s": 480.0,
}
QUICK = {
    "sites": (2,),
    "rows": (200, 1_000_000),
    "rounds": 1,
    "budget_s": 120.0,
    "per_config_s": 120.0,
    "max_total_rows": 10_000,
}
MEMORY_SHARE = 0.6  # of the RAM available at start: above it a configuration is not tried


@dataclass(frozen=True)
class Estimate:
    seconds: float
    memory_mib: float


def estimate(*, measured: list[dict], sites: int, rows: int) -> Estimate:
    """Linear growth fitted on what ran: time in total rows (data writing + study),
    memory in rows per site (a site actor holds one site's data at a time) plus the
    driver's share, which grows with total rows (it writes every site's data)."""
    if len(measured) < 2:
        return Estimate(float("nan"), float("nan"))
    total = np.array([m["total_rows"] for m in measured], dtype=float)
    seconds = np.array([m["data_s"] + m["study_s"] for m in measured])
    memory = np.array([m["peak_tree_rss_mib"] for m in measured])
    time_fit = np.polyfit(total, seconds, 1)
    memory_fit = np.polyfit(total, memory, 1)
    return Estimate(float(np.polyval(time_fit, sites * rows)), float(np.polyval(memory_fit, sites * rows)))


def run_config(*, sites: int, rows: int, rounds: int, timeout: float) -> dict:
    """One configuration in a child process (its own memory); its JSON line, or why not."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]),
    }
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
        command = [
            sys.executable,
            "-m",
            "benchmarks.scale.one",
            "--sites",
            str(sites),
            "--rows",
            str(rows),
            "--rounds",
            str(rounds),
            "--workdir",
            tmp,
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return {"status": f"stopped after {timeout:.0f} s (time limit)"}
    if done.returncode != 0:
        return {"status": f"failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}"}
    return {"status": "measured", **json.loads(done.stdout.strip().splitlines()[-1])}


def run(
    *,
    out: Path,
    sites: tuple[int, ...],
    rows: tuple[int, ...],
    rounds: int,
    budget_s: float,
    per_config_s: float,
    max_total_rows: int | None = None,
    command: str = "",
    show_progress: bool = True,
) -> pd.DataFrame:
    """Measure what fits, estimate the rest, write ``out``; return the table."""
    load_before = os.getloadavg()
    ram_mib = psutil.virtual_memory().available / 2**20
    started = time.monotonic()
    configs = sorted(((s, r) for s in sites for r in rows), key=lambda c: (c[0] * c[1], c[0]))
    records, measured = [], []
    for s, r in tqdm(configs, desc="scale", disable=not show_progress):
        guess = estimate(measured=measured, sites=s, rows=r)
        left = budget_s - (time.monotonic() - started)
        base = {
            "sites": s,
            "rows_per_site": r,
            "total_rows": s * r,
            "estimated_s": guess.seconds,
            "estimated_peak_mib": guess.memory_mib,
        }
        if max_total_rows is not None and s * r > max_total_rows:
            records.append({**base, "status": f"not run: above --max-total-rows {max_total_rows}"})
            continue
        if guess.memory_mib > MEMORY_SHARE * ram_mib:
            records.append(
                {
                    **base,
                    "status": f"not run: estimated memory above {MEMORY_SHARE:.0%} of the "
                    f"{ram_mib / 1024:.0f} GiB available",
                }
            )
            continue
        if guess.seconds > min(left, per_config_s):
            records.append(
                {**base, "status": f"not run: estimated time above the {min(left, per_config_s):.0f} s left for it"}
            )
            continue
        result = run_config(sites=s, rows=r, rounds=rounds, timeout=max(30.0, min(left, per_config_s)))
        records.append({**base, **result})
        if result["status"] == "measured":
            measured.append(result)
    table = pd.DataFrame(records)
    write_results(
        out=out,
        table=table,
        rounds=rounds,
        budget_s=budget_s,
        per_config_s=per_config_s,
        ram_mib=ram_mib,
        command=command,
        load_before=load_before,
        load_after=os.getloadavg(),
        seconds=time.monotonic() - started,
    )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale.run", description=__doc__.split("\n\n")[1])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--quick", action="store_true", help="2 sites x 200 rows, one round (for tests)")
    parser.add_argument("--budget", type=float, default=None, help="seconds for the whole benchmark")
    args = parser.parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    if args.budget is not None:
        sizes["budget_s"] = args.budget
    command = "python -m benchmarks.scale.run " + shlex.join(argv if argv is not None else sys.argv[1:])
    table = run(out=args.out, command=command.strip(), **sizes)
    cols = [
        c for c in ("sites", "rows_per_site", "status", "study_s", "last_round_s", "peak_tree_rss_mib") if c in table
    ]
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(table[cols].to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
