"""Disclosure control of a release: the smallest group it shows, decided on noisy counts.

- ``min_cell_size``: a cell, a stratum, a tail of a distribution or a survival risk
  set whose NOISY count is below it is suppressed. The decision reads only the noisy
  release, so it is post-processing and stays inside the DP guarantee the ledger
  states.
- ``true_count_floor`` (or None): DataSHIELD's rule, a floor on the TRUE count. It
  stops a group of 1-2 patients that noise pushed above ``min_cell_size`` from being
  shown, but whether a cell was suppressed then depends on exact counts: a release no
  DP mechanism covers. The site records it in its ledger as an uncovered release with
  every query it applies to, so the privacy statement declares it.

The mechanism takes the rules as arguments. Their values, defaults and limits are the
site's policy (``min_cell_size`` and ``true_count_floor`` in node.toml, declared in
federation/site/node_keys.py: a minimum of 5 by default, never below 3; no floor by
default); the site checks its own before it asks for them here. A query may ask for a
larger minimum, never a smaller one.

>>> rules_for(site_min=5, site_floor=None, query_min=None)
DisclosureRules(min_cell_size=5, true_count_floor=None)
>>> rules_for(site_min=10, site_floor=3, query_min=20)
DisclosureRules(min_cell_size=20, true_count_floor=3)
"""

from __future__ import annotations

from dataclasses import dataclass

from federation.errors import BadInput


class DisclosureRuleError(BadInput, ValueError):
    """Disclosure rules below what the site's policy allows, or not whole numbers."""


@dataclass(frozen=True)
class DisclosureRules:
    min_cell_size: int
    true_count_floor: int | None = None

    def __post_init__(self) -> None:
        for name, value in (("min_cell_size", self.min_cell_size), ("true_count_floor", self.true_count_floor)):
            if value is None and name == "true_count_floor":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DisclosureRuleError(f"a disclosure rule's {name} is a whole number of at least 1; got {value!r}.")

    def to_json(self) -> dict[str, int | None]:
        return {"min_cell_size": self.min_cell_size, "true_count_floor": self.true_count_floor}

    def describe(self) -> str:
        text = f"cells whose noisy count is below {self.min_cell_size} are suppressed"
        if self.true_count_floor:
            text += f", and cells of fewer than {self.true_count_floor} records (true count; not covered by DP)"
        return text


def rules_for(*, site_min: int, site_floor: int | None, query_min: int | None) -> DisclosureRules:
    """The rules in force: the site's minimum, raised by the query if it asks for more."""
    return DisclosureRules(min_cell_size=max(site_min, query_min or 0), true_count_floor=site_floor)
