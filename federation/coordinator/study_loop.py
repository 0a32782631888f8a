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
from federation.coordinator.strategies import build_strategy
from federation.data.dictionary import DataDictionary
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


def wait_for_sites(grid: Grid, n_sites: int, timeout: float) -> list[int]:
    """The node ids once ``n_sites`` sites are connected; TimeoutError naming how many
    came, so the caller can say which step of the site's set-up to check."""
    deadline = time.monotonic() + timeout
    while len(nodes := list(grid.get_node_ids())) < n_sites:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"only {len(nodes)} of {n_sites} sites connected within {timeout:.0f} s; "
                "check that every site's node is started and registered."
            )
        time.sleep(0.2)
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
) -> StudyOutcome:
    """Run the study's rounds; with ``range_finding`` (and no encoder), first ask the
    sites for DP ranges and build the encoder from them."""
    observer = observer or NullObserver()
    node_ids = wait_for_sites(grid, n_sites, timeout)
    config = spec.to_config()
    receipts: list[dict[str, Any]] = []
    dictionary = None
    if encoder is None:
        if range_finding is None:
            raise ValueError("a study needs a feature encoder or a range finding to build one.")
        dictionary, replies = find_ranges(
            grid=grid, spec=spec, finding=range_finding, node_ids=node_ids, timeout=timeout
        )
        receipts += [r for reply in replies for r in reply.receipts]
        encoder = FeatureEncoder.from_dictionary(dictionary=dictionary)
        config["study-dictionary"] = json.dumps(dictionary.to_json())
    config["feature-encoder"] = encoder.to_json()
    strategy = build_strategy(spec=spec, n_sites=n_sites)
    node_names: dict[int, str] = {}
    arrays = initial_arrays(encoder)
    outcome = StudyOutcome(arrays=arrays, receipts=receipts, encoder=encoder, dictionary=dictionary)

    for server_round in range(1, spec.rounds + 1):
        started = time.monotonic()
        messages = strategy.configure_train(server_round, arrays, ConfigRecord(config), grid)
        replies = list(grid.send_and_receive(messages=messages, timeout=timeout))
        train = [SiteReply.from_message(m, node_names=node_names) for m in replies]
        for msg, reply in zip(replies, train, strict=False):
            node_names.setdefault(msg.metadata.src_node_id, reply.site_id)
            outcome.receipts.extend(reply.receipts)
        trained = [m for m, r in zip(replies, train, strict=False) if r.status == "ok"]
        if trained:
            new_arrays, _ = strategy.aggregate_train(server_round, trained)
            if new_arrays is not None:
                arrays = outcome.arrays = new_arrays

        messages = strategy.configure_evaluate(server_round, arrays, ConfigRecord(config), grid)
        eval_replies = list(grid.send_and_receive(messages=messages, timeout=timeout))
        evaluate = [SiteReply.from_message(m, node_names=node_names) for m in eval_replies]
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
