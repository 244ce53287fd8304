from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from components._image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def prepare(refusal_uri: str, model_uri: str, max_length: int, run_id: str, store_uri: str, sft: Output[Dataset], metrics: Output[Metrics],
            gate_thresholds: dict = {}):
    """Refusal data -> tokenised SFT examples in the base model's chat template (and the gate's thresholds checked, before training)."""
    from pathlib import Path

    from safetax.stages import gate
    from safetax.stages import prepare as stage
    from safetax.stages.runtime import RunContext, stage_run
    from safetax.timing import setup_logging

    setup_logging()
    gate.check(gate_thresholds, store_uri)
    cfg = stage.PrepareConfig(refusal_uri=refusal_uri, model_uri=model_uri, max_length=max_length)
    with stage_run("prepare", RunContext(run_id, store_uri, model_uri), Path(sft.path)) as tel:
        stage.run(cfg, Path(sft.path))
    for name, value in tel.kfp_metrics().items():
        metrics.log_metric(name, value)
