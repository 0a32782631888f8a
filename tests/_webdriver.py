"""A minimal W3C WebDriver client for Debian's chromedriver (no selenium needed).

Only what the browser tests use: open a page, size the window, run a script, take a screenshot.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

# Headless Chromium on a machine without network: these flags keep it from calling home.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,2000",
]


def browser_missing() -> str | None:
    """Why no browser test can run here, or None when Chromium and its driver exist."""
    for program in ("chromium", "chromedriver"):
        if shutil.which(program) is None:
            return f"{program} is not installed (Debian packages chromium and chromium-driver; .ci/run installs them)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Session:
    def __init__(self, base: str, session_id: str) -> None:
        self._base = f"{base}/session/{session_id}"

    def _call(self, method: str, path: str, body: dict | None = None) -> object:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self._base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())["value"]

    def open(self, url: str) -> None:
        self._call("POST", "/url", {"url": url})

    def run(self, script: str) -> object:
        return self._call("POST", "/execute/sync", {"script": script, "args": []})

    def resize(self, *, width: int, height: int) -> None:
        """The window's outer size in CSS pixels (a laptop screen: 1366 x 768)."""
        self._call("POST", "/window/rect", {"width": width, "height": height})

    def screenshot(self, out: Path) -> Path:
        out.write_bytes(base64.b64decode(self._call("GET", "/screenshot")))
        return out


@contextmanager
def chromium_session():
    port = _free_port()
    driver = subprocess.Popen(["chromedriver", f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/status", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("chromedriver did not start within 30 s") from None
                time.sleep(0.2)
        caps = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": shutil.which("chromium"),
                        "args": [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"],
                    },
                }
            }
        }
        request = urllib.request.Request(
            f"{base}/session",
            data=json.dumps(caps).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=90) as response:
            session_id = json.loads(response.read())["value"]["sessionId"]
        session = Session(base, session_id)
        try:
            yield session
        finally:
            try:
                session._call("DELETE", "")
            except OSError:
                pass
    finally:
        driver.terminate()
        try:
            driver.wait(timeout=10)
        except subprocess.TimeoutExpired:
            driver.kill()
        shutil.rmtree(profile, ignore_errors=True)
