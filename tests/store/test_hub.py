"""Hub ids: download to the HF cache and the reachability check, against a fake hub on 127.0.0.1.

The fake hub serves the few endpoints ``snapshot_download`` and ``auth_check`` use (repo info, the
file tree, HEAD/GET of a file, auth-check) for the tiny test model ``org/tiny``, a gated
``org/gated`` and nothing else (404). huggingface_hub reads ``HF_ENDPOINT``, ``HF_HUB_CACHE`` and
``HF_HUB_OFFLINE`` once, at import, so the client side runs in a subprocess with them set, as a pod would.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from safetax.store.manifest import sha256_file

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TOKEN = "hf_not_a_real_token_4711"
CLIENT = """
import json, sys
from safetax.store import StoreError, check_reachable, local_model_dir
from safetax.store.digest import identify

out = []
for action, uri in json.loads(sys.argv[1]):
    try:
        if action == "identify":
            found = identify(uri, "checkpoints")
            out.append([found.digest, found.pinned])
        else:
            out.append(str(local_model_dir(uri, "base_model_uri")) if action == "dir" else check_reachable(uri, "judge_model"))
    except StoreError as e:
        out.append("error: " + str(e))
print(json.dumps(out))
"""


class FakeHub:
    """Serves ``files`` as hub model ``org/tiny``; records every request (method, path, authorization)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.requests = files, []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                hub.requests.append((self.command, self.path.split("?")[0], self.headers.get("Authorization", "")))

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                for repo, error in (("org/gated", ("GatedRepo", 403)), ("org/tiny", None)):
                    if path.startswith((f"/api/models/{repo}/", f"/{repo}/")) or path == f"/api/models/{repo}":
                        return self._gated(error) if error else self._tiny(path)
                self._send(404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"})

            def _tiny(self, path: str) -> None:
                if path.endswith("/auth-check"):
                    return self._send(200, b"{}")
                asked = path.split("/revision/", 1)[1] if "/revision/" in path else "main"
                if asked not in ("main", COMMIT):  # a commit the repo does not have
                    return self._send(404, b'{"error": "Invalid rev id"}', {"X-Error-Code": "RevisionNotFound"})
                if "/revision/" in path or path == "/api/models/org/tiny":
                    body = {"id": "org/tiny", "sha": COMMIT, "siblings": [{"rfilename": f} for f in hub.files]}
                    return self._send(200, json.dumps(body).encode())
                if "/tree/" in path:
                    tree = [{"type": "file", "path": f, "size": len(b), "oid": hashlib.sha1(b).hexdigest()} for f, b in hub.files.items()]
                    return self._send(200, json.dumps(tree).encode())
                name = path.split("/resolve/", 1)[1].split("/", 1)[1]
                data = hub.files[name]
                self._send(200, data, {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha1(data).hexdigest()}"'})

            def _gated(self, error: tuple[str, int]) -> None:
                self._send(error[1], b'{"error": "gated"}', {"X-Error-Code": error[0]})

            def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"


@pytest.fixture()
def fake_hub(tiny_model: Path) -> Iterator[FakeHub]:
    files = {p.name: p.read_bytes() for p in sorted(tiny_model.iterdir()) if p.is_file()}
    hub = FakeHub(files | {"original/consolidated.00.pth": b"not fetched"})
    thread = threading.Thread(target=hub.server.serve_forever, daemon=True)
    thread.start()
    yield hub
    hub.server.shutdown()
    hub.server.server_close()


def _client(actions: list[tuple[str, str]], env: dict[str, str]) -> list[str | None]:
    """What each (``dir`` | ``check``, uri) gives in a fresh process with ``env``: a path, None (reachable) or "error: ..."."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    proc = subprocess.run([sys.executable, "-c", CLIENT, json.dumps(actions)], env=base | {"HF_HUB_DISABLE_TELEMETRY": "1"} | env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_hub_model_downloads_to_the_hf_cache_and_checks_cheaply(fake_hub: FakeHub, tiny_model: Path, tmp_path: Path) -> None:
    env = {"HF_ENDPOINT": fake_hub.endpoint, "HF_HUB_CACHE": str(tmp_path / "hf"), "HF_TOKEN": TOKEN}
    [got] = _client([("dir", "org/tiny")], env)
    local = Path(str(got))
    assert local == tmp_path / "hf" / "models--org--tiny" / "snapshots" / COMMIT
    assert {p.name for p in local.iterdir()} == {p.name for p in tiny_model.iterdir() if p.is_file()}  # original/ skipped
    assert all(sha256_file(local / p.name) == sha256_file(p) for p in tiny_model.iterdir() if p.is_file())
    assert all(auth == f"Bearer {TOKEN}" for _, _, auth in fake_hub.requests)  # huggingface_hub sends HF_TOKEN itself

    fake_hub.requests.clear()
    checks = _client([("check", "org/tiny"), ("check", "org/gated"), ("check", "org/missing")], env)
    assert checks[0] is None
    assert [(m, p) for m, p, _ in fake_hub.requests if "/resolve/" in p or "/tree/" in p] == []  # nothing downloaded
    gated, missing = str(checks[1]), str(checks[2])
    assert gated.startswith("error: judge_model: hub model 'org/gated': access denied (HTTP 403)") and "HF_TOKEN" in gated
    assert missing.startswith("error: judge_model: hub model 'org/missing': not found on http://127.0.0.1:") and "(HTTP 404)" in missing
    assert TOKEN not in json.dumps(checks)


def test_offline_uses_the_cache_and_says_what_is_missing(fake_hub: FakeHub, tiny_model: Path, tmp_path: Path) -> None:
    cache = {"HF_HUB_CACHE": str(tmp_path / "hf")}
    _client([("dir", "org/tiny")], cache | {"HF_ENDPOINT": fake_hub.endpoint})
    fake_hub.requests.clear()
    local, check, other = _client([("dir", "org/tiny"), ("check", "org/tiny"), ("check", "org/other")], cache | {"HF_HUB_OFFLINE": "1"})
    assert fake_hub.requests == []
    assert Path(str(local)).name == COMMIT and check is None
    other = str(other)
    assert other.startswith("error: judge_model: hub model 'org/other': the hub is offline (HF_HUB_OFFLINE=1) and the repo "
                            "is not (completely) in the local HF cache (") and "s3://" in other


def test_no_network_says_the_hub_cannot_be_reached(tmp_path: Path) -> None:
    check, download = _client([("check", "org/tiny"), ("dir", "org/tiny")],
                              {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_CACHE": str(tmp_path / "hf")})
    assert str(check).startswith("error: judge_model: hub model 'org/tiny': cannot reach http://127.0.0.1:9 (") \
        and "HF_HUB_OFFLINE=1" in str(check), check
    assert str(download).startswith("error: base_model_uri: hub model 'org/tiny': the hub cannot be reached and the repo is "
                                    "not (completely) in the local HF cache"), download


def test_a_hub_id_is_identified_by_its_commit_and_a_pinned_id_loads_that_commit(fake_hub: FakeHub, tmp_path: Path) -> None:
    """The audit's identity of a hub id is the commit its main branch names (one metadata request, nothing
    downloaded), with the id pinned to it; a pinned id downloads that commit; a commit the repo lacks is named."""
    env = {"HF_ENDPOINT": fake_hub.endpoint, "HF_HUB_CACHE": str(tmp_path / "hf")}
    unknown = "f" * 40
    (digest, pinned), (same, again), local, missing, _ = _client(
        [("identify", "org/tiny"), ("identify", f"org/tiny@{COMMIT}"), ("dir", f"org/tiny@{COMMIT}"),
         ("check", f"org/tiny@{unknown}"), ("dir", "org/tiny")], env)  # the last one records refs/main in the cache
    assert pinned == again == f"org/tiny@{COMMIT}" and digest == same
    assert Path(str(local)) == tmp_path / "hf" / "models--org--tiny" / "snapshots" / COMMIT
    assert str(missing).startswith(f"error: judge_model: hub model 'org/tiny@{unknown}': the repo has no commit '{unknown}'")
    fake_hub.requests.clear()
    [[offline_digest, offline_pinned]] = _client([("identify", "org/tiny")], {"HF_HUB_CACHE": str(tmp_path / "hf"),
                                                                              "HF_HUB_OFFLINE": "1"})
    assert (offline_digest, offline_pinned) == (digest, pinned) and fake_hub.requests == []  # refs/main of the cache
