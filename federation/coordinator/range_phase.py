"""Before training on data without a dictionary: ask every site for DP ranges.

The coordinator decides the noise (a share of the study's epsilon); each site
charges its own ledger for it. The ranges, combined over sites, complete a data
dictionary that the study then sends to every site with the training requests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from federation.analytics.ranges import range_noise, union_ranges
from federation.coordinator.events import SiteReply
from federation.coordinator.reply_check import SiteRegistry, checked
from federation.data.dictionary import DataDictionary
from federation.data.unranged import UnrangedSchema
from federation.errors import Refused
from federation.protocol.authorization import Authorization
from federation.protocol.spec import TrainingSpec
from federation.protocol.task_kinds import QUERY_KIND_KEY, RANGES


@dataclass(frozen=True)
class RangeFinding:
    """What the coordinator knows of unranged data: column kinds, the target, and
    the share of the study's epsilon that range finding may use."""

    schema: UnrangedSchema
    target: str
    share: float = 0.1

    def numeric_features(self) -> list[str]:
        return [c.name for c in self.schema.columns if c.kind == "numeric" and c.name != self.target]


class RangeFindingFailed(Refused, RuntimeError):
    """The sites refused or failed the range query, or gave no range for a column."""


def find_ranges(
    *,
    grid: Grid,
    spec: TrainingSpec,
    finding: RangeFinding,
    node_ids: list[int],
    timeout: float,
    authorization: Authorization | None = None,
    registry: SiteRegistry | None = None,
) -> tuple[DataDictionary, list[SiteReply]]:
    columns = finding.numeric_features()
    noise_std = range_noise(epsilon=spec.target_epsilon * finding.share, delta=spec.delta, n_columns=len(columns))
    config = {**spec.to_config(), QUERY_KIND_KEY: RANGES, "columns": json.dumps(columns), "noise-std": noise_std}
    if authorization is not None:  # the researcher's signature on the study, relayed as is
        config.update(authorization.to_config())
    messages = [
        Message(content=RecordDict({"config": ConfigRecord(config)}), message_type=MessageType.QUERY, dst_node_id=node)
        for node in node_ids
    ]
    replies = list(grid.send_and_receive(messages=messages, timeout=timeout))
    parsed = [checked(m, node_names={}, registry=registry) for m in replies]
    bad = [r for r in parsed if r.status != "ok"]
    if bad:
        raise RangeFindingFailed(" ".join(f"Site {r.site_id} {r.status} the range query: {r.reason}" for r in bad))
    site_ranges = [json.loads(str(m.content["ranges"]["ranges"])) for m in replies]
    ranges = union_ranges(site_ranges)
    unfound = [c for c in columns if c not in ranges]
    if unfound:
        raise RangeFindingFailed(
            f"no site had enough records for a DP range of {', '.join(unfound)} at this noise; "
            "give these columns ranges in a data dictionary, or raise the study's epsilon."
        )
    binary_target = {finding.target: (0.0, 1.0)}
    dictionary = finding.schema.complete(
        name="study dictionary (ranges from a DP query)",
        source=(
            f"ranges found by a Gaussian DP range query at each site (epsilon "
            f"{spec.target_epsilon * finding.share:.3g} of the study's {spec.target_epsilon:g}), combined over sites"
        ),
        ranges={**ranges, **binary_target},
        categories={},
        target=finding.target,
    )
    return dictionary, parsed
