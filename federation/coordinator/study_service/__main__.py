"""``python -m federation.coordinator.study_service --folder COORDINATOR``: run the service.

Started by ``workbench coordinator start`` (process.py); runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from federation.coordinator import study_runs
from federation.coordinator.superlink import Coordinator

from .app import MAX_BODY, ServiceState, create_app
from .audit_log import AuditLog
from .process import ServiceFiles, ensure_certificate, service_port
from .sessions import Sessions
from .studies import Studies


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="study_service", description=__doc__)
    parser.add_argument("--folder", type=Path, required=True, help="The coordinator folder.")
    parser.add_argument("--token-ttl", type=float, default=900.0, help="Seconds a login lasts.")
    parser.add_argument("--head-every", type=int, default=50, help="Audit lines between signed heads.")
    parser.add_argument("--max-body", type=int, default=MAX_BODY, help="Largest request body, in bytes.")
    parser.add_argument(
        "--unfollowed-after",
        type=float,
        default=study_runs.UNFOLLOWED_AFTER_SECONDS,
        help="Seconds a study's run lives without the service following it (after a restart).",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    coordinator = Coordinator.open(args.folder)
    files: ServiceFiles = ensure_certificate(coordinator)
    key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    state = ServiceState(
        coordinator=coordinator,
        sessions=Sessions(token_ttl=args.token_ttl),
        studies=Studies(coordinator=coordinator, unfollowed_after=args.unfollowed_after),
        audit=AuditLog.open(path=files.audit_log, key=key, head_every=args.head_every),  # type: ignore[arg-type]
        max_body=args.max_body,
    )
    resumed = state.studies.resume_following()
    if resumed:
        logging.getLogger("study_service").info("following again the studies %s", ", ".join(resumed))
    host = coordinator.bind_host
    uvicorn.run(
        create_app(state),
        host=host,
        port=service_port(coordinator),
        ssl_certfile=str(files.certificate),
        ssl_keyfile=str(files.key),
        timeout_keep_alive=5,
        timeout_graceful_shutdown=5,
        limit_concurrency=200,
        h11_max_incomplete_event_size=64 * 1024,  # headers
        log_level="info",
        access_log=True,
    )


if __name__ == "__main__":
    main()
