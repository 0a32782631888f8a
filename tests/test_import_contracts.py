"""The rooms' import contracts hold for the product, and the checker catches each kind
of breach on a small package tree written for the purpose."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.import_contracts import (
    LAYERS,
    PRODUCT,
    circles,
    component,
    cycles,
    layer_of,
    module_graph,
    read_imports,
    violations,
)

ROOT = Path(__file__).resolve().parents[1]


def test_the_product_keeps_every_import_contract():
    found = violations(read_imports(ROOT))
    assert not found, "import contracts broken (see CONTRIBUTING.md):\n" + "\n".join(found)


def test_every_component_of_the_product_stands_in_a_layer():
    components = {component(imp.importer) for imp in read_imports(ROOT)}
    assert {
        "federation.site",
        "federation.coordinator",
        "federation.protocol",
        "federation.training",
        "federation.analytics",
        "federation.data",
        "federation.engines",
    } <= components
    assert [c for c in sorted(components) if layer_of(c) is None] == []
    assert not cycles(read_imports(ROOT))


def test_the_workbench_modules_import_each_other_without_a_circle():
    """The front door stands on its back ends, planning and results; none of them imports it
    back (not even for a type), so each can be read and tested on its own."""
    edges = module_graph(read_imports(ROOT), package="workbench")
    assert {"workbench.session", "workbench.backends.base", "workbench.planning"} <= set(edges)
    assert circles(edges) == []
    below = [m for m, targets in edges.items() if "workbench.session" in targets]
    assert sorted(below) == ["workbench", "workbench.study"], below  # the package's lazy export, the CLI's job


def test_a_circle_between_two_workbench_modules_is_found(tmp_path):
    root = _tree(
        tmp_path,
        {
            "workbench/__init__.py": "",
            "workbench/front.py": "from workbench.planning import plan\n",
            "workbench/planning.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from workbench.front import Front\n",
        },
    )
    edges = module_graph(read_imports(root, packages=("workbench",)), package="workbench")
    assert circles(edges) == [["workbench.front", "workbench.planning"]]


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    for package in PRODUCT:
        (root / package).mkdir(exist_ok=True)
        (root / package / "__init__.py").touch()
    return root


def _clean(tmp_path: Path) -> dict[str, str]:
    return {
        "federation/__init__.py": "",
        "federation/site/__init__.py": "",
        "federation/site/gate.py": "from federation.protocol.spec import Spec\nimport flwr\n",
        "federation/coordinator/__init__.py": "",
        "federation/coordinator/loop.py": "from ..protocol import spec\n",
        "federation/protocol/__init__.py": "",
        "federation/protocol/spec.py": "from federation.analytics.noise import draw\n",
        "federation/analytics/__init__.py": "",
        "federation/analytics/noise.py": "import numpy\nfrom privacy_budgets import mechanisms\n",
        "privacy_budgets/mechanisms.py": "import dp_accounting\n",
        "workbench/session.py": "from federation.site import gate\nfrom federation.coordinator import loop\n",
    }


def test_a_clean_tree_passes(tmp_path):
    assert violations(read_imports(_tree(tmp_path, _clean(tmp_path)))) == []


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "federation/site/gate.py",
            "from federation.coordinator.loop import run\n",
            "federation.site and federation.coordinator share a layer",
        ),
        (
            "federation/coordinator/loop.py",
            "def f():\n    from federation.site import gate\n",
            "federation.coordinator and federation.site share a layer",
        ),
        ("privacy_budgets/mechanisms.py", "import torch\n", "privacy_budgets must not import torch"),
        ("privacy_budgets/mechanisms.py", "from flwr.app import Message\n", "privacy_budgets must not import flwr"),
        (
            "privacy_budgets/mechanisms.py",
            "from federation.analytics import noise\n",
            "privacy_budgets sits below federation.analytics",
        ),
        (
            "federation/analytics/noise.py",
            "from flwr.app import Message\n",
            "federation.analytics must not import flwr",
        ),
        (
            "federation/analytics/noise.py",
            "from federation.protocol.spec import Spec\n",
            "federation.analytics sits below federation.protocol",
        ),
        (
            "federation/protocol/spec.py",
            "from workbench.session import Workbench\n",
            "federation.protocol sits below workbench",
        ),
        ("federation/protocol/spec.py", "from ..site import gate\n", "federation.protocol sits below federation.site"),
        (
            "federation/newroom/__init__.py",
            "from federation.protocol import spec\n",
            "federation.newroom stands in no layer",
        ),
        (
            "federation/coordinator/loop.py",
            "from federation.protocol.spec import _helper\n",
            "imports the private name _helper of federation.protocol.spec",
        ),
    ],
)
def test_each_kind_of_breach_is_caught_with_its_place(tmp_path, name, text, expected):
    files = _clean(tmp_path)
    files[name] = text
    found = violations(read_imports(_tree(tmp_path, files)))
    assert any(expected in line for line in found), found
    assert any(line.startswith(f"{(tmp_path / name).as_posix()}:") for line in found), found


def test_a_circle_is_named_even_where_no_layer_rule_is_involved(tmp_path):
    files = _clean(tmp_path)
    files["federation/analytics/noise.py"] = "from federation.protocol import spec\n"
    imports = read_imports(_tree(tmp_path, files))
    assert cycles(imports) == [["federation.analytics", "federation.protocol"]]
    assert any(
        "import each other in a circle: federation.analytics, federation.protocol" in line
        for line in violations(imports)
    )


def test_layers_name_each_component_once():
    names = [name for layer in LAYERS for name in layer]
    assert len(names) == len(set(names))
