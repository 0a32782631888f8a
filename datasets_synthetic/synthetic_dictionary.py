"""The data dictionary of the synthetic hospitals (public, clinically plausible ranges)."""

from __future__ import annotations

from federation.data.dictionary import ColumnSpec, DataDictionary

FOLLOWUP_DAYS = 1825  # five years of follow-up, the administrative censoring time

SYNTHETIC_HOSPITALS_DICTIONARY = DataDictionary(
    name="synthetic_hospitals",
    source=(
        "clinically plausible adult ranges (public knowledge, not read from any data); "
        "the generator clips every value to them"
    ),
    columns=(
        ColumnSpec(
            name="age",
            kind="numeric",
            minimum=18,
            maximum=95,
            unit="years",
            description="age at admission, whole years",
        ),
        ColumnSpec(name="sex", kind="binary", description="1 = male, 0 = female"),
        ColumnSpec(
            name="systolic_bp",
            kind="numeric",
            minimum=80,
            maximum=220,
            unit="mmHg",
            description="systolic blood pressure at admission",
        ),
        ColumnSpec(
            name="cholesterol",
            kind="numeric",
            minimum=100,
            maximum=400,
            unit="mg/dL",
            description="total serum cholesterol",
        ),
        ColumnSpec(name="bmi", kind="numeric", minimum=15, maximum=55, unit="kg/m²", description="body-mass index"),
        ColumnSpec(name="diabetes", kind="binary", description="1 = diagnosed diabetes"),
        ColumnSpec(name="smoker", kind="binary", description="1 = current smoker"),
        ColumnSpec(
            name="heart_rate",
            kind="integer",
            minimum=40,
            maximum=180,
            unit="bpm",
            description="resting heart rate at admission",
        ),
        ColumnSpec(
            name="admission_type",
            kind="categorical",
            categories=("elective", "emergency", "transfer"),
            description="how the patient was admitted",
        ),
        ColumnSpec(
            name="cardiac_event",
            kind="binary",
            role="target",
            description="1 = major cardiac event within the stay (known logistic model)",
        ),
        ColumnSpec(
            name="followup_days",
            kind="integer",
            role="time",
            minimum=1,
            maximum=FOLLOWUP_DAYS,
            unit="days",
            description="days to the event or to censoring (drop-out or end of follow-up)",
        ),
        ColumnSpec(
            name="event_observed",
            kind="binary",
            role="event",
            description="1 = event seen at followup_days, 0 = censored",
        ),
    ),
)
