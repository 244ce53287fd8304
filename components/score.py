from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from components._image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def score(
    equivalence_model: str, generations: Input[Dataset], judgements: Input[Dataset], scores: Output[Dataset], metrics: Output[Metrics]
):
    """Reasoning accuracy, safety and over-refusal of every evaluated checkpoint."""
    from pathlib import Path

    from safetax.stages import score as stage
    from safetax.timing import setup_logging

    setup_logging()
    cfg = stage.ScoreConfig(equivalence_model=equivalence_model)
    for r in stage.run(Path(generations.path), Path(judgements.path), Path(scores.path), cfg):
        for bench, v in {**r.reasoning, **r.safety}.items():
            metrics.log_metric(f"{r.checkpoint}:{bench}", round(v, 4))
