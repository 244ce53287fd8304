"""The expected-output cache: HMAC-verified, private, recomputed when tampered with."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest

from safetax.benchmarks.registry import get_benchmark
from safetax.scoring import code as code_mod
from safetax.scoring import code_cache
from safetax.scoring.code import score_code


def test_roundtrip_private_files_and_tampering(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "code-expected" / "x.json"
    code_cache.save(path, {"T/1": {"base": [1]}})
    assert code_cache.load(path) == {"T/1": {"base": [1]}}
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((path.parent / code_cache.KEY_FILE).stat().st_mode) == 0o600
    mac, body = path.read_bytes().split(b"\n", 1)
    path.write_bytes(mac + b"\n" + body.replace(b"[1]", b"[2]"))  # same MAC, other outputs
    with caplog.at_level(logging.WARNING):
        assert code_cache.load(path) == {}
    assert "integrity check" in caplog.text
    path.write_bytes(b'{"T/1": {"base": [2]}}')  # the unsigned format of before
    assert code_cache.load(path) == {}


def test_a_key_readable_by_others_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    code_cache.save(path, {"a": 1})
    key = tmp_path / code_cache.KEY_FILE
    key.chmod(0o644)
    assert code_cache.load(path) == {}  # signed with a key others could read: not trusted
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_tampered_cache_is_recomputed_not_trusted(shared_data: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    b = get_benchmark("humanevalplus")
    item = next(i for i in b.load(str(shared_data / b.default_path)) if i.id == "HumanEval/2")
    right = "```python\ndef truncate_number(number):\n    return number % 1.0\n```"
    wrong = "```python\ndef truncate_number(number):\n    return None\n```"
    assert [s.value for s in score_code([right, wrong], [item] * 2, b.tasks, "humaneval", cache_dir=tmp_path)] == [1, 0]
    [path] = (tmp_path / "code-expected").glob("humaneval-*.json")
    n = {g: len(b.tasks["HumanEval/2"][f"{g}_input"]) for g in ("base", "plus")}
    entry = {"bytes": 0, **{g: [None] * k for g, k in n.items()}, **{f"{g}_t": [1.0] * k for g, k in n.items()}}
    forged = {"HumanEval/2": entry}
    mac = path.read_bytes().split(b"\n", 1)[0]  # an attacker who can write the file but not read the key
    path.write_bytes(mac + b"\n" + json.dumps(forged, sort_keys=True).encode())
    monkeypatch.setattr(code_mod, "_memo", {})  # the next scoring process
    assert [s.value for s in score_code([right, wrong], [item] * 2, b.tasks, "humaneval", cache_dir=tmp_path)] == [1, 0]
    assert code_cache.load(path)["HumanEval/2"]["base"] != forged["HumanEval/2"]["base"]  # rewritten by the scorer
    assert os.stat(path).st_mode & 0o077 == 0
