"""What the node's door costs per request: the gate, the audit line, the alert scan.

    python -m benchmarks.node_gate.bench_gate            # full: audit logs of 0 / 10,000 / 100,000 lines
    python -m benchmarks.node_gate.bench_gate --quick    # small sizes

1. ``append_audit``: one hash-chained line, under flock, with an fsync (median of N).
2. ``verify_audit`` of a whole log (once per size).
3. ``alerts_for``: the repeated-query scan back over 24 h of log (every line recent).
   ``audit_anchors``: the rollback check's read of the log, first and later asks.
4. ``serve`` of a query on a real site: refused by a pause (gate + audit + alert, no data
   touched), refused by policy, and served (count query, data read, ledger reserve and
   commit), beside the bare handler, so the door's own share shows.

Figures go to benchmarks/node_gate/RESULTS.md (or ``--results``) and to stdout.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).parent


def _median_ms(fn, n: int) -> tuple[float, float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.9 * (len(times) - 1))]


def _fill(path: Path, lines: int) -> None:
    """A log of ``lines`` request-like lines, chained as the node writes them (no fsync per
    line while filling: only the measured appends pay it)."""
    import hashlib
    import json

    from federation.site.audit import GENESIS, line_hash, utc_now

    prev, now = GENESIS, utc_now()
    with path.open("w") as f:
        for seq in range(1, lines + 1):
            record = {
                "seq": seq,
                "kind": "request",
                "time": now,
                "task": "query:count",
                "project": "p",
                "parameters": {"query": "{}", "n": seq},
                "request_hash": hashlib.sha256(str(seq).encode()).hexdigest(),
                "decision": {"outcome": "served", "refusal_kind": None, "reason": None},
                "epsilon_charged": 0.1,
                "prev": prev,
            }
            record["hash"] = prev = line_hash(record)
            f.write(json.dumps(record, separators=(",", ":")) + "\n")


def _anchor_asks(path: Path, samples: int) -> tuple[float, float]:
    """The anchors check's read of the log (before every request): a process's first ask,
    which reads up to 5,000 lines back from the end, and a later ask after one more line,
    which reads only that line. Medians in ms."""
    from federation.site.anchors import audit_anchors, forget_audit_reads
    from federation.site.audit import append_audit, utc_now

    def first() -> None:
        forget_audit_reads()
        audit_anchors(path)

    first_ms, _ = _median_ms(first, samples)
    later = []
    for _ in range(samples):
        append_audit(path=path, entry={"kind": "request", "time": utc_now(), "ledger_entries": [1]})
        started = time.perf_counter()
        audit_anchors(path)
        later.append((time.perf_counter() - started) * 1000)
    forget_audit_reads()
    return first_ms, statistics.median(later)


def bench_audit(sizes: tuple[int, ...], samples: int, folder: Path) -> list[dict]:
    from federation.protocol.request_info import RequestInfo
    from federation.site.alerts import alerts_for
    from federation.site.audit import append_audit, utc_now, verify_audit
    from federation.site.config import NodePolicy

    info = RequestInfo(
        kind="query:count",
        project="p",
        claimed_coordinator="c",
        run_id=None,
        flower_run_id=1,
        message_id="m",
        src_node_id=1,
        parameters={"query": "{}"},
    )
    policy = NodePolicy(allowed_tasks=("query:*",))
    rows = []
    for lines in sizes:
        path = folder / f"audit-{lines}.jsonl"
        _fill(path, lines)
        append_med, append_p90 = _median_ms(
            lambda path=path: append_audit(path=path, entry={"kind": "request", "time": utc_now(), "n": 0}), samples
        )
        started = time.perf_counter()
        result = verify_audit(path)
        verify_s = time.perf_counter() - started
        assert result.ok
        scan_med, _ = _median_ms(
            lambda path=path: alerts_for(
                info=info, site_id="s", refusal_kind=None, reason=None, policy=policy, audit_file=path
            ),
            max(3, samples // 5),
        )
        first_ms, next_ms = _anchor_asks(path, max(3, samples // 5))
        rows.append(
            {
                "lines": lines,
                "anchors_first_ms": first_ms,
                "anchors_next_ms": next_ms,
                "append_ms": append_med,
                "append_p90_ms": append_p90,
                "verify_s": verify_s,
                "scan_ms": scan_med,
                "mb": path.stat().st_size / 1e6,
            }
        )
    return rows


def bench_serve(samples: int, folder: Path) -> list[dict]:
    from flwr.app import ConfigRecord, Message, MessageType, Metadata, RecordDict

    from datasets_synthetic import SYNTHETIC_HOSPITALS_DICTIONARY, generate_hospitals
    from federation.analytics.query import Query
    from federation.protocol.query_request import QueryRequest
    from federation.site.analytics_task import ANALYTICS_HANDLERS
    from federation.site.config import load_node_config, write_node_template
    from federation.site.pause import pause_node, resume_node
    from federation.site.tasks import serve
    from privacy_budgets import Ledger

    data = folder / "data"
    data.mkdir()
    generate_hospitals(sites=1, rows=2000, seed=1).sites["hospital_01"].to_parquet(data / "h.parquet", index=False)
    SYNTHETIC_HOSPITALS_DICTIONARY.save(data / "data_dictionary.json")
    toml = folder / "node.toml"
    write_node_template(path=toml, site_id="bench", data_path=data / "h.parquet", state_dir=folder / "state")
    site = load_node_config(toml).site_config()
    site.state_dir.mkdir()
    with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger:
        ledger.set_cap(dataset=site.dataset, epsilon=1e6, delta=1e-5, actor="bench", reason="bench")
        ledger.allocate(dataset=site.dataset, project="p", epsilon=1e6, actor="bench", reason="bench")
    counter = iter(range(10**9))

    def message(project: str = "p") -> Message:
        # a new noise level each time: a fresh question, never a free replay
        query = Query(kind="count", noise_multiplier=50.0 + next(counter) * 1e-3)
        metadata = Metadata(
            run_id=1,
            message_id="m",
            src_node_id=1,
            dst_node_id=2,
            reply_to_message_id="",
            group_id="",
            created_at=time.time(),
            ttl=600.0,
            message_type=MessageType.QUERY,
        )
        config = QueryRequest(query=query, project=project).to_config()
        return Message(content=RecordDict({"config": ConfigRecord(config)}), metadata=metadata)

    handler = ANALYTICS_HANDLERS["query:count"]
    policy = load_node_config(toml).policy
    cases = {
        "bare handler, served (no gate, no audit line)": lambda: handler(message(), site, policy),
        "serve, served": lambda: serve(kind="query:count", msg=message(), site=site, node_toml=toml),
        "serve, refused: project without allocation": lambda: serve(
            kind="query:count", msg=message("other"), site=site, node_toml=toml
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(samples):  # round robin, so a burst of load on the machine hits every case alike
        for name, run in cases.items():
            started = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - started) * 1000)
    rows = [(name, statistics.median(t), sorted(t)[int(0.9 * (len(t) - 1))]) for name, t in times.items()]
    pause_node(state_dir=site.state_dir, reason="bench")
    rows.append(
        (
            "serve, refused: paused (with its alert line)",
            *_median_ms(lambda: serve(kind="query:count", msg=message(), site=site, node_toml=toml), samples),
        )
    )
    resume_node(state_dir=site.state_dir)
    return [{"case": c, "median_ms": m, "p90_ms": p} for c, m, p in rows]


def _report(audit: list[dict], serving: list[dict], args) -> str:
    import cryptography

    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    lines = [
        "# Node gate and audit log benchmark",
        "",
        f"Run {now} on {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}; load average {load:.1f} at the end (the machine may be shared: other work slows "
        f"every figure). Files in a temporary folder on {_file_system(tempfile.gettempdir())}. "
        f"Python {platform.python_version()}, cryptography {cryptography.__version__}. "
        f"`python -m benchmarks.node_gate.bench_gate{' --quick' if args.quick else ''}`.",
        "",
        "## The audit log as it grows",
        "",
        f"Append: median (and 90th percentile) of {args.samples} appends of one line, each under flock and fsync'd. "
        "Verify: the whole file, once. Scan: the repeated-query check of one request over a window in which "
        "every line is recent (the worst case: all of the log within 24 h). Anchors: the rollback check's read "
        "of the log before every request (`federation/site/anchors.py`), a process's first ask (up to 5,000 "
        "lines back from the end, what every ask cost before the read was remembered) and a later ask after "
        "one more line (only what was appended).",
        "",
        "| lines | file (MB) | append (ms) | append p90 (ms) | verify (s) | repeat scan (ms) "
        "| anchors, first ask (ms) | anchors, later ask (ms) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in audit:
        lines.append(
            f"| {r['lines']:,} | {r['mb']:.1f} | {r['append_ms']:.2f} | {r['append_p90_ms']:.2f} | "
            f"{r['verify_s']:.2f} | {r['scan_ms']:.1f} | {r['anchors_first_ms']:.1f} | {r['anchors_next_ms']:.2f} |"
        )
    lines += [
        "",
        "## One count query through `serve` (real site: 2,000-row Parquet file, SQLite ledger, node.toml)",
        "",
        f"Median and 90th percentile of {args.samples} requests, each a new question (never a free replay). "
        '"bare handler" is the analytics handler alone; the others go through the door: node.toml read, '
        "gate (pause switch, ledger allocation), handler, audit line, alert scan.",
        "",
        "| case | median (ms) | p90 (ms) |",
        "| --- | ---: | ---: |",
    ]
    for r in serving:
        lines.append(f"| {r['case']} | {r['median_ms']:.1f} | {r['p90_ms']:.1f} |")
    lines += [
        "",
        "Reading: the door's own work (node.toml, pause switch, one ledger read, one fsync'd audit line, the "
        'repeat scan) is the difference between "serve, served" and the bare handler; a refusal by the gate '
        "never reads the data, so it costs only that work. The repeat scan grows with the requests of the last "
        "24 h: blocks of lines inside the window are searched as bytes, and only matching lines are parsed.",
    ]
    return "\n".join(lines) + "\n"


def _file_system(folder: str) -> str:
    """The type of the file system holding ``folder`` (fsync's cost depends on it)."""
    best, kind = "", "an unknown file system"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            _, mount, fs_type, *_ = line.split()
            if Path(folder).resolve().as_posix().startswith(mount) and len(mount) > len(best):
                best, kind = mount, fs_type
    except OSError:
        pass
    return kind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    sizes = (0, 1_000) if args.quick else (0, 10_000, 100_000)
    args.samples = 5 if args.quick else 30
    with tempfile.TemporaryDirectory() as tmp:
        audit = bench_audit(sizes, args.samples, Path(tmp))
        serving = bench_serve(args.samples, Path(tmp))
    text = _report(audit, serving, args)
    args.results.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
