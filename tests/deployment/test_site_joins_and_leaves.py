"""Adding and removing a site while a federation runs (federation/site/OPERATIONS.md):
a third hospital joins between two query batches without any other node restarting,
and a site that leaves is unregistered and refused while the others run on. Real
processes on loopback: a SuperLink with TLS and node authentication, three nodes."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from federation.coordinator.registry import registered_nodes
from federation.engines.loopback import build_loopback_federation
from workbench.cli import app as workbench_app
from workbench.session import Workbench

pytestmark = pytest.mark.slow

PROJECT = "growing-federation"


def _answered(wb: Workbench) -> set[str]:
    (result,) = wb.ask([wb.query.count(epsilon=0.2)], project=PROJECT)
    sites = result.sites
    return set(sites.loc[sites["status"] == "ok", "site"])


@pytest.mark.timeout(600)
def test_a_third_site_joins_between_two_batches_and_a_leaving_site_is_unregistered(tmp_path):
    fed = build_loopback_federation(root=tmp_path, sites=3, rows=200)
    fed.heartbeat_seconds = 10
    first, second, third = fed.sites
    try:
        fed.start_coordinator()
        for site in (first, second):
            fed.register(site)
            fed.start_site(site)
        fed.allocate(project=PROJECT, epsilon=2.0)  # each site's board (the third's ledger too, before it joins)
        wb = Workbench.connect(
            coordinator=fed.coordinator.folder, dictionary=fed.dictionary_path, researcher=fed.researcher_key
        )
        assert _answered(wb) == {first, second}
        running = {site: fed.nodes[site].pids()["supervisor"] for site in (first, second)}

        fed.register(third)  # the coordinator admits the new key; nothing else restarts
        fed.start_site(third)
        assert _answered(wb) == {first, second, third}
        assert {site: fed.nodes[site].pids()["supervisor"] for site in (first, second)} == running

        done = CliRunner().invoke(
            workbench_app, ["coordinator", "unregister-node", third, "--folder", str(fed.coordinator.folder)]
        )
        assert done.exit_code == 0, done.output
        assert third not in registered_nodes(fed.coordinator)
        fed.stop_site(third)
        assert _answered(wb) == {first, second}
        # Its key is refused from now on: a restart of the removed node does not connect.
        with pytest.raises(Exception, match="refused this node|not registered|did not connect"):
            fed.start_site(third)
    finally:
        fed.stop()
