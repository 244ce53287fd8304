"""Config values of the wrong type (text for numbers or booleans, booleans for numbers) are named errors."""

from __future__ import annotations

import pytest

from safetax.config import Checks, ConfigError, as_int
from safetax.stages.train import TrainConfig


@pytest.mark.parametrize("key", ["random_mask", "dynamic_ratio", "gradient_checkpointing"])
@pytest.mark.parametrize("value", ["false", "true", 0, 1, None])
def test_train_booleans_must_be_real_booleans(key: str, value: object) -> None:
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_dict({"method": "rpsa", key: value})
    assert f"`{key}` must be true or false, got {value!r}" in e.value.errors


def test_train_booleans_accept_true_and_false() -> None:
    cfg = TrainConfig.from_dict({"method": "rpsa", "random_mask": True, "dynamic_ratio": False, "gradient_checkpointing": True})
    assert (cfg.random_mask, cfg.dynamic_ratio, cfg.gradient_checkpointing) == (True, False, True)


def test_numbers_given_as_text_are_named_and_all_reported() -> None:
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_dict({"method": "rpsa", "learning_rate": "1e-4", "frozen_ratio": "0.5", "lora_rank": "4",
                               "seed": True, "random_mask": "no"})
    errors = "\n".join(e.value.errors)
    assert "`learning_rate` must be a number >= 0 (not text: write it without quotes), got '1e-4'" in errors
    assert "`frozen_ratio` must be a number in [0.0, 1.0]" in errors
    assert "`lora_rank` must be an integer, got '4'" in errors
    assert "`seed` must be an integer, got True" in errors
    assert "`random_mask` must be true or false" in errors


@pytest.mark.parametrize("check", ["positive", "non_negative"])
@pytest.mark.parametrize("value", ["32", True, False, None, [1]])
def test_number_checks_refuse_non_numbers_without_type_error(check: str, value: object) -> None:
    c = Checks("x")
    getattr(c, check)("generation_batch_size", value)
    assert len(c.errors) == 1 and c.errors[0].startswith("`generation_batch_size` must be a number")


def test_in_range_refuses_text_bool_and_nan() -> None:
    c = Checks("x")
    for value in ("0.6", True, float("nan")):
        c.in_range("temperature", value, 0.0, 2.0)
    c.in_range("temperature", 0.6, 0.0, 2.0)
    c.positive("batch", 2)
    assert len(c.errors) == 3 and all("`temperature` must be" in m for m in c.errors)


def test_integer_and_one_of_do_not_take_booleans() -> None:
    c = Checks("x")
    c.integer("lora_rank", True, 1)
    c.integer("lora_rank", 4, 1)
    c.one_of("lora_rank", True, (1, 8, 16))
    c.boolean("flag", "false")
    assert c.errors == ["`lora_rank` must be an integer >= 1, got True", "`lora_rank` must be one of 1, 8, 16, got True",
                        "`flag` must be true or false, got 'false'"]


@pytest.mark.parametrize("value", ["4", True, 4.5, float("nan"), float("inf")])
def test_as_int_refuses_non_integers(value: object) -> None:
    with pytest.raises(ConfigError, match="`epochs` must be an integer"):
        as_int("epochs", value)
