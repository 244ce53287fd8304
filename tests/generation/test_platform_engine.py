"""The platform file's engine keys (`defaults.judge_backend`, `defaults.vllm`) and the settings they compile to."""

from __future__ import annotations

from pathlib import Path

import pytest

from safetax.config import ConfigError
from safetax.generation.backends import EngineSettings
from safetax.platform import PlatformConfig, load_platform

REPO = Path(__file__).resolve().parents[2]


def test_without_engine_keys_the_settings_are_the_defaults() -> None:
    platform = PlatformConfig.from_dict({})
    assert platform.engine_settings() == EngineSettings()
    assert PlatformConfig.from_dict({"defaults": {"tokens_per_second": 0}}).engine_settings().tokens_per_second == 5000.0


def test_engine_keys_reach_the_settings() -> None:
    platform = PlatformConfig.from_dict({"defaults": {
        "judge_backend": "vllm", "tokens_per_second": 9000,
        "vllm": {"max_model_len": 40960, "gpu_memory_utilization": 0.85, "lora_serving": "merge", "adapter_slowdown": 0.3}}})
    e = platform.engine_settings()
    assert (e.judge_backend, e.tokens_per_second, e.max_model_len, e.gpu_memory_utilization) == ("vllm", 9000, 40960, 0.85)
    assert (e.lora_serving, e.adapter_slowdown, e.max_lora_rank) == ("merge", 0.3, 64)
    assert EngineSettings.from_dict(e.to_dict()) == e  # what the pipeline compiles in, read back by the stage


def test_the_example_clusters_profile_generates_and_judges_on_vllm() -> None:
    platform = load_platform(str(REPO / "k8s" / "overlays" / "example" / "platform.yaml"))
    e = platform.engine_settings()
    assert (platform.generation_backend, e.judge_backend, e.lora_serving) == ("vllm", "vllm", "auto")
    assert e.max_model_len >= 32768 + 1024  # the seeds' reasoning budget plus a prompt


def test_bad_engine_keys_are_reported_together_naming_key_and_allowed_values() -> None:
    with pytest.raises(ConfigError) as e:
        PlatformConfig.from_dict({"defaults": {
            "judge_backend": "tgi", "generation_backend": "tgi",
            "vllm": {"max_model_len": -1, "lora_serving": "both", "maxlen": 1, "tokens_per_second": 1}}})
    msg = str(e.value)
    for part in ("`defaults.judge_backend` must be one of 'hf', 'vllm', got 'tgi'",
                 "`defaults.generation_backend` must be one of 'hf', 'vllm', got 'tgi'",
                 "`defaults.vllm.maxlen` must be one of adapter_slowdown, engine_start_seconds",
                 "`defaults.vllm.tokens_per_second` must be absent here: it is the key defaults.tokens_per_second"):
        assert part in msg
    with pytest.raises(ConfigError) as e:
        PlatformConfig.from_dict({"defaults": {"vllm": {"max_model_len": -1, "lora_serving": "both", "max_lora_rank": 12}}})
    msg = str(e.value)
    for part in ("`defaults.vllm.max_model_len` must be an integer >= 0", "`defaults.vllm.lora_serving` must be one of "
                 "'auto', 'adapter', 'merge', got 'both'", "`defaults.vllm.max_lora_rank` must be one of 1, 8, 16"):
        assert part in msg
    with pytest.raises(ConfigError, match="`defaults.vllm` must be a mapping with the keys adapter_slowdown"):
        PlatformConfig.from_dict({"defaults": {"vllm": [40960]}})
