"""The site executor: Flower's SuperExec and the site's ClientApp in ONE long-lived process.

Flower's default node (``--isolation subprocess``) starts a ``flwr-clientapp``
process for every message; that process imports flwr (about 2 s here) and the
site's app imports torch, Opacus and pandas (about 5 s more), so a round of 3 sites
costs tens of seconds of imports against half a second of training. This module
replaces both with one process per site, started beside a SuperNode run with
``--isolation process``: it polls the SuperNode's Runtime API for tasks
(``AcquireTask``, as SuperExec does), pulls each task's message and context,
runs the site's real ClientApp in-process (torch is imported once, at start),
and pushes the reply and the task's status back, using flwr's own functions for
each step. Those functions are Flower's private Runtime protocol: they are declared
and checked in flwr_compat.py, and the executor refuses to start when the installed
Flower no longer matches them (``FlowerContractError``).

The executor also decides WHAT may run: only the workbench's own ClientApp
(``federation.site.client_app:app``, the policy gate and audit log are inside its
``serve()``). A bundle naming any other ClientApp gets an error reply; the site
never imports code that came over the wire.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TRUSTED_CLIENTAPP = "federation.site.client_app:app"
POLL_SECONDS = 0.1
ACQUIRE_TASK = "/flwr.proto.Runtime/AcquireTask"  # the Runtime call the node's secret signs
EXIT_CONTRACT = 4  # cli_support.EXIT_INTERNAL: the installed Flower does not match flwr_compat.py

logger = logging.getLogger("workbench.site_executor")


def clientapp_component(fab_content: bytes, *, get_fab_config: Callable[[bytes], dict]) -> str:
    """The ``clientapp`` a bundle names in its pyproject.toml (read with Flower's own reader)."""
    config = get_fab_config(fab_content)
    return str(config["tool"]["flwr"]["app"]["components"].get("clientapp", ""))


@dataclass
class ExecutorStats:
    """Counts for the node's log and for tests."""

    tasks: int = 0
    refused_bundles: int = 0
    failures: int = 0


class SiteExecutor:
    """Serves the SuperNode's ClientApp tasks, one at a time, until stopped."""

    def __init__(
        self, *, runtime_api_address: str, runtime_secret: bytes | None = None, poll_seconds: float = POLL_SECONDS
    ) -> None:
        from federation.site.flwr_compat import runtime_protocol, tune_executor

        # Refuses to start (FlowerContractError) when Flower's Runtime protocol changed.
        self.flwr = runtime_protocol()
        # A task is often acquired before the SuperNode has stored its message's
        # objects: retry those pulls after 20 ms, not Flower's 1 s (flwr_contract.py).
        self.tuning_warnings = tune_executor()
        self.runtime_api_address = runtime_api_address
        self.runtime_secret = runtime_secret
        self.poll_seconds = poll_seconds
        self.stats = ExecutorStats()
        self._stop = threading.Event()
        started = time.monotonic()
        # The one heavy import of the site: torch, Opacus, pandas, the ledger.
        from federation.site.client_app import app as client_app

        self.client_app = client_app
        self.import_seconds = time.monotonic() - started

    def stop(self) -> None:
        self._stop.set()

    def _client(self, token: str | None):
        rt = self.flwr
        interceptors = [
            rt.RuntimeVersionHttpInterceptor(component_name="SuperExec" if token is None else "flwr-clientapp")
        ]
        if token is not None:
            interceptors.append(rt.RuntimeTokenHttpInterceptor(token))
        elif self.runtime_secret is not None:
            # The SuperNode hands a task only to a request signed with the node's secret.
            interceptors.append(
                rt.SuperExecAuthHttpInterceptor(master_secret=self.runtime_secret, protected_methods=[ACQUIRE_TASK])
            )
        # The Runtime API listens on loopback only (127.0.0.1), as Flower's own
        # SuperExec reaches it: plain HTTP inside the site's machine.
        return rt.RuntimeHttpClient.from_server_address(
            server_address=self.runtime_api_address,
            insecure=True,
            root_certificates=None,
            interceptors=interceptors,
            retry_invoker=rt.make_simple_http_retry_invoker(),
        )

    def serve_forever(self, *, on_ready: Callable[[], None] | None = None) -> None:
        rt = self.flwr
        client = self._client(None)
        if on_ready is not None:
            on_ready()
        try:
            while not self._stop.is_set():
                res = client.AcquireTask(rt.AcquireTaskRequest(supported_task_types=[str(rt.TaskType.CLIENT_APP)]))
                if res.HasField("task") and res.token:
                    self.run_task(token=res.token)
                else:
                    self._stop.wait(self.poll_seconds)
        finally:
            client.close()

    def run_task(self, *, token: str) -> None:
        """One task, as ``flwr-clientapp`` would run it, without a new process."""
        from flwr.app import Error, Message

        rt = self.flwr
        ErrorCode, SubStatus = rt.ErrorCode, rt.SubStatus  # noqa: N806 (Flower's names)
        client = self._client(token)
        heartbeat = rt.HeartbeatSender(rt.make_task_heartbeat_fn_http(client))
        heartbeat.start()
        context, message, reply = None, None, None
        sub_status, details = SubStatus.FAILED, "the site executor failed before the task ran"
        logger.debug("task acquired")
        try:
            message, context, run, fab = rt.pull_task_input(client)
            component = clientapp_component(fab.content, get_fab_config=rt.get_fab_config)
            if component != TRUSTED_CLIENTAPP:
                self.stats.refused_bundles += 1
                details = (
                    f"this site runs only the workbench's ClientApp ({TRUSTED_CLIENTAPP}); the app bundle "
                    f"{run.fab_id or fab.hash_str[:12]} names {component!r}. Nothing was run."
                )
                logger.warning(details)
                reply = Message(Error(code=ErrorCode.LOAD_CLIENT_APP_EXCEPTION, reason=details), reply_to=message)
            else:
                started = time.monotonic()
                reply = self.client_app(message=message, context=context)
                sub_status, details = SubStatus.COMPLETED, ""
                self.stats.tasks += 1
                # The benchmark reads these lines to split a round into site work and the rest.
                logger.info(
                    "task %s of run %s took %.3f s",
                    message.metadata.message_type,
                    message.metadata.run_id,
                    time.monotonic() - started,
                )
        except Exception as err:  # the node stays up; the coordinator gets an error reply
            self.stats.failures += 1
            details = f"{type(err).__name__}: {err}"
            logger.exception("task failed")
            if message is not None:
                reply = Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=details), reply_to=message)
        finally:
            try:
                if reply is not None and context is not None:
                    rt.push_message(client, reply, context)
            finally:
                rt.push_task_output(client=client, context=context, sub_status=sub_status, details=details)
                if heartbeat.is_running:
                    heartbeat.stop()
                client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The workbench's site executor for one SuperNode.")
    parser.add_argument("--runtime-api-address", required=True, help="The SuperNode's Runtime API, 127.0.0.1:PORT.")
    parser.add_argument("--ready-file", default="", help="Written once the ClientApp is imported and polling.")
    parser.add_argument(
        "--runtime-secret-file", default="", help="The node's Runtime API secret (the SuperNode's own, 0600)."
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll otherwise
    from federation.flwr_contract import FlowerContractError

    try:
        secret = Path(args.runtime_secret_file).read_bytes() if args.runtime_secret_file else None
        executor = SiteExecutor(runtime_api_address=args.runtime_api_address, runtime_secret=secret)
    except FlowerContractError as err:
        logger.error("%s", err)
        print(f"error: {err}", file=sys.stderr)
        return EXIT_CONTRACT
    for warning in executor.tuning_warnings:
        logger.warning("%s", warning)
    logger.info("site ClientApp imported in %.2f s; serving %s", executor.import_seconds, args.runtime_api_address)

    def ready() -> None:
        if args.ready_file:
            with open(args.ready_file, "w") as fh:
                fh.write(f"{executor.import_seconds:.3f}\n")

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: executor.stop())
    executor.serve_forever(on_ready=ready)
    logger.info("stopped after %d tasks", executor.stats.tasks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
