"""A researcher's notebook kernel as a real process, in the researcher's own folder (cwd):
``Workbench.connect(url=...)`` then ``train``; it prints the study's id as one JSON line
when the service started it, and is killed mid-study by test_backend_contract.py.

    python _killed_notebook.py --url URL --project P
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path.cwd()  # the researcher's working folder: ca.crt, id_ed25519, data_dictionary.json


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--project", required=True)
    args = parser.parse_args()

    from workbench.session import Workbench

    wb = Workbench.connect(
        url=args.url, identity=HERE / "id_ed25519", ca=HERE / "ca.crt", dictionary=HERE / "data_dictionary.json"
    )
    wb.train(
        target_epsilon=0.5,
        rounds=2,
        project=args.project,
        on_start=lambda study: print(json.dumps({"study": study}), flush=True),
    )
    print(json.dumps({"ended": True}), flush=True)  # never reached: the test kills this kernel first


if __name__ == "__main__":
    main()
