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
each step (flwr is pinned to 1.42.0; flower_tuning.check_flower_version refuses another).

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

TRUSTED_CLIENTAPP = "federation.site.client_app:app"
POLL_SECONDS = 0.1

logger = logging.getLogger("workbench.site_executor")


def clientapp_component(fab_content: bytes) -> str:
    """The ``clientapp`` a bundle names in its pyproject.toml."""
    from flwr.common.config import get_fab_config

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

    def __init__(self, *, runtime_api_address: str, poll_seconds: float = POLL_SECONDS) -> None:
        from federation.flower_tuning import check_flower_version, prompt_object_pulls

        check_flower_version()
        # A task is often acquired before the SuperNode has stored its message's
        # objects: retry those pulls after 20 ms, not Flower's 1 s (flower_tuning.py).
        prompt_object_pulls()
        self.runtime_api_address = runtime_api_address
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
        from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor, RuntimeVersionHttpInterceptor
        from flwr.supercore.retry import make_simple_http_retry_invoker
        from flwr.supercore.runtime import RuntimeHttpClient

        interceptors = [
            RuntimeVersionHttpInterceptor(component_name="SuperExec" if token is None else "flwr-clientapp")
        ]
        if token is not None:
            interceptors.append(RuntimeTokenHttpInterceptor(token))
        # The Runtime API listens on loopback only (127.0.0.1), as Flower's own
        # SuperExec reaches it: plain HTTP inside the site's machine.
        return RuntimeHttpClient.from_server_address(
            server_address=self.runtime_api_address,
            insecure=True,
            root_certificates=None,
            interceptors=interceptors,
            retry_invoker=make_simple_http_retry_invoker(),
        )

    def serve_forever(self, *, on_ready: Callable[[], None] | None = None) -> None:
        from flwr.proto.runtime_pb2 import AcquireTaskRequest
        from flwr.supercore.constant import TaskType

        client = self._client(None)
        if on_ready is not None:
            on_ready()
        try:
            while not self._stop.is_set():
                res = client.AcquireTask(AcquireTaskRequest(supported_task_types=[str(TaskType.CLIENT_APP)]))
                if res.HasField("task") and res.token:
                    self.run_task(token=res.token)
                else:
                    self._stop.wait(self.poll_seconds)
        finally:
            client.close()

    def run_task(self, *, token: str) -> None:
        """One task, as ``flwr-clientapp`` would run it, without a new process."""
        from flwr.app import Message
        from flwr.app.error import Error
        from flwr.common.constant import ErrorCode, SubStatus
        from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
        from flwr.supernode.runtime.run_clientapp import pull_task_input, push_message, push_task_output

        client = self._client(token)
        heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(client))
        heartbeat.start()
        context, message, reply = None, None, None
        sub_status, details = SubStatus.FAILED, "the site executor failed before the task ran"
        logger.debug("task acquired")
        try:
            message, context, run, fab = pull_task_input(client)
            component = clientapp_component(fab.content)
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
                    push_message(client, reply, context)
            finally:
                push_task_output(client=client, context=context, sub_status=sub_status, details=details)
                if heartbeat.is_running:
                    heartbeat.stop()
                client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The workbench's site executor for one SuperNode.")
    parser.add_argument("--runtime-api-address", required=True, help="The SuperNode's Runtime API, 127.0.0.1:PORT.")
    parser.add_argument("--ready-file", default="", help="Written once the ClientApp is imported and polling.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll otherwise
    executor = SiteExecutor(runtime_api_address=args.runtime_api_address)
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
