"""Round-by-round progress of a study: a tqdm bar, a history table, optional lines."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
from tqdm.auto import tqdm

from federation.coordinator.events import RoundReport
from workbench import settings
from workbench.live_plot import LivePlot


class ProgressObserver:
    """Collects every site's numbers per round and shows progress as it goes."""

    def __init__(
        self,
        *,
        rounds: int,
        on_round: Callable[[RoundReport], None] | None = None,
        live_plot: LivePlot | None = None,
    ) -> None:
        self.rows: list[dict] = []
        self.pooled: list[dict] = []
        self.stopped_reason = ""
        self._on_round = on_round
        self._live_plot = live_plot
        self._bar = tqdm(total=rounds, desc="training rounds", unit="round", disable=not settings.progress)

    def round_finished(self, report: RoundReport) -> None:
        evaluation = {r.site_id: r for r in report.evaluate}
        for t in report.train:
            e = evaluation.get(t.site_id)
            self.rows.append(
                {
                    "round": report.round,
                    "site": t.site_id,
                    "status": t.status,
                    "loss": e.metrics.get("loss") if e else None,
                    "accuracy": e.metrics.get("accuracy") if e else None,
                    "auc": e.metrics.get("auc") if e else None,
                    "auc_sd": e.metrics.get("auc-sd") if e else None,
                    "epsilon_project": _latest_epsilon(t, e),
                    "noise_multiplier": t.info.get("noise-multiplier"),
                    "steps": t.metrics.get("steps"),
                    "num_test": e.metrics.get("num-examples") if e else None,  # a noisy count
                    "reason": t.reason or (e.reason if e else ""),
                }
            )
        pooled = report.pooled()
        if pooled:
            self.pooled.append(
                {
                    "round": report.round,
                    **{k.replace("-", "_"): v for k, v in pooled.items()},
                    "max_epsilon": max(
                        (_latest_epsilon(t, evaluation.get(t.site_id)) or 0.0 for t in report.train), default=0.0
                    ),
                }
            )
        self._bar.update(1)
        self._bar.set_postfix(auc=f"{report.weighted('auc'):.3f}")
        if self._live_plot is not None:
            self._live_plot.update(self.history(), self.pooled_history())
        if self._on_round:
            self._on_round(report)

    def study_stopped(self, reason: str) -> None:
        self.stopped_reason = reason

    def close(self) -> None:
        self._bar.close()

    def history(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def pooled_history(self) -> pd.DataFrame:
        """Per round: the metrics of every site's noisy evaluation pooled, with their sd."""
        return pd.DataFrame(self.pooled)


def _latest_epsilon(train, evaluate) -> float | None:
    """The project's epsilon at the site after the round: its evaluation's, when it ran
    (it comes after the training), else its training's."""
    for reply in (evaluate, train):
        if reply is not None and reply.status == "ok":
            value = reply.info.get("epsilon-project", reply.metrics.get("epsilon-project"))
            if value is not None:
                return float(value)
    return None
