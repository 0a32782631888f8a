"""python -m benchmarks.dp_overhead.run [--quick] [--out benchmarks/dp_overhead/RESULTS.md]

Times one epoch of each variant (non-private, Opacus's grad-sample modes, the vectorised
engine) for each workload, batch size and thread count, interleaved in one process;
writes RESULTS.md with a plot beside it and prints the table of ratios.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import shlex
import sys
import warnings
from pathlib import Path

import torch
from tqdm.auto import tqdm

from benchmarks.dp_overhead.probes import empty_batch_probe
from benchmarks.dp_overhead.report import ConfigResult, summary_table, write_results
from benchmarks.dp_overhead.timing import STABLE_SPREAD, time_interleaved
from benchmarks.dp_overhead.variants import BASELINE, VARIANTS
from benchmarks.dp_overhead.workloads import WORKLOADS, build_workload

DEFAULT_OUT = Path(__file__).parent / "RESULTS.md"
FULL = {"rows": 20000, "batch_sizes": (64, 256, 1024), "threads": (1, 2), "repeats": 7}
QUICK = {"rows": 1200, "batch_sizes": (128,), "threads": (1,), "repeats": 2}
RETRIES = 1  # measurements again of a disturbed configuration


def run(
    *,
    out: Path,
    rows: int,
    batch_sizes: tuple[int, ...],
    threads: tuple[int, ...],
    repeats: int,
    workloads: tuple[str, ...] = WORKLOADS,
    command: str = "",
    show_progress: bool = True,
) -> list[ConfigResult]:
    """Run the benchmark and write ``out``; return the results."""
    # Opacus's hooks warn on every wrapped module that takes no input gradient, and
    # about secure_mode (torchcsprng has no release here): noise in the progress output.
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    warnings.filterwarnings("ignore", message="Secure RNG turned off")
    load_before = os.getloadavg()
    configs = [(w, b, t) for w in workloads for b in batch_sizes for t in threads]
    built = {name: build_workload(name=name, rows=rows) for name in workloads}
    # Everything alive now (torch, opacus, the data) is moved out of the collector's
    # reach, so the gc.collect() before each timed epoch is cheap and equal for all.
    gc.collect()
    gc.freeze()
    total = len(configs) * len(VARIANTS) * (repeats + 1)
    results: list[ConfigResult] = []
    previous_threads = torch.get_num_threads()
    with tqdm(total=total, desc="dp-overhead", unit="epoch", disable=not show_progress) as bar:
        for name, batch_size, n_threads in configs:
            bar.set_postfix_str(f"{name} batch {batch_size} threads {n_threads}")
            torch.set_num_threads(n_threads)
            workload = built[name]
            for attempt in range(1, RETRIES + 2):
                timings, failures = time_interleaved(
                    variants=VARIANTS,
                    baseline=BASELINE,
                    workload=workload,
                    batch_size=batch_size,
                    repeats=repeats,
                    tick=lambda: bar.update(1),
                )
                bar.update(len(failures) * repeats)  # failed variants skip their repeats
                spread = next(t.spread for t in timings if t.variant == BASELINE)
                if spread <= STABLE_SPREAD or attempt == RETRIES + 1:
                    break
                bar.total += len(VARIANTS) * (repeats + 1)
                bar.refresh()
            results.append(
                ConfigResult(
                    workload=name,
                    rows=len(workload.y),
                    n_params=workload.n_params,
                    batch_size=batch_size,
                    threads=n_threads,
                    steps=math.ceil(len(workload.y) / batch_size),
                    timings=timings,
                    failures=failures,
                    attempts=attempt,
                    stable=spread <= STABLE_SPREAD,
                )
            )
    torch.set_num_threads(previous_threads)
    gc.unfreeze()
    probes = {name: empty_batch_probe(workload=name) for name in workloads}
    write_results(
        results=results,
        out=out,
        rows=rows,
        repeats=repeats,
        command=command,
        load_before=load_before,
        load_after=os.getloadavg(),
        empty_batch_probes=probes,
    )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dp_overhead.run", description=__doc__.split("\n\n")[1])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for tests (seconds)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown results file (a .png goes beside it)")
    parser.add_argument("--rows", type=int, help="training rows (default 20000; quick 1200)")
    parser.add_argument("--repeats", type=int, help="timed repeats per variant (default 7; quick 2)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="expected batch sizes (default 64 256 1024)")
    parser.add_argument("--threads", type=int, nargs="+", help="torch thread counts (default 1 2)")
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else FULL
    results = run(
        out=args.out,
        rows=args.rows or preset["rows"],
        batch_sizes=tuple(args.batch_sizes or preset["batch_sizes"]),
        threads=tuple(args.threads or preset["threads"]),
        repeats=args.repeats or preset["repeats"],
        workloads=tuple(args.workloads),
        command=shlex.join(["python", "-m", "benchmarks.dp_overhead.run", *(sys.argv[1:] if argv is None else argv)]),
    )
    print(summary_table(results))
    print(f"\nwrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
