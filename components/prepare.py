from kfp import dsl
from kfp.dsl import Dataset, Output

from components._image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def prepare(refusal_uri: str, model_uri: str, max_length: int, sft: Output[Dataset]):
    """Refusal data -> tokenised SFT examples in the base model's chat template."""
    from pathlib import Path

    from safetax.stages import prepare as stage
    from safetax.timing import setup_logging

    setup_logging()
    cfg = stage.PrepareConfig(refusal_uri=refusal_uri, model_uri=model_uri, max_length=max_length)
    stage.run(cfg, Path(sft.path))
