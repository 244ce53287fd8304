"""``safetax data`` as the ``safetax`` command line runs it, and a loopback HTTP server standing in for GitHub."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from safetax.data.cli import add_parser, main


@pytest.fixture()
def data_cli() -> Callable[..., int]:
    """``safetax data ARGS...`` -> exit status, parsed by a parser built like ``safetax``'s own."""

    def run(*argv: str) -> int:
        parser = argparse.ArgumentParser(prog="safetax")
        add_parser(parser.add_subparsers(dest="command", required=True))
        return main(parser.parse_args(["data", *argv]))

    return run


@pytest.fixture()
def http_files(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(base URL, {path: bytes}) of a server on 127.0.0.1 that serves the dict from memory (404 otherwise)."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)  # loopback only: never through a proxy
    files: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server API)
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", files
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
