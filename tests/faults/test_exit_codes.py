"""One exit-code table for every command (federation/cli_support.py EXIT_CODES, in the
README), and no traceback for an expected failure: a study stopped by a paused site, a
study every site refused, a coordinator that does not run, bad input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from federation.cli_support import (
    EXIT_BAD_INPUT,
    EXIT_CODES,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    exit_code_for,
)
from federation.errors import BadInput, Cancelled, InternalFault, PartyFailed, PolicyRefused
from federation.site.pause import pause_node, resume_node

from ._faults_helpers import workbench

ROOT = Path(__file__).resolve().parents[2]


def test_the_table_is_the_readme_s_and_the_ledger_package_s():
    readme = (ROOT / "README.md").read_text()
    for code, meaning in EXIT_CODES.items():
        assert re.search(rf"\| {code} \| ", readme), f"README lacks exit code {code} ({meaning})"
    from privacy_budgets import cli as budget_cli

    assert (budget_cli.EXIT_REFUSED, budget_cli.EXIT_BAD_INPUT, budget_cli.EXIT_BROKEN_RECORD) == (
        EXIT_REFUSED,
        EXIT_BAD_INPUT,
        EXIT_INTERNAL,
    )


def test_each_kind_of_error_has_its_code():
    from privacy_budgets.errors import LedgerIntegrityError, LedgerUnavailable

    assert exit_code_for(PolicyRefused("no")) == EXIT_REFUSED
    assert exit_code_for(BadInput("x")) == EXIT_BAD_INPUT
    assert exit_code_for(LedgerUnavailable("disk full")) == EXIT_BAD_INPUT
    assert exit_code_for(PartyFailed("gone")) == EXIT_UNREACHABLE
    assert exit_code_for(InternalFault("bug")) == EXIT_INTERNAL
    assert exit_code_for(LedgerIntegrityError("edited")) == EXIT_INTERNAL
    assert exit_code_for(Cancelled("stop")) == EXIT_INTERRUPTED
    assert exit_code_for(KeyboardInterrupt()) == EXIT_INTERRUPTED


def test_bad_study_timeouts_are_bad_input(tmp_path):
    done = workbench(
        "study", "--coordinator", str(tmp_path), "--epsilon", "1", "--out", str(tmp_path / "o"),
        "--site-timeout", "900", "--timeout", "60",
    )  # fmt: skip
    assert done.returncode == EXIT_BAD_INPUT and "--site-timeout must be" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_a_coordinator_that_does_not_run_is_an_unreachable_party(tmp_path):
    folder = tmp_path / "coordinator"
    assert workbench("coordinator", "init", "--address", "127.0.0.1:1", "--folder", str(folder)).returncode == 0
    (tmp_path / "dd.json").write_text("{}")
    done = workbench(
        "study", "--coordinator", str(folder), "--dictionary", str(tmp_path / "dd.json"), "--epsilon", "1",
        "--out", str(tmp_path / "o"),
    )  # fmt: skip
    assert done.returncode == EXIT_UNREACHABLE, done.stderr
    assert "is not running; start it with `workbench coordinator start --folder" in done.stderr
    assert "Traceback" not in done.stderr
    register = workbench(
        "coordinator", "register-node", str(tmp_path / "dd.json"), "--name", "a", "--folder", str(folder)
    )
    assert register.returncode == EXIT_BAD_INPUT and "not an OpenSSH public key" in register.stderr


@pytest.mark.slow
def test_a_study_every_site_refuses_exits_1_without_a_traceback(running):
    # hospital_02 paused, and the project allocated (and approved) nowhere: each site refuses round 1.
    state = running.config("hospital_02").state_dir
    pause_node(state_dir=state, reason="maintenance window", who="site IT")
    try:
        refused = workbench(*running.study_args(project="never_allocated"))
    finally:
        resume_node(state_dir=state)
    said = refused.stdout + refused.stderr
    assert refused.returncode == EXIT_REFUSED, said
    assert "error: No hospital trained the model" in refused.stderr
    # the paused site says so; who paused it and why stay at the site
    assert "Site hospital_02 refused round 1" in said and "is paused by its IT" in said
    assert "maintenance window" not in said
    assert "approved for the project" in said  # the same words for an unknown project and an unknown key
    assert "Traceback" not in said


@pytest.mark.parametrize(("stop_kind", "code"), [("", 0), ("refused", EXIT_REFUSED), ("failed", EXIT_UNREACHABLE)])
def test_a_study_stopped_early_exits_with_the_kind_of_its_stop(stop_kind, code):
    """A study that ran some rounds, then stopped: 1 when a site refused (a paused site
    included: it exited 0 before), 3 when a site failed."""
    import typer

    from workbench.cli import _run

    def study(**_):
        return {"stop_kind": stop_kind}

    if not code:
        _run(study)
        return
    with pytest.raises(typer.Exit) as stopped:
        _run(study)
    assert stopped.value.exit_code == code
