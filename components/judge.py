from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components._image import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def judge(judge: str, judge_model: str, mode: str, generations: Input[Dataset], judgements: Output[Dataset]):
    """Safety verdicts (safe / unsafe / unscored) for safety prompts; refusals for over-refusal prompts."""
    from pathlib import Path

    from safetax.stages import judge as stage
    from safetax.timing import setup_logging

    setup_logging()
    stage.run(stage.JudgeConfig(judge=judge, judge_model=judge_model, mode=mode), Path(generations.path), Path(judgements.path))
