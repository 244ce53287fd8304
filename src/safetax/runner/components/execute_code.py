from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from safetax.runner.components._image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def execute_code(code_jobs: Input[Dataset], code_results: Output[Dataset], metrics: Output[Metrics]):
    """Run the model-written programs (HumanEval+, MBPP+) in the sandbox and compare their outputs.

    The one task that runs model code: it takes no store URI and gets no store credential, its programs come as a
    plain artifact (from the judge task), and its pods carry the code-execution label (egress denied). A retried task
    resumes from the chunks of verdicts its earlier attempt finished, through one pre-signed URL per chunk object that
    the judge task made (`code_chunks.json`), never a credential; metrics `code_executed` / `code_resumed` count them."""
    from pathlib import Path

    from safetax.stages import code_exec
    from safetax.timing import setup_logging

    setup_logging()
    counts = code_exec.execute(Path(code_jobs.path), Path(code_results.path))
    for name, value in counts.items():
        metrics.log_metric(f"code_{name}", value)
