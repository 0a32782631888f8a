"""Round-by-round progress of a study: a tqdm bar, a history table, optional lines,
and while the coordinator waits, which sites have not answered and for how long."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from federation.coordinator.events import RoundReport
from workbench import settings
from workbench.live_plot import LivePlot

WAIT_LINE_AFTER_SECONDS = 5.0  # a wait shorter than this is not worth a line
WAIT_LINE_EVERY_SECONDS = 15.0


def waiting_text(snapshot: dict[str, Any] | None, *, now: float | None = None) -> str:
    """ "waiting 42 s for hospital_02 (round 2 train); answered: hospital_01", or ""."""
    if not snapshot or not snapshot.get("sites"):
        return ""
    now = time.time() if now is None else now
    seconds = max(0.0, now - float(snapshot.get("since", now)))
    if snapshot.get("what") == "connection":
        who = ", ".join(sorted(snapshot["sites"]))
        head = f"waiting {seconds:.0f} s for {who} to connect"
    else:
        who = ", ".join(f"{site} ({step})" for site, step in sorted(snapshot["sites"].items()))
        head = f"waiting {seconds:.0f} s for {who}"
    answered = snapshot.get("answered") or []
    return head + (
        f"; {'connected' if snapshot.get('what') == 'connection' else 'answered'}: {', '.join(answered)}"
        if answered
        else ""
    )


def round_line(report: RoundReport) -> str:
    """One line per round, as the ``workbench study`` command prints it: the pooled DP
    estimates and each site's project epsilon (or its status when it did not train)."""
    evaluated = {r.site_id: r for r in report.evaluate}
    eps = ", ".join(
        f"{t.site_id} {_project_epsilon(t, evaluated.get(t.site_id)):.3f}"
        if t.status == "ok"
        else f"{t.site_id} {t.status.upper()}"
        for t in report.train
    )
    pooled = report.pooled()
    if pooled:
        metrics = (
            f"AUC {pooled['auc']:.3f} ± {pooled['auc-sd']:.3f}  accuracy {pooled['accuracy']:.3f} ± "
            f"{pooled['accuracy-sd']:.3f} (DP estimates)"
        )
    else:
        metrics = "no evaluation"
    return f"round {report.round}/{report.rounds}  {metrics}  ({report.seconds:.1f} s)  epsilon spent: {eps}"


def _project_epsilon(train, evaluate) -> float:
    """The project's epsilon at the site after the round (its evaluation comes last)."""
    if evaluate is not None and evaluate.status == "ok" and "epsilon-project" in evaluate.info:
        return float(evaluate.info["epsilon-project"])
    return float(train.metrics.get("epsilon-project", float("nan")))


class ProgressObserver:
    """Collects every site's numbers per round and shows progress as it goes."""

    def __init__(
        self,
        *,
        rounds: int,
        on_round: Callable[[RoundReport], None] | None = None,
        live_plot: LivePlot | None = None,
        on_wait: Callable[[str], None] | None = None,
        wait_every: float = WAIT_LINE_EVERY_SECONDS,
        wait_after: float = WAIT_LINE_AFTER_SECONDS,
    ) -> None:
        self.rows: list[dict] = []
        self.pooled: list[dict] = []
        self.stopped_reason = ""
        self.waiting_text = ""
        self._on_round = on_round
        self._on_wait = on_wait
        self._wait_every = wait_every
        self._wait_after = wait_after
        self._wait_said: tuple[tuple[str, ...], float] = ((), 0.0)
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

    def waiting(self, snapshot: dict[str, Any] | None) -> None:
        """What the coordinator waits for (run_folder.waiting()): shown on the bar, and
        told to ``on_wait`` once the wait lasts ``wait_after`` s, when the sites waited
        for change, then every ``wait_every`` s."""
        text = waiting_text(snapshot)
        if not text:
            self.waiting_text = ""
            return
        self.waiting_text = text
        self._bar.set_postfix_str(text, refresh=True)
        sites = tuple(sorted(snapshot.get("sites", {})))
        said, when = self._wait_said
        waited = time.time() - float(snapshot.get("since", time.time()))
        if waited < self._wait_after:  # the sites answer within seconds as a rule: say nothing yet
            return
        if self._on_wait is not None and (sites != said or time.monotonic() - when >= self._wait_every):
            self._on_wait(text)
            self._wait_said = (sites, time.monotonic())

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
