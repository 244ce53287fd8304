"""RPSA's inputs, computed in the train pod of an RPSA method: the corpus, then the Fisher.

Both need the base model on a GPU and nothing else of the run, and only RPSA methods need them: so
they run where the model is loaded anyway, instead of as two extra GPU pods per run (one of them for
every method). The corpus (the base model's own chain-of-thought answers) is generated with the
transformers backend of the train image; the Fisher scores the parameters the method trains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safetax.stages.train import TrainConfig


def run(item: dict[str, Any], cfg: TrainConfig, model_uri: str, out_dir: Path) -> tuple[Path, Path]:
    """Write ``corpus/`` and ``fisher/`` under ``out_dir`` for the plan item of an RPSA method; return (fisher, corpus) dirs."""
    from safetax.data.eval_sets import EvalSet
    from safetax.generation.base import SamplingConfig
    from safetax.stages import corpus, fisher

    spec = item["rpsa"]
    c = spec["corpus"]
    corpus_cfg = corpus.CorpusConfig(
        eval_set=EvalSet.from_dict(dict(c["eval_set"])), n=int(c["n"]), seed=int(c["seed"]), batch_size=int(c["batch_size"]),
        backend="hf",
        sampling=SamplingConfig(temperature=float(c["temperature"]), top_p=float(c["top_p"]), max_new_tokens=int(c["max_new_tokens"]),
                                seed=int(c["seed"])),
    )
    corpus_dir, fisher_dir = out_dir / "corpus", out_dir / "fisher"
    corpus.run(corpus_cfg, model_uri, corpus_dir)
    fisher_cfg = fisher.FisherConfig(keep=spec["keep"], validate=bool(spec["validate"]), estimator=spec.get("estimator", "sequence"),
                                     tokens_per_sequence=int(spec.get("tokens_per_sequence", 32)))
    fisher.run(fisher_cfg, cfg, model_uri, corpus_dir, fisher_dir)
    return fisher_dir, corpus_dir
