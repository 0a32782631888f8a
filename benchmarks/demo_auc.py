"""The demo study's weighted held-out AUC over several seeds (issue 13's done-when figure).

``python -m benchmarks.demo_auc --seeds 1,2,3,4,5`` runs ``workbench demo``'s study (4
synthetic hospitals of about 5000 patients, epsilon 1 per hospital, 5 rounds, an MLP,
FedAvg) once per seed of the synthetic data, without the baselines, and prints one JSON
line per seed and the mean:

- ``weighted_auc``: the final model's AUC on each hospital's held-out rows, weighted by
  their number, computed by the simulation from the rows themselves (the same quantity
  the demo reported before issue 13, when hospitals sent exact metrics);
- ``dp_estimate``: the final round's AUC as the coordinator estimates it from the
  hospitals' noisy evaluation counts (pooled), and its standard deviation under the noise.

The DP noise is fresh OS entropy, so two runs of one seed differ; the mean over seeds is
the figure to compare, on one machine, in one session.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3,4,5", help="seeds of the synthetic hospitals, comma-separated")
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--evaluation-share", type=float, default=None, help="every hospital's [training] evaluation_share"
    )
    args = parser.parse_args()

    from workbench import settings
    from workbench.study import run_study

    settings.progress = False
    aucs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.monotonic()
            summary = run_study(
                data=None,
                out=Path(tmp),
                epsilon=args.epsilon,
                rounds=args.rounds,
                project=f"demo-auc-{seed}",
                seed=seed,
                baselines=False,
                echo=lambda _: None,
                site_policy=None if args.evaluation_share is None else {"evaluation_share": args.evaluation_share},
            )
        auc = summary["models"]["federated DP-SGD"]["weighted"]["auc"]
        aucs.append(auc)
        print(
            json.dumps(
                {
                    "seed": seed,
                    "weighted_auc": round(auc, 4),
                    "dp_estimate": summary.get("dp_estimate_final_round"),
                    "uncovered_releases": summary.get("uncovered_releases"),
                    "seconds": round(time.monotonic() - started, 1),
                }
            ),
            flush=True,
        )
    print(json.dumps({"mean_weighted_auc": round(sum(aucs) / len(aucs), 4), "seeds": len(aucs)}))


if __name__ == "__main__":
    main()
