from typing import List

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Output

from safetax.runner.components._image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def analytics(base_model: str, store_uri: str, base_scores: Input[Dataset], scores: Input[List[Dataset]],
              analyses: Input[List[Dataset]], results: Output[Dataset], report: Output[Markdown], report_html: Output[HTML],
              metrics: Output[Metrics]):
    """Safety vs reasoning of every checkpoint: table, STR, Pareto front, plots, report (Markdown and a
    self-contained HTML page that the KFP UI shows)."""
    from pathlib import Path

    from safetax.stages import analytics as stage
    from safetax.stages.runtime import RunContext, stage_run
    from safetax.runid import run_id_of
    from safetax.timing import setup_logging

    setup_logging()
    ctx = RunContext(run_id_of(results.uri), store_uri, base_model)
    with stage_run("analytics", ctx, Path(results.path)) as tel:
        table = stage.run([Path(base_scores.path)] + [Path(s.path) for s in scores], Path(results.path),
                          analysis_dirs=[Path(a.path) for a in analyses], rpsa=stage.rpsa_from_store(store_uri, ctx.run_id),
                          base_model=base_model)
        Path(report.path).write_text(stage.inline_report(Path(results.path)))
        Path(report_html.path).write_text(stage.html_report(Path(results.path)))
        tradeoffs = stage.push_tradeoffs(table, ctx, Path(results.path))
    for name, value in {**tel.kfp_metrics(), **tradeoffs}.items():
        metrics.log_metric(name, value)
