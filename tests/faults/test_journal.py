"""What the coordinator says of a study whatever stopped it, from its journal of exchanges:
per site the rounds charged, the project's epsilon (the signed receipts), what was sent
without a reply; and, while it waits, which site is late and for how long. No process."""

from __future__ import annotations

import time

from federation.coordinator.run_folder import RunFolder, charges_from_exchanges
from workbench.progress import ProgressObserver, waiting_text


def _commit(seq: int, after: float) -> dict:
    return {"kind": "commit", "seq": seq, "epsilon": 0.4, "project_epsilon_after": after, "site_id": "x"}


def test_charges_list_rounds_epsilon_and_what_is_unconfirmed():
    journal = [
        {"event": "sent", "step": "round 1 train", "task": "train", "round": 1, "sites": ["a", "b"]},
        {
            "event": "reply",
            "step": "round 1 train",
            "task": "train",
            "round": 1,
            "site": "a",
            "receipts": [_commit(3, 0.4)],
        },
        {
            "event": "reply",
            "step": "round 1 train",
            "task": "train",
            "round": 1,
            "site": "b",
            "receipts": [_commit(5, 0.5)],
        },
        {"event": "sent", "step": "round 2 train", "task": "train", "round": 2, "sites": ["a", "b"]},
        {
            "event": "reply",
            "step": "round 2 train",
            "task": "train",
            "round": 2,
            "site": "a",
            "receipts": [_commit(6, 0.61)],
        },
        {"event": "no-reply", "step": "round 2 train", "task": "train", "round": 2, "site": "b", "reason": "..."},
    ]
    charges = {c.site: c for c in charges_from_exchanges(journal, sites=["a", "b", "c"])}
    assert charges["a"].rounds_charged == (1, 2) and charges["a"].epsilon_project == 0.61
    assert charges["a"].unconfirmed == ()
    assert charges["b"].rounds_charged == (1,) and charges["b"].epsilon_project == 0.5
    assert charges["b"].unconfirmed == ("round 2 train",)
    assert "NOT CONFIRMED: round 2 train" in charges["b"].line()
    assert charges["c"].line() == "c: nothing confirmed for the project (rounds charged: none)"


def test_a_refusal_charges_nothing(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.journal({"event": "sent", "step": "round 1 train", "task": "train", "round": 1, "sites": ["a"]})
    folder.journal({"event": "reply", "step": "round 1 train", "task": "train", "round": 1, "site": "a",
                    "status": "refused", "kind": "paused", "reason": "paused"})  # fmt: skip
    (charge,) = folder.charges(sites=["a"])
    assert charge.rounds_charged == () and charge.epsilon_project is None and charge.unconfirmed == ()


def test_the_waiting_line_names_each_late_site_and_for_how_long():
    snapshot = {"what": "reply", "since": 100.0, "sites": {"hospital_02": "round 2 train"}, "answered": ["hospital_01"]}
    assert waiting_text(snapshot, now=142.4) == "waiting 42 s for hospital_02 (round 2 train); answered: hospital_01"
    connecting = {"what": "connection", "since": 0.0, "sites": {"hospital_02": "to connect"}, "answered": []}
    assert waiting_text(connecting, now=5.0) == "waiting 5 s for hospital_02 to connect"
    assert waiting_text(None) == ""


def test_the_progress_bar_and_on_wait_say_who_is_late():
    said: list[str] = []
    observer = ProgressObserver(rounds=2, on_wait=said.append, wait_every=3600)
    fresh = {"what": "reply", "since": time.time(), "sites": {"hospital_02": "round 1 train"}, "answered": []}
    observer.waiting(fresh)  # a wait of a moment: on the bar, no line yet
    assert said == [] and "hospital_02" in observer.waiting_text
    snapshot = {"what": "reply", "since": 0.0, "sites": {"hospital_02": "round 1 train"}, "answered": []}
    observer.waiting(snapshot)
    observer.waiting(snapshot)  # the same sites: said once (then every wait_every seconds)
    assert len(said) == 1 and said[0].startswith("waiting ") and "hospital_02 (round 1 train)" in said[0]
    assert observer.waiting_text == said[0]
    observer.waiting(None)
    assert observer.waiting_text == ""
    observer.close()
