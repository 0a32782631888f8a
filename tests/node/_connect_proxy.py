"""A small real HTTP CONNECT proxy on loopback, run by a test (asyncio, in a thread).

It does what a hospital's forward proxy does for HTTPS: answers ``CONNECT host:port``,
resolves the host itself (``hosts`` maps names that only the proxy knows, as a
hospital's DNS behind the proxy would), opens the connection and relays bytes both
ways without reading them (the TLS inside is the node's and the SuperLink's). It
records every CONNECT target and every plain-HTTP request, so a test can say what went through it.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field


@dataclass
class ConnectProxy:
    hosts: dict[str, str] = field(default_factory=dict)  # name -> address the proxy dials
    targets: list[str] = field(default_factory=list)  # every CONNECT target, in order
    requests: list[str] = field(default_factory=list)  # every plain-HTTP request (method and URL)
    port: int = 0

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ConnectProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the test proxy did not start")
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        words = head.split(b"\r\n", 1)[0].decode(errors="replace").split()
        if len(words) >= 2 and words[0] != "CONNECT":
            # A plain-HTTP request sent to the proxy (http:// URL): recorded, and refused
            # (this proxy forwards tunnels only, as many hospital proxies do).
            self.requests.append(f"{words[0]} {words[1]}")
        if len(words) < 2 or words[0] != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        target = words[1]
        self.targets.append(target)
        host, _, port = target.rpartition(":")
        host = host.strip("[]")
        try:
            up_reader, up_writer = await asyncio.open_connection(self.hosts.get(host, host), int(port))
        except OSError:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except (ConnectionError, OSError, RuntimeError):
            pass
