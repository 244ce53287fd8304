from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components._image import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def train(method: dict, model_uri: str, epochs: int, seed: int, gpus: int, run_id: str, store_uri: str, sft: Input[Dataset],
          fisher: Input[Dataset], reasoning: Input[Dataset], checkpoints: Output[Model], metrics: Output[Metrics]):
    """Refusal SFT (full, LoRA or RPSA) with a checkpoint per epoch; `epochs`/`seed` apply unless the method sets them."""
    from pathlib import Path

    from safetax.stages import train as stage
    from safetax.stages.merge import MergeConfig
    from safetax.stages.runtime import RunContext, check_gpus, stage_run
    from safetax.timing import setup_logging

    setup_logging()
    check_gpus("train", gpus)
    defaults = {"seed": seed} | ({"epochs": epochs} if epochs else {})
    cfg = stage.TrainConfig.from_dict(defaults | dict(method))
    merge_cfg = MergeConfig.from_method(dict(method))  # a bad merge config fails here, before training
    checkpoints.metadata["method"] = cfg.label
    with stage_run("train", RunContext(run_id, store_uri, model_uri), Path(checkpoints.path), cfg.label) as tel:
        stage.run(cfg, model_uri, Path(sft.path), Path(checkpoints.path), on_step=tel.train_progress,
                  merge_k=merge_cfg.k if merge_cfg.mode.startswith("ortho") else None,
                  fisher_dir=Path(fisher.path), corpus_dir=Path(reasoning.path), gpus=gpus)
    for name, value in tel.kfp_metrics().items():
        metrics.log_metric(name, value)
