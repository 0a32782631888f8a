"""Bad arguments get one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import subprocess

import pytest


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["study", "--data", "{tmp}", "--epsilon", "-1", "--out", "{tmp}/o"], "--epsilon must be a positive number"),
        (["study", "--data", "{tmp}", "--epsilon", "1", "--rounds", "0", "--out", "{tmp}/o"], "--rounds must be at least 1; got 0"),
        (["study", "--data", "{tmp}/nowhere", "--epsilon", "1", "--out", "{tmp}/o"], "is not a folder"),
        (["study", "--data", "{tmp}", "--epsilon", "1", "--out", "{tmp}/o"], "data_dictionary.json"),
        (["demo", "--epsilon", "nan"], "--epsilon must be a positive number"),
    ],
)
def test_bad_study_arguments(workbench_cli, tmp_path, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = subprocess.run([*workbench_cli, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
