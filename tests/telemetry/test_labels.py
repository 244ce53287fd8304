"""Label validation, short model names and the grouping key."""

from __future__ import annotations

import pytest

from safetax.config import ConfigError
from safetax.telemetry import StageTelemetry, model_label


def make(**overrides: object) -> StageTelemetry:
    kwargs: dict[str, object] = {"pipeline": "safetax-alignment", "run_id": "r1", "model": "m", "method": "full",
                                 "gateway": ""}
    stage = str(overrides.pop("stage", "train"))
    return StageTelemetry(stage, **(kwargs | overrides))  # type: ignore[arg-type]


@pytest.mark.parametrize("label", ["pipeline", "run_id"])
def test_empty_required_label_is_a_value_error_naming_it(label: str) -> None:
    with pytest.raises(ValueError, match=f"`{label}` must be a non-empty string, got ''"):
        make(**{label: ""})


def test_empty_stage_is_rejected() -> None:
    with pytest.raises(ValueError, match="`stage` must be a non-empty string"):
        make(stage="")


def test_every_bad_label_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        make(pipeline="", run_id="x" * 200, method="lora\nr4")
    assert [e.split("`")[1] for e in info.value.errors] == ["pipeline", "run_id", "method"]
    assert "at most 128 characters" in str(info.value)
    assert "free of control characters" in str(info.value)


def test_model_and_method_may_be_empty_for_a_stage_without_them() -> None:
    assert make(stage="prepare", model="", method="").labels.stage_labels()["method"] == ""


@pytest.mark.parametrize("key", ["method", "checkpoint", "job"])
def test_grouping_keys_may_not_shadow_series_labels(key: str) -> None:
    with pytest.raises(ValueError, match="`grouping key` must be none of"):
        make(grouping={key: "x"})


def test_grouping_key_names_must_be_label_names() -> None:
    with pytest.raises(ValueError, match="Prometheus label name"):
        make(grouping={"checkpoint-set": "1-3"})


def test_grouping_key_holds_the_fixed_keys_and_the_extra_ones() -> None:
    t = make(grouping={"checkpoint_set": "epochs-1-3"})
    assert t.labels.grouping_key() == {"pipeline": "safetax-alignment", "run_id": "r1", "stage": "train",
                                       "method": "full", "checkpoint_set": "epochs-1-3"}


@pytest.mark.parametrize("field,value", [("checkpoint", ""), ("benchmark", "")])
def test_result_labels_are_validated(field: str, value: str) -> None:
    kwargs = {"benchmark": "strongreject", "checkpoint": "epoch-1"} | {field: value}
    with pytest.raises(ValueError, match=f"`{field}` must be a non-empty string"):
        make().result("safety_score", value=0.5, **kwargs)


@pytest.mark.parametrize("uri,name", [
    ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "DeepSeek-R1-Distill-Qwen-7B"),
    ("s3://AKIAKEY:secret@models/r1/DeepSeek-R1-Distill-Llama-8B/", "DeepSeek-R1-Distill-Llama-8B"),
    ("file:///mnt/models/tiny", "tiny"),
    ("/mnt/models/tiny/", "tiny"),
    ("tiny", "tiny"),
])
def test_model_label_is_the_last_path_component_without_credentials(uri: str, name: str) -> None:
    assert model_label(uri) == name
    assert make(model=uri).labels.model == name
