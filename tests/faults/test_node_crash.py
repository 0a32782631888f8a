"""A node that dies mid-round (the hospital's machine loses power): the study names it by
its site id while it waits and when it gives up, exits 3, and lists what each site was
charged; `node status` then says the node crashed (from the processes, not a file that
says "running"). Started again at once, a crashed node says on the terminal that the
coordinator refuses it for a while and for how long, then connects."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import time
from contextlib import closing

import pytest

from federation.processes import pid_alive
from federation.site.supernode import runtime_of

from ._faults_helpers import HEARTBEAT_SECONDS, Running

pytestmark = pytest.mark.slow


def _reservations(ledger_path, project: str) -> int:
    try:
        with closing(sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True, timeout=0.05)) as conn:
            query = "SELECT COUNT(*) FROM entries WHERE kind='reserve' AND project=?"
            return int(conn.execute(query, (project,)).fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def test_a_node_killed_mid_round_is_named_by_site_with_its_charges_and_restarts(running):
    site, other = "hospital_02", "hospital_01"
    project = "killed_midway"
    running.allocate(project)
    config = running.config(site)
    study = Running.start(*running.study_args(project=project, rounds=3, site_timeout=15, timeout=300))
    try:
        study.wait_for(r"^round 1/3", timeout=180)
        deadline = time.monotonic() + 60
        while _reservations(config.site_config().ledger_path, project) < 2:  # it began round 2
            assert time.monotonic() < deadline, "no round-2 reservation at the site"
            time.sleep(0.02)
        before = runtime_of(config)
        for pid in (before.supervisor, before.executor, before.supernode):  # power loss
            os.kill(pid, signal.SIGKILL)
        # A stalled study talks: it names the site it waits for (not a Flower node id).
        waiting = study.wait_for(rf"waiting \d+ s for (?:\S+ \(round \d \w+\), )?{site} \(round (\d) \w+\)", timeout=60)
        code, output = study.finish(timeout=120)
    finally:
        study.kill()
    assert code == 3, output
    stopped = next(line for line in output.splitlines() if line.startswith("STOPPED:"))
    failed = re.match(
        rf"STOPPED: Site {site} failed round (\d): site {site} did not answer (round (\d) (\w+)): ", stopped
    )
    assert failed, stopped
    # Killed once it began round 2: the step it never answered is round 2's training (or, if
    # its update got out first, a later one); the study names it with that step. A reply sent
    # just before the kill may be collected after a waiting line that named its step, so the
    # step it failed at is the one it waited on or a later one.
    step, server_round, task = failed.group(2), int(failed.group(3)), failed.group(4)
    assert int(failed.group(1)) == server_round >= int(waiting.group(1)) >= 2
    assert f"{site}" in stopped and not re.search(r"node -?\d", stopped)  # a site id, no Flower node id
    summary = json.loads((running.root / "out" / project / "summary.json").read_text())
    charges = {c["site"]: c for c in summary["charges"]}
    assert sorted(charges) == running.sites
    assert step in charges[site]["unconfirmed"]  # it may have spent on it: its ledger says
    confirmed = list(range(1, server_round + (task != "train")))
    assert charges[site]["rounds_charged"] == confirmed
    assert charges[other]["rounds_charged"] == list(range(1, server_round + 1))
    assert charges[other]["epsilon_project"] == pytest.approx(running.spent(other, project))
    assert running.spent(site, project) >= charges[site]["epsilon_project"] - 1e-9
    rounds = ", ".join(map(str, confirmed))
    assert re.search(
        rf"{site}: epsilon [\d.]+ for the project \(rounds charged: {rounds}\); NOT CONFIRMED: {step}", output
    ), output
    assert not any(pid_alive(p) for p in (before.supervisor, before.executor, before.supernode))

    status = running.node("status", site=site)
    assert status.returncode == 0
    assert re.search(
        r"node: crashed: it stopped without shutting down \(last seen alive \d\d:\d\d:\d\d\)", status.stdout
    )


def test_a_node_restarted_right_after_a_crash_says_how_long_the_coordinator_refuses_it(running):
    site = "hospital_01"
    config = running.config(site)
    before = runtime_of(config)
    assert before.state == "connected"
    for pid in (before.supervisor, before.executor, before.supernode):  # power loss
        os.kill(pid, signal.SIGKILL)
    status = running.node("status", site=site)
    assert re.search(r"node: crashed: it stopped without shutting down", status.stdout), status.stdout
    assert "running" not in status.stdout.split("node:")[1].split("\n")[0]

    started = time.monotonic()
    again = running.node("start", "--detach", site=site)
    assert again.returncode == 0, again.stdout + again.stderr
    # The SuperLink's refusal of the restarted node (it still holds the crashed session),
    # told on the terminal with how long it lasts: at most 2 heartbeats.
    refused = re.search(r"the coordinator refuses this node for now: .* retrying for up to (\d+) s more", again.stderr)
    assert refused, again.stderr
    assert 0 < int(refused.group(1)) <= 2 * HEARTBEAT_SECONDS + 15
    assert "connected to the coordinator" in again.stdout
    assert time.monotonic() - started < 2 * HEARTBEAT_SECONDS + 60
    assert runtime_of(config).state == "connected"
