from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from components._image import VLLM_IMAGE


@dsl.component(base_image=VLLM_IMAGE, install_kfp_package=False)
def corpus(model_uri: str, eval_set: dict, n: int, temperature: float, top_p: float, max_new_tokens: int, seed: int,
           batch_size: int, backend: str, run_id: str, store_uri: str, reasoning: Output[Dataset], metrics: Output[Metrics]):
    """RPSA's reference corpus: the base model's own chain-of-thought answers to n problems (0 = RPSA off)."""
    from pathlib import Path

    from safetax.data.eval_sets import EvalSet
    from safetax.generation.base import SamplingConfig
    from safetax.stages import corpus as stage
    from safetax.stages.runtime import RunContext, stage_run
    from safetax.timing import setup_logging

    setup_logging()
    cfg = stage.CorpusConfig(
        eval_set=EvalSet.from_dict(dict(eval_set)), n=n, seed=seed, batch_size=batch_size, backend=backend,
        sampling=SamplingConfig(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed),
    )
    with stage_run("corpus", RunContext(run_id, store_uri, model_uri), Path(reasoning.path), "base") as tel:
        stage.run(cfg, model_uri, Path(reasoning.path))
    for name, value in tel.kfp_metrics().items():
        metrics.log_metric(name, value)
