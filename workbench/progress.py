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
                    "train_loss": t.metrics.get("train-loss"),
                    "loss": e.metrics.get("loss") if e else None,
                    "accuracy": e.metrics.get("accuracy") if e else None,
                    "auc": e.metrics.get("auc") if e else None,
                    "epsilon_project": t.metrics.get("epsilon-project"),
                    "epsilon_dataset": t.metrics.get("epsilon-dataset"),
                    "noise_multiplier": t.info.get("noise-multiplier"),
                    "steps": t.metrics.get("steps"),
                    "num_test": e.metrics.get("num-examples") if e else None,
                    "reason": t.reason,
                }
            )
        self._bar.update(1)
        self._bar.set_postfix(auc=f"{report.weighted('auc'):.3f}")
        if self._live_plot is not None:
            self._live_plot.update(self.history())
        if self._on_round:
            self._on_round(report)

    def study_stopped(self, reason: str) -> None:
        self.stopped_reason = reason

    def close(self) -> None:
        self._bar.close()

    def history(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)
