"""Commands run as an operator would, in a subprocess, with their output read as it comes."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from federation.processes import engine_env

HEARTBEAT_SECONDS = 10  # Flower's shortest: a crashed node is held online 20 s, not 60 s


def env() -> dict[str, str]:
    return engine_env({"WORKBENCH_NODE_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS)})


def workbench(*args: str, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env(),
        cwd=cwd,
    )


def _sigint_as_in_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class Running:
    """A command running in the background; its stdout and stderr lines as they come."""

    process: subprocess.Popen
    lines: queue.Queue = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, *args: str) -> Running:
        process = subprocess.Popen(
            [sys.executable, "-m", "workbench.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env(),
            # As a terminal starts it: a run launched from a background job inherits SIGINT
            # ignored, and Python then never turns Ctrl-C into KeyboardInterrupt.
            preexec_fn=_sigint_as_in_a_terminal,
        )
        running = cls(process=process)
        threading.Thread(target=running._read, daemon=True).start()
        return running

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern: str, *, timeout: float) -> re.Match:
        """The first line (from now on) matching ``pattern``; AssertionError with the output
        seen so far when the command ends or ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                line = ""
            if line is None:
                raise AssertionError(f"the command ended before {pattern!r}:\n" + "\n".join(self.seen))
            if line:
                self.seen.append(line)
                found = re.search(pattern, line)
                if found:
                    return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no line matched {pattern!r} within {timeout} s:\n" + "\n".join(self.seen))

    def interrupt(self) -> None:
        self.process.send_signal(signal.SIGINT)

    def finish(self, *, timeout: float) -> tuple[int, str]:
        """Exit code and the whole output."""
        code = self.process.wait(timeout=timeout)
        while True:
            try:
                line = self.lines.get(timeout=5)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
        return code, "\n".join(self.seen)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
