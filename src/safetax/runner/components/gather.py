from typing import List

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from safetax.runner.components._image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def gather_scores(scores: Input[List[Dataset]], targets: list, gathered: Output[Dataset], base_model: str = ""):
    """One method's checkpoints, each scored in its own chain, as one score output (in the method's order).

    Checkpoints evaluated in shards (eval_shards > 1) are merged here, and their figures pushed (as their score task
    would have, had it scored the whole checkpoint: same labels and Pushgateway group)."""
    from pathlib import Path

    from safetax.runid import run_id_of
    from safetax.stages import gather
    from safetax.stages.runtime import RunContext, push_scores
    from safetax.timing import setup_logging

    setup_logging()
    order = [str(t) for t in targets]
    records = gather.run([Path(s.path) for s in scores], Path(gathered.path), order=order)
    sharded = gather.sharded(order)
    merged = [r for r in records if r.checkpoint in sharded]
    if merged:
        push_scores(RunContext(run_id_of(gathered.uri), model=base_model), merged, Path(gathered.path) / "metrics")
