"""Bad arguments get one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import subprocess

import pytest


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["study", "--data", "{tmp}", "--epsilon", "-1", "--out", "{tmp}/o"], "--epsilon must be a positive number"),
        (
            ["study", "--data", "{tmp}", "--epsilon", "1", "--rounds", "0", "--out", "{tmp}/o"],
            "--rounds must be at least 1; got 0",
        ),
        (["study", "--data", "{tmp}/nowhere", "--epsilon", "1", "--out", "{tmp}/o"], "is not a folder"),
        (["study", "--data", "{tmp}", "--epsilon", "1", "--out", "{tmp}/o"], "no site files (.csv or .parquet)"),
        (["demo", "--epsilon", "nan"], "--epsilon must be a positive number"),
    ],
)
def test_bad_study_arguments(workbench_cli, tmp_path, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = subprocess.run([*workbench_cli, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_a_folder_without_dictionary_needs_the_target_named(workbench_cli, tmp_path):
    (tmp_path / "a.csv").write_text("age,outcome\n50,1\n60,0\n")
    proc = subprocess.run(
        [*workbench_cli, "study", "--data", str(tmp_path), "--epsilon", "1", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "without a data dictionary the outcome column must be named" in proc.stderr
    assert "Traceback" not in proc.stderr
