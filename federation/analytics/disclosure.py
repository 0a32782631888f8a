"""A site's disclosure rules: the smallest group it shows, decided on noisy counts.

- ``min_cell_size`` (default 5, never below 3): a cell, a stratum, a tail of a
  distribution or a survival risk set whose NOISY count is below it is suppressed.
  The decision reads only the noisy release, so it is post-processing and stays
  inside the DP guarantee the ledger states.
- ``true_count_floor`` (default off): DataSHIELD's rule, a floor on the TRUE count.
  It stops a group of 1-2 patients that noise pushed above ``min_cell_size`` from
  being shown, but whether a cell was suppressed then depends on exact counts: a
  release no DP mechanism covers. The site records it in its ledger as an uncovered
  release with every query it applies to, so the privacy statement declares it.

Where the rules come from: a site's ``SiteConfig.min_cell_size`` and
``SiteConfig.true_count_floor`` (node config keys ``min-cell-size`` and
``true-count-floor``; a site policy may fill the same fields). A query may ask for
a larger minimum, never a smaller one.

>>> rules_for(site_min=None, site_floor=None, query_min=None)
DisclosureRules(min_cell_size=5, true_count_floor=None)
>>> rules_for(site_min=10, site_floor=3, query_min=20)
DisclosureRules(min_cell_size=20, true_count_floor=3)
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MIN_CELL_SIZE = 5
LOWEST_MIN_CELL_SIZE = 3


class DisclosureRuleError(ValueError):
    """A site configured with rules below what this workbench allows."""


@dataclass(frozen=True)
class DisclosureRules:
    min_cell_size: int = DEFAULT_MIN_CELL_SIZE
    true_count_floor: int | None = None

    def __post_init__(self) -> None:
        m = self.min_cell_size
        if isinstance(m, bool) or not isinstance(m, int) or m < LOWEST_MIN_CELL_SIZE:
            raise DisclosureRuleError(
                f"A site's minimum cell size is a whole number of at least {LOWEST_MIN_CELL_SIZE}; "
                f"got {m!r}. Set min-cell-size to {LOWEST_MIN_CELL_SIZE} or more in the node config."
            )
        f = self.true_count_floor
        if f is not None and (isinstance(f, bool) or not isinstance(f, int) or f < 1):
            raise DisclosureRuleError(
                f"A true-count floor is a whole number of at least 1, or unset; got {f!r}. "
                "Fix true-count-floor in the node config (DataSHIELD uses 3)."
            )

    def to_json(self) -> dict[str, int | None]:
        return {"min_cell_size": self.min_cell_size, "true_count_floor": self.true_count_floor}

    def describe(self) -> str:
        text = f"cells whose noisy count is below {self.min_cell_size} are suppressed"
        if self.true_count_floor:
            text += f", and cells of fewer than {self.true_count_floor} records (true count; not covered by DP)"
        return text


def rules_for(*, site_min: int | None, site_floor: int | None, query_min: int | None) -> DisclosureRules:
    """The rules in force: the site's (or the default), raised by the query if it asks."""
    base = DEFAULT_MIN_CELL_SIZE if site_min is None else site_min
    DisclosureRules(min_cell_size=base, true_count_floor=site_floor)  # the site's own must be valid
    return DisclosureRules(min_cell_size=max(base, query_min or 0), true_count_floor=site_floor)
