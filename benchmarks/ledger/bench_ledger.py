"""How fast the ledger checks and reserves as it grows, and how many spends it commits.

    python -m benchmarks.ledger.bench_ledger            # full: 10 / 1,000 / 10,000 entries
    python -m benchmarks.ledger.bench_ledger --quick    # small sizes, for the test suite

1. Check-and-reserve latency (median of N ``reserve`` calls, each then committed so the
   composed state really changes) on one dataset holding about 10, 1,000 and 10,000
   entries of a realistic mix: DP-SGD rounds of three settings with their uncovered
   releases (row count, evaluation metrics), Gaussian counts of four noise levels, and
   aborted queries. "warm" is a long-lived process (a node's own process); "cold" drops
   every in-memory PLD first, as a freshly spawned Flower ClientApp process would.
2. Committed spends per second with 4 writer processes on one ledger, beside a plain
   SQLite insert loop with the same WAL settings and 4 processes, as the ceiling.
3. A dataset after many studies, each with mechanisms of its own (``many_studies.py``):
   the reserve of one more round beside composing the same history in sorted order.
4. Several sites' ledgers in one process, a round at each in turn (``several_sites.py``):
   the composition cache keeping each history's last prefixes beside keeping every prefix.
5. A study reusing an old calibration (``reused_calibration.py``): its rounds composed in
   the order of last appearance beside the order of first appearance.

Figures go to benchmarks/ledger/RESULTS.md (or ``--results``) and to stdout.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import random
import sqlite3
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.ledger import many_studies, reused_calibration, several_sites
from privacy_budgets import Ledger
from privacy_budgets.accounting import _epsilon_cached
from privacy_budgets.composition import clear_caches
from privacy_budgets.mechanisms import dpsgd_event, gaussian_event
from privacy_budgets.store import BUSY_TIMEOUT_S

HERE = Path(__file__).parent
DATASET, DELTA = "hospital_01", 1e-5
PROJECTS = ("quickstart", "survival")
DPSGD = [
    dpsgd_event(noise_multiplier=1.0, sampling_rate=0.002, steps=20),
    dpsgd_event(noise_multiplier=1.3, sampling_rate=0.004, steps=10),
    dpsgd_event(noise_multiplier=2.0, sampling_rate=0.01, steps=5),
]
COUNTS = [gaussian_event(noise_multiplier=s) for s in (50.0, 100.0, 200.0, 400.0)]


@dataclass(frozen=True)
class Sizes:
    entries: tuple[int, ...]
    samples: int
    spends_per_writer: int
    inserts_per_writer: int
    studies: tuple[int, ...]
    study_rounds: int
    site_studies: int  # several sites in one process: each dataset's studies
    site_turns: int
    reuse_studies: int  # a study reusing an old calibration: the studies before it
    reuse_rounds: int


FULL = Sizes(
    entries=(10, 1_000, 10_000),
    samples=30,
    spends_per_writer=40,
    inserts_per_writer=500,
    studies=(10, 50, 150),
    study_rounds=5,
    site_studies=40,
    site_turns=3,
    reuse_studies=60,
    reuse_rounds=5,
)
QUICK = Sizes(
    entries=(10, 120),
    samples=3,
    spends_per_writer=4,
    inserts_per_writer=50,
    studies=(3, 8),
    study_rounds=3,
    site_studies=4,
    site_turns=2,
    reuse_studies=6,
    reuse_rounds=3,
)


# --- the mix ------------------------------------------------------------------------


def open_ledger(path: Path) -> Ledger:
    ledger = Ledger.open(path, site_id="bench_site")
    ledger.set_cap(dataset=DATASET, epsilon=1000.0, delta=DELTA, actor="site", reason="bench")
    for project in PROJECTS:
        ledger.allocate(dataset=DATASET, project=project, epsilon=1000.0, actor="board", reason="bench")
    return ledger


def one_step(ledger: Ledger, rng: random.Random, i: int) -> None:
    """One realistic step: a training round (4 entries), a count (2) or an aborted query (2)."""
    project = rng.choice(PROJECTS)
    draw = rng.random()
    if draw < 0.55:
        r = ledger.reserve(
            dataset=DATASET,
            project=project,
            event=rng.choice(DPSGD),
            actor="node",
            purpose="FedAvg update",
            run_id=f"run{i // 50}",
            round=i % 50,
        )
        ledger.commit(r)
        for what in ("training row count sent for FedAvg weights", "evaluation loss/accuracy/AUC on the test rows"):
            ledger.record_uncovered(
                dataset=DATASET,
                project=project,
                what=what,
                actor="node",
                purpose="FedAvg",
                run_id=f"run{i // 50}",
                round=i % 50,
            )
        return
    r = ledger.reserve(
        dataset=DATASET,
        project=project,
        event=rng.choice(COUNTS),
        actor="analyst",
        purpose="noisy count",
        query_id=f"q{i}",
    )
    if draw < 0.9:
        ledger.commit(r)
    else:
        ledger.abort(r, reason="analyst cancelled")


def grow(ledger: Ledger, rng: random.Random, target: int, counter: list[int]) -> None:
    while len_entries(ledger) < target:
        one_step(ledger, rng, counter[0])
        counter[0] += 1


def len_entries(ledger: Ledger) -> int:
    return ledger._conn.execute("SELECT MAX(seq) FROM entries").fetchone()[0]  # noqa: SLF001


def time_reserves(ledger: Ledger, rng: random.Random, samples: int, *, cold: bool) -> list[float]:
    """Seconds of each reserve() (each then committed), warm or with caches dropped."""
    times = []
    for i in range(samples):
        event = rng.choice(DPSGD + COUNTS)
        if cold:
            clear_caches()
            _epsilon_cached.cache_clear()
        start = time.perf_counter()
        r = ledger.reserve(
            dataset=DATASET, project=rng.choice(PROJECTS), event=event, actor="bench", purpose=f"timed {i}"
        )
        times.append(time.perf_counter() - start)
        ledger.commit(r)
    return times


def _n_cold(sizes: Sizes) -> int:
    return max(2, sizes.samples // 4)


# --- concurrent writers ----------------------------------------------------------------


def ledger_writer(path: str, n: int, barrier) -> None:
    rng = random.Random(os.getpid())
    with Ledger.open(path, site_id="bench_site", create=False) as ledger:
        ledger.spent(dataset=DATASET)  # warm up imports and caches before the clock starts
        barrier.wait()
        for i in range(n):
            event = rng.choice(DPSGD + COUNTS)
            r = ledger.reserve(
                dataset=DATASET, project=rng.choice(PROJECTS), event=event, actor="writer", purpose=f"spend {i}"
            )
            ledger.commit(r)


def sqlite_writer(path: str, n: int, barrier) -> None:
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    barrier.wait()
    for i in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO rows (payload) VALUES (?)", (f"row {i} " + "x" * 400,))
        conn.execute("COMMIT")
    conn.close()


def run_writers(target, path: Path, n: int, processes: int = 4) -> float:
    """Rows committed per second by ``processes`` writers released together."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes + 1)
    workers = [context.Process(target=target, args=(str(path), n, barrier)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    barrier.wait()
    start = time.perf_counter()
    for worker in workers:
        worker.join()
        if worker.exitcode != 0:
            raise RuntimeError(f"a writer process failed with exit code {worker.exitcode}")
    return processes * n / (time.perf_counter() - start)


# --- the run --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (for tests)")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    rng = random.Random(0)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        build_start = time.perf_counter()
        with open_ledger(folder / "grow.ledger") as ledger:
            counter = [0]
            for target in sizes.entries:
                grow(ledger, rng, target, counter)
                held = len_entries(ledger)
                warm_times = time_reserves(ledger, rng, sizes.samples, cold=False)
                cold = statistics.median(time_reserves(ledger, rng, _n_cold(sizes), cold=True))
                warm = statistics.median(warm_times)
                warm_p90 = statistics.quantiles(warm_times, n=10)[-1]
                spent = ledger.spent(dataset=DATASET)
                rows.append((held, warm, warm_p90, cold, spent))
                print(
                    f"{held:>6} entries: reserve warm {warm * 1e3:.1f} ms (p90 "
                    f"{warm_p90 * 1e3:.1f}), cold {cold * 1e3:.1f} ms (dataset epsilon "
                    f"{spent:.2f})",
                    flush=True,
                )
            distinct = ledger._conn.execute(  # noqa: SLF001
                "SELECT COUNT(DISTINCT mechanism) FROM counts"
            ).fetchone()[0]
            build_s = time.perf_counter() - build_start
        with open_ledger(folder / "writers.ledger"):
            pass
        spends = run_writers(ledger_writer, folder / "writers.ledger", sizes.spends_per_writer)
        verified = Ledger.verify_file(folder / "writers.ledger")
        if not verified.ok:
            raise RuntimeError(f"the concurrent ledger does not verify: {verified.problem}")
        plain = folder / "plain.sqlite"
        with sqlite3.connect(plain) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, payload TEXT)")
        inserts = run_writers(sqlite_writer, plain, sizes.inserts_per_writer)
        clear_caches()
        studies = many_studies.measure(folder=folder, studies=sizes.studies, rounds=sizes.study_rounds)
        sites = several_sites.measure(folder=folder, studies=sizes.site_studies, turns=sizes.site_turns)
        reused = reused_calibration.measure(folder=folder, studies=sizes.reuse_studies, rounds=sizes.reuse_rounds)
    text = render(rows, distinct, build_s, spends, inserts, sizes, quick=args.quick)
    text += "\n" + "\n".join(many_studies.render(studies, rounds=sizes.study_rounds))
    text += "\n" + "\n".join(several_sites.render(sites))
    text += "\n" + "\n".join(reused_calibration.render(reused))
    args.results.write_text(text)
    print(text)
    return text


def _cpu_name() -> str:
    info = Path("/proc/cpuinfo")
    if info.exists():
        for line in info.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def render(rows, distinct, build_s, spends, inserts, sizes, *, quick: bool) -> str:
    import cryptography
    import dp_accounting
    import numpy

    cpu = _cpu_name()
    lines = [
        "# Ledger benchmark" + (" (quick sizes)" if quick else ""),
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {cpu}, {os.cpu_count()} cores, "
        f"{platform.system()} {platform.release()}; load average {os.getloadavg()[0]:.1f} at the "
        "end (the machine may be shared: other work slows every figure).",
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, dp-accounting "
        f"{getattr(dp_accounting, '__version__', '0.6')}, numpy {numpy.__version__}, "
        f"cryptography {cryptography.__version__}. Ledger: WAL, synchronous=FULL (an fsync per "
        "entry), Ed25519 signature per entry, PLD at discretisation 1e-3.",
        "",
        "## Check-and-reserve on one dataset",
        "",
        f"Median of {sizes.samples} reserve() calls (warm, with the 90th percentile) / "
        f"{_n_cold(sizes)} (cold), "
        f"each followed by a commit. Mix: 3 DP-SGD settings, 4 Gaussian noise levels, uncovered "
        f"releases, aborted queries, 2 projects; {distinct} distinct base mechanisms composed. "
        "Warm: a long-lived process keeps its PLDs. Cold: every PLD rebuilt (a fresh process).",
        "",
        "| entries | reserve, warm (ms) | warm p90 (ms) | reserve, cold (ms) | dataset epsilon |",
        "| ---: | ---: | ---: | ---: | ---: |",
        *[f"| {n:,} | {w * 1e3:.1f} | {p * 1e3:.1f} | {c * 1e3:.1f} | {e:.2f} |" for n, w, p, c, e in rows],
        "",
        f"Building the ledger through the API took {build_s:.0f} s in all.",
        "",
        "## Concurrent writers (4 processes, one ledger file)",
        "",
        "| writer | committed per second |",
        "| --- | ---: |",
        f"| ledger: reserve + commit of the mix ({4 * sizes.spends_per_writer} spends) | {spends:.1f} spends/s |",
        f"| plain SQLite insert loop, same WAL settings ({4 * sizes.inserts_per_writer} rows) | {inserts:.1f} rows/s |",
        "",
        "A spend is two entries (reserve, commit), each its own transaction with an fsync, and",
        "the reserve composes the dataset's and the project's mechanisms while it holds the lock.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
