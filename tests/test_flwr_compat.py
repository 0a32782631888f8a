"""Flower's private names, as the workbench declares them, against the installed Flower.

After a Flower upgrade, this test says what changed: every declared private name and
the parameters the workbench passes must exist, and each patch must really take effect
(a sleep that is capped, a pull that gets the short back-off, a heartbeat that changed).
On a mismatch the speed patches keep Flower's behaviour with a warning; the site
executor refuses to start. Runs in a second: no process is started.
"""

from __future__ import annotations

import importlib
import time

import pytest

from federation.coordinator import flwr_compat as coordinator_compat
from federation.flwr_contract import (
    OBJECT_PULL_BACKOFF_CAP,
    OBJECT_PULL_INITIAL_BACKOFF,
    OBJECT_PULL_MAX_SECONDS,
    PULL_OBJECTS,
    FlowerContractError,
    Private,
    contract_problems,
)
from federation.site import flwr_compat as site_compat

ALL = (
    *site_compat.SUPERNODE_TIMERS,
    site_compat.LOG_TIMESTAMPS,
    *site_compat.RUNTIME_PROTOCOL,
    *coordinator_compat.SERVERAPP_TIMERS,
    *coordinator_compat.SUPERLINK_APP,
    coordinator_compat.FLEET_ROUTER,
)


@pytest.mark.parametrize("private", ALL, ids=lambda p: p.where)
def test_every_declared_private_name_exists_with_its_parameters(private):
    assert private.problems() == []


def test_a_missing_name_or_parameter_is_reported():
    gone = Private("flwr.supercore.heartbeat", "NoSuchThing", why="test")
    renamed = Private(PULL_OBJECTS.module, PULL_OBJECTS.name, why="test", params=("initial_delay",))
    problems = contract_problems([gone, renamed])
    assert "flwr.supercore.heartbeat.NoSuchThing is gone" in problems[0]
    assert "no longer takes initial_delay" in problems[1]


def _module(name):
    return importlib.import_module(name)


@pytest.fixture
def restore(monkeypatch):
    """Every name a patch may rebind, restored after the test."""
    for private in (*site_compat.SUPERNODE_TIMERS, *coordinator_compat.SERVERAPP_TIMERS):
        module = _module(private.module)
        monkeypatch.setattr(module, private.name, getattr(module, private.name))
    return monkeypatch


def _recording_pull(calls):
    def pull_objects(object_ids, pull_object_fn, *, initial_backoff=1, backoff_cap=10, max_time=7200, **kwargs):
        calls.append((initial_backoff, backoff_cap, max_time))
        return {}

    return pull_objects


def test_supernode_patches_take_effect(restore):
    node_loop = _module(site_compat.NODE_LOOP)
    calls: list = []
    restore.setattr(node_loop, "pull_objects", _recording_pull(calls))
    assert site_compat.tune_supernode(poll_seconds=0.01, heartbeat_seconds=10) == []

    started = time.monotonic()
    node_loop.time.sleep(3)  # Flower's wait after an empty pull
    assert time.monotonic() - started < 0.5
    assert node_loop.time.time() == pytest.approx(time.time(), abs=1)  # the rest of `time` is untouched

    node_loop.pull_objects(["x"], lambda _: b"", initial_backoff=1, backoff_cap=10)
    assert calls == [(OBJECT_PULL_INITIAL_BACKOFF, OBJECT_PULL_BACKOFF_CAP, OBJECT_PULL_MAX_SECONDS)]

    assert _module(site_compat.FLEET_CONNECTION).HEARTBEAT_DEFAULT_INTERVAL == 10
    assert _module(site_compat.HEARTBEAT).HEARTBEAT_DEFAULT_INTERVAL == 10


def test_serverapp_patch_takes_effect(restore):
    http_grid = _module(coordinator_compat.HTTP_GRID)
    calls: list = []
    restore.setattr(http_grid, "pull_objects", _recording_pull(calls))
    assert coordinator_compat.tune_serverapp(object_pull_seconds=15) == []
    http_grid.pull_objects(["x"], lambda _: b"", initial_backoff=1, backoff_cap=10, max_time=7200)
    # A reply whose sender died half-way through pushing it: given up after 15 s, not 2 hours.
    assert calls == [(OBJECT_PULL_INITIAL_BACKOFF, OBJECT_PULL_BACKOFF_CAP, 15)]
    coordinator_compat.tune_serverapp(object_pull_seconds=15)  # applied twice: wrapped once
    http_grid.pull_objects(["x"], lambda _: b"")
    assert calls[-1] == (OBJECT_PULL_INITIAL_BACKOFF, OBJECT_PULL_BACKOFF_CAP, 15) and len(calls) == 2


def test_executor_patch_takes_effect(restore):
    utils = _module(PULL_OBJECTS.module)
    calls: list = []
    restore.setattr(utils, "pull_objects", _recording_pull(calls))
    assert site_compat.tune_executor() == []
    utils.pull_objects(["x"], lambda _: b"")
    assert calls == [(OBJECT_PULL_INITIAL_BACKOFF, OBJECT_PULL_BACKOFF_CAP, OBJECT_PULL_MAX_SECONDS)]


def test_log_timestamps_take_effect():
    import logging

    handlers = [h for h in logging.getLogger("flwr").handlers if hasattr(h, "timestamps")]
    old = [h.timestamps for h in handlers]
    try:
        assert site_compat.timestamp_flower_log()
        assert all(h.timestamps for h in handlers)
    finally:
        for handler, value in zip(handlers, old, strict=True):
            handler.timestamps = value


def test_a_speed_patch_on_a_changed_flower_keeps_flowers_behaviour_and_warns(restore, caplog):
    node_loop = _module(site_compat.NODE_LOOP)
    restore.delattr(node_loop, "time")  # as if Flower stopped importing `time` there
    heartbeat = _module(site_compat.HEARTBEAT)
    restore.delattr(heartbeat, "HEARTBEAT_DEFAULT_INTERVAL")
    with caplog.at_level("WARNING"):
        warnings = site_compat.tune_supernode(poll_seconds=0.01, heartbeat_seconds=10)
    assert any("Flower's own behaviour kept for flwr.supernode.start_client_internal.time" in w for w in warnings)
    assert any("HEARTBEAT_DEFAULT_INTERVAL" in w for w in warnings)
    assert not hasattr(node_loop, "time")  # nothing was put in its place
    # Announced and actual heartbeat change together or not at all.
    assert _module(site_compat.FLEET_CONNECTION).HEARTBEAT_DEFAULT_INTERVAL == 30
    assert "Only speed is at stake" in caplog.text


def test_a_speed_patch_on_a_changed_signature_is_left_out(restore):
    http_grid = _module(coordinator_compat.HTTP_GRID)

    def pull_objects(object_ids, pull_object_fn, *, delay=1):  # parameters renamed upstream
        return {}

    restore.setattr(http_grid, "pull_objects", pull_objects)
    warnings = coordinator_compat.tune_serverapp()
    assert http_grid.pull_objects is pull_objects
    assert any("no longer takes initial_backoff, backoff_cap, max_time" in w for w in warnings)


def test_the_executor_refuses_to_start_on_a_changed_runtime_protocol(monkeypatch):
    from federation.site.site_executor import SiteExecutor

    run_clientapp = _module("flwr.supernode.runtime.run_clientapp")
    monkeypatch.delattr(run_clientapp, "push_task_output")
    with pytest.raises(
        FlowerContractError, match=r"site executor .*run_clientapp\.push_task_output is gone.* flwr==1\.42\.0"
    ):
        site_compat.runtime_protocol()
    with pytest.raises(FlowerContractError):
        SiteExecutor(runtime_api_address="127.0.0.1:1")


def test_the_runtime_protocol_resolves_to_flowers_own_objects():
    from flwr.supernode.runtime import run_clientapp

    protocol = site_compat.runtime_protocol()
    assert protocol.push_task_output is run_clientapp.push_task_output
    assert hasattr(protocol.RuntimeHttpClient, "from_server_address")


def test_every_fleet_call_the_gate_lets_through_is_one_of_flowers():
    # A Flower that renamed a Fleet call would leave the sites refused at the gate.
    assert coordinator_compat.fleet_call_problems() == []


def test_the_coordinator_does_not_start_unlocked_on_a_changed_flower(monkeypatch):
    cli = _module(coordinator_compat.SUPERLINK_CLI)
    monkeypatch.delattr(cli, "_parse_superlink_lifespan_config")
    with pytest.raises(
        FlowerContractError, match=r"coordinator's SuperLink .*_parse_superlink_lifespan_config is gone"
    ):
        coordinator_compat.locked_superlink_app(flower_args=[], operator_port=1)
