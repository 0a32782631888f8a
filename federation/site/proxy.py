"""The hospital's HTTP(S) proxy and the node's loopback traffic.

Flower 1.42's Fleet API is protobuf over HTTP through httpx, which honours
``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY`` and ``NO_PROXY`` (either case);
gRPC (the SuperNode's Runtime API, which the site executor dials on loopback)
honours ``https_proxy``/``http_proxy`` and ``no_proxy`` too. A proxy variable
without ``NO_PROXY`` covering loopback sends the node's own loopback traffic to the
hospital's proxy, which either refuses it or sees every task. So:

* ``with_loopback_bypass(env)`` adds ``127.0.0.1,localhost,::1`` to both
  ``NO_PROXY`` and ``no_proxy`` of the environment the node gives its processes;
* ``proxy_problem(env)`` says what is wrong with an operator's environment (a proxy
  set, loopback not covered), for ``node check``: the node fixes its own processes,
  but the operator's other tools (the flwr CLI, scripts) do not get that fix.

The Fleet traffic to a coordinator that is not on loopback still goes through the
proxy (a CONNECT tunnel: TLS is between the node and the SuperLink, end to end).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
NO_PROXY_VARIABLES = ("NO_PROXY", "no_proxy")
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def _entries(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _covers(entries: list[str], name: str) -> bool:
    """Whether a NO_PROXY list bypasses ``name`` (``*``, the name itself, or a CIDR/suffix
    form that httpx and gRPC both read the same way for these three names)."""
    accepted = {"*", name, f"[{name}]"}
    if name == "127.0.0.1":
        accepted |= {"127.0.0.0/8", "127.0.0.1/32"}
    if name == "::1":
        accepted |= {"::1/128"}
    return any(entry in accepted for entry in entries)


def proxies_set(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The proxy variables set (non-empty) in ``env``."""
    env = os.environ if env is None else env
    return {name: env[name] for name in PROXY_VARIABLES if env.get(name, "").strip()}


def uncovered_loopback(env: Mapping[str, str] | None = None) -> list[str]:
    """Loopback names that no NO_PROXY/no_proxy variable of ``env`` bypasses (every
    variable that is set must cover them: httpx reads the upper case first, gRPC the lower)."""
    env = os.environ if env is None else env
    present = [name for name in NO_PROXY_VARIABLES if name in env]
    if not present:
        return list(LOOPBACK_NAMES)
    return [name for name in LOOPBACK_NAMES if not all(_covers(_entries(env.get(var, "")), name) for var in present)]


def proxy_problem(env: Mapping[str, str] | None = None) -> str | None:
    """None when no proxy is set or NO_PROXY covers loopback; else what is wrong, and the fix."""
    env = os.environ if env is None else env
    proxies = proxies_set(env)
    missing = uncovered_loopback(env) if proxies else []
    if not missing:
        return None
    shown = ", ".join(f"{k}={v}" for k, v in proxies.items())
    no_proxy = env.get("NO_PROXY", env.get("no_proxy"))
    return (
        f"{shown} is set but NO_PROXY ({no_proxy!r}) does not cover {', '.join(missing)}: httpx and gRPC would "
        "send the node's loopback Runtime traffic (SuperNode <-> site executor) to the hospital's proxy. "
        "Fix: export NO_PROXY=127.0.0.1,localhost,::1 (and no_proxy likewise), adding any names you already "
        "list; `node start` adds them for its own processes, but the flwr CLI and your scripts do not."
    )


def with_loopback_bypass(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with 127.0.0.1, localhost and ::1 added to NO_PROXY and no_proxy (kept as
    given otherwise): the node's loopback traffic never goes to a proxy."""
    out = dict(env)
    merged: list[str] = []
    for var in NO_PROXY_VARIABLES:
        for entry in _entries(out.get(var, "")):
            if entry not in merged:
                merged.append(entry)
    for name in LOOPBACK_NAMES:
        if name not in merged:
            merged.append(name)
    for var in NO_PROXY_VARIABLES:
        out[var] = ",".join(merged)
    return out


def proxy_for(host: str, env: Mapping[str, str] | None = None) -> str | None:
    """The proxy URL httpx would use for ``https://host`` (HTTPS_PROXY, then ALL_PROXY),
    or None when no proxy is set or NO_PROXY names the host (or a domain it ends in)."""
    env = os.environ if env is None else env
    proxy = next(
        (env[v] for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy") if env.get(v, "").strip()), None
    )
    if proxy is None:
        return None
    no_proxy = _entries(env.get("NO_PROXY", env.get("no_proxy", "")))
    host = host.strip("[]").lower()
    for entry in no_proxy:
        entry = entry.lower().strip("[]")
        if entry == "*" or host == entry or host.endswith("." + entry.lstrip(".")) or _covers([entry], host):
            return None
    return proxy if "://" in proxy else f"http://{proxy}"


def open_tunnel(*, proxy: str, host: str, port: int, timeout: float):
    """A socket tunnelled to ``host:port`` through the HTTP proxy ``proxy`` (CONNECT), as
    the node's Fleet traffic goes; raises OSError with the proxy's answer when refused."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(proxy)
    if url.scheme not in ("http", ""):
        raise OSError(f"proxy {proxy}: only http:// proxies (CONNECT) are checked here")
    sock = socket.create_connection((url.hostname, url.port or 80), timeout=timeout)
    try:
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer and len(answer) < 8192:
            chunk = sock.recv(1024)
            if not chunk:
                break
            answer += chunk
        status = answer.split(b"\r\n", 1)[0].decode(errors="replace")
        if status.split()[1:2] != ["200"]:
            raise OSError(f"the proxy {proxy} answered {status or 'nothing'!r} to CONNECT {target}")
    except BaseException:
        sock.close()
        raise
    return sock
