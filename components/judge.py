from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components._image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def judge(judge: str, generations: Input[Dataset], judgements: Output[Dataset]):
    """Safety verdicts (safe / unsafe / unscored) for every response to a safety prompt."""
    from pathlib import Path

    from safetax.stages import judge as stage
    from safetax.timing import setup_logging

    setup_logging()
    stage.run(stage.JudgeConfig(judge=judge), Path(generations.path), Path(judgements.path))
