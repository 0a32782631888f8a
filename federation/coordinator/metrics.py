"""The coordinator's Prometheus metrics (``workbench coordinator metrics``).

The SuperLink is Flower's process, so the coordinator's metrics come from a small
process of ours beside it that reads, at scrape time, the coordinator folder: the
SuperLink's PID file (up or not), the registered sites (nodes.json), which of them
the SuperLink says are online (``flwr supernode ls``, at most every
``NODES_EVERY_SECONDS``), and the run folders (studies and query batches by outcome,
finished rounds, each round's seconds, each site's replies by status). Counts only:
no model, no answer, no refusal reason.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from federation.coordinator.superlink import Coordinator
from federation.monitoring import histogram_buckets

NODES_EVERY_SECONDS = 15.0
DEFAULT_COORDINATOR_METRICS = "127.0.0.1:9465"


class CoordinatorCollector:
    """A prometheus_client collector of one coordinator folder."""

    def __init__(self, *, coordinator: Coordinator, background: bool = True) -> None:
        self.coordinator = coordinator
        self.lock = threading.Lock()
        self.nodes: dict[str, dict[str, str]] | None = None
        self.nodes_at = -NODES_EVERY_SECONDS
        self.background = background
        self.refreshing: threading.Thread | None = None

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator:
        with self.lock:
            yield from self._collect()

    def refresh_nodes(self) -> None:
        """Ask the SuperLink which nodes are online (``flwr supernode ls``: seconds, so a
        scrape never waits for it: it reads the last answer)."""
        from federation.coordinator.registry import node_statuses

        try:
            nodes = node_statuses(self.coordinator) if self.coordinator.running_pid() is not None else None
        except Exception:  # the SuperLink did not answer: unknown, not zero
            nodes = None
        self.nodes, self.nodes_at = nodes, time.monotonic()

    def _online(self, running: bool) -> dict[str, dict[str, str]] | None:
        if not running:
            return None
        stale = time.monotonic() - self.nodes_at >= NODES_EVERY_SECONDS
        if stale and self.background and (self.refreshing is None or not self.refreshing.is_alive()):
            self.refreshing = threading.Thread(target=self.refresh_nodes, daemon=True)
            self.refreshing.start()
        elif stale and not self.background:
            self.refresh_nodes()
        return self.nodes

    def _collect(self) -> Iterator:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        c = self.coordinator
        running = c.running_pid() is not None
        up = GaugeMetricFamily("workbench_coordinator_superlink_up", "1 while the SuperLink runs.")
        up.add_metric([], float(running))
        yield up
        registered = json.loads(c.nodes_path.read_text()) if c.nodes_path.exists() else {}
        sites = GaugeMetricFamily("workbench_coordinator_registered_sites", "Sites whose node key is registered.")
        sites.add_metric([], float(len(registered)))
        yield sites
        nodes = self._online(running)
        if nodes is not None:
            online = GaugeMetricFamily(
                "workbench_coordinator_connected_nodes", "Registered sites whose node the SuperLink says is online."
            )
            online.add_metric([], float(sum(n["status"] == "online" for n in nodes.values())))
            yield online
            node_up = GaugeMetricFamily(
                "workbench_coordinator_node_online", "1 while the site's node is online.", labels=["site"]
            )
            for name in sorted(registered):
                node_up.add_metric([name], float(nodes.get(name, {}).get("status") == "online"))
            yield node_up

        runs: Counter = Counter()
        replies: Counter = Counter()
        seconds: list[float] = []
        for folder in sorted(p for p in c.runs_dir.glob("*/") if p.is_dir()):
            kind = "study" if (folder / "study.json").exists() else "queries"
            outcome = _outcome(folder)
            runs[(kind, outcome)] += 1
            for report in _rounds(folder):
                seconds.append(float(report.get("seconds", 0.0)))
                for reply in report.get("train", []):
                    replies[(str(reply.get("site_id", "")), "train", str(reply.get("status", "")))] += 1
                for reply in report.get("evaluate", []):
                    replies[(str(reply.get("site_id", "")), "evaluate", str(reply.get("status", "")))] += 1
        studies = GaugeMetricFamily(
            "workbench_coordinator_runs", "Runs (studies, query batches) by outcome.", labels=["kind", "outcome"]
        )
        for (kind, outcome), n in sorted(runs.items()):
            studies.add_metric([kind, outcome], float(n))
        yield studies
        rounds = CounterMetricFamily("workbench_coordinator_rounds", "Finished rounds of every study.")
        rounds.add_metric([], float(len(seconds)))
        yield rounds
        latency = HistogramMetricFamily("workbench_coordinator_round_seconds", "Seconds per finished round.")
        latency.add_metric([], buckets=histogram_buckets(seconds), sum_value=sum(seconds))
        yield latency
        answers = CounterMetricFamily(
            "workbench_coordinator_site_replies",
            "Sites' replies in finished rounds, by site, message kind and status (ok, refused, failed).",
            labels=["site", "message", "status"],
        )
        for (site, message, status), n in sorted(replies.items()):
            answers.add_metric([site, message, status], float(n))
        yield answers


def _outcome(folder: Path) -> str:
    path = folder / "outcome.json"
    if not path.exists():
        return "running"
    try:
        return str(json.loads(path.read_text()).get("status", "unknown"))
    except (OSError, ValueError):
        return "unknown"


def _rounds(folder: Path) -> Iterator[dict]:
    path = folder / "rounds.jsonl"
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        try:
            yield json.loads(line)
        except ValueError:
            continue  # a line being written
