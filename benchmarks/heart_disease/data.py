"""Fed-Heart-Disease as FLamby prepares it, encoded with public constants only.

FLamby (du Terrail et al. 2022, ``flamby/datasets/fed_heart_disease``): per centre,
replace '?' by missing, drop columns slope, ca and thal, drop rows with a missing
value (740 rows: 303/261/46/130), target ``num > 0``, and split 0.66 train / 0.34
test with ``train_test_split(random_state=43)``, stratified on the target when each
class has more than two rows (Switzerland, with one healthy patient, is not).
The split is checked against FLamby's own figure: a majority-label baseline scores
0.721 average per-centre test accuracy on it.

Departure from FLamby, on purpose: no per-centre normalisation (it reads each
centre's raw mean and standard deviation, which no DP guarantee covers). Features
are scaled by the public ranges of the UCI data dictionary, and values the
dictionary marks as not measured (cholesterol 0, blood pressure 0) become missing
with an indicator, exactly as every workbench site encodes them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from datasets_synthetic.uci_heart_disease import UCI_HEART_DISEASE_DICTIONARY, UCI_SITES, load_uci_heart_disease
from federation.data.dictionary import ColumnSpec, DataDictionary
from federation.training.features import FeatureEncoder

DEFAULT_FOLDER = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "uci_heart_disease"
FLAMBY_DROPPED = ("slope", "ca", "thal")
FLAMBY_TRAIN_FRACTION = 0.66
FLAMBY_RANDOM_STATE = 43
SPLIT_COLUMN = "flamby_split"

FLAMBY_DICTIONARY = DataDictionary(
    name="fed_heart_disease",
    source=UCI_HEART_DISEASE_DICTIONARY.source + "; FLamby's columns and its fixed train/test split",
    columns=tuple(c for c in UCI_HEART_DISEASE_DICTIONARY.columns if c.name not in FLAMBY_DROPPED)
    + (
        ColumnSpec(
            name=SPLIT_COLUMN,
            kind="categorical",
            role="id",
            categories=("train", "test"),
            description="FLamby's fixed assignment of the row (0.66/0.34, random_state=43); never a feature",
        ),
    ),
)


class HeartDataMissing(FileNotFoundError):
    """The UCI folder is absent: the benchmark says so instead of failing obscurely."""


@dataclass(frozen=True)
class Centre:
    """One hospital: FLamby's rows (validated frame, public dictionary) and its split."""

    name: str
    frame: pd.DataFrame  # FLamby's kept rows, with SPLIT_COLUMN
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def with_train_test(self, *, train: np.ndarray, test: np.ndarray) -> Centre:
        """A centre whose train/test are the given rows of this centre's training set
        (validation splits for the hyperparameter search)."""
        return replace(
            self,
            x_train=self.x_train[train],
            y_train=self.y_train[train],
            x_test=self.x_train[test],
            y_test=self.y_train[test],
        )


def encoder() -> FeatureEncoder:
    """The study's public feature encoding (ranges from the UCI data dictionary)."""
    return FeatureEncoder.from_dictionary(dictionary=FLAMBY_DICTIONARY)


def check_folder(*, folder: Path) -> Path:
    """``folder`` if it holds the four UCI files; else HeartDataMissing saying what to do."""
    folder = Path(folder)
    missing = [f"processed.{s}.data" for s in UCI_SITES if not (folder / f"processed.{s}.data").is_file()]
    if missing:
        raise HeartDataMissing(
            f"UCI Heart Disease data not found in {folder} (missing {', '.join(missing)}). The "
            "heart-disease benchmark needs the four UCI files; pass --data FOLDER or put them in "
            f"{DEFAULT_FOLDER}."
        )
    return folder


def flamby_split(*, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FLamby's per-centre split of rows 0..n-1: (train, test) index arrays."""
    levels = np.unique(y)
    stratify = y if len(levels) > 1 and all((y == level).sum() > 2 for level in levels) else None
    train, test = train_test_split(
        np.arange(len(y)),
        test_size=1.0 - FLAMBY_TRAIN_FRACTION,
        train_size=FLAMBY_TRAIN_FRACTION,
        random_state=FLAMBY_RANDOM_STATE,
        stratify=stratify,
    )
    return np.sort(train), np.sort(test)


def _flamby_rows(path: Path) -> np.ndarray:
    """Positions of the rows FLamby keeps: no '?' in the 10 columns it uses or in num."""
    raw = pd.read_csv(path, header=None, dtype=str)
    kept = raw.drop(columns=[10, 11, 12]).replace("?", np.nan)
    return np.flatnonzero(kept.notna().all(axis=1).to_numpy())


def load_centres(*, folder: Path = DEFAULT_FOLDER) -> dict[str, Centre]:
    """The four centres, FLamby's rows and split, encoded with public constants."""
    folder = check_folder(folder=folder)
    sites = load_uci_heart_disease(folder=folder)
    enc = encoder()
    centres = {}
    for name in UCI_SITES:
        rows = _flamby_rows(folder / f"processed.{name}.data")
        frame = sites[name].frame.iloc[rows].drop(columns=list(FLAMBY_DROPPED)).reset_index(drop=True)
        y = enc.labels(frame)
        train, test = flamby_split(y=y)
        split = np.full(len(frame), "train", dtype=object)
        split[test] = "test"
        frame[SPLIT_COLUMN] = split
        x = enc.encode(frame)
        centres[name] = Centre(
            name=name, frame=frame, x_train=x[train], y_train=y[train], x_test=x[test], y_test=y[test]
        )
    return centres


def majority_baseline(*, centres: dict[str, Centre]) -> dict[str, float]:
    """Per-centre test accuracy of predicting the centre's majority training label."""
    return {name: float(np.mean(c.y_test == float(c.y_train.mean() >= 0.5))) for name, c in centres.items()}


def validation_folds(*, centres: dict[str, Centre], folds: int) -> list[dict[str, Centre]]:
    """``folds`` validation splits carved from each centre's TRAINING rows only (the
    test rows are never seen by the hyperparameter search): 0.66/0.34 like FLamby's."""
    out = []
    for k in range(folds):
        fold = {}
        for name, c in centres.items():
            train, val = train_test_split(
                np.arange(len(c.y_train)),
                test_size=0.34,
                random_state=1000 + k,
                stratify=c.y_train if min(np.bincount(c.y_train.astype(int), minlength=2)) > 2 else None,
            )
            fold[name] = c.with_train_test(train=train, test=val)
        out.append(fold)
    return out


def write_site_folder(*, centres: dict[str, Centre], out: Path) -> Path:
    """Each centre as a workbench site file (``<name>.csv`` with FLamby's split column)
    plus the study's data dictionary: what each simulated hospital reads."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, c in centres.items():
        c.frame.to_csv(out / f"{name}.csv", index=False, lineterminator="\n")
    (out / "data_dictionary.json").write_text(FLAMBY_DICTIONARY.to_json_text())
    return out
