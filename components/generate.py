from typing import Optional

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components._image import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def generate(
    model_uri: str,
    eval_sets: list,
    safety_max_new_tokens: int,
    reasoning_samples: int,
    reasoning_temperature: float,
    reasoning_top_p: float,
    reasoning_max_new_tokens: int,
    batch_size: int,
    backend: str,
    tensor_parallel_size: int,
    seed: int,
    generations: Output[Dataset],
    checkpoints: Optional[Input[Model]] = None,
):
    """Responses of the base model, or of every epoch checkpoint when `checkpoints` is given."""
    from pathlib import Path

    from safetax.data.eval_sets import EvalSet
    from safetax.generation.base import SamplingConfig
    from safetax.stages import generate as stage
    from safetax.timing import setup_logging

    setup_logging()
    cfg = stage.GenerateConfig(
        model_uri=model_uri,
        eval_sets=tuple(EvalSet.from_dict(e) for e in eval_sets),
        safety_sampling=SamplingConfig(max_new_tokens=safety_max_new_tokens, seed=seed),
        reasoning_sampling=SamplingConfig(
            temperature=reasoning_temperature, top_p=reasoning_top_p, n=reasoning_samples,
            max_new_tokens=reasoning_max_new_tokens, seed=seed,
        ),
        batch_size=batch_size,
        backend=backend,
        tensor_parallel_size=tensor_parallel_size,
    )
    stage.run(cfg, Path(generations.path), Path(checkpoints.path) if checkpoints is not None else None)
