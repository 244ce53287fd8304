from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from safetax.runner.components._image import VLLM_IMAGE


@dsl.component(base_image=VLLM_IMAGE, install_kfp_package=False)
def judge(judge: str, judge_model: str, mode: str, base_model: str, gpus: str, store_uri: str, generations: Input[Dataset],
          judgements: Output[Dataset], metrics: Output[Metrics], audit: str = "", judge_scope: str = "answer"):
    """Safety verdicts (safe / unsafe / unscored) for safety prompts; refusals for over-refusal prompts.

    `audit`: set by the audit pipeline (metrics pushed as that audit's)."""
    import time
    from pathlib import Path

    from safetax.stages import judge as stage
    from safetax.stages.runtime import RunContext, check_gpus, method_of_generations, stage_run
    from safetax.runid import run_id_of
    from safetax.timing import setup_logging

    setup_logging()
    gpus = int(gpus)  # a string parameter: KFP resolves accelerator counts from strings only
    check_gpus("judge", gpus)
    cfg = stage.JudgeConfig(judge=judge, judge_model=judge_model, mode=mode, judge_scope=judge_scope)
    method = method_of_generations(Path(generations.path))
    with stage_run("judge", RunContext(run_id_of(judgements.uri), store_uri, base_model, audit=audit), Path(judgements.path), method) as tel:
        start = time.perf_counter()
        counts = stage.run(cfg, Path(generations.path), Path(judgements.path))
        tel.samples_per_second("judge", sum(counts.values()) / (time.perf_counter() - start))
    for name, value in tel.kfp_metrics().items():
        metrics.log_metric(name, value)
