from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components._image import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def analyze(method: dict, model_uri: str, k: int, run_id: str, store_uri: str, checkpoints: Input[Model], analysis: Output[Dataset],
            metrics: Output[Metrics]):
    """Stable rank of each weight update and its overlap with the base weights (LoRA paper, sec. 5.1)."""
    from pathlib import Path

    from safetax.stages import analyze as stage
    from safetax.stages.runtime import RunContext, stage_run
    from safetax.stages.train import TrainConfig
    from safetax.timing import setup_logging

    setup_logging()
    cfg = stage.AnalyzeConfig(k=k)
    label = TrainConfig.from_dict(dict(method)).label
    with stage_run("analyze", RunContext(run_id, store_uri, model_uri), Path(analysis.path), label) as tel:
        stage.run(cfg, model_uri, Path(checkpoints.path), Path(analysis.path))
    for name, value in tel.kfp_metrics().items():
        metrics.log_metric(name, value)
