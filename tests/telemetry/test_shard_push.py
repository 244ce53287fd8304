"""A checkpoint evaluated in shards pushes the same result series, once merged, as one scored whole."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest

from safetax.shards import Shard, merge_scores
from safetax.stages.runtime import RunContext, push_scores, record_scores, stage_run
from safetax.stages.score import _aggregate
from safetax.testing.prometheus import scrape

TARGET = {"checkpoint": "lora-r4/epoch-1", "method": "lora-r4", "epoch": 1}


def _rows(seed: int) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    judged = [{"checkpoint": TARGET["checkpoint"], "benchmark": "sr", "kind": "safety", "item_id": f"s{i}", "sample": 0,
               "label": rng.choice(["safe", "unsafe", "unscored"]), "reason": "", "meta": {}, "version": "1"} for i in range(20)]
    samples = [{"checkpoint": TARGET["checkpoint"], "benchmark": "m", "item_id": f"q{q}", "sample": k, "version": "1",
                "value": rng.choice([1.0, 0.0])} for q in range(10) for k in range(2)]
    return judged, samples


def _results(gateway: str, run_id: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The run's result series (not the stage timings) on the gateway: (name, labels) -> value."""
    out = {}
    for s in scrape(gateway, prefix="safetax_"):
        if s.labels.get("run_id") == run_id and not s.name.startswith("safetax_stage_"):
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_merged_shards_push_the_whole_checkpoints_series(gateway_url: str, tmp_path: Path, run_id: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFETAX_PUSHGATEWAY", gateway_url)
    judged, samples = _rows(3)
    whole = _aggregate(TARGET, samples, judged)
    with stage_run("score", RunContext(f"{run_id}-whole", model="/models/tiny"), tmp_path / "whole", "lora-r4",
                   part=TARGET["checkpoint"]) as tel:
        record_scores(tel, [whole])
    key = lambda r: (r["benchmark"], r["item_id"])  # noqa: E731
    prompts = list(dict.fromkeys(map(key, judged + samples)))
    parts = [replace(_aggregate(TARGET, [s for s in samples if key(s) in mine], [j for j in judged if key(j) in mine]),
                     shard=f"{i}/2") for i in (1, 2) for mine in [set(Shard(i, 2).take(prompts))]]
    push_scores(RunContext(f"{run_id}-sharded", model="/models/tiny"), merge_scores(parts), tmp_path / "gathered")

    def same_run(d: dict) -> dict:
        return {(n, tuple((k, v.rsplit("-", 1)[0] if k == "run_id" else v) for k, v in labels)): x for (n, labels), x in d.items()}

    got, want = _results(gateway_url, f"{run_id}-sharded"), _results(gateway_url, f"{run_id}-whole")
    assert want and same_run(got) == pytest.approx(same_run(want), rel=1e-12)  # questions summed in another order
    assert all(dict(labels)["target"] == "lora-r4/epoch-1" and dict(labels)["stage"] == "score" for _, labels in got)
