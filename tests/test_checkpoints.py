"""CheckpointRef: one string form for every checkpoint, one parser; the names train, merge and generate use."""

from __future__ import annotations

import pytest

from safetax.checkpoints import BASE, CheckpointRef, merge_name


@pytest.mark.parametrize("text", ["base", "lora-r4/epoch-3", "full/epoch-10", "lora-r4+ortho-both-l1.25/epoch-8",
                                  "r1.5_up+plain/epoch-1"])
def test_the_string_form_round_trips(text: str) -> None:
    assert str(CheckpointRef.parse(text)) == text


def test_parts_and_derived_names() -> None:
    ref = CheckpointRef.parse("lora-r4+ortho-both-l1.25/epoch-8")
    assert (ref.method, ref.epoch, ref.merge) == ("lora-r4", 8, "ortho-both-l1.25")
    assert ref.variant == "lora-r4+ortho-both-l1.25" and ref.dirname == "lora-r4+ortho-both-l1.25-epoch-8"
    plain = CheckpointRef("full", 3)
    assert plain.variant == "full" and plain.dirname == "epoch-3" and not plain.is_base
    assert CheckpointRef.parse(BASE).is_base and CheckpointRef.of("base", 0) == CheckpointRef(BASE)
    assert CheckpointRef.of("lora-r4+plain", 2) == CheckpointRef("lora-r4", 2, "plain")


def test_epochs_sort_numerically() -> None:
    refs = [CheckpointRef.parse(t) for t in ("lora/epoch-10", "lora/epoch-2", "full/epoch-1")]
    assert [str(r) for r in sorted(refs)] == ["full/epoch-1", "lora/epoch-2", "lora/epoch-10"]


@pytest.mark.parametrize(("text", "match"), [
    ("epoch-3", "is none of 'base'"),
    ("lora/3", "is none of"),
    ("lora/epoch-x", "is none of"),
    ("a+b+c/epoch-1", "is none of"),
])
def test_parse_errors_name_the_forms(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CheckpointRef.parse(text)


def test_invalid_parts() -> None:
    with pytest.raises(ValueError, match="method 'a/b'"):
        CheckpointRef("a/b", 1)
    with pytest.raises(ValueError, match="epoch -1"):
        CheckpointRef("lora", -1)
    with pytest.raises(ValueError, match="the base model has no epoch"):
        CheckpointRef(BASE, 2)


def test_merge_candidates_are_named_as_the_merge_stage_names_them() -> None:
    from safetax.stages.merge import MergeConfig

    for cfg, lam in ((MergeConfig("ortho-both", lambdas=(1.0, 1.25)), 1.25), (MergeConfig("ortho-col"), 1.0),
                     (MergeConfig("ortho-col", lambdas=(1.0, 2.0)), 2.0), (MergeConfig("plain"), 1.0)):
        show = cfg.mode.startswith("ortho") and (cfg.mode == "ortho-both" or len(cfg.lambdas) > 1)
        ref = CheckpointRef("lora-r4", 8, merge_name(cfg.mode, lam, show))
        assert ref.variant == cfg.candidate("lora-r4", lam).variant
