"""Issue 15's service over real processes on loopback: a SuperLink with TLS and node
authentication, two hospital nodes that serve only signed requests, and the study service
(uvicorn, HTTPS from the coordinator's CA) as its own process. A researcher works from a
folder of their own (its own HOME; only the URL, ca.crt, their key and the public data
dictionary), in real subprocesses: one starts a 2-round study and is killed mid-study, the
operator restarts the service, and a second follows the same study to its end, fetches the result and the model and runs a
query batch. The model evaluates exactly like the coordinator's copy, every site's audit
log names the researcher, and nobody else (another researcher, a client without a login)
gets anything of it.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from federation.coordinator.certificates import create_tls_files
from federation.coordinator.run_folder import RunFolder
from federation.coordinator.study_service.audit_log import verify_log
from federation.coordinator.study_service.process import (
    ServiceFiles,
    service_url,
    start_service,
    stop_service,
)
from federation.engines.loopback import RESEARCHER, LoopbackFederation, build_loopback_federation
from federation.processes import engine_env, free_port
from federation.site.audit import audit_path, recent_entries
from privacy_budgets.signatures import SshPublicKey, generate_key_pair
from workbench.service_client import CertificateMismatch, NotYours, ServiceClient, ServiceRefused, ServiceUnreachable

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
PROJECT = "remote"
TOKEN_TTL = 6  # seconds: short, so that following a study needs the client's one re-login
SERVICE_OPTIONS = {"token_ttl": TOKEN_TTL, "head_every": 5}


@dataclass
class Setup:
    fed: LoopbackFederation
    url: str
    researcher: Path  # the researcher's own working folder (also its HOME)
    fingerprint: str


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Setup:
    root = tmp_path_factory.mktemp("service")
    fed = build_loopback_federation(root=root / "federation", sites=2, rows=200)
    fed.heartbeat_seconds = 10
    try:
        fed.start()
        start_service(fed.coordinator, options=SERVICE_OPTIONS)
        # What the researcher holds, and nothing else of the coordinator's disk.
        home = root / "researcher-laptop"
        home.mkdir()
        shutil.copy(fed.coordinator.tls.ca_certificate, home / "ca.crt")
        shutil.copy(fed.dictionary_path, home / "data_dictionary.json")
        for suffix in ("", ".pub"):
            shutil.copy(f"{fed.researcher_key}{suffix}", home / f"id_ed25519{suffix}")
        os.chmod(home / "id_ed25519", 0o600)
        fed.allocate(project=PROJECT, epsilon=2.0)
        yield Setup(
            fed=fed,
            url=service_url(fed.coordinator),
            researcher=home,
            fingerprint=SshPublicKey.load(home / "id_ed25519.pub").fingerprint,
        )
    finally:
        stop_service(fed.coordinator)
        fed.stop()


class Researcher:
    """``_researcher.py`` in the researcher's folder; its JSON lines as they come."""

    def __init__(self, setup: Setup, *args: str) -> None:
        env = {**engine_env(), "HOME": str(setup.researcher)}
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "_researcher.py"), *args, "--url", setup.url],
            cwd=setup.researcher,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(json.loads(line))

    def wait_for(self, test, *, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                item = self.lines.get(timeout=1.0)
            except queue.Empty:
                if self.process.poll() is None and time.monotonic() < deadline:
                    continue
                seen = [item.get("event", {}).get("kind", item) for item in self.seen]
                raise AssertionError(f"nothing matched within {timeout} s; seen {seen}; {self.stderr()}") from None
            self.seen.append(item)
            if test(item):
                return item

    def stderr(self) -> str:
        if self.process.poll() is None:
            return "(still running)"
        return self.process.stderr.read()[-3000:]


@pytest.fixture(scope="module")
def remote_study(setup) -> dict:
    """A study started by one researcher process, that process killed mid-study, the
    service restarted, and the study followed to its end by a second process (result,
    model, a query batch)."""
    first = Researcher(setup, "start", "--project", PROJECT)
    try:
        started = first.wait_for(lambda item: "study" in item, timeout=120)
        first.wait_for(lambda item: item.get("event", {}).get("kind") == "started", timeout=60)
    finally:
        first.process.kill()  # the researcher's laptop goes away mid-study
        first.process.wait(timeout=30)
    folder = RunFolder(setup.fed.coordinator.runs_dir / started["study"])
    ended_before_the_kill = folder.outcome() is not None
    # The coordinator's operator restarts the service meanwhile: it follows the study again.
    stop_service(setup.fed.coordinator)
    start_service(setup.fed.coordinator, options=SERVICE_OPTIONS)
    killed_after = [item["event"] for item in first.seen if "event" in item]
    second = Researcher(setup, "resume", "--study", started["study"])
    done = second.wait_for(lambda item: "end" in item, timeout=600)
    assert second.process.wait(timeout=60) == 0, second.stderr()
    return {
        "study": started["study"],
        "fingerprint": started["fingerprint"],
        "killed_after": killed_after,
        "ended_before_the_kill": ended_before_the_kill,
        "resumed": [item["event"] for item in second.seen if "event" in item],
        "done": done,
    }


def test_a_researcher_elsewhere_trains_through_the_service_and_the_model_comes_back(setup, remote_study):
    fed, home, study = setup.fed, setup.researcher, remote_study["study"]
    assert remote_study["fingerprint"] == setup.fingerprint
    # Killed before any round ended, the service restarted: the study went on, the service
    # followed it again, and the reconnect saw all of it, each event once.
    assert not remote_study["ended_before_the_kill"]
    assert [e["kind"] for e in remote_study["killed_after"]] == ["started"]
    resumed = remote_study["resumed"]
    assert [e["seq"] for e in resumed] == list(range(1, len(resumed) + 1))
    assert [e["report"]["round"] for e in resumed if e["kind"] == "round"] == [1, 2]
    end = remote_study["done"]["end"]
    assert end["status"] == "finished" and end["stopped_reason"] == "" and end["model"] is True

    result = json.loads((home / "result.json").read_text())
    assert result["status"] == "finished" and len(result["rounds"]) == 2
    assert {c["site"] for c in result["charges"]} == set(fed.sites)
    assert all(c["rounds_charged"] == [1, 2] for c in result["charges"])

    # The weights are the coordinator's, and the rebuilt module evaluates like its copy.
    coordinator_copy = torch.load(fed.coordinator.runs_dir / study / "model.pt", weights_only=True)
    with np.load(home / "weights.npz", allow_pickle=False) as weights:
        assert sorted(weights.files) == sorted(coordinator_copy)
        for name, tensor in coordinator_copy.items():
            np.testing.assert_array_equal(weights[name], tensor.numpy())
    from federation.protocol.spec import TrainingSpec
    from federation.training.features import FeatureEncoder
    from federation.training.models import build_model

    spec = TrainingSpec.from_config(result["spec"])
    model = build_model(
        name=spec.model, n_features=FeatureEncoder.from_json(result["encoder"]).n_features, hidden=spec.hidden
    )
    model.load_state_dict(coordinator_copy)
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(np.load(home / "probe.npy"))).numpy()
    np.testing.assert_array_equal(np.load(home / "predictions.npy"), expected)

    # The query batch went through the service too, and every site answered it.
    assert remote_study["done"]["queries"] == [["ok", "ok"]]
    assert {r["project"] for r in remote_study["done"]["budget"]} == {PROJECT}

    # Every site's audit log names the researcher, for the study and for the batch.
    for site in fed.sites:
        lines = [
            e
            for e in recent_entries(path=audit_path(fed.node_config(site).state_dir), limit=500)
            if e["kind"] == "request" and e.get("project") == PROJECT
        ]
        assert sorted(e["task"] for e in lines) == sorted(["train", "evaluate", "train", "evaluate", "query:count"])
        assert {e["researcher"]["name"] for e in lines} == {RESEARCHER}
        assert {e["researcher"]["key"] for e in lines} == {setup.fingerprint}
        assert all(e["decision"]["outcome"] == "served" for e in lines)


def test_another_researcher_and_a_client_without_a_login_get_nothing(setup, remote_study, tmp_path):
    study = remote_study["study"]
    generate_key_pair(path=tmp_path / "other", passphrase=None, comment="another researcher")
    other = ServiceClient(url=setup.url, ca=setup.researcher / "ca.crt", identity=tmp_path / "other")
    for fetch in (other.result, other.model_weights, other.events, other.cancel):
        with pytest.raises(NotYours, match="no study .* of yours"):
            fetch(study)
    assert other.receipts() == []  # the mirror of receipts holds none of another's projects
    assert other.sites()["site"].tolist() == setup.fed.sites

    context = ssl.create_default_context(cafile=str(setup.researcher / "ca.crt"))
    for path in (f"/studies/{study}/result", f"/studies/{study}/model", f"/studies/{study}/events", "/budget"):
        answer = httpx.get(setup.url + path, verify=context)
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "login-required"
        assert set(answer.json()["error"]) == {"code", "rule", "value", "fix"}
    forged = httpx.get(setup.url + f"/studies/{study}/model", verify=context, headers={"Authorization": "Bearer x"})
    assert forged.status_code == 401
    huge = httpx.post(setup.url + "/studies", verify=context, content=b"{" + b" " * (2 << 20) + b"}")
    assert huge.status_code == 413 and huge.json()["error"]["rule"] == "a request body is at most 1048576 bytes"


def test_a_request_signed_by_another_key_than_the_login_is_refused_and_nothing_starts(setup, tmp_path):
    from datetime import timedelta

    from federation.data.dictionary import DataDictionary
    from federation.protocol.authorization import sign_study
    from federation.protocol.spec import TrainingSpec
    from federation.training.features import FeatureEncoder
    from workbench.researcher import researcher_signer

    generate_key_pair(path=tmp_path / "intruder", passphrase=None, comment="intruder")
    intruder = ServiceClient(url=setup.url, ca=setup.researcher / "ca.crt", identity=tmp_path / "intruder")
    encoder = FeatureEncoder.from_dictionary(dictionary=DataDictionary.load(setup.researcher / "data_dictionary.json"))
    spec = TrainingSpec(project=PROJECT, target_epsilon=1.0, rounds=1)
    signed_by_the_researcher = sign_study(
        researcher_signer(key=setup.researcher / "id_ed25519"),
        project=PROJECT,
        run_id=spec.run_id,
        spec_config=spec.to_config(),
        encoder_json=encoder.to_json(),
        max_rounds=1,
        expires_in=timedelta(minutes=10),
    )
    with pytest.raises(ServiceRefused, match="only requests signed by the researcher who logged in") as refused:
        intruder.start_study(
            spec_config=spec.to_config(), encoder_json=encoder.to_json(), authorization=signed_by_the_researcher
        )
    assert refused.value.status == 403 and refused.value.code == "not-your-signature"
    # A spec changed after signing is refused too, by the researcher's own login.
    owner = ServiceClient(url=setup.url, ca=setup.researcher / "ca.crt", identity=setup.researcher / "id_ed25519")
    changed = {**spec.to_config(), "spec-rounds": 5}
    with pytest.raises(ServiceRefused, match="exactly as it was signed"):
        owner.start_study(spec_config=changed, encoder_json=encoder.to_json(), authorization=signed_by_the_researcher)
    assert not (setup.fed.coordinator.runs_dir / spec.run_id).exists()


def test_a_wrong_ca_and_a_service_that_is_down_are_clear_errors(setup, tmp_path):
    create_tls_files(folder=tmp_path / "elsewhere", hosts=["127.0.0.1"])
    key = setup.researcher / "id_ed25519"
    with pytest.raises(CertificateMismatch, match="did not issue .* Fix: check the URL, and use the coordinator's own"):
        ServiceClient(url=setup.url, ca=tmp_path / "elsewhere" / "ca.crt", identity=key).login()
    down = f"https://127.0.0.1:{free_port()}"
    with pytest.raises(ServiceUnreachable, match="does not answer .*workbench coordinator start"):
        ServiceClient(url=down, ca=setup.researcher / "ca.crt", identity=key).login()
    with pytest.raises(ServiceRefused, match="HTTPS only"):
        ServiceClient(url=setup.url.replace("https", "http"), ca=setup.researcher / "ca.crt", identity=key)


def test_the_service_log_names_who_asked_for_what_and_its_signed_heads_verify(setup, remote_study):
    files = ServiceFiles(setup.fed.coordinator.folder)
    heads = verify_log(path=files.audit_log, certificate=files.certificate)
    reasons = [h["reason"] for h in heads]
    assert reasons.count("service started") == 2 and "every 5 lines" in reasons  # started, and restarted
    lines = [json.loads(line) for line in files.audit_log.read_text().splitlines()]
    mine = [e for e in lines if e.get("who") == setup.fingerprint]
    actions = [e["action"] for e in mine]
    assert "start_study" in actions and "queries" in actions and "result" in actions and "model" in actions
    assert actions[actions.index("start_study") :].count("login") >= 1, actions  # the resuming process
    started = next(e for e in mine if e["action"] == "start_study")
    assert started["detail"] == {"study": remote_study["study"], "project": PROJECT}

    # A changed line breaks the chain, and the check says where.
    from federation.coordinator.study_service.audit_log import AuditLogBroken

    copy = files.audit_log.with_name("tampered.jsonl")
    tampered = [json.loads(line) for line in files.audit_log.read_text().splitlines()]
    tampered[2]["who"] = "someone else"
    copy.write_text("".join(json.dumps(e) + "\n" for e in tampered))
    with pytest.raises(AuditLogBroken, match="line 3 breaks the hash chain"):
        verify_log(path=copy, certificate=files.certificate)

    # A session that is gone (sessions live in the service's memory: a restart ends them all,
    # as expiry does) is taken up again by the client's own second login, without a sleep.
    client = ServiceClient(url=setup.url, ca=setup.researcher / "ca.crt", identity=setup.researcher / "id_ed25519")
    client.login()
    stop_service(setup.fed.coordinator)
    start_service(setup.fed.coordinator, options=SERVICE_OPTIONS)
    assert set(client.sites()["site"]) == set(setup.fed.sites)
    heads = verify_log(path=files.audit_log, certificate=files.certificate)
    assert [h["reason"] for h in heads].count("service started") == 3
    after = [json.loads(line) for line in files.audit_log.read_text().splitlines()][len(lines) :]
    assert [e["action"] for e in after if e.get("who") == setup.fingerprint] == ["login", "login"]  # one was ours


def test_coordinator_status_shows_the_study_service(setup):
    done = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "coordinator", "status", "--folder", str(setup.fed.coordinator.folder)],
        capture_output=True,
        text=True,
        timeout=120,
        env=engine_env(),
    )
    assert done.returncode == 0, done.stderr
    assert f"study service {setup.url}: running (PID" in done.stdout
