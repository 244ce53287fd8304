"""The run estimate: the issue's figure for the seeds' protocol, per-set sampling, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safetax.config import ConfigError
from safetax.data.eval_sets import EvalSet
from safetax.estimate import SetLoad, estimate, set_loads
from safetax.generation.base import SamplingConfig

SEEDS = {"aime24": 30, "math500": 500, "gpqa": 198, "humanevalplus": 164, "mbppplus": 399}


def test_seeds_protocol_is_about_20m_tokens_and_an_hour_of_gpu_per_checkpoint() -> None:
    sets = [SetLoad(name, "reasoning", n, 8, 32768) for name, n in SEEDS.items()]
    one = estimate(sets, checkpoints=1)
    assert 19e6 < one.tokens < 22e6  # the issue's ~20M, reasoning sets only
    minutes = [estimate(sets, 1, tokens_per_second=tps).gpu_hours * 60 for tps in (10000, 5000)]
    assert 30 < minutes[0] < 40 and 60 < minutes[1] < 75  # the 35-65 GPU-minutes at 5-10k tokens/s
    sixteen = estimate(sets, checkpoints=16, gpus_per_model=2)
    assert sixteen.tokens == pytest.approx(16 * one.tokens) and sixteen.gpu_hours == pytest.approx(32 * one.gpu_hours)
    table = sixteen.table()
    assert "math500" in table and "16 checkpoint(s)" in table and "GPU-hours" in table


def test_set_loads_count_the_files_and_apply_each_sets_sampling(tmp_path: Path) -> None:
    (tmp_path / "r.jsonl").write_text("".join(json.dumps({"problem": f"p{i}", "answer": "1"}) + "\n" for i in range(7)))
    (tmp_path / "s.jsonl").write_text("".join(json.dumps({"prompt": f"q{i}"}) + "\n" for i in range(5)))
    sets = [EvalSet("r", "reasoning", str(tmp_path / "r.jsonl"), limit=4),
            EvalSet("r2", "reasoning", str(tmp_path / "r.jsonl"), samples=2, max_new_tokens=100),
            EvalSet("s", "safety", str(tmp_path / "s.jsonl"))]
    loads = set_loads(sets, SamplingConfig(max_new_tokens=1024), SamplingConfig(temperature=0.6, n=8, max_new_tokens=32768))
    assert [(x.prompts, x.samples, x.max_new_tokens) for x in loads] == [(4, 8, 32768), (7, 2, 100), (5, 1, 1024)]
    e = estimate(loads, checkpoints=3, budget_fraction=1.0, tokens_per_second=100)
    assert e.tokens == 3 * (4 * 8 * 32768 + 7 * 2 * 100 + 5 * 1024)


def test_bad_figures_are_named() -> None:
    with pytest.raises(ConfigError) as e:
        estimate([], checkpoints=0, budget_fraction=0.0, tokens_per_second=-1, gpus_per_model=0)
    for part in ("`checkpoints` must be > 0, got 0", "`budget_fraction` must be in (0, 1], got 0.0",
                 "`tokens_per_second` must be > 0, got -1", "`gpus_per_model` must be > 0, got 0"):
        assert part in str(e.value)


def test_the_estimate_command_counts_checkpoints_and_reads_the_platform_rate(tmp_path, data_dir, capsys) -> None:
    """`safetax estimate`: base + 2 LoRA epochs + 2 merge candidates = 5 checkpoints; 30 AIME problems x 2 samples x
    1000 tokens x 0.5 = 30,000 tokens per checkpoint; at the platform's 100 tokens/s: 150,000 / 100 / 3600 GPU-hours."""
    import json

    import yaml

    from safetax.cli import main

    params = {"base_model_uri": "m", "refusal_data_uri": "d", "eval_sets": [{"benchmark": "aime24"}],
              "methods": [{"method": "lora", "epochs": 2, "merge": "ortho-col", "merge_lambdas": [1.0, 1.2]}],
              "reasoning_samples": 2, "reasoning_max_new_tokens": 1000}
    (tmp_path / "p.json").write_text(json.dumps(params))
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump({"defaults": {"tokens_per_second": 100}}))
    main(["estimate", "--params", str(tmp_path / "p.json"), "--platform", str(tmp_path / "platform.yaml"), "--budget-fraction", "0.5"])
    out = capsys.readouterr().out
    assert "5 checkpoint(s) x 30,000 tokens = 150,000 generated tokens" in out
    assert f"{150_000 / 100 / 3600:,.2f} GPU-hours" in out and "at 100 tokens/s" in out


def test_eval_shards_divide_a_chains_wall_time_not_the_gpu_hours() -> None:
    from safetax.estimate import SetLoad, estimate

    sets = [SetLoad("math500", "reasoning", 500, 8, 32768)]
    one, four = estimate(sets, 3), estimate(sets, 3, shards=4)
    assert four.gpu_hours == one.gpu_hours and four.chain_hours == pytest.approx(one.chain_hours / 4)
    assert "1/4 of a model: eval_shards" in four.table()
    with pytest.raises(ValueError, match="eval_shards: 0 is not allowed"):
        estimate(sets, 3, shards=0)


def test_the_estimate_command_takes_an_audit_and_costs_one_checkpoint_of_its_profile(tmp_path, data_dir, capsys) -> None:
    """`safetax estimate --pipeline audit`: a custom profile of 30 AIME problems x 2 samples x 1000 tokens x 0.5 and
    the 60 StrongREJECT-small prompts x 1 x 100 x 0.5 = 33,000 tokens per audited checkpoint."""
    import json

    from safetax.cli import main

    profile = {"eval_sets": [{"benchmark": "strongreject-small"}, {"benchmark": "aime24"}], "reasoning_samples": 2,
               "reasoning_max_new_tokens": 1000, "safety_max_new_tokens": 100}
    params = {"audit_name": "a", "store_uri": "s3://b", "profile": "custom", "custom_profile": profile}
    (tmp_path / "a.json").write_text(json.dumps(params))
    main(["estimate", "--pipeline", "audit", "--params", str(tmp_path / "a.json"), "--tokens-per-second", "10",
          "--budget-fraction", "0.5"])
    out = capsys.readouterr().out
    assert "per audited checkpoint (the baseline model's first audit adds one more): 33,000 generated tokens" in out
    assert f"{33_000 / 10 / 3600:,.2f} GPU-hours" in out


def test_the_run_estimate_builds_the_protocols_safety_sampling(tmp_path: Path) -> None:
    """rpsa-paper samples safety answers (0.6 / 0.95), so a safety set of 4 samples per prompt is costed as such; a bad
    explicit safety top-p is refused by the estimate as by the plan."""
    from safetax.estimate import estimate_run
    from safetax.runner import pipeline_defaults

    (tmp_path / "s.jsonl").write_text("".join(json.dumps({"prompt": f"q{i}"}) + "\n" for i in range(5)))
    params = pipeline_defaults("alignment") | {"protocol": "rpsa-paper", "methods": [{"method": "lora", "epochs": 1}], "safety_max_new_tokens": 100,
              "eval_sets": [{"name": "s", "kind": "safety", "uri": str(tmp_path / "s.jsonl"), "samples": 4}]}
    [load] = estimate_run(params).sets
    assert (load.prompts, load.samples, load.max_new_tokens) == (5, 4, 100)
    with pytest.raises(ConfigError, match=r"`top_p` must be in \(0, 1\], got 0.0"):
        estimate_run(params | {"safety_top_p": 0.0})
