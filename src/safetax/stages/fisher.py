"""Stage `fisher`: which parameters carry the model's reasoning (RPSA, sec. 3).

The diagonal empirical Fisher of the reasoning loss over the model's own chain-of-thought answers
(:mod:`safetax.stages.corpus`), for exactly the parameters a method trains: every weight for
full fine-tuning, the freshly initialised LoRA A and B for LoRA (B starts at zero, so A's Fisher
is zero: "zero Fisher" entries are never frozen). See :func:`safetax.rpsa.fisher.fisher_diagonal`
for the estimator and its memory.

Outputs: ``fisher.safetensors`` (one fp32 tensor per trainable parameter, by parameter name),
``summary.csv`` (per tensor: layer, module, mean, share of non-zero entries) and the plots of the
paper's Figures 1-2. With ``validate``, the paper's Figure 3 check: the top 1% Fisher parameters
scaled by 0.9, and separately a random 1%, then reasoning accuracy on the corpus problems
(greedy), written to ``validation.json``.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from safetax.config import Checks
from safetax.stages.corpus import KEEP, corpus_examples
from safetax.stages.train import TrainConfig, _attach_lora
from safetax.store import atomic_dir, input_dir, read_json, resolve_model, write_json
from safetax.timing import timed

log = logging.getLogger(__name__)
FISHER = "fisher.safetensors"
ESTIMATORS = ("sequence", "token")  # = safetax.rpsa.fisher.ESTIMATORS, not imported at module level (pandas)


@dataclass(frozen=True)
class FisherConfig:
    keep: str = "all"  # use every corpus answer, or only the correct ones
    max_length: int = 4096  # tokens per corpus sequence
    validate: bool = False  # the Figure 3 check (two perturbed models, greedy reasoning on the corpus problems)
    validate_share: float = 0.01
    validate_scale: float = 0.9
    # "token": RPSA's Eq. 4 (mean of per-token squared gradients), what the paper's numbers call for;
    # "sequence": the squared gradient of each sequence's mean log-likelihood (one backward per
    # sequence; keeps cross-token terms). See safetax.rpsa.fisher.
    estimator: str = "sequence"
    # "token": response positions sampled per sequence (uniform, unbiased; about this many
    # backwards per sequence); 0 = every token, exact Eq. 4 but one backward per token
    tokens_per_sequence: int = 32
    seed: int = 0  # of the sampled positions

    def __post_init__(self) -> None:
        c = Checks("FisherConfig")
        c.one_of("rpsa_keep", self.keep, KEEP)
        c.one_of("fisher_estimator", self.estimator, ESTIMATORS)
        c.non_negative("fisher_tokens_per_sequence", self.tokens_per_sequence)
        c.positive("max_length", self.max_length)
        c.in_range("validate_share", self.validate_share, 0.0, 1.0)
        c.boolean("validate", self.validate)
        c.raise_if_any()


def trainable_model(cfg: TrainConfig, model_ref: str) -> torch.nn.Module:
    """The model as the method will train it: the base model, with its LoRA freshly attached for LoRA bases."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_ref, dtype=torch.float32)
    if cfg.rpsa_base == "lora":
        torch.manual_seed(cfg.seed)  # the same LoRA initialisation as the training run
        model = _attach_lora(model, cfg)
    return model


def run(cfg: FisherConfig, train_cfg: TrainConfig, model_uri: str, corpus_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Score the method's trainable parameters; write the Fisher tensors, summary and plots (nothing for non-RPSA methods)."""
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    from safetax.rpsa.fisher import fisher_diagonal, summarize_fisher
    from safetax.rpsa.plots import plot_fisher_attention_vs_mlp, plot_fisher_by_layer
    from safetax.training.sft import collate

    info: dict[str, Any] = {"method": train_cfg.label, "rpsa": train_cfg.method == "rpsa", "keep": cfg.keep,
                            "estimator": cfg.estimator, "tokens_per_sequence": cfg.tokens_per_sequence}
    with timed(f"fisher {train_cfg.label}"), atomic_dir(out_dir) as tmp:
        if train_cfg.method == "rpsa":  # other methods neither read nor fetch the corpus
            corpus_dir = input_dir(corpus_dir, "rpsa corpus")
            model_ref = resolve_model(model_uri, "model_uri")
            tokenizer = AutoTokenizer.from_pretrained(model_ref)
            examples = corpus_examples(tokenizer, corpus_dir, cfg.keep, cfg.max_length)
            if not examples:
                raise ValueError(f"RPSA method {train_cfg.label!r}: the reasoning corpus has no usable answers "
                                 f"(rpsa_corpus_size > 0, and keep={cfg.keep!r})")
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
            model = trainable_model(train_cfg, model_ref).to(device)
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
            batches = ({k: v.to(device) for k, v in collate([e], pad).items()} for e in examples)
            fisher = fisher_diagonal(model, batches, estimator=cfg.estimator,
                                     tokens_per_sequence=cfg.tokens_per_sequence, seed=cfg.seed)
            save_file({k: v.contiguous().cpu() for k, v in fisher.items()}, tmp / FISHER)
            summary = summarize_fisher(fisher)
            summary.to_csv(tmp / "summary.csv", index=False)
            plot_fisher_by_layer(summary, tmp / "fisher_by_layer.png")
            plot_fisher_attention_vs_mlp(summary, tmp / "fisher_attention_vs_mlp.png")
            info |= {"samples": len(examples), "parameters": int(summary["numel"].sum()),
                     "nonzero_share": float((summary["nonzero_share"] * summary["numel"]).sum() / summary["numel"].sum())}
            if cfg.validate and train_cfg.rpsa_base == "full":
                info["validation"] = validate(cfg, model_ref, fisher, corpus_dir, tmp)
        write_json(tmp / "fisher.json", info)
    return info


def validate(cfg: FisherConfig, model_ref: str, fisher: dict[str, torch.Tensor], corpus_dir: Path, out_dir: Path) -> dict[str, float]:
    """RPSA's Figure 3: scale the top ``validate_share`` Fisher parameters by ``validate_scale``, and a random
    share of the same size, and compare greedy reasoning accuracy on the corpus problems."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from safetax.rpsa.masking import fisher_masks, fisher_threshold, random_masks

    rows, bench, budget = _corpus_problems(corpus_dir)
    masks = {"top": fisher_masks(fisher, fisher_threshold(fisher, cfg.validate_share)),
             "random": random_masks(fisher, cfg.validate_share, seed=0)}
    acc = {"base": _accuracy(model_ref, rows, bench, budget)}
    for name, mask in masks.items():
        model = AutoModelForCausalLM.from_pretrained(model_ref, dtype=torch.float32)
        params = dict(model.named_parameters())
        with torch.no_grad():
            for key, m in mask.items():
                params[key][m.to(params[key].device)] *= cfg.validate_scale
        with tempfile.TemporaryDirectory() as d:
            model.save_pretrained(d)
            AutoTokenizer.from_pretrained(model_ref).save_pretrained(d)
            acc[name] = _accuracy(d, rows, bench, budget)
    result = {"share": cfg.validate_share, "scale": cfg.validate_scale, **{f"accuracy_{k}": v for k, v in acc.items()},
              "drop_top": acc["base"] - acc["top"], "drop_random": acc["base"] - acc["random"]}
    (out_dir / "validation.json").write_text(json.dumps(result, indent=2) + "\n")
    log.info("fisher validation: accuracy base %.3f, top-%g%% scaled %.3f, random %.3f", acc["base"], 100 * cfg.validate_share,
             acc["top"], acc["random"])
    return result


def _corpus_problems(corpus_dir: Path) -> tuple[list[tuple[str, Any]], Any, int]:
    """(rendered prompt, item) of every corpus problem, the benchmark that scores them, the token budget."""
    from safetax.data.eval_sets import EvalSet, load_eval_set
    from safetax.records import read_jsonl
    from safetax.stages.corpus import CORPUS

    corpus_dir = input_dir(corpus_dir, "rpsa corpus")
    meta = read_json(corpus_dir / "corpus.json")
    items, bench = load_eval_set(EvalSet(**meta["eval_set"]))
    by_id = {it.id: it for it in items}
    rows = [(r["prompt"], by_id[r["id"]]) for r in read_jsonl(corpus_dir / CORPUS) if r["id"] in by_id]
    return rows, bench, int(meta["sampling"]["max_new_tokens"])


def _accuracy(model_ref: str, rows: list[tuple[str, Any]], bench: Any, max_new_tokens: int) -> float:
    """Greedy accuracy of a model on the corpus problems."""
    from safetax.data.eval_sets import score_items
    from safetax.generation.base import SamplingConfig
    from safetax.generation.hf import HFBackend

    if not rows:
        return float("nan")
    outs = HFBackend(model_ref, batch_size=32).generate([p for p, _ in rows], SamplingConfig(max_new_tokens=max_new_tokens))
    scores = score_items(bench, [o[0].text for o in outs], [it for _, it in rows])
    return sum(s.value == 1.0 for s in scores) / len(scores)
