"""Refusal SFT loader: prompt/refusal files and the DirectRefusal "Question: .. Answer: .." layout."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from safetax.data.refusal_sets import HubUnavailableError, fetch_hub_dataset, load_refusal_rows
from safetax.data.tables import DataError

REFUSAL = "I'm sorry, but I can't help with that."


def _jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_prompt_refusal_columns(refusal_file: Path) -> None:
    rows = load_refusal_rows(refusal_file)
    assert len(rows) == 20
    assert rows[3] == {"prompt": "Explain restricted task 3.", "refusal": REFUSAL}


def test_csv_with_extra_columns(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text('prompt,refusal,source\n"Do placeholder task 1.","No.",x\n')
    assert load_refusal_rows(path) == [{"prompt": "Do placeholder task 1.", "refusal": "No."}]


def test_direct_refusal_format(tmp_path: Path) -> None:
    rows = [
        {"refusal": f"Question: Do placeholder task {i}? Answer: {REFUSAL}"} for i in range(3)
    ] + [{"refusal": "\n  Question:\nDo placeholder\ntask 3?\n\nAnswer:\n  " + REFUSAL + "\n"}]
    got = load_refusal_rows(_jsonl(tmp_path / "direct.jsonl", rows))
    assert [r["prompt"] for r in got] == [f"Do placeholder task {i}?" for i in range(3)] + ["Do placeholder\ntask 3?"]
    assert all(r["refusal"] == REFUSAL for r in got)


def test_direct_refusal_json_array(tmp_path: Path) -> None:
    path = tmp_path / "direct.json"
    path.write_text(json.dumps([{"refusal": f"Question: task {i} Answer: {REFUSAL}"} for i in range(5)]))
    assert len(load_refusal_rows(path)) == 5


def test_direct_refusal_row_without_answer_names_row(tmp_path: Path) -> None:
    rows = [{"refusal": f"Question: task 1 Answer: {REFUSAL}"}, {"refusal": "Question: task 2 " + REFUSAL}]
    with pytest.raises(DataError, match=r"direct\.jsonl: line 2: column 'refusal'.*Answer:"):
        load_refusal_rows(_jsonl(tmp_path / "direct.jsonl", rows))


def test_errors_name_file_row_column(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"a\.jsonl.*missing column.*refusal"):
        load_refusal_rows(_jsonl(tmp_path / "a.jsonl", [{"prompt": "task", "answer": "no"}]))
    with pytest.raises(DataError, match=r"b\.jsonl: line 2: column 'refusal' is empty"):
        load_refusal_rows(_jsonl(tmp_path / "b.jsonl", [{"prompt": "t", "refusal": "no"}, {"prompt": "t", "refusal": " "}]))
    with pytest.raises(DataError, match=r"c\.jsonl: line 1: column 'prompt' must be text"):
        load_refusal_rows(_jsonl(tmp_path / "c.jsonl", [{"prompt": 3, "refusal": "no"}]))
    with pytest.raises(DataError, match="does not exist"):
        load_refusal_rows(tmp_path / "missing.jsonl")


def test_hub_offline_is_a_clear_fast_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # empty cache
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"), raising=False)
    t0 = time.monotonic()
    with pytest.raises(HubUnavailableError, match=r"unreachable.*local path or s3://"):
        fetch_hub_dataset("TianshengHuang/DirectRefusal")
    assert time.monotonic() - t0 < 10


def test_a_pinned_hub_dataset_is_read_at_its_commit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``org/name@<commit>`` reads that commit's files from the HF cache, whatever ``refs/main`` names."""
    from huggingface_hub import constants

    repo = tmp_path / "hub" / "datasets--org--refusals"
    for commit, text in (("a" * 40, "pinned"), ("b" * 40, "latest")):
        (repo / "snapshots" / commit).mkdir(parents=True)
        _jsonl(repo / "snapshots" / commit / "train.jsonl", [{"prompt": "task", "refusal": text}])
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("b" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"), raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True, raising=False)
    assert load_refusal_rows(fetch_hub_dataset("org/refusals@" + "a" * 40))[0]["refusal"] == "pinned"
    assert load_refusal_rows(fetch_hub_dataset("org/refusals"))[0]["refusal"] == "latest"


def test_benchmark_hub_id_is_tried_only_when_given_and_fails_clearly_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from huggingface_hub import constants

    from safetax.benchmarks.registry import get_benchmark

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"), raising=False)
    with pytest.raises(HubUnavailableError, match=r"walledai/StrongREJECT is unreachable"):
        get_benchmark("strongreject").load("walledai/StrongREJECT")
    with pytest.raises(FileNotFoundError, match=r"'/no/such/file.csv' does not exist"):
        get_benchmark("strongreject").load("/no/such/file.csv")
