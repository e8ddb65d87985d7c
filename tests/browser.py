"""Headless Chromium driven over the DevTools protocol: open a page, evaluate JavaScript in it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from websockets.sync.client import ClientConnection, connect

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class Page:
    def __init__(self, socket: ClientConnection) -> None:
        self._socket = socket
        self._next = 0

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited if it is a promise)."""
        self._next += 1
        self._socket.send(json.dumps({"id": self._next, "method": "Runtime.evaluate", "params": {
            "expression": expression, "returnByValue": True, "awaitPromise": True}}))
        while True:
            message = json.loads(self._socket.recv(timeout=60))
            if message.get("id") == self._next:
                result = message["result"]
                if "exceptionDetails" in result:
                    raise AssertionError(f"{expression}: {result['exceptionDetails']}")
                return result["result"].get("value")


@contextmanager
def open_page(url: str) -> Iterator[Page]:
    # The profile is Chromium's scratch: what its last processes leave in it is no test's business.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        # A session of its own: Chromium's helper processes (renderer, GPU, crash handler) write
        # in the profile too, and all of them must be gone before it is removed.
        browser = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                                    url], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)
        try:
            assert browser.stderr is not None
            port = None
            deadline = time.monotonic() + 120
            while port is None and time.monotonic() < deadline:
                line = browser.stderr.readline()
                found = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
                if found:
                    port = int(found.group(1))
                assert line or browser.poll() is None, "chromium exited before it listened"
            assert port is not None, "chromium never opened its DevTools port"
            targets = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=30).json()
            page = next(t for t in targets if t["type"] == "page")
            with connect(page["webSocketDebuggerUrl"], max_size=None) as socket:
                yield Page(socket)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(browser.pid, signal.SIGKILL)
            browser.wait(timeout=60)
