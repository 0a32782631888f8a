"""The query handler for DP range finding (used when no data dictionary exists).

The site holds the request to its limits (columns it allows, noise within its noise
range), computes the cost itself from the noise it will add and the number of
columns, and releases only coarse grid edges through the one charged path.
"""

from __future__ import annotations

import json

import numpy as np
from flwr.app import ConfigRecord, Message, RecordDict

from federation.analytics.ranges import noisy_range, range_event
from federation.data.loader import parse_csv, parse_parquet, read_site_bytes
from federation.errors import InvalidRequest
from federation.protocol.replies import site_record
from federation.protocol.spec import SiteOwnedParameter, SpecError, TrainingSpec
from federation.site.charged_path import Charge, Ran, charged_release
from federation.site.config import NodePolicy
from federation.site.ledger_keys import open_site_ledger
from federation.site.site_config import SiteConfig
from federation.site.training_limits import check_range_request, read_columns


def _numeric_columns(site: SiteConfig, columns: list[str]) -> dict[str, np.ndarray]:
    content = read_site_bytes(path=site.data_path)
    parse = parse_parquet if site.data_path.suffix.lower() == ".parquet" else parse_csv
    frame = parse(path=site.data_path, content=content)
    import pandas as pd

    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"the study asks ranges of column(s) {', '.join(missing)}, which this site lacks.")
    return {c: pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float) for c in columns}


def handle_ranges(msg: Message, site: SiteConfig, policy: NodePolicy) -> Message:
    if "config" not in msg.content:
        raise InvalidRequest(
            "a range query carries a 'config' record.", public="a range query carries a 'config' record."
        )
    config = msg.content["config"]
    try:
        spec = TrainingSpec.from_config(config)
    except (SpecError, SiteOwnedParameter) as err:
        raise InvalidRequest(f"malformed range query: {err}", public=f"malformed range query: {err}") from None
    columns = check_range_request(columns=read_columns(config), noise_std=config.get("noise-std"), policy=policy)
    noise_std = float(config["noise-std"])
    event = range_event(noise_std=noise_std, n_columns=len(columns))

    def run() -> Ran:
        values = _numeric_columns(site, columns)
        return Ran(value={c: noisy_range(values=v, noise_std=noise_std) for c, v in values.items()})

    with open_site_ledger(site) as ledger:
        charged = charged_release(
            ledger=ledger,
            site=site,
            charge=Charge(
                project=spec.project,
                actor=spec.coordinator,
                event=event,
                purpose=f"DP range finding of {len(columns)} columns for feature scaling",
                run_id=spec.run_id,
                query_id=f"{spec.run_id}-ranges",
            ),
            run=run,
        )
    content = RecordDict(
        {
            "ranges": ConfigRecord({"ranges": json.dumps(charged.value)}),
            "site": site_record(site_id=site.site_id, receipts=charged.receipts),
        }
    )
    return Message(content=content, reply_to=msg)
