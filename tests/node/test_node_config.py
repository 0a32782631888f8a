"""node.toml: what init writes reads back; every malformed file gets one clear error
naming the file, the key, the rule, the bad value and the fix."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from _node_helpers import remove_key, set_key

from federation.protocol.task_kinds import KNOWN_TASKS
from federation.site.config import (
    LAYOUT,
    NODE_TOML_KEY,
    NodeConfigError,
    NodePolicy,
    load_node_config,
    write_node_template,
)
from federation.site.site_config import SiteConfig


@pytest.fixture
def toml(tmp_path) -> Path:
    path = tmp_path / "site" / "node.toml"
    write_node_template(
        path=path,
        site_id="hospital-a",
        data_path=tmp_path / "site" / "data" / "a.csv",
        state_dir=tmp_path / "site" / "state",
        coordinator_address="10.0.0.5:9092",
    )
    return path


def test_the_template_reads_back_with_paths_against_its_own_folder(toml):
    config = load_node_config(toml)
    folder = toml.parent.resolve()
    assert config.site_id == "hospital-a" and config.dataset == "a"
    assert config.data_path == folder / "data" / "a.csv" and config.state_dir == folder / "state"
    assert config.ca_certificate == folder / "ca.crt" and config.node_private_key == folder / "keys" / "node_key"
    assert config.coordinator_address == "10.0.0.5:9092" and config.clientappio_address == "127.0.0.1:9094"
    assert config.policy == NodePolicy(allowed_tasks=("train", "evaluate", "query:*"))
    # written relative: the folder can move as a whole
    assert tomllib.loads(toml.read_text())["state"]["dir"] == "state"


def test_every_key_of_the_layout_is_explained_in_the_template(toml):
    text = toml.read_text()
    for section, keys in LAYOUT.items():
        assert f"[{section}]" in text
        for key in keys:
            line = next(i for i, written in enumerate(text.splitlines()) if written.lstrip("# ").startswith(f"{key} ="))
            assert text.splitlines()[line - 1].startswith("#"), f"{key} has no comment above it"


def test_the_node_config_entries_and_the_site_config(toml):
    set_key(toml, "true_count_floor", "3")
    set_key(toml, "max_epsilon_per_request", "0.5")
    set_key(toml, "min_cell_size", "8")
    config = load_node_config(toml)
    entries = config.node_config_entries()
    assert entries[NODE_TOML_KEY] == str(toml.resolve())
    assert entries["min-cell-size"] == "8" and entries["true-count-floor"] == "3"
    assert entries["dictionary-path"] == str(toml.parent.resolve() / "data" / "data_dictionary.json")
    # the ClientApp's resolver reads these keys back into the same site
    from_entries = SiteConfig.from_node_config(entries)
    site = config.site_config()
    assert (
        from_entries.site_id,
        from_entries.data_path,
        from_entries.state_dir,
        from_entries.min_cell_size,
        from_entries.true_count_floor,
    ) == (site.site_id, site.data_path, site.state_dir, 8, 3)
    assert site.max_epsilon_per_request == 0.5


def test_without_a_floor_the_entry_is_left_out(toml):
    assert "true-count-floor" not in load_node_config(toml).node_config_entries()


def test_the_policy_words_are_the_tasks_the_node_serves():
    from federation.site.tasks import HANDLERS

    assert set(KNOWN_TASKS) == set(HANDLERS)


@pytest.mark.parametrize(
    "edit, key, rule, value",
    [
        (lambda p: remove_key(p, "id"), "[site] id", "must be a non-empty quoted string", "(missing)"),
        (lambda p: remove_key(p, "data"), "[site] data", "must be a non-empty quoted string", "(missing)"),
        (lambda p: remove_key(p, "allowed_tasks"), "[policy] allowed_tasks", "must be a non-empty list", "(missing)"),
        (lambda p: set_key(p, "min_cell_size", "2"), "[policy] min_cell_size", "at least 3", "2"),
        (lambda p: set_key(p, "min_cell_size", '"5"'), "[policy] min_cell_size", "whole number", "'5'"),
        (lambda p: set_key(p, "min_cell_size", "5.5"), "[policy] min_cell_size", "whole number", "5.5"),
        (
            lambda p: set_key(p, "allowed_tasks", '["train", "query:everything"]'),
            "[policy] allowed_tasks",
            "unknown task kind",
            "'query:everything'",
        ),
        (lambda p: set_key(p, "allowed_tasks", '"train"'), "[policy] allowed_tasks", "non-empty list", "'train'"),
        (lambda p: set_key(p, "allowed_tasks", "[]"), "[policy] allowed_tasks", "non-empty list", "[]"),
        (
            lambda p: set_key(p, "address", '"coordinator.example.org"'),
            "[coordinator] address",
            '"host:port"',
            "'coordinator.example.org'",
        ),
        (
            lambda p: set_key(p, "address", '"host:70000"'),
            "[coordinator] address",
            "port from 1 to 65535",
            "'host:70000'",
        ),
        (lambda p: set_key(p, "clientappio_address", "9094"), "[node] clientappio_address", '"host:port"', "9094"),
        (lambda p: set_key(p, "id", '"hospital a"'), "[site] id", "letters, digits", "'hospital a'"),
        (lambda p: set_key(p, "data", '"data/a.xlsx"'), "[site] data", ".csv or .parquet", "a.xlsx"),
        (
            lambda p: set_key(p, "max_epsilon_per_request", "-1.0"),
            "[policy] max_epsilon_per_request",
            "positive number",
            "-1.0",
        ),
        (lambda p: set_key(p, "true_count_floor", "0"), "[policy] true_count_floor", "at least 1", "0"),
        (lambda p: set_key(p, "repeated_query_limit", "0"), "[policy] repeated_query_limit", "at least 1", "0"),
        (lambda p: set_key(p, "max_query_epsilon", "0"), "[analytics] max_query_epsilon", "positive number", "0"),
        (
            lambda p: set_key(p, "min_noise_multiplier", '"0.5"'),
            "[analytics] min_noise_multiplier",
            "positive number",
            "'0.5'",
        ),
        (lambda p: set_key(p, "max_bins", "501"), "[analytics] max_bins", "must be at most 500", "501"),
        (lambda p: set_key(p, "max_strata", "0"), "[analytics] max_strata", "at least 1", "0"),
        (lambda p: set_key(p, "max_probabilities", "2.5"), "[analytics] max_probabilities", "whole number", "2.5"),
        (
            lambda p: set_key(p, "webhook", '"ftp://alerts.example"'),
            "[alerts] webhook",
            "http:// or https://",
            "'ftp://alerts.example'",
        ),
        (lambda p: set_key(p, "holdout_fraction", "0.9"), "[training] holdout_fraction", "at most 0.5", "0.9"),
        (lambda p: set_key(p, "holdout_fraction", "0"), "[training] holdout_fraction", "between 0 and 1", "0"),
        (lambda p: set_key(p, "evaluation_share", "1.5"), "[training] evaluation_share", "between 0 and 1", "1.5"),
        (
            lambda p: set_key(p, "noise_multiplier_range", "[5.0, 1.0]"),
            "[training] noise_multiplier_range",
            "low below high",
            "[5.0, 1.0]",
        ),
        (
            lambda p: set_key(p, "learning_rate_range", "[0, 1]"),
            "[training] learning_rate_range",
            "two positive numbers",
            "[0, 1]",
        ),
        (lambda p: set_key(p, "allowed_targets", "[1]"), "[training] allowed_targets", "column names", "[1]"),
        (lambda p: set_key(p, "uncovered_releases", "-1"), "[training] uncovered_releases", "at least 0", "-1"),
        (lambda p: set_key(p, "max_hidden", "0"), "[training] max_hidden", "at least 1", "0"),
        (
            lambda p: set_key(p, "min_holdout_rows", "4"),
            "[training] min_holdout_rows",
            "must be at least the site's min_cell_size (5)",
            "4",
        ),
        (
            lambda p: set_key(p, "min_cell_size", "5\nmin_cel_size = 2"),
            "[policy] min_cel_size",
            "is not a key of this section",
            "Did you mean 'min_cell_size'?",
        ),
        (
            lambda p: p.write_text(p.read_text() + "\n[polcy]\nallowed_tasks = []\n"),
            "[polcy]",
            "is not a section",
            "Did you mean 'policy'?",
        ),
        (
            lambda p: p.write_text(p.read_text().replace('id = "hospital-a"', "id = hospital-a")),
            "(file)",
            "must be valid TOML",
            "line",
        ),
    ],
)
def test_a_malformed_node_toml_gets_one_clear_error(toml, edit, key, rule, value):
    edit(toml)
    with pytest.raises(NodeConfigError) as caught:
        load_node_config(toml)
    message = str(caught.value)
    assert message.startswith(f"{toml}: {key} ") and rule in message and value in message
    assert "Fix: " in message and caught.value.key == key and caught.value.fix


def test_a_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(NodeConfigError, match=r"must be an existing node.toml.*workbench node init --site-id"):
        load_node_config(tmp_path / "nowhere" / "node.toml")


def test_the_template_refuses_to_replace_a_node_toml(toml):
    with pytest.raises(FileExistsError, match="already exists"):
        write_node_template(path=toml, site_id="b", data_path=Path("b.csv"), state_dir=Path("s"))


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"allowed_tasks": ("train", "query:all")}, "unknown task kind"),
        ({"allowed_tasks": ()}, "non-empty list of task kinds"),
        (
            {"allowed_tasks": ("train",), "min_cell_size": 2},
            "min_cell_size must be a whole number of at least 3; got 2",
        ),
        ({"allowed_tasks": ("train",), "repeated_query_limit": 0}, "repeated_query_limit"),
        ({"allowed_tasks": ("train",), "max_epsilon_per_request": float("nan")}, "max_epsilon_per_request"),
        ({"allowed_tasks": ("train",), "batch_size_range": (64, 16)}, "batch_size_range must be \\[low, high\\]"),
        ({"allowed_tasks": ("train",), "min_holdout_rows": 3}, "min_holdout_rows must be at least the site's"),
    ],
)
def test_a_policy_built_in_code_keeps_the_same_rules(fields, message):
    with pytest.raises(ValueError, match=message):
        NodePolicy(**fields)


def test_the_analytics_limits_reach_the_handlers_through_the_site_config(toml):
    set_key(toml, "max_bins", "40")
    set_key(toml, "min_noise_multiplier", "2.5")
    limits = load_node_config(toml).site_config().analytics_limits
    assert (limits.max_bins, limits.min_noise_multiplier, limits.max_query_epsilon) == (40, 2.5, 5.0)


def test_the_simulation_policy_allows_everything_with_the_site_rules(tmp_path):
    site = SiteConfig(
        site_id="s",
        data_path=tmp_path / "s.csv",
        state_dir=tmp_path,
        dictionary_path=tmp_path / "d.json",
        min_cell_size=8,
        true_count_floor=3,
    )
    policy = NodePolicy.default_for(site)
    # every task, local tuning too; a deployed node serves "tune" only when its node.toml lists it
    assert policy.allowed_tasks == ("train", "evaluate", "query:*", "tune")
    assert (policy.min_cell_size, policy.true_count_floor, policy.alert_command, policy.alert_webhook) == (
        8,
        3,
        None,
        None,
    )


def test_a_simulated_site_takes_training_keys_and_refuses_unknown_ones(tmp_path):
    from federation.site.config import NodePolicyError

    def site(**overrides):
        return SiteConfig(
            site_id="s",
            data_path=tmp_path / "s.csv",
            state_dir=tmp_path,
            dictionary_path=tmp_path / "d.json",
            policy_overrides=tuple(overrides.items()),
        )

    policy = NodePolicy.default_for(site(holdout_fraction=0.3, allowed_targets=["y"]))
    assert (policy.holdout_fraction, policy.allowed_targets, policy.holdout_seed) == (0.3, ("y",), 43)
    assert NodePolicy.default_for(site()).noise_multiplier_range == (0.5, 100.0)
    with pytest.raises(NodePolicyError, match="unknown key\\(s\\) test_fraction"):
        NodePolicy.default_for(site(test_fraction=0.01))
    with pytest.raises(NodePolicyError, match="holdout_fraction must be at most 0.5"):
        NodePolicy.default_for(site(holdout_fraction=0.99))
    # a simulated site's settings survive the trip to the simulation's site file
    again = SiteConfig.from_json(site(holdout_seed=5, allowed_targets=["y"]).to_json())
    assert NodePolicy.default_for(again).holdout_seed == 5 and NodePolicy.default_for(again).allowed_targets == ("y",)


def test_node_init_writes_a_private_random_holdout_seed(tmp_path):
    from typer.testing import CliRunner

    from workbench.cli import app

    data = tmp_path / "a.csv"
    data.write_text("age\n50\n")
    seeds = set()
    for out in ("n1", "n2"):
        result = CliRunner().invoke(
            app, ["node", "init", "--site-id", "a", "--data", str(data), "--out", str(tmp_path / out)]
        )
        assert result.exit_code == 0, result.output
        seeds.add(load_node_config(tmp_path / out / "node.toml").policy.holdout_seed)
    assert len(seeds) == 2 and 43 not in seeds


def test_each_declared_key_fills_one_field_and_is_explained_in_the_template(toml):
    from dataclasses import fields

    from federation.site.node_keys import KEYS, POLICY_KEYS

    config_fields = {f.name for f in fields(load_node_config(toml))}
    policy_fields = {f.name for f in fields(NodePolicy)}
    for key in KEYS:
        assert key.field in (policy_fields if key in POLICY_KEYS else config_fields), key.label
        assert key.comment and key.fix, key.label
    names = {k.name for k in KEYS}
    written = [line.removeprefix("# ").split(" = ")[0] for line in toml.read_text().splitlines()]
    assert [name for name in written if name in names] == [k.name for k in KEYS]  # each once, in order
