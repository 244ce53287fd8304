"""Headless Chromium driven over the DevTools protocol, for tests that load a page as a user's browser would.

Standard library only: a minimal WebSocket client (RFC 6455 text frames, client-masked) speaks the DevTools
protocol to one page. The browser runs with a fresh profile, no network services (no sync, updates or
QUIC) and no sandbox (tests run as root in containers); it is killed when the context ends.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-extensions", "--remote-debugging-port=0")
START_TIMEOUT_S = 30.0


def chromium_path() -> str | None:
    """The Chromium binary (Debian's ``chromium``), or None when it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class _Socket:
    """A WebSocket over a plain TCP socket: send text, receive text (fragments joined, pings answered)."""

    def __init__(self, url: str, timeout: float) -> None:
        m = re.match(r"ws://([^/:]+):(\d+)(/.*)", url)
        if not m:
            raise ValueError(f"not a ws:// URL: {url!r}")
        self.sock = socket.create_connection((m[1], int(m[2])), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {m[3]} HTTP/1.1\r\nHost: {m[1]}:{m[2]}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"WebSocket upgrade refused: {head.splitlines()[0]!r}")

    def _exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("DevTools socket closed")
            buf += chunk
        return buf

    def send(self, text: str) -> None:
        data, mask = text.encode(), os.urandom(4)
        n = len(data)
        head = struct.pack("!BB", 0x81, 0x80 | n) if n < 126 else (
            struct.pack("!BBH", 0x81, 0xFE, n) if n < 65536 else struct.pack("!BBQ", 0x81, 0xFF, n))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv(self) -> str:
        parts = b""
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            n = struct.unpack("!H", self._exact(2))[0] if n == 126 else struct.unpack("!Q", self._exact(8))[0] if n == 127 else n
            payload = self._exact(n)
            opcode = b0 & 0x0F
            if opcode == 0x9:  # ping: answer, keep reading
                self.sock.sendall(struct.pack("!BB", 0x8A, 0x80 | len(payload)) + b"\0\0\0\0" + payload)
                continue
            if opcode == 0x8:
                raise ConnectionError("DevTools socket closed by the browser")
            parts += payload
            if b0 & 0x80:
                return parts.decode()


class Page:
    """One browser tab: ``call`` a DevTools method; ``events`` collects every event received so far."""

    def __init__(self, ws: _Socket) -> None:
        self.ws, self.next_id, self.events = ws, 0, list[dict[str, Any]]()

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"DevTools {method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, event: str, timeout: float = 30.0) -> dict[str, Any]:
        """Block until ``event`` (e.g. ``Page.loadEventFired``) arrives."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(e.get("method") == event for e in self.events):
                return next(e for e in self.events if e.get("method") == event)
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(f"no {event} within {timeout}s")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable results only)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors (failed loads, blocked requests) so far."""
        out = []
        for e in self.events:
            method, p = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                out.append("exception: " + str(p.get("exceptionDetails", {}).get("text")))
            elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append("log: " + str(p["entry"].get("text")))
        return out

    def screenshot(self, path: Path) -> Path:
        """A PNG of the whole page."""
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)


def _devtools_port(proc: subprocess.Popen[str], timeout: float) -> int:
    """The port Chromium announces on stderr (``DevTools listening on ws://127.0.0.1:PORT/...``)."""
    deadline = time.monotonic() + timeout
    assert proc.stderr is not None
    lines = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        if m := re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line):
            return int(m[1])
    raise RuntimeError("chromium did not start its DevTools server; its output:\n" + "".join(lines[-20:]))


@contextmanager
def open_page(url: str, width: int = 1400, height: int = 1000, timeout: float = START_TIMEOUT_S) -> Iterator[Page]:
    """Start headless Chromium with a fresh profile, load ``url`` and yield its page once loaded, with console
    and log events recorded from before the load."""
    binary = chromium_path()
    if binary is None:
        raise FileNotFoundError("chromium is not installed (Debian: apt-get install chromium; scripts/system-deps.sh)")
    with tempfile.TemporaryDirectory(prefix="safetax-chromium-") as profile:
        proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            port = _devtools_port(proc, timeout)
            # Keep reading its stderr, or a full pipe would stall the browser.
            threading.Thread(target=lambda: [None for _ in proc.stderr or []], daemon=True).start()
            targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout).read())
            ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")
            page = Page(_Socket(ws_url, timeout))
            for domain in ("Page", "Runtime", "Log"):
                page.call(f"{domain}.enable")
            page.call("Page.navigate", url=url)
            page.wait_for("Page.loadEventFired", timeout)
            yield page
        finally:
            proc.kill()
            proc.wait(timeout=10)
