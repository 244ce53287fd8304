from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from safetax.runner.components._image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def score(equivalence_model: str, base_model: str, store_uri: str, generations: Input[Dataset],
          judgements: Input[Dataset], code_results: Input[Dataset], scores: Output[Dataset], metrics: Output[Metrics],
          audit: str = "", target: str = ""):
    """Reasoning accuracy, safety and over-refusal of every evaluated checkpoint (code verdicts from the code task).

    `audit`: set by the audit pipeline, whose last step pushes the audit's own figures (so the
    alignment pipeline's per-run safety alerts do not fire on audited checkpoints). `target`: the checkpoint of a
    per-checkpoint chain; one ending in `/shard-i-of-n` scores one evaluation shard, whose figures are pushed only
    once the gather step has merged every shard (a shard's are partial)."""
    from pathlib import Path

    from safetax.stages import score as stage
    from safetax.stages.runtime import RunContext, method_of_generations, record_scores, stage_run
    from safetax.runid import run_id_of
    from safetax.shards import parse
    from safetax.timing import setup_logging

    setup_logging()
    cfg = stage.ScoreConfig(equivalence_model=equivalence_model)
    method = method_of_generations(Path(generations.path))
    with stage_run("score", RunContext(run_id_of(scores.uri), store_uri, base_model, audit=audit), Path(scores.path), method,
                   part=target) as tel:
        shard = parse(target)[1]
        results = stage.run(Path(generations.path), Path(judgements.path), Path(scores.path), cfg, Path(code_results.path),
                            shard=shard)
        if not audit and shard is None:
            record_scores(tel, results)
    for name, value in tel.kfp_metrics().items():
        metrics.log_metric(name, value)
