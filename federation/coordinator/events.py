"""What the coordinator learns as a study runs, in plain data for any observer."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from flwr.app import Message

from federation.errors import InternalFault
from federation.protocol.replies import EVALUATION_KEY, INCIDENT_KEY, REFUSAL_KEY
from federation.training.evaluation import NoisyEvaluation


@dataclass(frozen=True)
class SiteReply:
    """One site's answer to one message: trained/evaluated, refused, or failed."""

    site_id: str
    status: str  # "ok" | "refused" | "failed"
    kind: str = ""  # for refusals: budget | policy | error
    reason: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    receipts: tuple[dict[str, Any], ...] = ()

    @classmethod
    def from_message(cls, msg: Message, *, node_names: dict[int, str]) -> SiteReply:
        node = msg.metadata.src_node_id
        fallback = node_names.get(int(node), f"node {node}")
        if msg.has_error():
            return cls(site_id=fallback, status="failed", kind=InternalFault.kind, reason=msg.error.reason)
        content = msg.content
        if REFUSAL_KEY in content:
            r = content[REFUSAL_KEY]
            reason = str(r["reason"])
            if INCIDENT_KEY in r:
                reason = f"{reason.rstrip('.')}. (incident {r[INCIDENT_KEY]}: the site's IT finds the details in its audit log)"
            return cls(site_id=str(r["site-id"]), status="refused", kind=str(r["kind"]), reason=reason)
        site = dict(content["site"])
        metrics = {k: float(v) for k, v in dict(content["metrics"]).items()} if "metrics" in content else {}
        if EVALUATION_KEY in content:
            # A site sends noisy counts, never metrics: the metrics are computed here.
            record = content[EVALUATION_KEY]
            evaluation = NoisyEvaluation.from_json(str(record[EVALUATION_KEY]))
            metrics = evaluation.metrics()
            site[EVALUATION_KEY] = evaluation.to_json()
            if "exact-metrics" in record:  # the site's opt-in uncovered release
                site["exact-metrics"] = str(record["exact-metrics"])
        receipts = tuple(json.loads(str(site.pop("receipts", "[]"))))
        return cls(site_id=str(site.pop("site-id")), status="ok", metrics=metrics, info=site, receipts=receipts)

    @property
    def evaluation(self) -> NoisyEvaluation | None:
        """The site's noisy evaluation vector, when this is an evaluation reply."""
        text = self.info.get(EVALUATION_KEY)
        return NoisyEvaluation.from_json(str(text)) if text else None


@dataclass(frozen=True)
class RoundReport:
    """A finished round: every site's training and evaluation reply."""

    round: int
    rounds: int
    train: tuple[SiteReply, ...]
    evaluate: tuple[SiteReply, ...]
    seconds: float

    def pooled(self) -> dict[str, float]:
        """Metrics of the sites' noisy evaluations pooled (their counts summed: one ROC
        over every held-out row), with their standard deviations under the noise."""
        evaluations = [r.evaluation for r in self.evaluate if r.status == "ok" and r.evaluation is not None]
        if not evaluations:
            return {}
        return NoisyEvaluation.pooled(evaluations).metrics()

    def weighted(self, metric: str) -> float:
        """``metric`` over all sites: from the pooled noisy counts (see ``pooled``); for
        replies without them, the average weighted by held-out rows."""
        pooled = self.pooled()
        if metric in pooled:
            return pooled[metric]
        rows = [r for r in self.evaluate if r.status == "ok" and metric in r.metrics]
        total = sum(r.metrics["num-examples"] for r in rows)
        if not total:
            return float("nan")
        return sum(r.metrics[metric] * r.metrics["num-examples"] for r in rows) / total


class StudyObserver(Protocol):
    def round_finished(self, report: RoundReport) -> None: ...

    def study_stopped(self, reason: str) -> None: ...


class NullObserver:
    def round_finished(self, report: RoundReport) -> None:
        pass

    def study_stopped(self, reason: str) -> None:
        pass
