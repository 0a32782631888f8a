"""The data dictionary: construction rules, look-ups, JSON files, notebook display."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from federation.data.dictionary import FORMAT, ColumnSpec, DataDictionary
from federation.data.errors import DataDictionaryError


def _dictionary(*columns: ColumnSpec) -> DataDictionary:
    return DataDictionary(name="d", columns=columns, source="test ranges")


def test_defaults_fill_with_public_midpoint_and_binary_range():
    age = ColumnSpec(name="age", kind="numeric", minimum=18, maximum=95)
    visits = ColumnSpec(name="visits", kind="integer", minimum=0, maximum=3)
    smoker = ColumnSpec(name="smoker", kind="binary")
    ward = ColumnSpec(name="ward", kind="categorical", categories=["a", "b"])
    assert age.fill == 56.5
    assert visits.fill == 1.0  # integer midpoint rounded down
    assert (smoker.minimum, smoker.maximum, smoker.fill) == (0.0, 1.0, 0.0)
    assert ward.fill is None and ward.categories == ("a", "b")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"name": "age", "kind": "numeric"},
            r"column 'age': a numeric column needs both minimum and maximum .* never from the data",
        ),
        (
            {"name": "age", "kind": "numeric", "minimum": 95, "maximum": 18},
            r"column 'age': minimum \(95\) must be below maximum \(18\)",
        ),
        (
            {"name": "age", "kind": "numeric", "minimum": 5, "maximum": 5},
            r"column 'age': minimum \(5\) must be below maximum \(5\)",
        ),
        (
            {"name": "age", "kind": "numeric", "minimum": 0, "maximum": float("inf")},
            r"column 'age': maximum must be a finite number, got inf",
        ),
        (
            {"name": "ca", "kind": "integer", "minimum": 0, "maximum": 2.5},
            r"column 'ca': an integer column needs whole-number bounds, got maximum=2.5",
        ),
        (
            {"name": "ward", "kind": "categorical"},
            r"column 'ward': a categorical column needs its list of categories \(got None\)",
        ),
        (
            {"name": "ward", "kind": "categorical", "categories": ("a", 1)},
            r"column 'ward': categories must be all non-empty text or all whole numbers",
        ),
        (
            {"name": "ward", "kind": "categorical", "categories": ("a", "a")},
            r"column 'ward': categories repeat a value",
        ),
        (
            {"name": "ward", "kind": "categorical", "categories": ("a",), "out_of_range": "clip"},
            r"column 'ward': out_of_range='clip' has no meaning for a categorical column",
        ),
        (
            {"name": "chol", "kind": "numeric", "minimum": 100, "maximum": 650, "out_of_range": "missing"},
            r"column 'chol': out_of_range='missing' .* set missing='allowed'",
        ),
        (
            {"name": "age", "kind": "number", "minimum": 0, "maximum": 1},
            r"column 'age': kind 'number' is not one of numeric, integer, binary, categorical",
        ),
        ({"name": "sex", "kind": "binary", "categories": (1, 2)}, r"column 'sex': a binary column is always coded 0/1"),
        (
            {"name": "t", "kind": "categorical", "role": "time", "categories": ("a",)},
            r"column 't': a 'time' column must be numeric or integer",
        ),
        (
            {"name": "age", "kind": "numeric", "minimum": 18, "maximum": 95, "fill": 200},
            r"column 'age': fill must be a number within \[18, 95\], got 200",
        ),
        ({"name": "", "kind": "binary"}, r"column name '' is not allowed"),
    ],
)
def test_bad_column_specs_name_the_column_and_the_fix(kwargs, message):
    with pytest.raises(DataDictionaryError, match=message):
        ColumnSpec(**kwargs)


def test_duplicate_names_two_targets_and_unbounded_patients_are_rejected():
    age = ColumnSpec(name="age", kind="numeric", minimum=18, maximum=95)
    with pytest.raises(DataDictionaryError, match=r"column 'age' is listed twice"):
        _dictionary(age, age)
    y1 = ColumnSpec(name="y1", kind="binary", role="target")
    y2 = ColumnSpec(name="y2", kind="binary", role="target")
    with pytest.raises(DataDictionaryError, match=r"columns 'y1', 'y2' all have role 'target'"):
        _dictionary(y1, y2)
    with pytest.raises(DataDictionaryError, match=r"max_rows_per_patient=3 needs patient_id_column"):
        DataDictionary(name="d", columns=(age,), source="s", max_rows_per_patient=3)
    with pytest.raises(DataDictionaryError, match=r"patient_id_column 'pid' is not a column; known columns: age"):
        DataDictionary(name="d", columns=(age,), source="s", patient_id_column="pid")
    with pytest.raises(DataDictionaryError, match=r"source must say where the ranges come from"):
        DataDictionary(name="d", columns=(age,), source=" ")


def test_roles_pick_features_target_time_and_event():
    d = _dictionary(
        ColumnSpec(name="pid", kind="integer", role="id", minimum=0, maximum=10**6),
        ColumnSpec(name="age", kind="numeric", minimum=18, maximum=95),
        ColumnSpec(name="grade", kind="integer", role="outcome_detail", minimum=0, maximum=4),
        ColumnSpec(name="y", kind="binary", role="target"),
        ColumnSpec(name="days", kind="integer", role="time", minimum=1, maximum=1825),
        ColumnSpec(name="event", kind="binary", role="event"),
    )
    assert d.feature_columns == ("age",)
    assert (d.target, d.time_column, d.event_column) == ("y", "days", "event")
    assert _dictionary(ColumnSpec(name="x", kind="binary")).target is None


def test_unknown_column_lookup_lists_the_known_columns():
    d = _dictionary(
        ColumnSpec(name="age", kind="numeric", minimum=18, maximum=95), ColumnSpec(name="sex", kind="binary")
    )
    assert d.column("sex").kind == "binary"
    with pytest.raises(KeyError, match=r"no column 'agee' in data dictionary 'd'; known columns: age, sex"):
        d.column("agee")


def test_save_and_load_round_trip_a_pretty_versioned_file(tiny_dictionary, tmp_path):
    path = tiny_dictionary.save(tmp_path / "data_dictionary.json")
    text = path.read_text(encoding="utf-8")
    assert json.loads(text)["format"] == FORMAT == "workbench-data-dictionary/1"
    assert '\n  "columns": [' in text  # indented for people to read and diff
    assert DataDictionary.load(path) == tiny_dictionary
    assert DataDictionary.load(path).column("cp").categories == (1, 2, 3, 4)  # ints stay ints


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", r"bad\.json: not valid JSON at line 1, column 2"),
        ('{"format": "other/9"}', r"bad\.json: 'format' is 'other/9', expected 'workbench-data-dictionary/1'"),
        (
            json.dumps(
                {
                    "format": FORMAT,
                    "name": "d",
                    "source": "s",
                    "columns": [
                        {"name": "age", "kind": "numeric", "minimum": 18, "maximum": 95},
                        {"name": "sex", "kind": "binary", "colour": "red"},
                    ],
                }
            ),
            r"bad\.json: columns\[1\] \('sex'\): unknown key\(s\) 'colour'",
        ),
        (
            json.dumps(
                {
                    "format": FORMAT,
                    "name": "d",
                    "source": "s",
                    "columns": [{"name": "age", "kind": "numeric", "minimum": 95, "maximum": 18}],
                }
            ),
            r"bad\.json: columns\[0\] \('age'\): column 'age': minimum \(95\) must be below maximum",
        ),
        (
            json.dumps({"format": FORMAT, "name": "d", "columns": []}),
            r"bad\.json: top level: required key 'source' is missing",
        ),
        (
            json.dumps({"format": FORMAT, "name": "d", "source": "s", "columns": [{"kind": "binary"}]}),
            r"bad\.json: columns\[0\]: required key 'name' is missing",
        ),
    ],
)
def test_loading_a_bad_file_says_what_is_wrong_and_where(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataDictionaryError, match=message):
        DataDictionary.load(path)


def test_loading_a_missing_file_names_it(tmp_path):
    with pytest.raises(DataDictionaryError, match=r"nowhere\.json: data dictionary file not found"):
        DataDictionary.load(tmp_path / "nowhere.json")


def test_to_frame_and_html_show_one_row_per_column(tiny_dictionary):
    frame = tiny_dictionary.to_frame()
    assert list(frame["name"]) == list(tiny_dictionary.column_names)
    assert {"name", "kind", "role", "unit", "minimum", "maximum", "categories", "description"} <= set(frame.columns)
    assert frame.set_index("name").loc["ward", "categories"] == "a, b"
    html = tiny_dictionary._repr_html_()
    assert html.startswith("<p><b>tiny</b>") and "<table" in html and "visits" in html


@given(
    low=st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    width=st.floats(min_value=1e-3, max_value=1e6, allow_nan=False),
    missing=st.sampled_from(["error", "allowed"]),
)
def test_any_valid_numeric_column_survives_a_json_round_trip(low, width, missing):
    spec = ColumnSpec(name="x", kind="numeric", minimum=low, maximum=low + width, missing=missing)
    d = _dictionary(spec)
    assert DataDictionary.from_json(json.loads(json.dumps(d.to_json()))) == d
