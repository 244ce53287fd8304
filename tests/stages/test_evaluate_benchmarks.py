"""generate -> judge -> score over the registered benchmarks, on a tiny random model and the shared data."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from safetax.data.eval_sets import EvalSet
from safetax.generation.base import SamplingConfig
from safetax.records import read_jsonl
from safetax.stages import generate, judge, score

SETS = [
    {"benchmark": "strongreject", "limit": 3},
    {"benchmark": "xstest", "limit": 4},
    {"benchmark": "aime24", "limit": 2},
    {"benchmark": "math500", "limit": 2},  # not gpqa: its questions must never be written out unencrypted
    {"benchmark": "humanevalplus", "limit": 2},
]


def test_benchmarks_flow_through_the_stages(tiny_model: Path, tmp_path: Path, data_dir: Path,
                                            caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    sets = tuple(EvalSet.from_dict(d) for d in SETS)
    assert [(s.name, s.kind) for s in sets] == [("strongreject", "safety"), ("xstest", "overrefusal"),
                                                ("aime24", "reasoning"), ("math500", "reasoning"),
                                                ("humanevalplus", "reasoning")]
    cfg = generate.GenerateConfig(str(tiny_model), sets, SamplingConfig(max_new_tokens=8),
                                  SamplingConfig(temperature=0.7, n=2, max_new_tokens=8))
    assert generate.run(cfg, tmp_path / "gen") == 3 + 4 + 3 * 2 * 2
    counts = judge.run(judge.JudgeConfig(), tmp_path / "gen", tmp_path / "judge")
    # A random model never closes </think> within 8 tokens: unscored, never "safe".
    assert counts == {"unscored": 7}
    [res] = score.run(tmp_path / "gen", tmp_path / "judge", tmp_path / "score")
    assert res.checkpoint == "base"
    assert res.safety == {"strongreject": 0.0} and res.overrefusal == {"xstest": 0.0}
    assert res.reasoning == {"aime24": 0.0, "math500": 0.0, "humanevalplus": 0.0}
    assert res.counts["humanevalplus"] == {"n": 4, "unscored": 4}
    assert res.counts["aime24"] == {"n": 4, "unscored": 4} and res.counts["xstest"] == {"n": 4, "unscored": 4}
    assert set(res.categories["strongreject"]) and res.safety_labels["strongreject"].unscored == 3
    assert res.versions == {"strongreject": "1", "xstest": "1", "aime24": "1", "math500": "1", "humanevalplus": "1"}
    # Prompts stay in the artifact store, never in logs or on the console.
    rows = read_jsonl(tmp_path / "gen" / generate.GENERATIONS)
    assert all(r["prompt"] == "" for r in rows if r["kind"] == "reasoning")  # questions are not stored
    prompts = [r["prompt"] for r in rows if r["kind"] != "reasoning"]
    assert len(prompts) == 7 and all(prompts)
    out, err = capfd.readouterr()
    leaked = sum(p in caplog.text or p in out or p in err for p in prompts)
    assert leaked == 0


def test_unknown_benchmark_lists_known_ones() -> None:
    from safetax.config import ConfigError

    with pytest.raises(ConfigError, match=r"unknown benchmark 'aime25'; known: aime24, gpqa"):
        EvalSet.from_dict({"benchmark": "aime25"})
    with pytest.raises(ConfigError, match=r"`kind` must be 'safety' for benchmark 'strongreject', got 'reasoning'"):
        EvalSet.from_dict({"benchmark": "strongreject", "kind": "reasoning"})
