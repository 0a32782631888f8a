"""The container files and the health checks they call.

No container engine runs on these machines (no daemon, no compose plugin), so the
images are not built here: the test that would build them skips, saying so. What can be
checked is: the files parse, every image runs as a non-root user with its state in
volumes, compose locks every service down (read-only root, no capabilities, data and
keys read-only), and each command the files run (entry points and health checks) is a
real command of this workbench that behaves as the health check needs."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from workbench.cli import app as workbench_app

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
runner = CliRunner()


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Containerfile, continuation lines joined, comments dropped."""
    text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    joined = text.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def _exec_form(arguments: str) -> list[str]:
    import json

    return json.loads(arguments[arguments.index("[") :])


@pytest.mark.parametrize("role", ["node", "coordinator"])
def test_each_image_installs_offline_and_runs_as_a_non_root_user(role):
    steps = instructions(DEPLOY / f"Containerfile.{role}")
    final = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM") :]
    assert all(args.startswith("python:3.11-slim") for word, args in steps if word == "FROM")
    install = " ".join(args for word, args in steps if word == "RUN" and "pip install" in args)
    assert "--no-index --find-links /wheelhouse" in install  # the wheelhouse only, never an index
    (user,) = [args for word, args in final if word == "USER"]
    assert user.split(":")[0].isdigit() and int(user.split(":")[0]) >= 1000
    env = " ".join(args for word, args in final if word == "ENV")
    volumes = _exec_form(next(args for word, args in final if word == "VOLUME"))
    flwr_home = next(part.split("=", 1)[1] for part in env.split() if part.startswith("FLWR_HOME="))
    assert any(flwr_home.startswith(v) for v in volumes)  # Flower's home is in the state volume
    assert "NO_PROXY=127.0.0.1,localhost,::1" in env
    health = next(args for word, args in final if word == "HEALTHCHECK")
    entry = _exec_form(next(args for word, args in final if word == "ENTRYPOINT"))
    for command in (_exec_form(health[health.index("CMD") + 3 :]), entry):
        assert command[0] == "workbench"
        done = runner.invoke(workbench_app, [*command[1:3], "--help"])  # a real command of this workbench
        assert done.exit_code == 0, (command, done.output)


def test_compose_locks_every_service_down():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"coordinator", "hospital-a", "hospital-b"}
    for name, service in services.items():
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service["user"].split(":")[0] not in ("0", "root"), name
    for name in ("hospital-a", "hospital-b"):
        mounts = {m.split(":")[1]: m for m in services[name]["volumes"]}
        assert mounts["/data"].endswith(":ro") and mounts["/var/lib/workbench/keys"].endswith(":ro")
        assert mounts["/etc/workbench/node.toml"].endswith(":ro")
        assert not mounts["/var/lib/workbench/state"].endswith(":ro")  # the only writable place
        assert services[name]["depends_on"]["coordinator"]["condition"] == "service_healthy"


def _engine() -> str | None:
    for tool in ("podman", "docker"):
        if shutil.which(tool) and subprocess.run([tool, "info"], capture_output=True, timeout=30).returncode == 0:
            return tool
    return None


@pytest.mark.slow
def test_the_node_image_builds_where_a_container_engine_runs(tmp_path):
    engine = _engine()
    if engine is None:
        pytest.skip("no container engine runs here (docker has no daemon, podman is not installed): not built")
    if not (DEPLOY.parent / "wheelhouse").is_dir():
        pytest.skip("no wheelhouse: run `make wheelhouse` first (the images install from it only)")
    done = subprocess.run(
        [engine, "build", "-f", str(DEPLOY / "Containerfile.node"), "-t", "workbench-node-test", str(DEPLOY.parent)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_node_health_fails_unless_the_node_runs_and_is_connected(node):
    done = runner.invoke(workbench_app, ["node", "health", "--config", str(node.toml)])
    assert done.exit_code == 3
    assert done.output.strip() == "site hospital-a: UNHEALTHY: stopped"
    done = runner.invoke(workbench_app, ["node", "health", "--config", str(node.toml), "--json"])
    assert done.exit_code == 3 and '"healthy": false' in done.output  # JSON for scripts


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_coordinator_run_stays_in_the_foreground_and_health_follows_it(tmp_path):
    """What the coordinator's unit and container run: the SuperLink for as long as
    `coordinator run` lives, the study service beside it; SIGTERM stops them."""
    from federation.coordinator.superlink import Coordinator
    from federation.processes import engine_env, free_port, pid_alive

    coordinator = Coordinator.init(folder=tmp_path / "coordinator", address=f"127.0.0.1:{free_port()}")
    health = [sys.executable, "-m", "workbench.cli", "coordinator", "health", "--folder", str(coordinator.folder)]
    run = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "coordinator", "run", "--folder", str(coordinator.folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=engine_env(),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while subprocess.run(health, capture_output=True, env=engine_env()).returncode != 0:
            assert run.poll() is None and time.monotonic() < deadline, run.stdout.read().decode()
            time.sleep(1)
        superlink = coordinator.running_pid()
        assert superlink is not None and run.poll() is None  # still in the foreground
        from federation.coordinator.study_service.process import running_pid as service_pid

        while service_pid(coordinator) is None:  # the study service beside it
            assert run.poll() is None and time.monotonic() < deadline, run.stdout.read().decode()
            time.sleep(0.5)
        service = service_pid(coordinator)
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=60) == 0
        assert not pid_alive(superlink) and not pid_alive(service)
        down = subprocess.run(health, capture_output=True, text=True, env=engine_env())
        assert down.returncode == 3 and "UNHEALTHY: the SuperLink does not run" in down.stdout
    finally:
        if run.poll() is None:
            run.kill()
        coordinator.stop()
