"""A researcher on their own machine, as a real process: its own working folder and HOME,
with only what a researcher holds (the service URL, the coordinator's ca.crt, their key,
the public data dictionary). Used by test_study_service.py.

    python _researcher.py start  --url URL --project P   (prints the study id, then each event)
    python _researcher.py resume --url URL --study ID    (follows to the end, then result, model,
                                                          a query batch and the budget, into files)
Every line on stdout is JSON.
"""

from __future__ import annotations

import argparse
import json
import uuid
from datetime import timedelta
from pathlib import Path

HERE = Path.cwd()  # the researcher's working folder


def say(**data) -> None:
    print(json.dumps(data, default=str), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["start", "resume"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--project", default="")
    parser.add_argument("--study", default="")
    args = parser.parse_args()

    from workbench.service_client import ServiceClient

    client = ServiceClient(url=args.url, ca=HERE / "ca.crt", identity=HERE / "id_ed25519")
    if args.mode == "start":
        start(client, project=args.project)
    else:
        resume(client, study=args.study)


def start(client, *, project: str) -> None:
    from federation.data.dictionary import DataDictionary
    from federation.protocol.authorization import sign_study
    from federation.protocol.spec import TrainingSpec
    from federation.training.features import FeatureEncoder
    from workbench.researcher import researcher_signer

    signer = researcher_signer(key=HERE / "id_ed25519")
    dictionary = DataDictionary.load(HERE / "data_dictionary.json")
    encoder = FeatureEncoder.from_dictionary(dictionary=dictionary)
    spec = TrainingSpec(project=project, target_epsilon=1.0, rounds=2)
    authorization = sign_study(
        signer,
        project=project,
        run_id=spec.run_id,
        spec_config=spec.to_config(),
        encoder_json=encoder.to_json(),
        max_rounds=spec.rounds,
        expires_in=timedelta(hours=1),
    )
    study = client.start_study(
        spec_config=spec.to_config(),
        encoder_json=encoder.to_json(),
        authorization=authorization,
        site_timeout=120,
        timeout=600,
    )
    say(study=study, fingerprint=client.fingerprint)
    client.follow(study, on_event=lambda event: say(event=event))


def resume(client, *, study: str) -> None:
    import numpy as np
    import torch

    from federation.analytics.query import Query
    from federation.coordinator.query_file import answers_from_json
    from federation.data.dictionary import DataDictionary
    from federation.training.features import FeatureEncoder
    from workbench.analytics import QueryBuilder, signed_requests
    from workbench.researcher import researcher_signer

    end = client.follow(study, on_event=lambda event: say(event=event))
    result = client.result(study)
    (HERE / "result.json").write_text(json.dumps(result, default=str))
    weights = client.model_weights(study)
    np.savez(HERE / "weights.npz", **weights)
    model = client.model(study)
    torch.manual_seed(0)
    probe = torch.randn(32, FeatureEncoder.from_json(result["encoder"]).n_features)
    with torch.no_grad():
        np.save(HERE / "predictions.npy", model(probe).numpy())
    np.save(HERE / "probe.npy", probe.numpy())

    from federation.protocol.spec import TrainingSpec

    project = TrainingSpec.from_config(result["spec"]).project
    dictionary = DataDictionary.load(HERE / "data_dictionary.json")
    query: Query = QueryBuilder(dictionary=dictionary).count(by="site", epsilon=0.1, label="patients per site")
    requests = signed_requests(
        items=[query], project=project, run_id=uuid.uuid4().hex[:12], signer=researcher_signer(key=HERE / "id_ed25519")
    )
    answer = client.run_queries(requests)
    answers, _ = answers_from_json(answer)
    (HERE / "answers.json").write_text(json.dumps(answer, default=str))
    say(end=end, queries=[[reply.reply.status for reply in replies] for replies in answers], budget=client.receipts())


if __name__ == "__main__":
    main()
