from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components._image import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def train(method: dict, model_uri: str, epochs: int, seed: int, sft: Input[Dataset], checkpoints: Output[Model]):
    """Refusal SFT (full or LoRA) with a checkpoint per epoch; `epochs`/`seed` apply unless the method sets them."""
    from pathlib import Path

    from safetax.stages import train as stage
    from safetax.timing import setup_logging

    setup_logging()
    defaults = {"seed": seed} | ({"epochs": epochs} if epochs else {})
    cfg = stage.TrainConfig.from_dict(defaults | dict(method))
    checkpoints.metadata["method"] = cfg.label
    stage.run(cfg, model_uri, Path(sft.path), Path(checkpoints.path))
