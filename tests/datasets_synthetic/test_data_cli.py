"""`workbench data ...` through Typer's test runner: files written, clear errors, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from workbench.cli import data_app as app

runner = CliRunner()


def test_synth_writes_the_sites_and_prints_a_table(tmp_path):
    result = runner.invoke(app, ["synth", "--sites", "3", "--rows", "200", "--seed", "7", "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "s").glob("*.parquet")) == [
        "hospital_01.parquet",
        "hospital_02.parquet",
        "hospital_03.parquet",
    ]
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["site", "rows", "cardiac_event", "mean", "age"]
    assert [line.split()[0] for line in lines[2:5]] == ["hospital_01", "hospital_02", "hospital_03"]
    assert "wrote 3 sites (seed 7)" in lines[-1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["synth", "--sites", "-2"], "error: sites must be a whole number from 1 to 999, got -2"),
        (["synth", "--rows", "5"], "error: rows (average rows per site) must be a whole number >= 20, got 5"),
        (["dictionary", "--data", "{tmp}/absent"], "no data_dictionary.json here"),
        (["uci", "--source", "{tmp}/absent"], "UCI Heart Disease folder not found"),
    ],
)
def test_bad_arguments_give_one_clear_line_and_no_traceback(tmp_path, args, message):
    args = [a.format(tmp=tmp_path) for a in args] + ["--out", str(tmp_path / "o")] * (args[0] != "dictionary")
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "o").exists()


def test_synth_refuses_to_replace_different_sites_without_overwrite(tmp_path):
    out = str(tmp_path / "s")
    assert runner.invoke(app, ["synth", "--sites", "2", "--rows", "50", "--out", out]).exit_code == 0
    refused = runner.invoke(app, ["synth", "--sites", "2", "--rows", "50", "--seed", "8", "--out", out])
    assert refused.exit_code == 2 and "pass overwrite=True (--overwrite)" in refused.stderr
    replaced = runner.invoke(app, ["synth", "--sites", "2", "--rows", "50", "--seed", "8", "--out", out, "--overwrite"])
    assert replaced.exit_code == 0


def test_check_passes_a_good_folder_and_names_the_culprit_in_a_broken_one(tmp_path):
    folder = tmp_path / "s"
    assert runner.invoke(app, ["synth", "--sites", "3", "--rows", "40", "--out", str(folder)]).exit_code == 0
    good = runner.invoke(app, ["check", "--data", str(folder)])
    assert good.exit_code == 0
    assert [line.split()[:2] for line in good.stdout.splitlines()] == [
        ["ok", "hospital_01.parquet:"],
        ["ok", "hospital_02.parquet:"],
        ["ok", "hospital_03.parquet:"],
    ]
    # Break one site: export it as CSV with text in 'age' at data row 17.
    frame = pd.read_parquet(folder / "hospital_02.parquet")
    frame["age"] = frame["age"].astype(object)
    frame.loc[16, "age"] = "forty"
    frame.to_csv(folder / "hospital_02.csv", index=False)
    (folder / "hospital_02.parquet").unlink()
    broken = runner.invoke(app, ["check", "--data", str(folder)])
    assert broken.exit_code == 2
    assert "FAIL hospital_02.csv, row 17, column 'age': 'forty' is not a number" in broken.stderr
    assert "error: 1 of 3 site file(s) failed validation" in broken.stderr
    assert "ok   hospital_03.parquet" in broken.stdout  # the other sites are still checked
    assert "Traceback" not in broken.output


def test_check_on_a_missing_folder_or_dictionary_exits_1(tmp_path):
    missing = runner.invoke(app, ["check", "--data", str(tmp_path / "absent")])
    assert missing.exit_code == 2 and "the folder does not exist" in missing.stderr
    (tmp_path / "a.csv").write_text("x\n1\n")
    no_dictionary = runner.invoke(app, ["check", "--data", str(tmp_path)])
    assert no_dictionary.exit_code == 2 and "DP range query" in no_dictionary.stderr


def test_dictionary_prints_one_row_per_column(tmp_path):
    runner.invoke(app, ["synth", "--sites", "1", "--rows", "20", "--out", str(tmp_path)])
    result = runner.invoke(app, ["dictionary", "--data", str(tmp_path)])
    assert result.exit_code == 0
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[3:]}
    assert rows["age"][:5] == ["age", "numeric", "feature", "years", "[18,"]
    assert rows["cardiac_event"][2] == "target"
    assert len(rows) == 12


def test_uci_writes_a_folder_that_check_accepts(real_uci_folder, tmp_path):
    out = tmp_path / "uci"
    written = runner.invoke(app, ["uci", "--source", str(real_uci_folder), "--out", str(out)])
    assert written.exit_code == 0, written.output
    checked = runner.invoke(app, ["check", "--data", str(out)])
    assert checked.exit_code == 0 and "ok   switzerland.csv: 123 rows" in checked.stdout


def test_imports_stay_light_and_independent_of_the_rest_of_the_project():
    code = (
        "import sys, datasets_synthetic, datasets_synthetic.cli, federation.data.cli\n"
        "assert 'pandas' not in sys.modules, 'pandas imported at package or CLI import'\n"
        "import datasets_synthetic as d\n"
        "for name in d.__all__: getattr(d, name)\n"
        "heavy = {'torch', 'flwr', 'opacus', 'workbench', 'privacy_budgets'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "ours = {m.split('.')[1] for m in sys.modules if m.startswith('federation.')}\n"
        "assert ours <= {'data', 'cli_support', 'errors'}, ours\n"
    )
    repo_root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=repo_root)
