"""Workbench.connect's arguments, and what a back end lacks, said once: no engine starts.

A coordinator folder made by ``Coordinator.init`` (nothing running) is enough to see the
refusals: connect refuses a stopped SuperLink, and a Workbench on the coordinator-folder
back end refuses the calls that need every site's rows or ledger with the one sentence of
``workbench.backends.base.ABSENT``.
"""

from __future__ import annotations

import pytest

from federation.coordinator.superlink import Coordinator, CoordinatorUnreachable
from federation.processes import free_port
from workbench.backends.base import ABSENT, FOLLOW, LEDGERS, NEEDS, PLAN_TRAINING, SITE_DATA, TUNING, Backend
from workbench.backends.coordinator_folder import CoordinatorFolderBackend
from workbench.errors import NotAvailable
from workbench.planning import PlanWithoutSizes
from workbench.session import Workbench


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return Coordinator.init(folder=tmp_path_factory.mktemp("coordinator"), address=f"127.0.0.1:{free_port()}")


def test_connect_takes_exactly_one_place(folder):
    with pytest.raises(ValueError, match="exactly one of coordinator=FOLDER"):
        Workbench.connect()
    with pytest.raises(ValueError, match="exactly one of coordinator=FOLDER"):
        Workbench.connect(coordinator=folder.folder, url="https://127.0.0.1:9")
    with pytest.raises(TypeError):
        Workbench.connect(folder.folder)  # keyword-only
    with pytest.raises(ValueError, match="ca= checks a study service's certificate, so it goes with url="):
        Workbench.connect(coordinator=folder.folder, ca="ca.crt")


def test_a_stopped_coordinator_is_refused_with_the_command_that_starts_it(folder):
    with pytest.raises(CoordinatorUnreachable, match="workbench coordinator start --folder"):
        Workbench.connect(coordinator=folder.folder)


def test_a_study_service_url_needs_a_key_and_the_coordinators_ca_and_says_when_it_is_down(tmp_path):
    from federation.coordinator.certificates import create_tls_files
    from privacy_budgets.signatures import generate_key_pair
    from workbench.service_client import CertificateMismatch, ServiceUnreachable

    down = f"https://127.0.0.1:{free_port()}"
    with pytest.raises(ValueError, match="got identity=None. Fix: pass identity="):
        Workbench.connect(url=down, ca="ca.crt")
    with pytest.raises(ValueError, match="got ca=None. Fix: pass ca='ca.crt'"):
        Workbench.connect(url=down, identity="key")
    with pytest.raises(CertificateMismatch, match="no file at .*Fix: ask the coordinator's operator for ca.crt"):
        Workbench.connect(url=down, identity="key", ca=tmp_path / "missing.crt")
    create_tls_files(folder=tmp_path / "tls", hosts=["127.0.0.1"])
    generate_key_pair(path=tmp_path / "id_ed25519", passphrase=None, comment="researcher")
    with pytest.raises(ServiceUnreachable, match="does not answer .*workbench coordinator start"):
        Workbench.connect(url=down, identity=tmp_path / "id_ed25519", ca=tmp_path / "tls" / "ca.crt")


def test_what_needs_the_sites_rows_or_ledgers_is_absent_and_refused_once(folder):
    wb = Workbench(backend=CoordinatorFolderBackend(coordinator=folder, dictionary=None))
    assert isinstance(wb.backend, Backend)
    missing = {LEDGERS, SITE_DATA, TUNING, FOLLOW}
    assert not missing & wb.capabilities
    calls = {
        "report": wb.report,
        "ledger": lambda: wb.ledger("hospital_01"),
        "approvals": wb.approvals,
        "allocate": lambda: wb.allocate(project="p", epsilon=1.0),
        "site_configs": wb.site_configs,
        "plan_tuning": lambda: wb.plan_tuning(candidates=[{}], target_epsilon=1.0, rounds=2, project="p"),
        "tune": lambda: wb.tune(candidates=[{}], target_epsilon=1.0, rounds=2, project="p"),
        "tune_locally": lambda: wb.tune_locally(candidates=[{}], target_epsilon=1.0, rounds=2, project="p"),
        # A folder's run stops once no notebook follows it: nothing to come back to later.
        "studies": wb.studies,
        "follow": lambda: wb.follow(study="abc"),
    }
    assert set(calls) | {"plan_training", "held_out_metrics", "local_arrays"} == set(NEEDS)
    for method, call in calls.items():
        with pytest.raises(NotAvailable) as refused:
            call()
        said = str(refused.value)
        assert said.startswith(f"wb.{method}() is not available on the coordinator at {folder.address}"), said
        assert ABSENT[NEEDS[method]] in said
    assert not hasattr(wb.backend, "plan_training") and not hasattr(wb.backend, "site_configs")


def test_a_study_that_nobody_follows_stops_after_the_coordinators_own_default():
    from federation.coordinator.study_runs import UNFOLLOWED_AFTER_SECONDS
    from workbench.backends.base import RunOptions

    assert RunOptions().unfollowed_after == UNFOLLOWED_AFTER_SECONDS


def test_a_coordinator_plans_from_noisy_counts_only_and_never_asks_for_one(folder):
    wb = Workbench(backend=CoordinatorFolderBackend(coordinator=folder, dictionary=None))
    assert PLAN_TRAINING in wb.capabilities
    with pytest.raises(PlanWithoutSizes, match=r"has none yet: a count is a release .*Fix: wb.describe\("):
        wb.plan_training(target_epsilon=1.0, rounds=2)
    plan = wb.plan_training(target_epsilon=1.0, rounds=2, sizes={"hospital_01": 400.0, "hospital_02": float("nan")})
    rows = plan.per_site.set_index("site")
    assert rows.loc["hospital_01", "train_rows"] == 300  # 400 less the default held-out quarter
    assert rows.loc["hospital_01", "fits"] and 0 < rows.loc["hospital_01", "project_total_after"] <= 1.0 + 1e-9
    assert not rows.loc["hospital_02", "fits"]  # a suppressed count: nothing to plan from
    assert rows["cap"].isna().all()  # only the site's ledger knows its cap
    assert "ESTIMATE from noisy counts" in plan.basis and "refuses what does not fit" in plan.basis
    assert plan.basis in repr(plan)
