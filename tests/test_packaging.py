"""The install routes agree: pyproject.toml, the pinned constraints, environment.yml."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = Version(version)
    return pins


def _all_requirements() -> list[Requirement]:
    project = _pyproject()["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra]
    return reqs


def test_every_dependency_is_pinned_within_its_bounds():
    pins = _pins()
    for req in _all_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is in pyproject.toml but not pinned in requirements/constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{req.name} is pinned at {pins[name]}, outside pyproject's bounds {req.specifier}"
        )


def test_torch_is_pinned_exactly_to_the_cpu_build_on_disk():
    deps = _pyproject()["project"]["dependencies"]
    assert "torch==2.13.0" in deps
    assert _pins()["torch"] == Version("2.13.0")


def test_environment_yml_installs_this_project_with_the_same_pins():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python"))
    version = re.search(r"python=(\d+\.\d+)", python).group(1)
    requires = _pyproject()["project"]["requires-python"]
    assert f">={version}" in requires, f"environment.yml has Python {version}, pyproject requires {requires}"
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert "-c requirements/constraints.txt" in pip
    extras = set(_pyproject()["project"]["optional-dependencies"])
    install = next(line for line in pip if line.startswith("-e ."))
    assert set(re.search(r"\[(.*)\]", install).group(1).split(",")) == extras
    assert "conda-forge" in env["channels"]


def test_one_console_script_whose_sub_commands_live_in_their_packages():
    scripts = _pyproject()["project"]["scripts"]
    assert scripts == {"workbench": "workbench.cli:main"}
    from workbench.cli import app

    groups = {g.name: g.typer_instance for g in app.registered_groups}
    assert groups["data"].info.name == "data"
    assert type(groups["data"]).__module__.startswith("typer")
    import datasets_synthetic.cli
    import federation.data.cli
    import privacy_budgets.cli

    data_parts = [g.typer_instance for g in groups["data"].registered_groups]
    assert data_parts == [datasets_synthetic.cli.app, federation.data.cli.app]
    assert groups["budget"] is privacy_budgets.cli.app
