"""The ledger's rules: caps, allocations, reservations, commits, aborts, refusals."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sqlite3

import pytest
from conftest import DATASET, DELTA, PROJECT, SITE

from privacy_budgets import (
    BudgetExceeded,
    CostEstimate,
    InvalidBudget,
    InvalidMechanism,
    Ledger,
    LedgerEntry,
    LedgerError,
    LedgerIntegrityError,
    Reservation,
    SpendReceipt,
    VerificationReport,
)
from privacy_budgets.accounting import epsilon
from privacy_budgets.mechanisms import dpsgd_event, event_from_json, gaussian_event, laplace_event

ROUND = dpsgd_event(noise_multiplier=1.1, sampling_rate=0.01, steps=80)  # about 0.51


def reserve(ledger: Ledger, event=ROUND, project: str = PROJECT, **kw) -> Reservation:
    return ledger.reserve(dataset=DATASET, project=project, event=event, actor="node", purpose="FedAvg update", **kw)


# --- refusals -----------------------------------------------------------------------


def test_refusal_states_numbers_limit_and_fix(ledger):
    ledger.commit(reserve(ledger, run_id="r42", round=1))
    with pytest.raises(BudgetExceeded) as caught:
        for round_ in range(2, 10):
            ledger.commit(reserve(ledger, run_id="r42", round=round_))
    err = caught.value
    pattern = (
        r"Refused: this release would exceed the project allocation for dataset 'hospital_01' "
        r"/ project 'quickstart'\.\n"
        r" Requested epsilon: 0\.51 \(total after it 1\.\d\d\)\n"
        r" Remaining: 0\.\d\d of 1\.00\n"
        r" Cap: allocation 1\.00 at delta 1e-05, set by ethics-board on 20\d\d-\d\d-\d\dT[\d:.]+Z\n"
        r" Fix: ask the ethics board for a larger allocation, or plan a cheaper release "
        r"\(more noise, fewer steps\)\."
    )
    assert re.fullmatch(pattern, str(err))
    assert err.limit_kind == "project allocation"
    assert (err.dataset, err.project, err.set_by) == (DATASET, PROJECT, "ethics-board")
    assert err.cap == 1.0
    assert err.requested_epsilon == pytest.approx(epsilon(events=[ROUND], delta=DELTA))
    assert err.remaining == pytest.approx(1.0 - ledger.spent(dataset=DATASET, project=PROJECT))
    assert err.total_after > 1.0


def test_dataset_cap_binds_across_projects(ledger):
    ledger.allocate(dataset=DATASET, project="other", epsilon=5.0, actor="ethics-board", reason="second study")
    big = gaussian_event(noise_multiplier=1.0)  # about 4.4 on its own
    with pytest.raises(BudgetExceeded, match=r"exceed the dataset cap for dataset 'hospital_01'\.\n") as caught:
        reserve(ledger, event=big, project="other")
    assert caught.value.limit_kind == "dataset cap"
    assert "Fix: the site may raise the dataset's cap (set-cap)" in str(caught.value)


def test_fail_closed_without_cap_or_allocation(ledger_path):
    with Ledger.open(ledger_path, site_id=SITE) as ledger:
        with pytest.raises(BudgetExceeded, match=r"(?s)dataset 'hospital_01' has no cap.*fail closed.*set-cap"):
            reserve(ledger)
        ledger.set_cap(dataset=DATASET, epsilon=2.0, delta=DELTA, actor="site", reason="r")
        with pytest.raises(
            BudgetExceeded,
            match=r"(?s)project 'quickstart' has no allocation on "
            r"dataset 'hospital_01'.*fail closed.*allocate",
        ):
            reserve(ledger)
        assert [e.kind for e in ledger.entries()] == ["genesis", "set_cap"]


def test_allocation_needs_a_cap_first(ledger_path):
    with Ledger.open(ledger_path, site_id=SITE) as ledger:
        with pytest.raises(LedgerError, match=r"needs a cap first: dataset 'x' has none"):
            ledger.allocate(dataset="x", project="p", epsilon=1.0, actor="b", reason="r")


# --- reservations, commits, aborts -----------------------------------------------------


def test_open_reservations_count_as_spent(ledger):
    r = reserve(ledger)
    alone = epsilon(events=[ROUND], delta=DELTA)
    assert ledger.spent(dataset=DATASET) == pytest.approx(alone)
    assert ledger.spent(dataset=DATASET, include_reserved=False) == 0.0
    assert [o.id for o in ledger.open_reservations()] == [r.id]
    assert ledger.open_reservations()[0].age_s >= 0
    assert ledger.remaining(dataset=DATASET, project=PROJECT) == pytest.approx(1.0 - alone)
    ledger.abort(r, reason="client dropped out")
    assert ledger.spent(dataset=DATASET) == 0.0
    assert ledger.open_reservations() == []


def test_commit_smaller_charges_what_ran(ledger):
    r = reserve(ledger)
    smaller = dpsgd_event(noise_multiplier=1.1, sampling_rate=0.01, steps=60)
    entry = ledger.commit(r, event=smaller)
    assert entry.event == smaller
    assert entry.epsilon == pytest.approx(epsilon(events=[smaller], delta=DELTA))
    assert ledger.spent(dataset=DATASET) == pytest.approx(entry.epsilon)
    assert ledger.verify(deep=True).ok


def test_commit_larger_than_reserved_is_refused_and_reservation_stays_open(ledger):
    r = reserve(ledger)
    larger = dpsgd_event(noise_multiplier=1.1, sampling_rate=0.01, steps=100)
    with pytest.raises(
        LedgerError,
        match=r"A commit may charge less than its reservation, never "
        r"more: reservation '\w+' held epsilon 0\.5\d+, the "
        r"mechanism that ran gives 0\.5\d+\. .*stays open",
    ):
        ledger.commit(r, event=larger)
    assert [o.id for o in ledger.open_reservations()] == [r.id]


def test_commit_that_costs_less_alone_but_composes_higher_is_refused(tmp_path):
    # Gaussians compose gently (variances add); a Laplace release of slightly smaller
    # epsilon alone adds almost linearly. Swapping one for the other must not raise the
    # composed total above what was reserved.
    with Ledger.open(tmp_path / "swap.ledger", site_id=SITE) as ledger:
        ledger.set_cap(dataset=DATASET, epsilon=50.0, delta=DELTA, actor="s", reason="r")
        ledger.allocate(dataset=DATASET, project=PROJECT, epsilon=50.0, actor="b", reason="r")
        ledger.commit(reserve(ledger, event=gaussian_event(noise_multiplier=2.0, count=10)))
        reserved = gaussian_event(noise_multiplier=3.0)
        r = reserve(ledger, event=reserved)
        alone = epsilon(events=[reserved], delta=DELTA)
        cheaper_alone = laplace_event(noise_multiplier=1.0 / (0.97 * alone))
        assert epsilon(events=[cheaper_alone], delta=DELTA) < alone
        with pytest.raises(
            LedgerError,
            match=r"never more: reservation '\w+' held epsilon "
            r"[\d.]+ composed, the mechanism that ran gives",
        ):
            ledger.commit(r, event=cheaper_alone)
        assert [o.id for o in ledger.open_reservations()] == [r.id]


def test_resolved_reservation_cannot_be_resolved_again(ledger):
    r = reserve(ledger)
    ledger.commit(r)
    with pytest.raises(LedgerError, match=r"resolved once: '\w+' was already committed at seq \d+"):
        ledger.commit(r.id)
    with pytest.raises(LedgerError, match=r"already committed"):
        ledger.abort(r, reason="late")
    with pytest.raises(LedgerError, match=r"'nope' is unknown here"):
        ledger.commit("nope")


def test_entries_carry_context_and_totals(ledger):
    r = reserve(ledger, run_id="r42", round=3, query_id=None)
    entry = ledger.commit(r)
    assert (entry.kind, entry.run_id, entry.round, entry.actor) == ("commit", "r42", 3, "node")
    assert entry.reservation_id == r.id
    assert entry.delta == DELTA
    assert entry.epsilon_after == entry.project_epsilon_after == pytest.approx(r.epsilon)
    seqs = [e.seq for e in ledger.entries()]
    assert seqs == list(range(1, len(seqs) + 1))


def test_uncovered_release_is_recorded_without_epsilon(ledger):
    entry = ledger.record_uncovered(
        dataset=DATASET,
        project=PROJECT,
        actor="node",
        purpose="FedAvg weights",
        what="training row count 4012 sent to the coordinator",
        run_id="r42",
        round=3,
        details={"rows": 4012},
    )
    assert entry.epsilon is None and entry.details == {
        "rows": 4012,
        "what": ("training row count 4012 sent to the coordinator"),
    }
    status = ledger.status()
    assert status.loc[status["project"] == PROJECT, "uncovered_releases"].item() == 1
    with pytest.raises(LedgerError, match=r"details must be plain JSON"):
        ledger.record_uncovered(
            dataset=DATASET, project=PROJECT, actor="n", purpose="p", what="w", details={"bad": object()}
        )


# --- limits over time ---------------------------------------------------------------------


def test_lowering_cap_below_spent_is_recorded_as_over_cap(ledger):
    ledger.commit(reserve(ledger))
    entry = ledger.set_cap(dataset=DATASET, epsilon=0.2, delta=DELTA, actor="site-admin", reason="policy tightened")
    assert entry.details["below_spent"] is True
    assert ledger.remaining(dataset=DATASET) < 0
    row = ledger.status().iloc[0]
    assert (row["project"], row["state"]) == ("(all projects)", "over cap")
    with pytest.raises(BudgetExceeded, match="dataset cap"):
        reserve(ledger, event=gaussian_event(noise_multiplier=50.0))


def test_changing_delta_after_reservations_is_refused(ledger):
    ledger.set_cap(dataset=DATASET, epsilon=3.0, delta=1e-6, actor="site", reason="before spends")
    reserve(ledger)
    with pytest.raises(
        LedgerError,
        match=r"delta is fixed once releases are reserved.*has delta "
        r"1e-06, the new cap asks 1e-05.*Keep delta 1e-06",
    ):
        ledger.set_cap(dataset=DATASET, epsilon=3.0, delta=1e-5, actor="site", reason="r")
    ledger.set_cap(dataset=DATASET, epsilon=4.0, delta=1e-6, actor="site", reason="raise")


# --- planning, reading, records -----------------------------------------------------------


def test_cost_plans_without_spending(ledger):
    n = len(ledger.entries())
    estimate = ledger.cost(dataset=DATASET, project=PROJECT, event=ROUND)
    assert isinstance(estimate, CostEstimate) and estimate.fits
    assert estimate.epsilon == pytest.approx(epsilon(events=[ROUND], delta=DELTA))
    assert estimate.project_remaining_after == pytest.approx(1.0 - estimate.epsilon)
    assert "project allocation 1.00" in estimate.binding
    assert len(ledger.entries()) == n
    too_much = ledger.cost(dataset=DATASET, project=PROJECT, event=gaussian_event(noise_multiplier=2.0))
    assert not too_much.fits and too_much.project_remaining_after < 0
    unfunded = ledger.cost(dataset=DATASET, project="unfunded", event=ROUND)
    assert not unfunded.fits and "project 'unfunded' has no allocation" in unfunded.binding
    assert CostEstimate.from_dict(estimate.to_dict()) == estimate


def test_status_and_history_frames(ledger):
    ledger.commit(reserve(ledger, run_id="r1", round=1))
    reserve(ledger, event=gaussian_event(noise_multiplier=20.0))
    status = ledger.status()
    assert list(status["project"]) == ["(all projects)", PROJECT]
    total = status.iloc[0]
    assert total["limit"] == 3.0 and total["delta"] == DELTA and total["open_reservations"] == 1
    assert total["spent"] + total["reserved"] == pytest.approx(ledger.spent(dataset=DATASET))
    assert total["remaining"] == pytest.approx(3.0 - ledger.spent(dataset=DATASET))
    history = ledger.history(dataset=DATASET)
    assert {"seq", "time", "kind", "mechanism", "epsilon_after", "entry_hash", "statement"} <= set(history.columns)
    commit = history[history["kind"] == "commit"].iloc[0]
    assert event_from_json(commit["mechanism"]) == ROUND
    assert commit["time"].endswith("Z")


def test_records_round_trip_through_json(ledger):
    r = reserve(ledger)
    entry = ledger.commit(r)
    receipt = ledger.receipt(entry)
    for record in (r, receipt):
        assert type(record).from_dict(json.loads(json.dumps(record.to_dict()))) == record
    assert LedgerEntry.from_dict(json.loads(json.dumps(entry.to_dict()))) == entry
    report = ledger.verify()
    assert VerificationReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report
    assert receipt.verifies() and receipt.seq == entry.seq
    assert all(isinstance(v, (str, int, float, type(None))) for v in receipt.to_dict().values())
    with pytest.raises(LedgerError, match=r"needs exactly the fields.*unknown \['extra'\]"):
        SpendReceipt.from_dict({**receipt.to_dict(), "extra": 1})
    with pytest.raises(
        LedgerError,
        match=r"A receipt proves a release \(a commit or an uncovered "
        r"release\); entry seq 1 is a 'genesis' entry",
    ):
        ledger.receipt(ledger.entries()[0])
    declared = ledger.record_uncovered(
        dataset=DATASET, project=PROJECT, what="row count 4012", actor="node", purpose="FedAvg weight"
    )
    uncovered = ledger.receipt(declared)
    assert (uncovered.kind, uncovered.epsilon, uncovered.mechanism) == ("uncovered", None, None)
    assert uncovered.dataset_epsilon_after == entry.epsilon_after and uncovered.verifies()
    forged = dataclasses.replace(entry, epsilon=0.001)
    with pytest.raises(LedgerError, match=r"signed only for an entry of this ledger; entry seq 5"):
        ledger.receipt(forged)


def test_limits_delta_and_history_as_events_for_calibration(ledger):
    assert ledger.cap(dataset=DATASET) == 3.0 and ledger.cap(dataset="other") is None
    assert ledger.allocation(dataset=DATASET, project=PROJECT) == 1.0
    assert ledger.allocation(dataset=DATASET, project="unfunded") is None
    assert ledger.dataset_delta(dataset=DATASET) == DELTA
    with pytest.raises(LedgerError, match=r"delta is set with its cap; dataset 'other' has no cap"):
        ledger.dataset_delta(dataset="other")
    ledger.commit(reserve(ledger))
    open_one = reserve(ledger, event=gaussian_event(noise_multiplier=20.0))
    prior = ledger.events(dataset=DATASET, project=PROJECT)
    assert epsilon(events=prior, delta=DELTA) == ledger.spent(dataset=DATASET, project=PROJECT)
    committed = ledger.events(dataset=DATASET, include_reserved=False)
    assert committed == [ROUND]
    # Calibrating on top of the ledger's history uses exactly the ledger's arithmetic:
    # the calibrated run then fits its allocation to the last round.
    ledger.abort(open_one, reason="r")
    from privacy_budgets import calibrate_dpsgd_noise

    sigma = calibrate_dpsgd_noise(
        target_epsilon=1.0,
        delta=DELTA,
        sampling_rate=0.02,
        steps=60,
        prior_events=ledger.events(dataset=DATASET, project=PROJECT),
    )
    for _ in range(3):
        ledger.commit(reserve(ledger, event=dpsgd_event(noise_multiplier=sigma, sampling_rate=0.02, steps=20)))
    assert 0.99 < ledger.spent(dataset=DATASET, project=PROJECT) <= 1.0


def test_report_repr_html_is_green_or_red(ledger):
    assert "verified" in ledger.verify()._repr_html_()
    assert str(ledger.verify()).startswith("OK: 3 entries of site 'site_a' verify")


# --- bad inputs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"epsilon": -1.0}, r"cap epsilon must be > 0; got -1\.0"),
        ({"epsilon": math.nan}, r"cap epsilon must be a finite number; got nan"),
        ({"epsilon": math.inf}, r"cap epsilon must be a finite number; got inf"),
        ({"delta": 0.0}, r"delta must lie strictly between 0 and 1; got 0\.0"),
        ({"delta": 1.0}, r"delta must lie strictly between 0 and 1; got 1\.0"),
        ({"delta": math.nan}, r"delta must be a number in \(0, 1\); got nan"),
    ],
)
def test_bad_cap_values_are_refused(ledger, kwargs, pattern):
    args = {"dataset": DATASET, "epsilon": 1.0, "delta": DELTA, "actor": "a", "reason": "r", **kwargs}
    with pytest.raises(InvalidBudget, match=pattern):
        ledger.set_cap(**args)


def test_bad_allocation_and_names_are_refused(ledger):
    with pytest.raises(InvalidBudget, match=r"allocation epsilon must be > 0; got -0\.5"):
        ledger.allocate(dataset=DATASET, project=PROJECT, epsilon=-0.5, actor="b", reason="r")
    with pytest.raises(LedgerError, match=r"dataset must be a non-empty string; got ''"):
        ledger.reserve(dataset="", project=PROJECT, event=ROUND, actor="a", purpose="p")
    with pytest.raises(LedgerError, match=r"round must be a whole number >= 0 or None; got -1"):
        reserve(ledger, round=-1)


def test_bad_mechanisms_are_refused(ledger):
    with pytest.raises(InvalidMechanism, match=r"noise_multiplier must be a finite number above 0"):
        reserve(ledger, event=gaussian_event(noise_multiplier=1.0).__class__(noise_multiplier=-1.0))
    with pytest.raises(InvalidMechanism, match=r"Unknown mechanism 'ExponentialDpEvent'"):
        event_from_json(json.dumps({"format": "dp_accounting/0.6", "event": {"type": "ExponentialDpEvent"}}))
    with pytest.raises(InvalidMechanism, match=r"must carry format"):
        event_from_json('{"event": {"type": "GaussianDpEvent", "noise_multiplier": 1}}')


# --- opening ------------------------------------------------------------------------------


def test_key_is_private_and_recorded_in_genesis(ledger, ledger_path):
    key = ledger_path.with_name(ledger_path.name + ".key")
    assert key.stat().st_mode & 0o777 == 0o600
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    genesis = ledger.entries()[0]
    assert genesis.kind == "genesis" and genesis.details["public_key"] == ledger.public_key
    assert ledger.public_key_fingerprint.startswith("ed25519:SHA256:")


def test_reopen_with_another_key_is_refused(ledger, ledger_path, tmp_path):
    ledger.close()
    with Ledger.open(tmp_path / "other.ledger", site_id=SITE):
        pass
    with pytest.raises(
        LedgerError,
        match=r"written with the key it was created with: .* was "
        r"created with ed25519:SHA256:\w+, but .*other\.ledger\.key is",
    ):
        Ledger.open(ledger_path, site_id=SITE, key_path=tmp_path / "other.ledger.key")
    with Ledger.open(ledger_path, site_id=SITE) as again:
        assert again.spent(dataset=DATASET) == 0.0


def test_missing_file_without_create_is_refused(tmp_path):
    with pytest.raises(LedgerError, match=r"No ledger at .*missing\.ledger.*pass create=True"):
        Ledger.open(tmp_path / "missing.ledger", site_id=SITE, create=False)
    assert not (tmp_path / "missing.ledger").exists()


def test_missing_key_for_existing_ledger_is_refused(ledger, ledger_path):
    ledger.close()
    ledger_path.with_name(ledger_path.name + ".key").unlink()
    with pytest.raises(LedgerError, match=r"signing key must exist to write to it; none at"):
        Ledger.open(ledger_path, site_id=SITE)


def test_other_site_id_is_refused(ledger, ledger_path):
    ledger.close()
    with pytest.raises(LedgerError, match=r"belongs to site 'site_a', not 'site_b'"):
        Ledger.open(ledger_path, site_id="site_b")


def test_not_a_ledger_and_corrupt_files_are_refused(tmp_path, ledger, ledger_path):
    text = tmp_path / "notes.ledger"
    text.write_text("hello, I am not a database\n")
    with pytest.raises(LedgerError, match=r"must be a privacy_budgets SQLite ledger; .*not an SQLite file"):
        Ledger.open(text, site_id=SITE)
    other_db = tmp_path / "other.sqlite"
    sqlite3.connect(other_db).execute("CREATE TABLE patients (id INTEGER)").connection.commit()
    with pytest.raises(LedgerError, match=r"SQLite database without ledger tables"):
        Ledger.open(other_db, site_id=SITE)
    ledger.close()
    corrupt = tmp_path / "corrupt.ledger"
    data = bytearray(ledger_path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)
    corrupt.write_bytes(bytes(data))
    with pytest.raises(
        LedgerError,
        match=r"must be a privacy_budgets SQLite ledger; .*corrupt\.ledger "
        r"is not \(SQLite says: .*malformed\)",
    ):
        Ledger.open(corrupt, site_id=SITE, key_path=ledger_path.with_name(ledger_path.name + ".key"))
    with pytest.raises(LedgerError, match=r"must be a readable SQLite ledger; .*malformed"):
        Ledger.verify_file(corrupt)


def test_a_broken_chain_is_never_extended(ledger, ledger_path):
    ledger.commit(reserve(ledger))
    with sqlite3.connect(ledger_path) as conn:
        conn.execute("UPDATE entries SET purpose = 'edited' WHERE seq = (SELECT MAX(seq) FROM entries)")
    with pytest.raises(
        LedgerIntegrityError,
        match=r"only extends a chain that verifies; .* ends with "
        r"entry seq 5, which does not match its hash",
    ):
        ledger.record_uncovered(dataset=DATASET, project=PROJECT, what="w", actor="a", purpose="p")
    ledger.close()
    with pytest.raises(LedgerIntegrityError, match=r"Nothing was written"):
        Ledger.open(ledger_path, site_id=SITE)
    report = Ledger.verify_file(ledger_path)
    with pytest.raises(LedgerIntegrityError, match=r"must verify before it is trusted; FAILED at seq 5"):
        report.raise_if_failed()


def test_entries_are_found_by_release_identity_and_run_in_seq_order(ledger):
    # A site checks "already charged?" at every request: SQLite filters, the answer is
    # exactly what a scan of the whole history would give.
    for i in range(6):
        r = reserve(ledger, query_id=f"q{i % 2}", run_id=f"run{i % 3}")
        if i == 4:
            ledger.abort(r, reason="nothing ran")
        else:
            ledger.commit(r)
    everything = ledger.entries(dataset=DATASET)
    for query_id in ("q0", "q1", "absent"):
        found = ledger.entries(dataset=DATASET, query_id=query_id)
        assert found == [e for e in everything if e.query_id == query_id]
    for run_id in ("run0", "run2"):
        found = ledger.entries(dataset=DATASET, run_id=run_id)
        assert found == [e for e in everything if e.run_id == run_id] and found
        assert [e.seq for e in found] == sorted(e.seq for e in found)
    assert ledger.entries(dataset="another", query_id="q0") == []
