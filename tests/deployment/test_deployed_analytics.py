"""Analytics queries over the Deployment Engine: the same questions, the same site code,
through each node's policy gate and audit log, charged to each site's real ledger."""

from __future__ import annotations

import json

import pytest
from dp_accounting.pld import privacy_loss_distribution as pld_lib

from federation.site.audit import audit_path, recent_entries
from workbench.session import Workbench

pytestmark = pytest.mark.slow

PROJECT = "explore-deployed"


def _plain_plds(plain: dict) -> list:
    """The ledger's mechanism JSON read here, without the project's own parser, as the
    privacy-loss distributions of dp_accounting's PLD library (the discrete Gaussian has
    no DpEvent in dp_accounting, only its PLD)."""
    kind = plain["type"]
    if kind == "DiscreteGaussianDpEvent":
        return [
            pld_lib.from_discrete_gaussian_mechanism(
                sigma=plain["sigma"], sensitivity=plain["sensitivity"], value_discretization_interval=1e-4
            )
        ]
    if kind == "DiscreteLaplaceDpEvent":
        return [
            pld_lib.from_discrete_laplace_mechanism(
                parameter=plain["noise_parameter"], sensitivity=plain["sensitivity"], value_discretization_interval=1e-4
            )
        ]
    if kind == "SelfComposedDpEvent":
        return _plain_plds(plain["event"]) * plain["count"]
    if kind == "ComposedDpEvent":
        return [pld for e in plain["events"] for pld in _plain_plds(e)]
    raise AssertionError(f"unexpected mechanism {kind} for a count or a mean: analytics noise is discrete")


@pytest.fixture(scope="module")
def connected(loopback):
    loopback.allocate(project=PROJECT, epsilon=1.0)
    return Workbench.connect(
        coordinator=loopback.coordinator.folder, dictionary=loopback.dictionary_path, researcher=loopback.researcher_key
    )


def test_a_count_and_a_mean_are_answered_by_every_node_and_charged_at_each_site(loopback, connected):
    q = connected.query
    costs = connected.query_cost([q.count(by="site", epsilon=0.2)], project=PROJECT)
    assert set(costs["site"]) == set(loopback.sites) and costs["fits"].all()

    count, mean = connected.ask(
        [q.count(by="site", epsilon=0.2), q.mean(column="age", bounds=(18, 95), epsilon=0.3)], project=PROJECT
    )
    assert set(count.answered) == set(loopback.sites)
    assert (count.by_site["estimate"] > 0).all()
    assert 18 <= float(mean.pooled["estimate"].iloc[0]) <= 95
    for site in loopback.sites:
        dataset = loopback.node_config(site).dataset
        with loopback.ledger(site) as ledger:
            spent = ledger.spent(dataset=dataset, project=PROJECT)
            commits = [
                json.loads(e.mechanism)["event"]
                for e in ledger.entries(dataset=dataset)
                if e.kind == "commit" and e.project == PROJECT
            ]
        assert len(commits) == 2  # the count and the mean; the cost question spent nothing
        # The ledger's composition equals dp_accounting's own, of the mechanisms that ran.
        composed = pld_lib.identity(value_discretization_interval=1e-4)
        for pld in (p for plain in commits for p in _plain_plds(plain)):
            composed = composed.compose(pld)
        assert spent == pytest.approx(composed.get_epsilon_for_delta(1e-5), rel=0.02)
        tasks = [e.get("task") for e in recent_entries(path=audit_path(loopback.node_config(site).state_dir))]
        assert "query:count" in tasks and "query:mean" in tasks and "query:cost" in tasks


def test_describe_on_a_connected_federation_replays_its_count_for_free(loopback, connected):
    first = connected.describe(project=PROJECT, epsilon=0.1)
    assert set(first.sites["site"]) == set(loopback.sites)
    again = connected.describe(project=PROJECT, epsilon=0.1)
    assert again.counts.sites["replay"].all()
    assert list(again.sites["patients (noisy)"]) == list(first.sites["patients (noisy)"])


def test_the_coordinators_mirror_gives_a_burn_down_and_points_the_board_to_the_sites(loopback, connected):
    import matplotlib

    matplotlib.use("Agg")
    from workbench.errors import WorkbenchError

    history = connected.budget_history()
    mine = history[history["project"] == PROJECT]
    assert set(mine["site"]) == set(loopback.sites)
    for site, g in mine.groupby("site"):
        with loopback.ledger(site) as ledger:
            spent = ledger.spent(dataset=loopback.node_config(site).dataset, project=PROJECT)
        assert g["epsilon_project"].iloc[-1] == pytest.approx(spent)  # the mirror matches the site's ledger
    axes = connected.plot_budget()
    assert {ax.get_title() for ax in axes} >= set(loopback.sites)
    with pytest.raises(WorkbenchError, match="workbench budget report --ledger"):
        connected.report()
