"""A figure that redraws itself after every round, in Jupyter only.

Held-out AUC and epsilon spent, per site, as the rounds come in. Outside a notebook
(or with ``settings.progress`` off) nothing is drawn.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from workbench import settings


def in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"


class LivePlot:
    """Redraws one display after each round; call ``update(history)``."""

    def __init__(self, *, target_epsilon: float, rounds: int) -> None:
        self.enabled = settings.progress and in_notebook()
        self._target = target_epsilon
        self._rounds = rounds
        self._handle: Any = None

    def update(self, history: pd.DataFrame, pooled: pd.DataFrame | None = None) -> None:
        """``pooled``: per round, the sites' noisy evaluations pooled (AUC and its sd)."""
        if not self.enabled or history.empty:
            return
        import matplotlib.pyplot as plt
        from IPython.display import display

        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2))
        ok = history[history["status"] == "ok"]
        for site, g in ok.groupby("site"):
            right.plot(g["round"], g["epsilon_project"], marker="o", label=site)
        if pooled is not None and not pooled.empty:
            left.errorbar(pooled["round"], pooled["auc"], yerr=pooled["auc_sd"], marker="o", capsize=3)
        left.set(
            xlabel="round",
            ylabel="AUC (DP estimate ± sd)",
            xlim=(0.5, self._rounds + 0.5),
            title="Global model, all sites' noisy counts pooled",
        )
        right.axhline(self._target, color="grey", ls="--", lw=1, label="target")
        right.set(
            xlabel="round", ylabel="epsilon spent", xlim=(0.5, self._rounds + 0.5), title="Privacy spent per site"
        )
        right.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)
        plt.close(fig)
