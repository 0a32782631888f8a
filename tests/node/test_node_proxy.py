"""The node behind a hospital's HTTP(S) proxy: loopback never goes to the proxy, the
Fleet traffic does, and TLS stays end to end (a real CONNECT proxy on loopback)."""

from __future__ import annotations

import shutil
import socket
import ssl

import pytest
from _connect_proxy import ConnectProxy
from _node_helpers import set_key, write_ca_certificate

from federation.site.preflight import run_preflight
from federation.site.proxy import proxy_for, proxy_problem, uncovered_loopback, with_loopback_bypass

PROXY = "http://proxy.hospital.example:3128"
HIDDEN = "coordinator.hospital.test"  # a name only the proxy resolves, as behind a hospital's proxy


def test_a_proxy_without_loopback_in_no_proxy_is_a_problem_and_the_node_fixes_its_own_env():
    assert proxy_problem({}) is None
    assert proxy_problem({"NO_PROXY": "intranet"}) is None  # no proxy, nothing to bypass
    problem = proxy_problem({"HTTPS_PROXY": PROXY, "NO_PROXY": "intranet.example"})
    assert f"HTTPS_PROXY={PROXY} is set but NO_PROXY ('intranet.example') does not cover 127.0.0.1, localhost, ::1" in (
        problem
    )
    assert "Fix: export NO_PROXY=127.0.0.1,localhost,::1" in problem
    # gRPC reads the lower case, httpx the upper: both must cover loopback.
    assert uncovered_loopback({"NO_PROXY": "127.0.0.1,localhost,::1", "no_proxy": "localhost"}) == ["127.0.0.1", "::1"]
    assert proxy_problem({"http_proxy": PROXY, "no_proxy": "*"}) is None
    assert proxy_problem({"ALL_PROXY": PROXY, "NO_PROXY": "127.0.0.0/8,localhost,::1"}) is None

    env = with_loopback_bypass({"HTTPS_PROXY": PROXY, "no_proxy": "intranet.example"})
    assert env["NO_PROXY"] == env["no_proxy"] == "intranet.example,127.0.0.1,localhost,::1"
    assert proxy_problem(env) is None and env["HTTPS_PROXY"] == PROXY
    assert proxy_for("127.0.0.1", env) is None and proxy_for(HIDDEN, env) == PROXY
    assert proxy_for("a.intranet.example", env) is None


@pytest.fixture
def ready(node):
    write_ca_certificate(node.toml.parent / "ca.crt")
    with socket.create_server(("127.0.0.1", 0)) as server:
        set_key(node.toml, "address", f'"127.0.0.1:{server.getsockname()[1]}"')
        yield node, server.getsockname()[1]


def _checks(toml, **kwargs) -> dict:
    return {c.name: c for c in run_preflight(config_path=toml, **kwargs).checks}


def test_node_check_fails_on_a_proxy_that_would_catch_loopback_and_start_only_warns(ready, monkeypatch):
    node, _ = ready
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert _checks(node.toml)["proxy"].status == "ok"

    monkeypatch.setenv("HTTPS_PROXY", PROXY)
    result = run_preflight(config_path=node.toml)
    check = {c.name: c for c in result.checks}["proxy"]
    assert check.status == "fail" and result.exit_code() == 2
    assert "does not cover 127.0.0.1, localhost, ::1" in check.line() and "Fix: export NO_PROXY=" in check.line()
    assert _checks(node.toml, require_coordinator=False)["proxy"].status == "warn"  # node start sets NO_PROXY itself

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost,::1")
    check = _checks(node.toml)["proxy"]
    assert check.status == "ok" and f"goes through {PROXY}" in check.detail


def test_node_check_reaches_the_coordinator_through_the_proxy(ready, monkeypatch):
    node, port = ready
    proxy = ConnectProxy(hosts={HIDDEN: "127.0.0.1"}).start()
    try:
        set_key(node.toml, "address", f'"{HIDDEN}:{port}"')
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost,::1")
        monkeypatch.delenv("no_proxy", raising=False)
        check = _checks(node.toml)["coordinator"]
        assert check.status == "ok" and f"through the proxy {proxy.url}" in check.detail, check.line()
        assert proxy.targets == [f"{HIDDEN}:{port}"]
        set_key(node.toml, "address", f'"nowhere.hospital.test:{port}"')  # the proxy cannot resolve it
        check = _checks(node.toml)["coordinator"]
        assert check.status == "fail" and "502" in check.detail and check.kind == "unreachable"
    finally:
        proxy.stop()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_node_behind_a_connect_proxy_joins_through_it_with_tls_end_to_end(tmp_path):
    """A real coordinator and node on loopback; the node knows the coordinator only by a
    name that the proxy alone resolves, so admission proves the Fleet traffic went through
    the proxy; the proxy never sees the node's loopback Runtime traffic; the tunnel carries
    TLS that the proxy cannot terminate (another CA fails)."""
    import httpx
    from test_node_metrics import scrape, value
    from typer.testing import CliRunner

    from datasets_synthetic import generate_hospitals, write_hospitals
    from federation.coordinator.metrics import CoordinatorCollector
    from federation.coordinator.registry import register_node
    from federation.coordinator.superlink import Coordinator
    from federation.monitoring import serve_collector
    from federation.processes import free_port
    from federation.site.config import load_node_config, write_node_template
    from federation.site.keys import generate_node_keys
    from federation.site.supernode import start_node
    from workbench.cli import app as workbench_app

    data = tmp_path / "data"
    write_hospitals(generate_hospitals(sites=1, rows=200, seed=5), out=data)
    table = next(data.glob("*.parquet"))
    port = free_port()
    coordinator = Coordinator.init(folder=tmp_path / "coordinator", address=f"127.0.0.1:{port}", extra_hosts=[HIDDEN])
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(coordinator.tls.ca_certificate, site / "ca.crt")
    generate_node_keys(private_key=site / "keys" / "node_key", comment="hospital-p")
    write_node_template(
        path=site / "node.toml",
        site_id="hospital-p",
        data_path=table,
        state_dir=site / "state",
        dictionary_path=data / "data_dictionary.json",
        dataset="hospital-p",
        coordinator_address=f"{HIDDEN}:{port}",
        ca_certificate=site / "ca.crt",
        node_private_key=site / "keys" / "node_key",
        clientappio_address=f"127.0.0.1:{free_port()}",
    )
    metrics = f"127.0.0.1:{free_port()}"
    set_key(site / "node.toml", "metrics", f'"{metrics}"')
    config = load_node_config(site / "node.toml")
    proxy = ConnectProxy(hosts={HIDDEN: "127.0.0.1"}).start()
    handle = None
    coordinator.start()
    try:
        register_node(coordinator=coordinator, public_key=config.node_public_key, name="hospital-p")
        # The operator's environment names only the proxy; the node adds the loopback bypass.
        proxies = {name: proxy.url for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")}
        handle = start_node(config=config, env={**proxies, "NO_PROXY": "", "no_proxy": ""}, timeout=240)
        assert handle.pids().get("connected") == 1  # the executor too: it served the Runtime API's first calls
        assert proxy.targets and set(proxy.targets) == {f"{HIDDEN}:{port}"}, proxy.targets
        assert proxy.requests == []  # the Runtime API (http://127.0.0.1:...) never reached the proxy
        assert not any(t.startswith(("127.", "localhost", "[::1]")) for t in proxy.targets)

        healthy = CliRunner().invoke(workbench_app, ["node", "health", "--config", str(site / "node.toml")])
        assert healthy.exit_code == 0 and "site hospital-p: healthy: connected" in healthy.output, healthy.output
        # The running node's and coordinator's endpoints say the same (on loopback, not proxied).
        node_samples = scrape(metrics)
        assert value(node_samples, "workbench_node_connected", site="hospital-p") == 1
        assert value(node_samples, "workbench_node_process_up", process="executor") == 1
        address = f"127.0.0.1:{free_port()}"
        collector = CoordinatorCollector(coordinator=coordinator, background=False)  # asks the SuperLink at scrape
        server = serve_collector(collector=collector, address=address, what="c")
        try:
            samples = scrape(address)
        finally:
            server.stop()
        assert value(samples, "workbench_coordinator_superlink_up") == 1
        assert value(samples, "workbench_coordinator_connected_nodes") == 1
        assert value(samples, "workbench_coordinator_node_online", site="hospital-p") == 1
        assert proxy.requests == []

        # TLS inside the tunnel is the SuperLink's: the coordinator's CA verifies it for the
        # hidden name, another CA does not (the proxy cannot stand in for the coordinator).
        with httpx.Client(proxy=proxy.url, verify=ssl.create_default_context(cafile=str(site / "ca.crt"))) as client:
            answer = client.get(f"https://{HIDDEN}:{port}/health")  # the lock answers only Fleet and /health here
        assert answer.status_code == 200, answer.text
        other = tmp_path / "other-ca.crt"
        write_ca_certificate(other)
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            with httpx.Client(proxy=proxy.url, verify=ssl.create_default_context(cafile=str(other))) as client:
                client.get(f"https://{HIDDEN}:{port}/")
    finally:
        if handle is not None:
            handle.stop()
        coordinator.stop()
        proxy.stop()
