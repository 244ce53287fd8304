"""A data-parallel training worker: ``python -m safetax.training.worker <job.json>`` under torchrun.

:func:`safetax.training.distributed.launch` writes the job (the train config, the model, the SFT
file, the output directory and where rank 0 writes its result) and starts one worker per GPU.
Every rank trains its share of each global batch; rank 0 logs, prints the progress lines the
parent turns into telemetry, writes the checkpoints and ``result.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

from torch.distributed.elastic.multiprocessing.errors import record

from safetax.records import read_jsonl
from safetax.timing import setup_logging


@record  # a failure lands in torchrun's summary with this rank's traceback
def main(argv: list[str]) -> None:
    import torch.distributed as dist

    from safetax.stages.train import TrainConfig, train_model
    from safetax.store import resolve_model
    from safetax.training.distributed import emit_progress, init_worker

    job = json.loads(Path(argv[0]).read_text())
    ranks = init_worker()
    if not ranks.main:  # logs and the progress bar on rank 0 only
        os.environ["SAFETAX_PROGRESS"] = "0"
    setup_logging(logging.INFO if ranks.main else logging.WARNING)
    cfg = TrainConfig.from_dict(job["config"])
    examples = read_jsonl(Path(job["sft_file"]))
    paths = {k: Path(job[k]) if job.get(k) else None for k in ("fisher_dir", "corpus_dir", "state_dir")}
    model_ref = resolve_model(job["model_ref"], "model_uri")  # a TrainJob's node gets the URI (s3:// is fetched here)
    trained = train_model(cfg, model_ref, examples, Path(job["out_dir"]), emit_progress if ranks.main else None,
                          paths["fisher_dir"], paths["corpus_dir"], ranks=ranks, state_dir=paths["state_dir"])
    if ranks.main:
        Path(job["result"]).write_text(json.dumps(dataclasses.asdict(trained)))
    dist.barrier()
    dist.destroy_process_group()  # only on success: after a failure torchrun stops the other ranks


if __name__ == "__main__":
    main(sys.argv[1:])
