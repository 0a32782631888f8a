"""Shared fixtures for the datasets_synthetic tests: a tiny dictionary and file writers."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from federation.data.dictionary import ColumnSpec, DataDictionary

REPO_ROOT = Path(__file__).resolve().parents[2]


def uci_folder() -> Path:
    """$WORKBENCH_UCI_DIR, else <repo>/../shared/data/uci_heart_disease (may not exist)."""
    configured = os.environ.get("WORKBENCH_UCI_DIR")
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "data" / "uci_heart_disease"


@pytest.fixture
def real_uci_folder() -> Path:
    folder = uci_folder()
    if not (folder / "processed.cleveland.data").is_file():
        pytest.skip(
            f"UCI Heart Disease files not found at {folder}; set WORKBENCH_UCI_DIR to the folder "
            "holding processed.<centre>.data to run this test"
        )
    return folder


@pytest.fixture
def tiny_dictionary() -> DataDictionary:
    """One column per kind and policy the loader handles."""
    return DataDictionary(
        name="tiny",
        source="test ranges",
        columns=(
            ColumnSpec(name="age", kind="numeric", minimum=18, maximum=95, unit="years"),
            ColumnSpec(name="sex", kind="binary"),
            ColumnSpec(name="sbp", kind="numeric", minimum=80, maximum=220, unit="mmHg", out_of_range="clip"),
            ColumnSpec(
                name="chol", kind="numeric", minimum=100, maximum=650, missing="allowed", out_of_range="missing"
            ),
            ColumnSpec(name="ward", kind="categorical", categories=("a", "b")),
            ColumnSpec(name="cp", kind="categorical", categories=(1, 2, 3, 4), missing="allowed"),
            ColumnSpec(name="visits", kind="integer", minimum=0, maximum=10),
            ColumnSpec(name="outcome", kind="binary", role="target"),
        ),
    )


TINY_HEADER = "age,sex,sbp,chol,ward,cp,visits,outcome"
TINY_GOOD_ROWS = (
    "63,1,145,233,a,1,0,0",
    "67,0,160,?,b,4,3,1",
    "41.5,1,130,NA,a,,2,0",
    "55,0,120,NaN,b,2.0,10,1",
)


@pytest.fixture
def tiny_header() -> str:
    return TINY_HEADER


@pytest.fixture
def tiny_rows() -> list[str]:
    """Four valid data rows for tiny_dictionary (a fresh list per test)."""
    return list(TINY_GOOD_ROWS)


@pytest.fixture
def make_csv() -> Callable[..., Path]:
    """make_csv(path, rows=[...], header=...) writes a CSV file and returns its path."""

    def write(path: Path, *, rows: list[str], header: str = TINY_HEADER) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
        return path

    return write


@pytest.fixture
def edit_cell() -> Callable[..., list[str]]:
    """edit_cell(rows, row=3, column="age", value="forty"): a copy with one cell changed (row 1-based)."""

    def edit(rows: list[str], *, row: int, column: str, value: str, header: str = TINY_HEADER) -> list[str]:
        index = header.split(",").index(column)
        changed = list(rows)
        cells = changed[row - 1].split(",")
        cells[index] = value
        changed[row - 1] = ",".join(cells)
        return changed

    return edit
