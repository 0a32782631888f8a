"""The query handler for DP range finding (used when no data dictionary exists).

The site computes the cost itself from the noise it will add and the number of
columns, reserves it, releases only coarse grid edges, and commits.
"""

from __future__ import annotations

import json

import numpy as np
from flwr.app import ConfigRecord, Message, RecordDict

from federation.analytics.ranges import noisy_range, range_event
from federation.data.loader import parse_csv, parse_parquet, read_site_bytes
from federation.errors import InternalFault, InvalidRequest
from federation.protocol.replies import refusal, site_record
from federation.protocol.spec import SpecError, TrainingSpec
from federation.site.request_cap import RequestCapExceeded, check_request_cap
from federation.site.site_config import SiteConfig
from privacy_budgets import BudgetExceeded, Ledger


def _numeric_columns(site: SiteConfig, columns: list[str]) -> dict[str, np.ndarray]:
    content = read_site_bytes(path=site.data_path)
    parse = parse_parquet if site.data_path.suffix.lower() == ".parquet" else parse_csv
    frame = parse(path=site.data_path, content=content)
    import pandas as pd

    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"the study asks ranges of column(s) {', '.join(missing)}, which this site lacks.")
    return {c: pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float) for c in columns}


def handle_ranges(msg: Message, site: SiteConfig) -> Message:
    config = msg.content["config"]
    try:
        spec = TrainingSpec.from_config(config)
        columns = list(json.loads(str(config["columns"])))
        noise_std = float(config["noise-std"])
    except (SpecError, KeyError, ValueError) as err:
        return refusal(msg, site_id=site.site_id, error=InvalidRequest(f"malformed range query: {err}"))
    if not columns or noise_std <= 0:
        return refusal(
            msg, site_id=site.site_id, error=InvalidRequest("a range query needs columns and positive noise.")
        )

    event = range_event(noise_std=noise_std, n_columns=len(columns))
    with Ledger.open(site.ledger_path, site_id=site.site_id) as ledger:
        try:
            check_request_cap(ledger=ledger, site=site, project=spec.project, event=event)
            reservation = ledger.reserve(
                dataset=site.dataset,
                project=spec.project,
                event=event,
                actor=spec.coordinator,
                purpose=f"DP range finding of {len(columns)} columns for feature scaling",
                run_id=spec.run_id,
                query_id=f"{spec.run_id}-ranges",
            )
        except (BudgetExceeded, RequestCapExceeded) as err:
            return refusal(msg, site_id=site.site_id, error=err)
        try:
            values = _numeric_columns(site, columns)
        except Exception as err:
            ledger.abort(reservation, reason=f"range query failed before any release: {err!r}")
            return refusal(msg, site_id=site.site_id, error=InternalFault(str(err)))
        rng = np.random.default_rng()  # fresh OS entropy: predictable noise is no noise
        ranges = {c: noisy_range(values=v, noise_std=noise_std, rng=rng) for c, v in values.items()}
        entry = ledger.commit(reservation)
        receipt = ledger.receipt(entry).to_dict()
    content = RecordDict(
        {
            "ranges": ConfigRecord({"ranges": json.dumps(ranges)}),
            "site": site_record(site_id=site.site_id, receipts=[receipt]),
        }
    )
    return Message(content=content, reply_to=msg)
