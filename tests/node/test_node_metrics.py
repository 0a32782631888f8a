"""The node's and the coordinator's Prometheus endpoints, scraped over HTTP and parsed
with prometheus-client's own parser; every number compared with the record it comes
from (the ledger, the audit log, the run folder)."""

from __future__ import annotations

import urllib.request

import pytest
from _node_helpers import PROJECT, received, set_key
from flwr.app import Context, RecordDict
from prometheus_client.parser import text_string_to_metric_families

from federation.analytics.query import Query
from federation.coordinator.metrics import CoordinatorCollector
from federation.coordinator.run_folder import RunFolder
from federation.coordinator.superlink import Coordinator
from federation.monitoring import serve_collector
from federation.processes import free_port
from federation.protocol.query_request import QueryRequest
from federation.site.client_app import app
from federation.site.metrics import serve_node_metrics
from privacy_budgets.exports import read_only
from privacy_budgets.views import status_frame


def scrape(address: str) -> dict[str, list]:
    """name -> [(labels, value)], every sample of the endpoint (histograms by sample name)."""
    text = urllib.request.urlopen(f"http://{address}/metrics", timeout=60).read().decode()
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples: dict, name: str, **labels) -> float:
    found = [v for got, v in samples.get(name, []) if all(got.get(k) == w for k, w in labels.items())]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]


def _ask(node, query: Query) -> None:
    context = Context(
        run_id=42, node_id=7, node_config=node.config.node_config_entries(), state=RecordDict(), run_config={}
    )
    app(received(QueryRequest(query=query, project=PROJECT).to_config()), context)


def test_the_node_endpoint_shows_its_records_on_loopback_and_one_key_switches_it_off(node):
    address = f"127.0.0.1:{free_port()}"
    set_key(node.toml, "metrics", f'"{address}"')
    _ask(node, Query(kind="count", epsilon=0.2))
    _ask(node, Query(kind="count", epsilon=0.3))
    set_key(node.toml, "allowed_tasks", '["train", "evaluate"]')  # the next query is refused by policy
    _ask(node, Query(kind="count", epsilon=0.2))

    server = serve_node_metrics(config=node.config)
    try:
        assert server.server.server_address[0] == "127.0.0.1"
        samples = scrape(address)
    finally:
        server.stop()
    site = "hospital-a"
    assert value(samples, "workbench_node_requests_total", task="query:count", outcome="served") == 2
    assert value(samples, "workbench_node_requests_total", task="query:count", outcome="refused") == 1
    assert value(samples, "workbench_node_requests_total", outcome="refused")  # labelled by refusal kind
    assert [
        labels["refusal_kind"]
        for labels, _ in samples["workbench_node_requests_total"]
        if labels["outcome"] == "refused"
    ] == ["policy"]
    assert value(samples, "workbench_node_request_seconds_count", task="query:count") == 3

    with read_only(node.site.ledger_path) as conn:
        frame = status_frame(conn).set_index("project")
        (entries,) = conn.execute("SELECT COUNT(*) FROM entries").fetchone()
    spent = value(samples, "workbench_node_epsilon_spent", project=PROJECT)
    assert spent == pytest.approx(frame.loc[PROJECT, "spent"]) and spent > 0
    assert value(samples, "workbench_node_epsilon_remaining", project=PROJECT) == pytest.approx(
        frame.loc[PROJECT, "remaining"]
    )
    assert value(samples, "workbench_node_epsilon_limit", project=PROJECT) == 3.0
    assert value(samples, "workbench_node_ledger_entries", site=site) == entries
    assert value(samples, "workbench_node_verification_ok", record="ledger") == 1
    assert value(samples, "workbench_node_verification_ok", record="audit") == 1
    assert value(samples, "workbench_node_last_verification_timestamp_seconds", record="ledger") > 0
    assert value(samples, "workbench_node_process_up", process="executor") == 0  # no node runs here
    assert value(samples, "workbench_node_connected", site=site) == 0
    # Nothing of the data, the questions or the reasons of refusals is exposed.
    assert not any("reason" in labels or "question" in labels for v in samples.values() for labels, _ in v)

    set_key(node.toml, "metrics", '"off"')
    assert serve_node_metrics(config=node.config) is None


def test_the_coordinator_endpoint_counts_runs_and_rounds(tmp_path):
    coordinator = Coordinator.init(folder=tmp_path / "coordinator", address=f"127.0.0.1:{free_port()}")
    done = RunFolder(coordinator.runs_dir / "run-1")
    done.path.mkdir(parents=True, exist_ok=True)  # RunFolder makes it
    (done.path / "study.json").write_text("{}")
    for number, seconds in ((1, 3.5), (2, 0.4)):
        reply = {"site_id": "hospital-a", "status": "ok"}
        done.append_round({"round": number, "rounds": 2, "train": [reply], "evaluate": [reply], "seconds": seconds})
    done.finish(receipts=[], stopped_reason="")
    (coordinator.runs_dir / "run-2").mkdir()
    (coordinator.runs_dir / "run-2" / "study.json").write_text("{}")  # still running

    address = f"127.0.0.1:{free_port()}"
    server = serve_collector(
        collector=CoordinatorCollector(coordinator=coordinator), address=address, what="coordinator"
    )
    try:
        samples = scrape(address)
    finally:
        server.stop()
    assert value(samples, "workbench_coordinator_superlink_up") == 0
    assert "workbench_coordinator_connected_nodes" not in samples  # unknown while no SuperLink runs, not 0
    assert value(samples, "workbench_coordinator_runs", kind="study", outcome="finished") == 1
    assert value(samples, "workbench_coordinator_runs", kind="study", outcome="running") == 1
    assert value(samples, "workbench_coordinator_rounds_total") == 2
    assert value(samples, "workbench_coordinator_round_seconds_sum") == pytest.approx(3.9)
    assert value(samples, "workbench_coordinator_round_seconds_bucket", le="0.5") == 1
    assert (
        value(samples, "workbench_coordinator_site_replies_total", site="hospital-a", message="train", status="ok") == 2
    )


def test_the_grafana_dashboard_reads_only_metrics_the_endpoints_serve(node):
    """Every metric a panel queries is one the endpoints above expose (names from the
    collectors' own output, so a renamed metric breaks this test, not a dashboard)."""
    import json
    import re
    from pathlib import Path

    import federation.site as site_package
    from federation.coordinator.metrics import CoordinatorCollector
    from federation.site.metrics import NodeCollector

    dashboard = json.loads((Path(site_package.__file__).parent / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for e in exprs for name in re.findall(r"\b(workbench_[a-z_]+)", e)}
    _ask(node, Query(kind="count", epsilon=0.2))
    coordinator = Coordinator.init(folder=node.toml.parent / "coordinator", address=f"127.0.0.1:{free_port()}")
    families = [
        family
        for collector in (NodeCollector(config=node.config), CoordinatorCollector(coordinator=coordinator))
        for family in collector.collect()
    ]
    served = {sample.name for family in families for sample in family.samples}
    served |= {family.name + ("_total" if family.type == "counter" else "") for family in families}
    served |= {"workbench_coordinator_connected_nodes"}  # served while a SuperLink runs (see the loopback proxy test)
    assert used and used <= served, used - served
    assert {p["type"] for p in dashboard["panels"]} <= {"stat", "timeseries", "bargauge"}
