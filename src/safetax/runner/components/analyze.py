from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from safetax.runner.components._image import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def analyze(method: dict, model_uri: str, k: int, store_uri: str, checkpoints: Input[Model], analysis: Output[Dataset],
            merged: Output[Model], metrics: Output[Metrics], protocol: str = "seeds", eval_shards: int = 1) -> list:
    """Weight updates of one method: merge candidates (plain or OrthoMerge, when the method asks for them) and the
    stable rank and base-weight overlaps of every update (LoRA paper, sec. 5.1), in one pod that reads the base once.

    Returns the method's evaluation targets (its epoch checkpoints, then its merge candidates), one evaluation chain
    each; with `eval_shards` n > 1, n per target (`<target>/shard-i-of-n`)."""
    from pathlib import Path

    from safetax.protocols import resolve_protocol
    from safetax.runid import run_id_of
    from safetax.shards import items
    from safetax.stages import analyze as stage
    from safetax.stages import generate as generating
    from safetax.stages import merge as merging
    from safetax.stages.runtime import RunContext, stage_run
    from safetax.timing import setup_logging

    setup_logging()
    label = method["label"]
    ctx = RunContext(run_id_of(analysis.uri), store_uri, model_uri)
    merge_cfg = merging.MergeConfig.from_method(dict(method["config"]))
    if method["merges"]:
        with stage_run("merge", ctx, Path(merged.path), label):
            merging.run(merge_cfg, model_uri, Path(checkpoints.path), Path(merged.path))
    else:  # an empty candidate list, so that generation has nothing extra to evaluate
        merging.run(merge_cfg, model_uri, Path(checkpoints.path), Path(merged.path))
    with stage_run("analyze", ctx, Path(analysis.path), label) as tel:
        k = resolve_protocol(protocol, {"analysis_k": k})["analysis_k"]  # 0 = the protocol's
        stage.run(stage.AnalyzeConfig(k=k), model_uri, Path(checkpoints.path), Path(analysis.path))
    for name, value in tel.kfp_metrics().items():
        metrics.log_metric(name, value)
    names = [t.checkpoint for d in (Path(checkpoints.path), Path(merged.path)) for t in generating.targets_of(model_uri, d)]
    return items(names, int(eval_shards))
