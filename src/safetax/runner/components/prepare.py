from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from safetax.runner.components._image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def prepare(refusal_uri: str, model_uri: str, max_length: int, store_uri: str, sft: Output[Dataset], metrics: Output[Metrics]):
    """Refusal data -> tokenised SFT examples in the base model's chat template."""
    from pathlib import Path

    from safetax.runid import run_id_of
    from safetax.stages import prepare as stage
    from safetax.stages.runtime import RunContext, stage_run
    from safetax.timing import setup_logging

    setup_logging()
    cfg = stage.PrepareConfig(refusal_uri=refusal_uri, model_uri=model_uri, max_length=max_length)
    with stage_run("prepare", RunContext(run_id_of(sft.uri), store_uri, model_uri), Path(sft.path)) as tel:
        stage.run(cfg, Path(sft.path))
    for name, value in tel.kfp_metrics().items():
        metrics.log_metric(name, value)
