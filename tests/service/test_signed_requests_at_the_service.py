"""What the service accepts, in process: only what the logged-in key signed, exactly as
signed, with a run id that can only name a folder of its own (attacks kept as tests)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from federation.analytics.query import Query
from federation.coordinator.study_service.errors import ServiceError
from federation.coordinator.study_service.signed_requests import checked_queries, checked_study
from federation.protocol.authorization import sign_queries, sign_study
from federation.protocol.spec import TrainingSpec
from federation.training.features import FeatureEncoder, FeatureSpec
from privacy_budgets.signatures import KeySigner, public_key_of

ENCODER = FeatureEncoder(target="y", features=(FeatureSpec("age", "numeric", 18.0, 95.0, 50.0),))


@pytest.fixture
def signer() -> KeySigner:
    return KeySigner(Ed25519PrivateKey.generate())


def _study(signer, *, run_id: str | None = None, rounds: int = 2) -> dict:
    spec = TrainingSpec(project="p", target_epsilon=1.0, rounds=rounds)
    config = {**spec.to_config(), **({"spec-run-id": run_id} if run_id else {})}
    run = config["spec-run-id"]
    authorization = sign_study(
        signer,
        project="p",
        run_id=run,
        spec_config=config,
        encoder_json=ENCODER.to_json(),
        max_rounds=rounds,
        expires_in=timedelta(minutes=5),
    )
    return {"spec": config, "encoder": ENCODER.to_json(), "authorization": authorization.to_json()}


def _batch(signer, *, run_id: str = "batch1") -> dict:
    query = Query(kind="count", by=("site",), epsilon=0.1)
    authorization = sign_queries(
        signer, project="p", run_id=run_id, canonical_queries=[query.canonical()], expires_in=timedelta(minutes=5)
    )
    return {
        "requests": [
            {"query": query.canonical(), "project": "p", "run_id": run_id, "authorization": authorization.to_json()}
        ]
    }


def test_a_study_signed_by_the_login_is_accepted_as_signed(signer):
    me = public_key_of(signer.key).fingerprint
    spec, config, encoder, authorization = checked_study(_study(signer), fingerprint=me)
    assert spec.rounds == 2 and config["spec-run-id"] == spec.run_id and encoder == ENCODER.to_json()
    assert authorization.document["task"]["max_rounds"] == 2


def test_another_key_a_changed_spec_and_a_path_as_run_id_are_refused(signer):
    me = public_key_of(signer.key).fingerprint
    with pytest.raises(ServiceError) as other:
        checked_study(_study(KeySigner(Ed25519PrivateKey.generate())), fingerprint=me)
    assert other.value.status == 403 and other.value.code == "not-your-signature"
    body = _study(signer)
    body["spec"]["spec-target-epsilon"] = 5.0
    with pytest.raises(ServiceError, match="exactly as it was signed") as changed:
        checked_study(body, fingerprint=me)
    assert "spec" in changed.value.value
    with pytest.raises(ServiceError, match="run.id (is|must be) 1 to 64 letters"):
        checked_study(_study(signer, run_id="../../etc"), fingerprint=me)
    with pytest.raises(ServiceError, match="run.id (is|must be) 1 to 64 letters"):
        checked_queries(_batch(signer, run_id="../outside"), fingerprint=me)


def test_a_batch_is_taken_only_as_signed(signer):
    me = public_key_of(signer.key).fingerprint
    (request,) = checked_queries(_batch(signer), fingerprint=me)
    assert request.run_id == "batch1" and request.project == "p" and request.authorization is not None
    body = _batch(signer)
    body["requests"][0]["query"] = Query(kind="count", by=("site",), epsilon=1.0).canonical()  # more epsilon
    with pytest.raises(ServiceError, match="exactly as it was signed"):
        checked_queries(body, fingerprint=me)
    body = _batch(signer)
    body["requests"][0]["project"] = "another"
    with pytest.raises(ServiceError, match="exactly as it was signed"):
        checked_queries(body, fingerprint=me)
