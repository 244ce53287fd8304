from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from components._image import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def fisher(method: dict, model_uri: str, keep: str, validate: bool, seed: int, run_id: str, store_uri: str,
           reasoning: Input[Dataset], scores: Output[Dataset], metrics: Output[Metrics]):
    """Diagonal Fisher of the reasoning loss over the parameters an RPSA method trains (nothing for other methods)."""
    from pathlib import Path

    from safetax.stages import fisher as stage
    from safetax.stages.runtime import RunContext, stage_run
    from safetax.stages.train import TrainConfig
    from safetax.timing import setup_logging

    setup_logging()
    train_cfg = TrainConfig.from_dict({"seed": seed} | dict(method))
    cfg = stage.FisherConfig(keep=keep, validate=validate)
    with stage_run("fisher", RunContext(run_id, store_uri, model_uri), Path(scores.path), train_cfg.label) as tel:
        stage.run(cfg, train_cfg, model_uri, Path(reasoning.path), Path(scores.path))
    for name, value in tel.kfp_metrics().items():
        metrics.log_metric(name, value)
