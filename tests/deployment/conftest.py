"""One loopback federation for the deployment tests: a real flower-superlink with TLS
and node authentication, and three real hospital nodes (flower-supernode plus the
site executor), started once for all deployment tests and stopped by PID when the last of them
ends (package scope: the rest of the suite runs without it). The nodes beat every
10 s (Flower's shortest), so a node restarted after a crash waits 20 s, not 60 s."""

from __future__ import annotations

import pytest

from federation.engines.loopback import LoopbackFederation, build_loopback_federation


@pytest.fixture(scope="package")
def loopback(tmp_path_factory) -> LoopbackFederation:
    fed = build_loopback_federation(root=tmp_path_factory.mktemp("loopback"), sites=3, rows=300)
    # Flower's shortest heartbeat: a node killed by a test is marked offline after 20 s, not 60 s.
    fed.heartbeat_seconds = 10
    try:
        fed.start()
        yield fed
    finally:
        fed.stop()
