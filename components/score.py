from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from components._image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def score(generations: Input[Dataset], judgements: Input[Dataset], scores: Output[Dataset], metrics: Output[Metrics]):
    """Reasoning accuracy and safety score of every evaluated checkpoint."""
    from pathlib import Path

    from safetax.stages import score as stage
    from safetax.timing import setup_logging

    setup_logging()
    for r in stage.run(Path(generations.path), Path(judgements.path), Path(scores.path)):
        for bench, v in {**r.reasoning, **r.safety}.items():
            metrics.log_metric(f"{r.checkpoint}:{bench}", round(v, 4))
