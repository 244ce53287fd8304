from kfp import dsl
from kfp.dsl import Input, Metrics, Model, Output

from components._image import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def merge(method: dict, model_uri: str, run_id: str, store_uri: str, checkpoints: Input[Model], merged: Output[Model],
          metrics: Output[Metrics]):
    """Plain merge or OrthoMerge (col / both, one candidate per lambda) of a method's updates; nothing when merge is none."""
    from pathlib import Path

    from safetax.stages import merge as stage
    from safetax.stages.runtime import RunContext, stage_run
    from safetax.stages.train import TrainConfig
    from safetax.timing import setup_logging

    setup_logging()
    cfg = stage.MergeConfig.from_method(dict(method))
    label = TrainConfig.from_dict(dict(method)).label
    with stage_run("merge", RunContext(run_id, store_uri, model_uri), Path(merged.path), label) as tel:
        stage.run(cfg, model_uri, Path(checkpoints.path), Path(merged.path))
    for name, value in tel.kfp_metrics().items():
        metrics.log_metric(name, value)
