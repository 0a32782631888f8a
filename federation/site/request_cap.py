"""The site's cap on what one request may cost (``max_epsilon_per_request``).

Checked by each handler at the moment it reserves, on the event it computed itself
from the parameters it will execute, in the ledger's own arithmetic (the dataset's
delta, PLD): a coordinator's figure is never trusted.
"""

from __future__ import annotations

import dp_accounting as dpa

from federation.errors import BudgetRefused
from federation.site.site_config import SiteConfig
from privacy_budgets import Ledger

_ROUNDING = 1e-9  # relative: a request calibrated to exactly the cap fits


class RequestCapExceeded(BudgetRefused):
    """One request would cost more than the site allows per request."""


def check_request_cap(*, ledger: Ledger, site: SiteConfig, project: str, event: dpa.DpEvent) -> None:
    """Raise RequestCapExceeded when ``event`` alone costs more than the site's per-request cap.

    A dataset without a cap raises the ledger's own BudgetExceeded (fail closed), as
    reserving would.
    """
    cap = site.max_epsilon_per_request
    if cap is None:
        return
    epsilon = ledger.cost(dataset=site.dataset, project=project, event=event).epsilon
    if epsilon > cap * (1 + _ROUNDING):
        # Words from the request's own cost and the site's policy only: sent as they are.
        text = (
            f"this request would cost epsilon {epsilon:.4g} at site {site.site_id}, above the site's cap "
            f"of {cap:g} per request (max_epsilon_per_request in its node.toml). Ask for less in one "
            "request: more noise, a smaller epsilon, or fewer steps per round."
        )
        raise RequestCapExceeded(text, public=text)
