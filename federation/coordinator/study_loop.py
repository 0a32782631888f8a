"""The coordinator's round loop, over any Flower Grid (simulation or deployment).

Flower's strategies aggregate; this loop adds what a private study needs around
them: it tells refusals from failures, mirrors every site's spend receipts, reports
each round to an observer, and stops cleanly when a site says its budget would be
exceeded, before any round that would cross a cap.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord
from flwr.serverapp import Grid

from federation.coordinator.events import NullObserver, RoundReport, SiteReply, StudyObserver
from federation.coordinator.range_phase import RangeFinding, find_ranges
from federation.coordinator.reply_check import SiteRegistry, checked
from federation.coordinator.strategies import build_strategy
from federation.data.dictionary import DataDictionary
from federation.protocol.authorization import Authorization
from federation.protocol.request_info import RUN_DEADLINE_KEY
from federation.protocol.spec import TrainingSpec
from federation.training.features import FeatureEncoder


@dataclass
class StudyOutcome:
    arrays: ArrayRecord
    rounds: list[RoundReport] = field(default_factory=list)
    receipts: list[dict[str, Any]] = field(default_factory=list)
    stopped_reason: str = ""
    encoder: FeatureEncoder | None = None
    dictionary: DataDictionary | None = None  # completed by DP range finding, if it ran

    @property
    def completed_rounds(self) -> int:
        return sum(1 for r in self.rounds if any(s.status == "ok" for s in r.train))


def wait_for_sites(grid: Grid, n_sites: int, timeout: float, *, site_names: dict[int, str] | None = None) -> list[int]:
    """The node ids once ``n_sites`` sites are connected; TimeoutError naming how many
    came and which registered sites did not (``site_names``: node id -> site id), so
    the caller can say which site to check. A grid that can show it (PromptGrid) tells
    the workbench, while it waits, which sites have not connected."""
    names = dict(site_names or {})
    deadline = time.monotonic() + timeout
    since = time.time()
    snapshot = getattr(grid, "wait_snapshot", None)
    try:
        while len(nodes := list(grid.get_node_ids())) < n_sites:
            connected = sorted(names.get(int(n), f"node {n}") for n in nodes)
            missing = sorted(set(names.values()) - set(connected))
            if time.monotonic() > deadline:
                who = f"; not connected: {', '.join(missing)}" if missing else ""
                raise TimeoutError(
                    f"only {len(nodes)} of {n_sites} sites connected within {timeout:.0f} s{who}. Check that "
                    "every site's node is started (`workbench node status --config node.toml` at the site) "
                    "and registered."
                )
            if snapshot is not None:
                snapshot(missing=missing, connected=connected, since=since)
            time.sleep(0.2)
    finally:
        if snapshot is not None:
            grid.clear_waiting()
    return nodes


def run_training(
    *,
    grid: Grid,
    spec: TrainingSpec,
    encoder: FeatureEncoder | None,
    initial_arrays: Callable[[FeatureEncoder], ArrayRecord],
    n_sites: int,
    range_finding: RangeFinding | None = None,
    observer: StudyObserver | None = None,
    timeout: float = 600.0,
    site_names: dict[int, str] | None = None,
    deadline: float | None = None,
    authorization: Authorization | None = None,
    registry: SiteRegistry | None = None,
) -> StudyOutcome:
    """Run the study's rounds; with ``range_finding`` (and no encoder), first ask the
    sites for DP ranges and build the encoder from them.

    ``site_names`` (Flower node id -> site id) names a site that fails before it
    answers; ``deadline`` (epoch seconds) travels with every message as
    ``run-deadline``: a site refuses the run's messages after it, whatever the
    coordinator does. ``authorization`` (the researcher's signature on the study) is
    relayed unchanged in every message: the sites check each message against it.
    ``registry`` (the coordinator's nodes.json) is checked against every reply: its
    claimed site and its receipts (reply_check.py); a reply that fails counts as failed."""
    observer = observer or NullObserver()
    node_ids = wait_for_sites(grid, n_sites, timeout, site_names=site_names)
    config = spec.to_config()
    if authorization is not None:
        config.update(authorization.to_config())
    if deadline is not None:
        config[RUN_DEADLINE_KEY] = float(deadline)
    receipts: list[dict[str, Any]] = []
    dictionary = None
    if encoder is None:
        if range_finding is None:
            raise ValueError("a study needs a feature encoder or a range finding to build one.")
        dictionary, replies = find_ranges(
            grid=grid,
            spec=spec,
            finding=range_finding,
            node_ids=node_ids,
            timeout=timeout,
            authorization=authorization,
            registry=registry,
        )
        receipts += [r for reply in replies for r in reply.receipts]
        encoder = FeatureEncoder.from_dictionary(dictionary=dictionary)
        config["study-dictionary"] = json.dumps(dictionary.to_json())
    config["feature-encoder"] = encoder.to_json()
    strategy = build_strategy(spec=spec, n_sites=n_sites)
    node_names: dict[int, str] = dict(site_names or {})
    arrays = initial_arrays(encoder)
    outcome = StudyOutcome(arrays=arrays, receipts=receipts, encoder=encoder, dictionary=dictionary)

    for server_round in range(1, spec.rounds + 1):
        started = time.monotonic()
        messages = strategy.configure_train(server_round, arrays, ConfigRecord(config), grid)
        replies = list(grid.send_and_receive(messages=messages, timeout=timeout))
        train = [checked(m, node_names=node_names, registry=registry) for m in replies]
        for msg, reply in zip(replies, train, strict=False):
            if reply.status != "failed":  # a name is learnt only from a reply that passed the checks
                node_names.setdefault(msg.metadata.src_node_id, reply.site_id)
            outcome.receipts.extend(reply.receipts)
        trained = [m for m, r in zip(replies, train, strict=False) if r.status == "ok"]
        if trained:
            new_arrays, _ = strategy.aggregate_train(server_round, trained)
            if new_arrays is not None:
                arrays = outcome.arrays = new_arrays

        evaluate: list[SiteReply] = []
        if not any(r.status == "failed" for r in train):
            # A site that failed training (dead, unreachable) would only make the study wait
            # for it a second time: the round ends here, and the study stops below.
            messages = strategy.configure_evaluate(server_round, arrays, ConfigRecord(config), grid)
            eval_replies = list(grid.send_and_receive(messages=messages, timeout=timeout))
            evaluate = [checked(m, node_names=node_names, registry=registry) for m in eval_replies]
            for reply in evaluate:
                outcome.receipts.extend(reply.receipts)

        report = RoundReport(server_round, spec.rounds, tuple(train), tuple(evaluate), time.monotonic() - started)
        outcome.rounds.append(report)
        observer.round_finished(report)

        problems = [r for r in train if r.status != "ok"]
        if problems:
            # Stop rather than go on without a site: the study's sites were approved
            # together, and a site out of budget should not silently drop out.
            outcome.stopped_reason = " ".join(
                f"Site {r.site_id} {'refused' if r.status == 'refused' else 'failed'} round {server_round}: {r.reason}"
                for r in problems
            )
            observer.study_stopped(outcome.stopped_reason)
            break
    return outcome
