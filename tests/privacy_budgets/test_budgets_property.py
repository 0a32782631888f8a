"""Property: no sequence of reserves, commits (possibly smaller) and aborts breaks a limit."""

from __future__ import annotations

import tempfile
from pathlib import Path

import dp_accounting as dpa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privacy_budgets import BudgetExceeded, Ledger
from privacy_budgets.mechanisms import gaussian_event, laplace_event

CAP, ALLOCATIONS, DELTA = 2.0, {"a": 1.5, "b": 1.0}, 1e-5
TOLERANCE = 1 + 1e-9

# Cheap mechanisms, so a hundred examples run in seconds. Each may be committed as
# itself or as a smaller mechanism of the same family (more noise).
MECHANISMS = [("gaussian", s) for s in (2.0, 3.0, 5.0, 8.0)] + [("laplace", b) for b in (2.0, 4.0, 8.0)]


def make(kind: str, scale: float):
    factory = gaussian_event if kind == "gaussian" else laplace_event
    return factory(noise_multiplier=scale)


operation = st.one_of(
    st.tuples(st.just("reserve"), st.sampled_from(sorted(ALLOCATIONS)), st.sampled_from(MECHANISMS)),
    st.tuples(st.just("commit"), st.integers(0, 5), st.sampled_from([1.0, 1.5, 3.0])),
    st.tuples(st.just("abort"), st.integers(0, 5), st.just(None)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, min_size=1, max_size=14))
def test_limits_always_hold(operations):
    with tempfile.TemporaryDirectory() as folder, Ledger.open(Path(folder) / "p.ledger", site_id="s") as ledger:
        ledger.set_cap(dataset="d", epsilon=CAP, delta=DELTA, actor="site", reason="r")
        for project, allocation in ALLOCATIONS.items():
            ledger.allocate(dataset="d", project=project, epsilon=allocation, actor="b", reason="r")
        held: list = []
        for op, arg, extra in operations:
            if op == "reserve":
                try:
                    held.append(ledger.reserve(dataset="d", project=arg, event=make(*extra), actor="t", purpose="p"))
                except BudgetExceeded:
                    pass
            elif held:
                reservation = held.pop(arg % len(held))
                if op == "abort":
                    ledger.abort(reservation, reason="r")
                else:
                    kind, scale = _family(reservation)
                    ledger.commit(reservation, event=make(kind, scale * extra))
            _check_limits(ledger)
        assert ledger.verify(deep=True).ok


def _family(reservation):
    event = reservation.event
    if isinstance(event, dpa.LaplaceDpEvent):
        return "laplace", event.noise_multiplier
    return "gaussian", event.noise_multiplier


def _check_limits(ledger: Ledger) -> None:
    assert ledger.spent(dataset="d") <= CAP * TOLERANCE
    for project, allocation in ALLOCATIONS.items():
        assert ledger.spent(dataset="d", project=project) <= allocation * TOLERANCE
