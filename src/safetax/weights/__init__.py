"""Weight-space tools for safety LoRA (Xue & Mirzasoleiman 2025, sections 5.1-5.2).

OrthoMerge and the orthogonality regularisers (:mod:`.ortho`), the update analysis
metrics (:mod:`.metrics`), an exact (or seeded randomized) top-k SVD (:mod:`.svd`) and streaming readers
of checkpoints and PEFT adapters (:mod:`.io`). Pure tensor functions, no training loop.
"""

from __future__ import annotations

from safetax.weights.io import iter_lora_deltas, iter_matrix_deltas, iter_matrix_pairs
from safetax.weights.metrics import analyze_updates, delta_norms, overlap_metrics, stable_rank
from safetax.weights.ortho import OrthoRegularizer, lora_delta, merge_weight, ortho_merge
from safetax.weights.svd import top_singular

__all__ = [
    "OrthoRegularizer",
    "analyze_updates",
    "delta_norms",
    "iter_lora_deltas",
    "iter_matrix_deltas",
    "iter_matrix_pairs",
    "lora_delta",
    "merge_weight",
    "ortho_merge",
    "overlap_metrics",
    "stable_rank",
    "top_singular",
]
