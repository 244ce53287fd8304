from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from safetax.runner.components._image import VLLM_IMAGE


@dsl.component(base_image=VLLM_IMAGE, install_kfp_package=False)
def judge(judge: str, judge_model: str, mode: str, base_model: str, gpus: str, store_uri: str, generations: Input[Dataset],
          judgements: Output[Dataset], code_jobs: Output[Dataset], metrics: Output[Metrics], audit: str = "",
          judge_scope: str = "answer", protocol: str = "seeds", target: str = "", generation_cache: str = "", engine: dict = {}):
    """Safety verdicts (safe / unsafe / unscored) for safety prompts; refusals for over-refusal prompts.

    Also hands the programs of code responses (HumanEval+, MBPP+) to the code task as `code_jobs`, a plain
    artifact: the code task reads no store. Judge settings left empty come from `protocol`; verdicts are reused from
    the cache (`generation_cache`: "" = the store's, "off", or a root URI) and a retried task resumes from its last
    chunk. `target`: the checkpoint of a per-checkpoint chain. `audit`: set by the audit pipeline (metrics pushed as
    that audit's). `engine`: the platform's engine settings (Llama Guard on transformers or vLLM), compiled in."""
    import time
    from pathlib import Path

    from safetax.generation.backends import EngineSettings
    from safetax.protocols import resolve_protocol
    from safetax.stages import code_exec
    from safetax.stages import judge as stage
    from safetax.artifacts import read_cost
    from safetax.stages.runtime import RunContext, check_gpus, method_of_generations, record_cost, reuse_uris, stage_run
    from safetax.runid import run_id_of
    from safetax.timing import setup_logging

    setup_logging()
    gpus = int(gpus)  # a string parameter: KFP resolves accelerator counts from strings only
    check_gpus("judge", gpus)
    r = resolve_protocol(protocol, {"judge_name": judge, "judge_model": judge_model, "judge_mode": mode, "judge_scope": judge_scope})
    e = EngineSettings.from_dict(engine)
    cfg = stage.JudgeConfig(judge=r["judge_name"], judge_model=r["judge_model"], mode=r["judge_mode"], judge_scope=r["judge_scope"],
                            backend=e.judge_backend, max_model_len=e.judge_max_model_len,
                            gpu_memory_utilization=e.gpu_memory_utilization)
    method = method_of_generations(Path(generations.path))
    ctx = RunContext(run_id_of(judgements.uri), store_uri, base_model, audit=audit)
    cache_uri, partial_uri = reuse_uris(ctx, "judge", target or method, generation_cache)
    with stage_run("judge", ctx, Path(judgements.path), method, part=target) as tel:
        start = time.perf_counter()
        counts = stage.run(cfg, Path(generations.path), Path(judgements.path), cache_uri=cache_uri, partial_uri=partial_uri)
        tel.samples_per_second("judge", sum(counts.values()) / (time.perf_counter() - start))
        record_cost(tel, read_cost(Path(judgements.path)))
        _, code_partial = reuse_uris(ctx, "code", target or method)  # the code task's chunks: it gets URLs, no credential
        code_exec.prepare(Path(generations.path), Path(code_jobs.path), partial_uri=code_partial)
    for name, value in tel.kfp_metrics().items():
        metrics.log_metric(name, value)
