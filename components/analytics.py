from typing import List

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Output

from components._image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def analytics(base_scores: Input[Dataset], scores: Input[List[Dataset]], results: Output[Dataset], report: Output[Markdown]):
    """Safety vs reasoning of every checkpoint: table, STR, Pareto front, plot, report."""
    from pathlib import Path

    from safetax.stages import analytics as stage
    from safetax.timing import setup_logging

    setup_logging()
    stage.run([Path(base_scores.path)] + [Path(s.path) for s in scores], Path(results.path))
    Path(report.path).write_text(stage.inline_report(Path(results.path)))
