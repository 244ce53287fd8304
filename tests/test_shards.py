"""Evaluation shards (safetax.shards): a model's prompts split over chains and merged back exactly."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest

from safetax.artifacts import StageCost, read_generations, read_scores, write_scores
from safetax.data.eval_sets import EvalSet
from safetax.generation.base import SamplingConfig
from safetax.shards import MAX_SHARDS, Shard, check_count, items, merge_scores, parse
from safetax.stages import generate, judge, score
from safetax.stages.score import _aggregate
from safetax.store import atomic_dir

TARGET = {"checkpoint": "lora-r4/epoch-2", "method": "lora-r4", "epoch": 2}


def test_items_round_trip_through_parse() -> None:
    names = ["base", "lora-r4/epoch-1", "lora-r4+ortho-both-l1.25/epoch-10"]
    for n in (1, 2, 5):
        got = [parse(i) for i in items(names, n)]
        assert [name for name, _ in got] == [x for x in names for _ in range(n)]
        assert [s for _, s in got] == ([None] * len(names) if n == 1 else [Shard(i, n) for _ in names for i in range(1, n + 1)])


@pytest.mark.parametrize("bad", [0, -1, MAX_SHARDS + 1, 2.5, True, "2"])
def test_a_bad_shard_count_names_the_parameter_and_the_allowed_values(bad: object) -> None:
    with pytest.raises(ValueError, match=rf"eval_shards: .* an integer from 1 \(no shards\) to {MAX_SHARDS}"):
        check_count(bad)


def test_shards_partition_the_prompts() -> None:
    prompts = list(range(23))
    parts = [Shard(i, 4).take(prompts) for i in range(1, 5)]
    assert sorted(p for part in parts for p in part) == prompts and max(map(len, parts)) - min(map(len, parts)) <= 1


def _judged_and_samples(seed: int) -> tuple[list[dict], list[dict]]:
    """Mixed verdicts of safety (categories, hazards), over-refusal (benign and contrasts) and reasoning samples."""
    rng = random.Random(seed)
    judged, samples = [], []
    for i in range(40):
        label = rng.choice(["safe", "unsafe", "unscored"])
        judged.append({"checkpoint": TARGET["checkpoint"], "benchmark": "sr", "kind": "safety", "item_id": f"s{i}", "sample": 0,
                       "label": label, "reason": label, "categories": ["S1"] if label == "unsafe" and rng.random() < .5 else [],
                       "meta": {"category": rng.choice(["a", "b"])}, "version": "1"})
    for i in range(30):
        label = rng.choice(["safe", "unsafe", "unscored"])
        judged.append({"checkpoint": TARGET["checkpoint"], "benchmark": "xs", "kind": "overrefusal", "item_id": f"x{i}", "sample": 0,
                       "label": label, "reason": label, "meta": {"label": rng.choice(["safe", "unsafe"])}, "version": "1"})
    for q in range(25):
        for k in range(4):  # a question's samples stay in one shard
            samples.append({"checkpoint": TARGET["checkpoint"], "benchmark": "m", "item_id": f"q{q}", "sample": k, "version": "1",
                            "value": rng.choice([1.0, 0.0, None])})
    return judged, samples


def _prompt(row: dict) -> tuple[str, str]:
    return row["benchmark"], row["item_id"]


@pytest.mark.parametrize("n", [2, 3, 7])
def test_merged_shard_records_equal_the_whole_checkpoints(n: int) -> None:
    judged, samples = _judged_and_samples(n)
    whole = _aggregate(TARGET, samples, judged)
    prompts = list(dict.fromkeys(map(_prompt, judged + samples)))
    parts = []
    for i in range(1, n + 1):
        mine = set(Shard(i, n).take(prompts))
        parts.append(replace(_aggregate(TARGET, [s for s in samples if _prompt(s) in mine], [j for j in judged if _prompt(j) in mine]),
                             shard=f"{i}/{n}", judge_agreement={"a vs b": {"safe|safe": i, "unsafe|safe": 1}}))
    random.Random(0).shuffle(parts)  # the gather step collects them in any order
    [merged] = merge_scores(parts)
    assert merged.to_dict() == replace(whole, judge_agreement={"a vs b": {"safe|safe": n * (n + 1) // 2, "unsafe|safe": n}}).to_dict()
    assert merged.extra["compliance_unsafe:xs"] == pytest.approx(whole.extra["compliance_unsafe:xs"])


def test_merged_cost_adds_up_and_recomputes_its_rates() -> None:
    costs = [StageCost("generate", 10, 6, 0, 4, 600, 3.0, 1), StageCost("generate", 12, 12, 0, 0, 900, 6.0, 1)]
    parts = [replace(_aggregate(TARGET, [], []), shard=f"{i + 1}/2", cost={"generate": c.to_dict() | {"stage": 0}})
             for i, c in enumerate(costs)]
    for p in parts:
        p.cost["generate"].pop("stage")
    [merged] = merge_scores(parts)
    whole = StageCost("generate", 22, 18, 0, 4, 1500, 9.0, 1).to_dict()
    whole.pop("stage")
    assert merged.cost["generate"] == pytest.approx(whole)


def test_incomplete_duplicate_or_overlapping_shards_are_errors() -> None:
    judged, samples = _judged_and_samples(1)
    a = replace(_aggregate(TARGET, samples, judged), shard="1/2")
    b = replace(_aggregate(TARGET, [], []), shard="2/2")
    with pytest.raises(ValueError, match=r"shards \['1/2'\]; expected each of 1..2 of 2 once"):
        merge_scores([a])
    with pytest.raises(ValueError, match=r"expected each of 1..2 of 2 once"):
        merge_scores([a, a, b])
    with pytest.raises(ValueError, match=r"item\(s\) .* in more than one shard"):
        merge_scores([a, replace(a, shard="2/2")])
    with pytest.raises(ValueError, match=r"both a whole record and shard records"):
        merge_scores([a, b, replace(a, shard="")])
    assert merge_scores([replace(a, shard="")]) == [replace(a, shard="")]  # whole records pass through


def test_read_scores_merges_shard_outputs(tmp_path: Path) -> None:
    judged, samples = _judged_and_samples(5)
    whole = _aggregate(TARGET, samples, judged)
    prompts = list(dict.fromkeys(map(_prompt, judged + samples)))
    for i in (1, 2):
        mine = set(Shard(i, 2).take(prompts))
        with atomic_dir(tmp_path / f"s{i}") as tmp:
            write_scores(tmp, [replace(_aggregate(TARGET, [s for s in samples if _prompt(s) in mine],
                                                  [j for j in judged if _prompt(j) in mine]), shard=f"{i}/2")])
    [got] = read_scores([tmp_path / "s2", tmp_path / "s1"])
    assert got.to_dict() == whole.to_dict() and got.reasoning == whole.reasoning and got.safety == whole.safety


SETS = [{"benchmark": "strongreject", "limit": 3}, {"benchmark": "xstest", "limit": 4}, {"benchmark": "math500", "limit": 3}]


def test_sharded_stages_make_the_whole_runs_generations_and_scores(tiny_model: Path, tmp_path: Path, data_dir: Path) -> None:
    """generate -> judge -> score per shard, on a tiny model with seeded sampling: the shards' generations are the
    unsharded run's (per-prompt seeds), and their merged score record is its record."""
    cfg = generate.GenerateConfig(str(tiny_model), tuple(EvalSet.from_dict(d) for d in SETS), SamplingConfig(max_new_tokens=6),
                                  SamplingConfig(temperature=0.8, n=2, max_new_tokens=6, seed=3), chunk_prompts=2)
    runs = {"whole": None, "1": Shard(1, 2), "2": Shard(2, 2)}
    for name, shard in runs.items():
        generate.run(cfg, tmp_path / name / "gen", shard=shard)
        judge.run(judge.JudgeConfig(), tmp_path / name / "gen", tmp_path / name / "judge")
        score.run(tmp_path / name / "gen", tmp_path / name / "judge", tmp_path / name / "score", shard=shard)
    rows = {n: [r.to_dict() for r in read_generations(tmp_path / n / "gen")] for n in runs}
    assert len(rows["1"]) and len(rows["2"]) and sorted(map(str, rows["1"] + rows["2"])) == sorted(map(str, rows["whole"]))
    [merged] = read_scores([tmp_path / "1" / "score", tmp_path / "2" / "score"])
    [whole] = read_scores([tmp_path / "whole" / "score"])
    strip = lambda d: {k: v for k, v in d.items() if k != "cost"}  # noqa: E731 - wall times differ
    assert strip(merged.to_dict()) == strip(whole.to_dict())
    assert merged.cost["generate"]["samples"] == whole.cost["generate"]["samples"] == len(rows["whole"])


def test_a_shard_without_prompts_is_refused_before_generating(tiny_model: Path, tmp_path: Path, data_dir: Path) -> None:
    cfg = generate.GenerateConfig(str(tiny_model), (EvalSet.from_dict({"benchmark": "strongreject", "limit": 2}),))
    with pytest.raises(ValueError, match=r"eval_shards: shard 3/3 has no prompts \(the eval sets hold 2\)"):
        generate.run(cfg, tmp_path / "gen", shard=Shard(3, 3))
    assert not (tmp_path / "gen").exists()


def test_gather_merges_shards_in_the_methods_order_and_refuses_a_double(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from safetax.stages import gather

    judged, samples = _judged_and_samples(9)
    prompts = list(dict.fromkeys(map(_prompt, judged + samples)))
    dirs = []
    for name in ("lora-r4/epoch-1", "lora-r4/epoch-2"):
        for i in (1, 2):
            mine = set(Shard(i, 2).take(prompts))
            part = _aggregate(TARGET | {"checkpoint": name}, [s for s in samples if _prompt(s) in mine],
                              [j for j in judged if _prompt(j) in mine])
            with atomic_dir(tmp_path / f"{name.replace('/', '_')}-{i}") as tmp:
                write_scores(tmp, [replace(part, shard=f"{i}/2")])
            dirs.append(tmp_path / f"{name.replace('/', '_')}-{i}")
    order = items(["lora-r4/epoch-1", "lora-r4/epoch-2"], 2)
    caplog.set_level("INFO")
    got = gather.run(list(reversed(dirs)), tmp_path / "out", order=order)
    assert [r.checkpoint for r in got] == ["lora-r4/epoch-1", "lora-r4/epoch-2"] and not any(r.shard for r in got)
    assert gather.sharded(order) == {"lora-r4/epoch-1", "lora-r4/epoch-2"}
    assert "evaluated 2 checkpoint(s): lora-r4/epoch-1 .. lora-r4/epoch-2" in caplog.text
    with pytest.raises(ValueError, match=r"expected each of 1..2 of 2 once"):
        gather.run([*dirs, dirs[0]], tmp_path / "out2", order=order)
