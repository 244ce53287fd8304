from typing import List

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from safetax.runner.components._image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def gate(thresholds: dict, base_model: str, store_uri: str, base_scores: Input[Dataset], scores: Input[List[Dataset]],
         checkpoints: Input[List[Model]], merged: Input[List[Model]], result: Output[Dataset]):
    """Safety gate: publish the run's best Pareto checkpoint that passes `thresholds` under <store_uri>/promoted/; fail when none does."""
    from pathlib import Path

    from safetax.stages import gate as stage
    from safetax.stages.runtime import RunContext, record_gate, stage_run
    from safetax.runid import run_id_of
    from safetax.timing import setup_logging

    setup_logging()
    with stage_run("gate", RunContext(run_id_of(result.uri), "", base_model), Path(result.path)) as tel:
        outcome = stage.run(dict(thresholds), base_model, [Path(base_scores.path)] + [Path(s.path) for s in scores],
                  [Path(c.path) for c in checkpoints] + [Path(m.path) for m in merged], Path(result.path), store_uri, run_id_of(result.uri))
        record_gate(tel, outcome)  # the promoted checkpoint: the only one the result-quality alerts watch
