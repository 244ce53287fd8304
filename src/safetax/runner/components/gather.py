from typing import List

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from safetax.runner.components._image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def gather_scores(scores: Input[List[Dataset]], targets: list, gathered: Output[Dataset]):
    """One method's checkpoints, each scored in its own chain, as one score output (in the method's order)."""
    from pathlib import Path

    from safetax.stages import gather
    from safetax.timing import setup_logging

    setup_logging()
    gather.run([Path(s.path) for s in scores], Path(gathered.path), order=[str(t) for t in targets])
