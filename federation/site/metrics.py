"""The node's Prometheus metrics (``[monitoring] metrics`` in node.toml; "off" switches
them off).

Everything is read from the node's own records at scrape time, so the numbers are
the records' (never a second bookkeeping that could drift): the audit log (requests
served and refused, by task kind and refusal kind; how long each took), the ledger,
opened read-only without its key (epsilon spent and remaining per project, entries),
the runtime file and /proc (SuperNode and executor up, connected). The audit log is
read incrementally (from where the previous scrape stopped); the ledger and the audit
log are verified at most every ``VERIFY_EVERY_SECONDS``, and the time of the last
successful verification is a metric: an alert rule can fire when it grows old.

What the endpoint shows is counts and budgets: no data, no parameters, no reasons of
refusals, no researcher's question. It listens on loopback unless the site says
otherwise.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from federation.monitoring import MetricsServer
    from federation.site.config import NodeConfig

logger = logging.getLogger("workbench.node")

VERIFY_EVERY_SECONDS = 60.0


def _epoch(text: str) -> float | None:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except (TypeError, ValueError):
        return None


@dataclass
class AuditTally:
    """Counts of the audit log's request lines, kept up to date by reading only what
    was appended since the last call (a file that shrank was archived: counted anew)."""

    path: Path
    offset: int = 0
    requests: Counter = field(default_factory=Counter)  # (task, outcome, refusal kind) -> n
    latency: dict[str, list[float]] = field(default_factory=dict)  # task -> seconds of each request
    last_request: float | None = None

    def update(self) -> None:
        if not self.path.exists():
            return
        size = self.path.stat().st_size
        if size < self.offset:  # archived and started anew
            self.offset, self.requests, self.latency, self.last_request = 0, Counter(), {}, None
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read(size - self.offset)
        complete = chunk.rfind(b"\n") + 1  # a torn last line waits for the next scrape
        for line in chunk[:complete].splitlines():
            self._count(line)
        self.offset += complete

    def _count(self, line: bytes) -> None:
        try:
            entry = json.loads(line)
        except ValueError:
            return
        if not isinstance(entry, dict) or entry.get("kind") != "request":
            return
        decision = entry.get("decision") or {}
        task = str(entry.get("task") or "unknown")
        outcome = str(decision.get("outcome") or "unknown")
        self.requests[(task, outcome, str(decision.get("refusal_kind") or ""))] += 1
        done, received = _epoch(entry.get("time")), _epoch(entry.get("received"))
        if done is not None and received is not None:
            self.latency.setdefault(task, []).append(max(done - received, 0.0))
        if done is not None:
            self.last_request = max(done, self.last_request or 0.0)


class NodeCollector:
    """A prometheus_client collector of one node's state (see the module docstring)."""

    def __init__(self, *, config: NodeConfig) -> None:
        from federation.site.audit import audit_path

        self.config = config
        self.tally = AuditTally(path=audit_path(config.state_dir))
        self.lock = threading.Lock()
        self.verified: dict[str, float] = {}  # "ledger" / "audit" -> time of the last successful verification
        self.checked: dict[str, float] = {}  # when each was last verified, with whatever result
        self.verify_ok: dict[str, bool] = {}

    def describe(self) -> list:
        return []  # collected on scrape only (the records may not exist yet at registration)

    def collect(self) -> Iterator:
        with self.lock:
            yield from self._collect()

    def _collect(self) -> Iterator:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        from federation.monitoring import histogram_buckets

        site = self.config.site_id
        yield from self._processes(GaugeMetricFamily, site)

        self.tally.update()
        served = CounterMetricFamily(
            "workbench_node_requests",
            "Requests the node decided, by task kind and outcome (served or refused) and refusal kind.",
            labels=["site", "task", "outcome", "refusal_kind"],
        )
        for (task, outcome, kind), n in sorted(self.tally.requests.items()):
            served.add_metric([site, task, outcome, kind], n)
        yield served
        latency = HistogramMetricFamily(
            "workbench_node_request_seconds",
            "Seconds from a request's arrival to its answer, by task kind (train: the site's share of a round).",
            labels=["site", "task"],
        )
        for task, values in sorted(self.tally.latency.items()):
            latency.add_metric([site, task], buckets=histogram_buckets(values), sum_value=sum(values))
        yield latency
        if self.tally.last_request is not None:
            yield _last(
                "workbench_node_last_request_timestamp_seconds",
                "When the node last answered a request (Unix time).",
                site,
                self.tally.last_request,
            )
        yield from self._ledger(GaugeMetricFamily, site)
        yield from self._verifications(GaugeMetricFamily, site)

    def _processes(self, gauge, site: str) -> Iterator:
        from federation.site.pause import read_pause
        from federation.site.supernode import runtime_of

        runtime = runtime_of(self.config)
        up = gauge("workbench_node_process_up", "1 while the process runs.", labels=["site", "process"])
        up.add_metric([site, "supernode"], float(runtime.supernode is not None))
        up.add_metric([site, "executor"], float(runtime.executor is not None))
        yield up
        # Served from inside the supervisor, which node_runtime leaves out of what it finds
        # (it skips the process asking): its own runtime file says whether it is connected.
        record = runtime.record or {}
        inside = record.get("supervisor") == os.getpid()
        connected = runtime.state == "connected" or (
            inside and bool(record.get("connected")) and None not in (runtime.supernode, runtime.executor)
        )
        yield _last(
            "workbench_node_connected",
            "1 while the node is connected to the coordinator and its executor is ready.",
            site,
            float(connected),
        )
        yield _last(
            "workbench_node_paused",
            "1 while the kill switch refuses every task.",
            site,
            float(read_pause(state_dir=self.config.state_dir) is not None),
        )

    def _ledger(self, gauge, site: str) -> Iterator:
        from privacy_budgets.exports import read_only
        from privacy_budgets.views import status_frame

        path = self.config.site_config().ledger_path
        if not path.exists():
            return
        with read_only(path) as conn:
            frame = status_frame(conn)
            (entries,) = conn.execute("SELECT COUNT(*) FROM entries").fetchone()
        spent = gauge(
            "workbench_node_epsilon_spent",
            "Epsilon committed (composed), per dataset and project ('(all projects)': the dataset's total).",
            labels=["site", "dataset", "project"],
        )
        remaining = gauge(
            "workbench_node_epsilon_remaining",
            "Epsilon left under the project's allocation (or the dataset's cap), open reservations counted.",
            labels=["site", "dataset", "project"],
        )
        limit = gauge(
            "workbench_node_epsilon_limit",
            "The project's allocation (or the dataset's cap).",
            labels=["site", "dataset", "project"],
        )
        for row in frame.itertuples(index=False):
            labels = [site, str(row.dataset), str(row.project)]
            spent.add_metric(labels, float(row.spent))
            if not math.isnan(float(row.limit)):
                remaining.add_metric(labels, float(row.remaining))
                limit.add_metric(labels, float(row.limit))
        yield from (spent, remaining, limit)
        yield _last("workbench_node_ledger_entries", "Entries in the site's privacy ledger.", site, float(entries))

    def _verifications(self, gauge, site: str) -> Iterator:
        from federation.site.audit import verify_audit
        from privacy_budgets import Ledger

        now = time.time()
        checks = {
            "ledger": (self.config.site_config().ledger_path, lambda p: Ledger.verify_file(p).ok),
            "audit": (self.tally.path, lambda p: verify_audit(p).ok),
        }
        for name, (path, verify) in checks.items():
            if path.exists() and now - self.checked.get(name, 0.0) >= VERIFY_EVERY_SECONDS:
                self.checked[name] = now
                try:
                    self.verify_ok[name] = bool(verify(path))
                except Exception as err:  # a record that cannot be read does not verify
                    logger.warning("metrics: verifying the %s failed: %s", name, err)
                    self.verify_ok[name] = False
                if self.verify_ok[name]:
                    self.verified[name] = now
        ok = gauge(
            "workbench_node_verification_ok", "1 if the record verified at its last check.", labels=["site", "record"]
        )
        last = gauge(
            "workbench_node_last_verification_timestamp_seconds",
            "When the record (ledger or audit log) last verified (Unix time).",
            labels=["site", "record"],
        )
        for name in checks:
            if name in self.verify_ok:
                ok.add_metric([site, name], float(self.verify_ok[name]))
            if name in self.verified:
                last.add_metric([site, name], self.verified[name])
        yield from (ok, last)


def _last(name: str, documentation: str, site: str, value: float):
    from prometheus_client.core import GaugeMetricFamily

    family = GaugeMetricFamily(name, documentation, labels=["site"])
    family.add_metric([site], value)
    return family


def serve_node_metrics(*, config: NodeConfig) -> MetricsServer | None:
    """Serve the node's metrics at ``[monitoring] metrics`` (None when "off", or when
    the port is taken: logged, and the node runs on without them)."""
    if config.metrics_address == "off":
        return None
    from federation.monitoring import serve_collector

    return serve_collector(collector=NodeCollector(config=config), address=config.metrics_address, what="node")
