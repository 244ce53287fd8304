"""Engine settings (what the platform file gives the generate and judge stages) and backends by name."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from safetax.config import ConfigError
from safetax.generation.backends import EngineSettings, engine_version, make_backend
from safetax.generation.base import SamplingConfig


def test_defaults_are_the_documented_ones() -> None:
    e = EngineSettings()
    assert (e.max_model_len, e.gpu_memory_utilization, e.max_lora_rank, e.lora_serving, e.judge_backend) == (0, 0.9, 64, "auto", "hf")
    assert (e.adapter_slowdown, e.merge_bytes_per_second, e.engine_start_seconds, e.tokens_per_second) == (0.5, 1e9, 0.0, 5000.0)


def test_round_trip_through_a_compiled_dict() -> None:
    e = EngineSettings(max_model_len=40960, lora_serving="merge", judge_backend="vllm", tokens_per_second=8000)
    assert EngineSettings.from_dict(e.to_dict()) == e
    # KFP hands dict parameters back with integers as floats: accepted where the value is whole.
    floated = EngineSettings.from_dict({**e.to_dict(), "max_model_len": 40960.0, "max_lora_rank": 64.0})
    assert floated == e and isinstance(floated.max_model_len, int) and isinstance(floated.max_lora_rank, int)
    assert EngineSettings.from_dict(None) == EngineSettings()


def test_every_bad_value_is_reported_at_once_naming_key_and_allowed_values() -> None:
    with pytest.raises(ConfigError) as e:
        EngineSettings(max_model_len=-1, gpu_memory_utilization=1.5, max_lora_rank=12, lora_serving="both",
                       judge_backend="tgi", adapter_slowdown=1.0, merge_bytes_per_second=0, engine_start_seconds=-1,
                       tokens_per_second=0, judge_max_model_len=2.5)  # type: ignore[arg-type]
    msg = str(e.value)
    for part in ("`max_model_len` must be an integer >= 0", "`judge_max_model_len` must be an integer >= 0",
                 "`gpu_memory_utilization` must be a number in (0, 1], got 1.5",
                 "`max_lora_rank` must be one of 1, 8, 16, 32, 64, 128, 256, 320, 512 (vLLM's choices), got 12",
                 "`lora_serving` must be one of 'auto', 'adapter', 'merge', got 'both'",
                 "`judge_backend` must be one of 'hf', 'vllm', got 'tgi'", "`adapter_slowdown` must be a number in [0, 1)",
                 "`merge_bytes_per_second` must be a number > 0, got 0", "`tokens_per_second` must be a number > 0, got 0",
                 "`engine_start_seconds` must be a number >= 0 (seconds), got -1"):
        assert part in msg
    assert len(e.value.errors) == 10
    with pytest.raises(ConfigError, match="`max_model_len` must be an integer >= 0 .*got 4096.5"):
        EngineSettings.from_dict({"max_model_len": 4096.5})
    with pytest.raises(ConfigError, match="`maxlen` must be absent; known keys: adapter_slowdown"):
        EngineSettings.from_dict({"maxlen": 1})


def test_make_backend_builds_the_transformers_backend_by_name(tiny_model: Path) -> None:
    backend = make_backend("hf", str(tiny_model), batch_size=4, engine=EngineSettings(lora_serving="merge"))
    assert backend.name == "hf" and backend.version == engine_version("hf")
    out = backend.generate(["Compute 1+2."], SamplingConfig(max_new_tokens=3))
    assert len(out) == 1 and out[0][0].n_tokens <= 3
    with pytest.raises(ValueError, match="generation backend 'tgi': must be one of hf, vllm"):
        make_backend("tgi", str(tiny_model))


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_vllm_backend_without_vllm_says_what_to_do() -> None:
    with pytest.raises(ImportError, match="backend 'vllm' needs the vllm package"):
        make_backend("vllm", "any/model", engine=EngineSettings(max_model_len=4096))
    with pytest.raises(ImportError, match="backend 'vllm' needs the vllm package"):
        engine_version("vllm")
