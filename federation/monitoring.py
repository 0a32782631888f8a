"""Serving Prometheus metrics: one collector per endpoint, on a thread of the process.

The node (federation/site/metrics.py) and the coordinator
(federation/coordinator/metrics.py) each register one collector that reads their
records at scrape time; ``serve_collector`` serves it alone (no process or platform
metrics of the Python runtime) with prometheus-client's own HTTP server.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from federation.processes import split_address

logger = logging.getLogger("workbench.metrics")

# Seconds: a query answers in under a second, a round of training in seconds to minutes.
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, math.inf)


def histogram_buckets(values: Iterable[float], bounds: tuple[float, ...] = LATENCY_BUCKETS) -> list[tuple[str, int]]:
    """Cumulative (le, count) pairs of ``values``, as a HistogramMetricFamily takes them."""
    values = list(values)
    return [("+Inf" if math.isinf(b) else f"{b:g}", sum(v <= b for v in values)) for b in bounds]


@dataclass
class MetricsServer:
    """A running endpoint (``stop`` to close it)."""

    address: str
    server: object
    thread: threading.Thread

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def serve_collector(*, collector, address: str, what: str) -> MetricsServer | None:
    """Serve ``collector`` alone (no process or platform metrics) at ``host:port``."""
    from prometheus_client import CollectorRegistry, start_http_server

    host, port = split_address(address)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as err:
        logger.warning(
            "%s metrics not served at %s (%s): another program holds the port. Fix: set [monitoring] metrics "
            'to a free "host:port", or "off".',
            what,
            address,
            err,
        )
        return None
    return MetricsServer(address=address, server=server, thread=thread)
