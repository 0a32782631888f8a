"""The UCI Heart Disease data: four real hospitals as four sites.

Sites: cleveland, hungarian, switzerland, va, read from the UCI files
`processed.<site>.data` (comma-separated, no header, '?' = missing). The ranges
below are public clinical knowledge and the UCI coding manual, not the data.

The binary target `heart_disease` is derived as `num > 0` (any angiographic
narrowing > 50% in a major vessel); `num` itself (0-4) is kept with role
'outcome_detail', so it is never a feature.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

from federation.data.dictionary import ColumnSpec, DataDictionary
from federation.data.errors import DataValidationError
from federation.data.loader import (
    DICTIONARY_FILE,
    SiteData,
    check_field_counts,
    read_site_bytes,
    site_data_from_raw,
)
from federation.data.site_folder import write_site_folder
from federation.data.validation import RowConvention

if TYPE_CHECKING:
    import pandas as pd

UCI_SITES = ("cleveland", "hungarian", "switzerland", "va")
UCI_FILE_COLUMNS = (
    "age",
    "sex",
    "cp",
    "trestbps",
    "chol",
    "fbs",
    "restecg",
    "thalach",
    "exang",
    "oldpeak",
    "slope",
    "ca",
    "thal",
    "num",
)
UCI_DIR_VARIABLE = "WORKBENCH_UCI_DIR"

UCI_HEART_DISEASE_DICTIONARY = DataDictionary(
    name="uci_heart_disease",
    source=(
        "clinical plausibility ranges for adults and the UCI Heart Disease coding "
        "(Janosi et al. 1988, heart-disease.names); never read from the data"
    ),
    columns=(
        ColumnSpec(name="age", kind="numeric", minimum=18, maximum=100, unit="years", description="age"),
        ColumnSpec(name="sex", kind="binary", description="1 = male, 0 = female"),
        ColumnSpec(
            name="cp",
            kind="categorical",
            categories=(1, 2, 3, 4),
            description="chest pain: 1 typical angina, 2 atypical angina, 3 non-anginal pain, 4 asymptomatic",
        ),
        ColumnSpec(
            name="trestbps",
            kind="numeric",
            minimum=80,
            maximum=220,
            unit="mmHg",
            missing="allowed",
            out_of_range="missing",
            description="resting blood pressure on admission (0 in the files means not measured)",
        ),
        ColumnSpec(
            name="chol",
            kind="numeric",
            minimum=100,
            maximum=650,
            unit="mg/dL",
            missing="allowed",
            out_of_range="missing",
            description="serum cholesterol (0 in the Swiss file means not measured)",
        ),
        ColumnSpec(name="fbs", kind="binary", missing="allowed", description="fasting blood sugar > 120 mg/dL"),
        ColumnSpec(
            name="restecg",
            kind="categorical",
            categories=(0, 1, 2),
            missing="allowed",
            description="resting ECG: 0 normal, 1 ST-T wave abnormality, "
            "2 probable or definite left ventricular hypertrophy",
        ),
        ColumnSpec(
            name="thalach",
            kind="numeric",
            minimum=60,
            maximum=220,
            unit="bpm",
            missing="allowed",
            description="maximum heart rate achieved",
        ),
        ColumnSpec(name="exang", kind="binary", missing="allowed", description="exercise-induced angina"),
        ColumnSpec(
            name="oldpeak",
            kind="numeric",
            minimum=-3,
            maximum=7,
            unit="mm",
            missing="allowed",
            description="ST depression induced by exercise relative to rest",
        ),
        ColumnSpec(
            name="slope",
            kind="categorical",
            categories=(1, 2, 3),
            missing="allowed",
            description="slope of the peak exercise ST segment: 1 up, 2 flat, 3 down",
        ),
        ColumnSpec(
            name="ca",
            kind="integer",
            minimum=0,
            maximum=3,
            missing="allowed",
            description="number of major vessels coloured by fluoroscopy",
        ),
        ColumnSpec(
            name="thal",
            kind="categorical",
            categories=(3, 6, 7),
            missing="allowed",
            description="thallium scan: 3 normal, 6 fixed defect, 7 reversible defect",
        ),
        ColumnSpec(
            name="num",
            kind="integer",
            role="outcome_detail",
            minimum=0,
            maximum=4,
            description="angiographic disease grade, 0 = < 50% narrowing, 1-4 = > 50%",
        ),
        ColumnSpec(name="heart_disease", kind="binary", role="target", description="derived: 1 if num > 0, else 0"),
    ),
)


def default_uci_folder() -> Path:
    """$WORKBENCH_UCI_DIR, else <repository>/../shared/data/uci_heart_disease."""
    configured = os.environ.get(UCI_DIR_VARIABLE)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data" / "uci_heart_disease"


def load_uci_heart_disease(*, folder: Path | None = None) -> dict[str, SiteData]:
    """The four UCI hospitals, validated, keyed cleveland/hungarian/switzerland/va.

    folder defaults to default_uci_folder().
    """
    folder = Path(folder) if folder is not None else default_uci_folder()
    if not folder.is_dir():
        raise DataValidationError(
            f"{folder}: UCI Heart Disease folder not found; it should hold processed.cleveland.data, "
            f"processed.hungarian.data, processed.switzerland.data and processed.va.data. Pass "
            f"folder=... or set {UCI_DIR_VARIABLE}",
            file=folder,
        )
    return {site: _load_uci_file(path=folder / f"processed.{site}.data", site_id=site) for site in UCI_SITES}


def _load_uci_file(*, path: Path, site_id: str) -> SiteData:
    content = read_site_bytes(path=path)
    raw = _parse_headerless(path=path, content=content)
    # Derive the target as text, like the other cells; a bad `num` cell is reported by
    # the validator (num is checked before heart_disease) rather than here.
    import pandas as pd

    num = pd.to_numeric(raw["num"].str.strip(), errors="coerce")
    raw["heart_disease"] = [("" if pd.isna(v) else ("1" if v > 0 else "0")) for v in num]
    return site_data_from_raw(
        raw=raw,
        content=content,
        path=path,
        dictionary=UCI_HEART_DISEASE_DICTIONARY,
        rows=RowConvention(header_lines=0),
        site_id=site_id,
    )


def _parse_headerless(*, path: Path, content: bytes) -> pd.DataFrame:
    import pandas as pd

    try:
        text = content.decode("utf-8").rstrip() + "\n"
    except UnicodeDecodeError as error:
        raise DataValidationError(
            f"{path.name}: not readable as text (byte {error.start}); use the original UCI file",
            file=path,
        ) from None
    check_field_counts(path=path, text=text, expected=len(UCI_FILE_COLUMNS), rows=RowConvention(header_lines=0))
    return pd.read_csv(
        io.StringIO(text),
        header=None,
        names=list(UCI_FILE_COLUMNS),
        index_col=False,
        dtype=str,
        keep_default_na=False,
        na_filter=False,
        skip_blank_lines=False,
    )


def write_uci_sites(*, folder: Path | None = None, out: Path, overwrite: bool = False) -> Path:
    """Write the four UCI sites as `out/<site>.csv` (with header) + data_dictionary.json + README.md.

    The result is a per-site folder that `load_sites(folder=out)` reads. Values the
    dictionary turns into missing (e.g. chol = 0) are written as empty cells.
    """
    sites = load_uci_heart_disease(folder=folder)
    files = {
        f"{site_id}.csv": site.frame.to_csv(index=False, lineterminator="\n").encode("utf-8")
        for site_id, site in sites.items()
    }
    files[DICTIONARY_FILE] = UCI_HEART_DISEASE_DICTIONARY.to_json_text().encode("utf-8")
    files["README.md"] = _README.encode("utf-8")
    return write_site_folder(out=Path(out), files=files, overwrite=overwrite)


_README = f"""# UCI Heart Disease, one file per hospital

Converted by `datasets_synthetic.write_uci_sites` from the UCI `processed.<site>.data` files.

| file | hospital |
| --- | --- |
| cleveland.csv | Cleveland Clinic Foundation |
| hungarian.csv | Hungarian Institute of Cardiology, Budapest |
| switzerland.csv | University Hospitals of Zurich and Basel |
| va.csv | V.A. Medical Center, Long Beach |

Changes from the originals: a header row; `?` and values the data dictionary marks as
not real (e.g. cholesterol 0, blood pressure 0) are empty cells; an added target column
`heart_disease` = 1 if `num` > 0 else 0. `{DICTIONARY_FILE}` holds the public ranges.

Licence: Creative Commons Attribution 4.0 International (CC BY 4.0).
Cite: Janosi, A., Steinbrunn, W., Pfisterer, M., Detrano, R. (1988). Heart Disease.
UCI Machine Learning Repository. https://doi.org/10.24432/C52P4X
"""
