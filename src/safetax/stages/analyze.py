"""Stage `analyze`: how each method's weight update sits against the base weights (LoRA paper, sec. 5.1).

For every updated matrix (LoRA's (alpha/r) B A, or a fully fine-tuned matrix minus its base) of
the last (or every) epoch: the stable rank ||dW||_F^2 / ||dW||_2^2 (Figure 1) and the four
overlap metrics with the base weight W_I (Figure 4; :func:`safetax.weights.metrics.overlap_metrics`).
One matrix is in memory at a time. Writes ``weights.csv`` (one row per matrix) and the plots;
the analytics stage puts every method's rows side by side in the report.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from safetax.artifacts import checkpoint_files, read_checkpoints
from safetax.config import Checks
from safetax.stages.merge import EPOCHS, update_deltas
from safetax.store import atomic_dir, input_dir, local_model_dir
from safetax.training.targets import layer_index
from safetax.timing import progress, timed

log = logging.getLogger(__name__)
TABLE = "weights.csv"
METRICS = ("stable_rank", "col_overlap", "col_subspace", "row_overlap", "row_subspace")


@dataclass(frozen=True)
class AnalyzeConfig:
    k: int = 16  # top singular vectors of W_I for the subspace metrics (the paper: 16)
    epochs: str = "last"
    seed: int = 0

    def __post_init__(self) -> None:
        c = Checks("AnalyzeConfig")
        if not (isinstance(self.k, int) and self.k >= 1):
            c.fail("analysis_k", self.k, "an integer >= 1")
        c.one_of("epochs", self.epochs, EPOCHS)
        c.raise_if_any()


def run(cfg: AnalyzeConfig, model_uri: str, train_dir: Path, out_dir: Path) -> pd.DataFrame:
    """Write ``weights.csv`` and ``stable_rank.png`` / ``overlaps.png`` for one training run."""
    from safetax.analysis.weight_plots import plot_overlaps, plot_stable_rank
    from safetax.weights.metrics import overlap_metrics, stable_rank

    manifest = read_checkpoints(train_dir)
    base_dir = local_model_dir(model_uri, "model_uri")
    entries = manifest.entries if cfg.epochs == "all" else manifest.entries[-1:]
    train_dir = checkpoint_files(train_dir, [e.name for e in entries])  # only the epochs analysed
    rows = []
    with timed(f"analyze {manifest.label}"), atomic_dir(out_dir) as tmp:
        for e in entries:
            deltas = update_deltas(base_dir, manifest, train_dir / e.name)
            for name, w_i, dw in progress(deltas, desc=f"analyze {e.name}", unit="matrix"):
                if cfg.k > min(w_i.shape):
                    raise ValueError(f"`analysis_k` must be at most {min(w_i.shape)} for {name} {tuple(w_i.shape)}, got {cfg.k}")
                rows.append({
                    "method": manifest.label, "kind": manifest.method, "checkpoint": e.name, "epoch": e.ref.epoch,
                    "matrix": name, "layer": layer_index(name), "module": name.removesuffix(".weight").rsplit(".", 1)[-1],
                    "stable_rank": stable_rank(dw), **overlap_metrics(w_i, dw, k=cfg.k, seed=cfg.seed),
                    "update_norm": float(dw.float().norm()),
                })
        table = pd.DataFrame(rows)
        table.to_csv(tmp / TABLE, index=False)
        if not table.empty:
            plot_stable_rank(table, tmp / "stable_rank.png")
            plot_overlaps(table, tmp / "overlaps.png")
    log.info("analyzed %d matrices of %s", len(table), manifest.label)
    return table


def load_tables(dirs: list[Path]) -> pd.DataFrame:
    """Every analysis table of a run, concatenated (empty when there is none)."""
    files = [input_dir(d, "analysis") / TABLE for d in dirs]
    tables = [pd.read_csv(f) for f in files if f.is_file() and f.stat().st_size > 1]
    tables = [t for t in tables if not t.empty]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
