"""A DataFrame as a markdown table (pandas' own needs tabulate, not installed here)."""

from __future__ import annotations

import math

import pandas as pd


def _cell(value, floatfmt: str) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else format(value, floatfmt)
    return str(value)


def markdown(frame: pd.DataFrame, *, index: bool = True, floatfmt: str = ".2f") -> str:
    """``frame`` as a GitHub markdown table; floats formatted with ``floatfmt``."""
    head = ([frame.index.name or ""] if index else []) + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for label, row in frame.iterrows():
        cells = ([str(label)] if index else []) + [_cell(v, floatfmt) for v in row.tolist()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
