"""python -m benchmarks.run_all [--quick] [--out-dir DIR] [--only NAME ...] [--data FOLDER] [--summarise]

Runs every benchmark, each in its own process (so one's memory, threads and Ray
runtime never colour another's figures), then writes ``benchmarks/RESULTS.md``: the
machine and versions, how long each took, its headline tables and plots, and a link
to its own RESULTS.md. ``make bench`` runs this. ``--quick`` runs every benchmark at
its test size and writes under ``--out-dir`` (default: a fresh temporary folder), so
the committed figures are never overwritten by small ones.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from benchmarks.machine import machine_lines

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass(frozen=True)
class Benchmark:
    name: str
    module: str
    out_flag: str  # how its runner takes the results path
    sections: tuple[str, ...]  # headings of its RESULTS.md quoted in the summary
    what: str
    budget_min: float  # its stated time budget at full size on this project's 2 shared cores (minutes)


BENCHMARKS = (
    Benchmark(
        "heart_disease",
        "benchmarks.heart_disease.run",
        "--out",
        ("Results", "All five epsilons: every stored run"),
        "Fed-Heart-Disease, FLamby's protocol: pooled, local, federated, DP at epsilon 0.5-8 per hospital",
        100,
    ),
    Benchmark(
        "dp_overhead",
        "benchmarks.dp_overhead.run",
        "--out",
        ("Ratio of epoch time to non-private training",),
        "one epoch of DP-SGD against non-private training of the same model, data and process",
        8,
    ),
    Benchmark(
        "rounds",
        "benchmarks.rounds.run",
        "--out",
        ("Wall time split (seconds)", "One round, split", "Engine start"),
        "the demo study's wall time: engine start, per round, our layers beside a bare Flower app",
        8,
    ),
    Benchmark(
        "scale",
        "benchmarks.scale.run",
        "--out",
        ("Results",),
        "4/16/64 sites x 10k/100k/1M rows: time and peak memory, and where it stops fitting",
        20,
    ),
    Benchmark(
        "deployment",
        "benchmarks.deployment.run",
        "--out",
        ("Seconds per round",),
        "3 hospitals on loopback (TLS, node auth): wall time per round beside stock Flower and simulation",
        10,
    ),
    Benchmark(
        "node_gate",
        "benchmarks.node_gate.bench_gate",
        "--results",
        (
            "The audit log as it grows",
            "One count query through `serve` (real site: 2,000-row Parquet file, SQLite ledger, node.toml)",
        ),
        "the node's policy gate and audit log: append, verify and scan as the log grows; a query through serve()",
        4,
    ),
    Benchmark(
        "ledger",
        "benchmarks.ledger.bench_ledger",
        "--results",
        (
            "Check-and-reserve on one dataset",
            "Concurrent writers (4 processes, one ledger file)",
            "A dataset after many studies",
            "Several sites in one process",
            "A study reusing an old calibration",
        ),
        "the privacy ledger's check-and-reserve latency as it grows, and spends per second",
        4,
    ),
    Benchmark(
        "privacy_audit",
        "benchmarks.privacy_audit.run",
        "--out",
        ("Results", "What the bound can and cannot show at this size"),
        "one-run empirical epsilon of both DP-SGD engines at a claim of 2, and of broken ones (noise off, clipping off)",
        5,
    ),
)
NAMES = tuple(b.name for b in BENCHMARKS)


def total_budget_min() -> float:
    """The stated time budget of ``make bench``: every benchmark's, added (they run one after another)."""
    return float(sum(b.budget_min for b in BENCHMARKS))


def section(*, text: str, heading: str) -> str:
    """The body of ``## heading`` in a markdown text (up to the next ``## ``), or ''."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    return match.group(1).strip() if match else ""


def _relink(body: str, *, folder: str) -> str:
    """Images linked beside a benchmark's RESULTS.md, relinked from benchmarks/."""
    return re.sub(r"!\[([^\]]*)\]\(([^)/]+\.png)\)", rf"![\1]({folder}/\2)", body)


def run_one(*, bench: Benchmark, results: Path, quick: bool, data: Path | None, log: Path) -> tuple[int, float]:
    """Run one benchmark in its own process, output to ``log``; its exit code and seconds."""
    argv = [sys.executable, "-m", bench.module, bench.out_flag, str(results)]
    if quick:
        argv.append("--quick")
    if bench.name == "heart_disease" and data is not None:
        argv += ["--data", str(data)]
    if bench.name == "heart_disease" and not quick:  # kept, then merged with every earlier stored run
        argv += ["--store", str(results.parent / "stored_runs")]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
    }
    started = time.monotonic()
    with log.open("w") as fh:
        code = subprocess.run(argv, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    return code, time.monotonic() - started


def _status(code: int, log: Path) -> str:
    if code == 0:
        return "ok"
    tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-1:]
    if code == 2 and tail and "skipped" in tail[0]:
        return tail[0]
    return f"failed (exit {code}): {tail[0] if tail else 'no output'}"


def write_summary(
    *, out: Path, runs: list[tuple[Benchmark, Path, str, float]], machine: list[str], command: str
) -> None:
    """benchmarks/RESULTS.md: machine, overview, and each benchmark's quoted sections and plots."""
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{command}`. Each benchmark ran in its own process, one after another; each section "
        "quotes its own RESULTS.md, which says exactly what ran and how.",
        "",
        f"Stated time budget of the full run (`make bench`) on 2 shared cores: {total_budget_min():g} minutes, each "
        "benchmark's own in the overview; a benchmark that takes longer is marked over its budget.",
        "",
        *machine,
        "## Overview",
        "",
        "| benchmark | what | status | seconds | budget (min) | details |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for bench, results, status, seconds in runs:
        link = os.path.relpath(results, out.parent)
        took = "-" if seconds != seconds else f"{seconds:.0f}"
        lines.append(f"| {bench.name} | {bench.what} | {status} | {took} | {bench.budget_min:g} | [{link}]({link}) |")
    lines.append("")
    for bench, results, status, _ in runs:
        lines += [f"## {bench.name}", ""]
        if not status.startswith("ok") or not results.exists():
            lines += [f"Not available: {status}.", ""]
            continue
        text = results.read_text()
        folder = os.path.relpath(results.parent, out.parent)
        for heading in bench.sections:
            body = section(text=text, heading=heading)
            if body:
                lines += [f"### {heading}", "", _relink(body, folder=folder), ""]
        png = results.with_suffix(".png")
        if png.exists() and f"]({folder}/{png.name})" not in "\n".join(lines):
            lines += [f"![{bench.name}]({folder}/{png.name})", ""]
    out.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run_all", description=__doc__.split("\n\n")[1])
    parser.add_argument("--quick", action="store_true", help="every benchmark at its test size")
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help="where results go (default: benchmarks/ itself; with --quick a temporary folder)",
    )
    parser.add_argument("--only", nargs="+", choices=NAMES, default=list(NAMES), help="run only these")
    parser.add_argument("--data", type=Path, default=None, help="the UCI heart-disease folder")
    parser.add_argument(
        "--summarise",
        action="store_true",
        help="run nothing: write the summary from the RESULTS.md files already there",
    )
    args = parser.parse_args(argv)
    out_dir = args.out_dir or (Path(tempfile.mkdtemp(prefix="bench-quick-")) if args.quick else HERE)
    out_dir.mkdir(parents=True, exist_ok=True)
    logs = out_dir / "logs" if out_dir != HERE else Path(tempfile.mkdtemp(prefix="bench-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    machine = machine_lines(title="Machine (at the start)")
    command = "python -m benchmarks.run_all " + " ".join(argv if argv is not None else sys.argv[1:])
    runs = []
    chosen = [] if args.summarise else [b for b in BENCHMARKS if b.name in args.only]
    for bench in tqdm(chosen, desc="benchmarks"):
        results = out_dir / bench.name / "RESULTS.md"
        results.parent.mkdir(parents=True, exist_ok=True)
        log = logs / f"{bench.name}.log"
        code, seconds = run_one(bench=bench, results=results, quick=args.quick, data=args.data, log=log)
        status = _status(code, log)
        if bench.name == "heart_disease" and code == 0 and not args.quick:
            from benchmarks.heart_disease.merge import write as merge_heart

            merge_heart(store=results.parent / "stored_runs", results=results)
        if not args.quick and status == "ok" and seconds > bench.budget_min * 60:
            status = f"ok, but over its stated budget of {bench.budget_min:g} min"
        print(f"{bench.name}: {status} in {seconds:.0f} s (log: {log})", flush=True)
        runs.append((bench, results, status, seconds))
    # Benchmarks not run now are quoted from their own RESULTS.md, said to be older.
    for bench in BENCHMARKS:
        results = out_dir / bench.name / "RESULTS.md"
        if bench not in chosen and results.exists():
            runs.append((bench, results, "ok, not rerun by this command (see its RESULTS.md for when)", float("nan")))
    runs.sort(key=lambda r: NAMES.index(r[0].name))
    summary = out_dir / "RESULTS.md"
    write_summary(out=summary, runs=runs, machine=machine, command=command.strip())
    print(f"wrote {summary}")
    return 0 if all(status.startswith("ok") or "skipped" in status for _, _, status, _ in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
