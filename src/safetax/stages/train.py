"""Stage `train`: refusal SFT with full fine-tuning or LoRA, a checkpoint per epoch."""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from safetax.artifacts import CheckpointManifest, write_checkpoints
from safetax.checkpoints import CheckpointRef
from safetax.config import Checks, ConfigError, as_int
from safetax.records import read_jsonl
from safetax.stages.prepare import SFT_FILE
from safetax.store import atomic_dir, input_dir, read_json, resolve_model, write_json
from safetax.timing import timed
from safetax.training.distributed import DataParallel, launch, processes_for, save_checkpoint, shard
from safetax.training.multinode import TrainJobSettings
from safetax.training.resume import STATE_DIR, TrainState, fingerprint
from safetax.training.save import SAVE_DTYPES, save_dtype, write_checkpoint
from safetax.training.sft import StepCallback, LoopConfig, train_loop
from safetax.training.targets import MIDDLE, check_against_model, layer_index, parse_layers, resolve_targets

log = logging.getLogger(__name__)
METHODS = ("full", "lora", "rpsa")
ORTHO_REGS = ("none", "col", "both")
# Keys of a method config that belong to later stages (merge), not to training.
MERGE_KEYS = ("merge", "merge_k", "merge_lambdas", "merge_epochs")
# Seeds' epochs (LoRA paper, sec. 4): full fine-tuning 5, LoRA 10; RPSA (appendix A): on full 3, on LoRA 6.
DEFAULT_EPOCHS = {"full": 5, "lora": 10, "rpsa-full": 3, "rpsa-lora": 6}
DEFAULT_LR = {"full": 5e-5, "lora": 5e-5, "rpsa-full": 1e-5, "rpsa-lora": 1e-4}


@dataclass(frozen=True)
class TrainConfig:
    method: str = "lora"  # full | lora
    name: str = ""  # label in reports; defaults to the method (e.g. "lora-r4")
    epochs: int = 0  # 0 = the seeds' default for the method (full 5, lora 10)
    learning_rate: float = 0.0  # 0 = the seeds' rate: 5e-5 for full and LoRA; RPSA 1e-5 on full, 1e-4 on LoRA
    weight_decay: float = 1e-4  # seeds: 1e-4
    batch_size: int = 8
    grad_accum: int = 1
    warmup_ratio: float = 0.0  # share of optimizer steps with linear warmup before the cosine decay
    warmup_steps: int = -1  # >= 0: warmup steps instead of the ratio; -1 = the seeds' (RPSA: 100, others: the ratio)
    grad_clip: float = 1.0  # max grad norm; 0 disables clipping
    lora_rank: int = 4  # LoRA paper: rank 1-8 suffices for safety
    lora_alpha: float = 16.0
    lora_dropout: float = 0.05
    target_modules: str | tuple[str, ...] = "mlp"  # preset (mlp, attn, all, up_proj) or module names
    layers: str = ""  # e.g. "16-31", or "middle" (the middle third); empty = every layer
    # Orthogonality regulariser of the LoRA paper (sec. 5.2): none | col | both; beta weighs it, W_I is
    # replaced by its rank-k truncated SVD.
    ortho_reg: str = "none"
    ortho_beta: float = 1.0
    ortho_k: int = 64
    gradient_checkpointing: bool = False  # trade compute for activation memory (full fine-tuning of 7B/14B)
    # RPSA (method "rpsa"): Fisher-masked training on top of full fine-tuning or LoRA.
    rpsa_base: str = "lora"  # full | lora
    frozen_ratio: float = 0.5  # k: share of non-zero-Fisher parameters frozen (the initial k when dynamic)
    dynamic_ratio: bool = True  # adapt k from the reasoning/safety gradient sign conflict
    update_every: int = 25  # optimiser steps between conflict measurements
    conflict_window: int = 20  # conflicts in the running window
    random_mask: bool = False  # ablation: freeze a random set of the same size
    seed: int = 42
    precision: str = "auto"  # auto = bf16 on a GPU that supports it, else fp32; or bf16 / fp32
    # Checkpoint dtype: "base" = the base model's (bf16 for R1-Distill: 7B x 5 epochs is 76 GB, not 152 GB
    # in fp32) for full fine-tuning, fp32 for LoRA adapters (a few MB); or float32 / bfloat16 / float16 for both.
    save_dtype: str = "base"
    # Resumable state (optimiser, RNG, data position) for a preempted task to continue from: every N
    # optimiser steps and at each epoch's end; 0 = at each epoch's end only; -1 = never (no resume).
    checkpoint_every_steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        c = Checks("TrainConfig")
        c.one_of("method", self.method, METHODS)
        c.one_of("precision", self.precision, ("auto", "bf16", "fp32"))
        c.one_of("save_dtype", self.save_dtype, SAVE_DTYPES)
        c.one_of("ortho_reg", self.ortho_reg, ORTHO_REGS)
        if not isinstance(self.name, str):
            c.fail("name", self.name, "text, e.g. 'lora-r4' (empty = the method's label)")
        for name in ("gradient_checkpointing", "dynamic_ratio", "random_mask"):
            c.boolean(name, getattr(self, name))
        if self.method == "rpsa":
            c.one_of("rpsa_base", self.rpsa_base, ("full", "lora"))
            c.in_range("frozen_ratio", self.frozen_ratio, 0.0, 1.0)
            for name in ("update_every", "conflict_window"):
                c.integer(name, getattr(self, name), 1)
        if self.ortho_reg != "none":
            if not self.lora:
                c.fail("ortho_reg", self.ortho_reg, "'none' for full fine-tuning (the regulariser acts on LoRA's B A)")
            c.positive("ortho_beta", self.ortho_beta)
            c.integer("ortho_k", self.ortho_k, 1, "(at most the smaller side of each adapted matrix)")
        c.non_negative("learning_rate", self.learning_rate)
        for name in ("batch_size", "grad_accum"):
            c.positive(name, getattr(self, name))
        for name in ("epochs", "weight_decay", "grad_clip"):
            c.non_negative(name, getattr(self, name))
        c.in_range("warmup_ratio", self.warmup_ratio, 0.0, 1.0)
        c.integer("warmup_steps", self.warmup_steps, -1, "(-1 = the seeds' default)")
        if self.lora:
            c.integer("lora_rank", self.lora_rank, 1)
            c.positive("lora_alpha", self.lora_alpha)
            c.in_range("lora_dropout", self.lora_dropout, 0.0, 1.0)
            try:
                resolve_targets(self.target_modules)
            except ValueError as e:
                c.errors.append(str(e))
        try:
            parse_layers(self.layers, n_layers=0 if str(self.layers).strip() == MIDDLE else None)
        except ValueError as e:
            c.errors.append(str(e))
        c.integer("checkpoint_every_steps", self.checkpoint_every_steps, -1,
                  "(0: at each epoch's end only; -1: no resumable state)")
        if self.extra:
            c.fail("method config keys", sorted(self.extra), "among " + ", ".join(_FIELDS))
        c.raise_if_any()

    @property
    def num_epochs(self) -> int:
        return self.epochs or DEFAULT_EPOCHS[f"rpsa-{self.rpsa_base}" if self.method == "rpsa" else self.method]

    @property
    def lr(self) -> float:
        """The learning rate: the configured one, else the seeds' for the method."""
        return self.learning_rate or DEFAULT_LR[f"rpsa-{self.rpsa_base}" if self.method == "rpsa" else self.method]

    @property
    def lora(self) -> bool:
        """Trains LoRA adapters (method lora, or RPSA on LoRA)."""
        return self.method == "lora" or (self.method == "rpsa" and self.rpsa_base == "lora")

    @property
    def label(self) -> str:
        base = f"lora-r{self.lora_rank}" if self.lora else "full"
        return self.name or (f"rpsa-{base}" if self.method == "rpsa" else base)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """From a pipeline method config (KFP turns numbers in dicts into floats)."""
        d = {k: v for k, v in d.items() if k not in MERGE_KEYS}
        kw: dict[str, Any] = {k: v for k, v in d.items() if k in _FIELDS}
        errors: list[str] = []
        for k in sorted(_INT_FIELDS & kw.keys()):
            try:
                kw[k] = as_int(k, kw[k])
            except ConfigError as e:  # reported with the other fields' problems, the field left at its default
                errors += e.errors
                del kw[k]
        if isinstance(kw.get("target_modules"), list):
            kw["target_modules"] = tuple(kw["target_modules"])
        try:
            cfg = cls(**kw, extra={k: v for k, v in d.items() if k not in _FIELDS})
        except ConfigError as e:
            errors += e.errors
        if errors:
            raise ConfigError("TrainConfig", errors)
        return cfg


_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "extra")
_INT_FIELDS = {"epochs", "batch_size", "grad_accum", "lora_rank", "seed", "ortho_k", "update_every", "conflict_window",
               "warmup_steps", "checkpoint_every_steps"}


@dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    checkpoints: list[str]
    losses: list[float]


def _use_bf16(precision: str, device: torch.device) -> bool:
    if precision == "auto":
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    return precision == "bf16"


def check_model(cfg: TrainConfig, model_ref: str, merge_k: int | None = None) -> None:
    """Check targets and layers against the model's architecture, on the meta device (no weights read);
    also that the SVD ranks (``ortho_k``, a later merge's ``merge_k``) fit every updated matrix."""
    from transformers import AutoConfig, AutoModelForCausalLM

    mcfg = AutoConfig.from_pretrained(model_ref)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(mcfg)
    names = [n for n, _ in skeleton.named_modules()]
    targets = resolve_targets(cfg.target_modules) if cfg.lora else ()
    n_layers = int(mcfg.num_hidden_layers)
    layers = parse_layers(cfg.layers, n_layers)
    errors = check_against_model(targets, layers, names, n_layers)
    ranks = {"ortho_k": cfg.ortho_k if cfg.ortho_reg != "none" else None, "merge_k": merge_k}
    if not errors and any(ranks.values()):
        shapes = [tuple(m.weight.shape) for n, m in skeleton.named_modules()
                  if isinstance(m, torch.nn.Linear) and (not targets or n.rsplit(".", 1)[-1] in targets)
                  and "lm_head" not in n and (layers is None or layer_index(n) in layers)]
        smallest = min((min(s) for s in shapes), default=0)
        for name, k in ranks.items():
            if k and k > smallest:
                errors.append(f"`{name}` must be at most {smallest} (the smaller side of the smallest updated matrix), got {k}")
    if errors:
        raise ConfigError(f"TrainConfig for {model_ref}", errors)


def _attach_lora(model: torch.nn.Module, cfg: TrainConfig) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    layers = parse_layers(cfg.layers, int(model.config.num_hidden_layers))
    lcfg = LoraConfig(
        r=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(resolve_targets(cfg.target_modules)),
        layers_to_transform=list(layers) if layers is not None else None,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lcfg)


def check_data_parallel(cfg: TrainConfig, gpus: int) -> None:
    """Every method trains on one or several GPUs (RPSA too: its masks work on FSDP's shards)."""
    c = Checks(f"TrainConfig {cfg.label}")
    if not (isinstance(gpus, int) and gpus >= 1):
        c.fail("train_gpus", gpus, "an integer >= 1")
    c.raise_if_any()


def run(cfg: TrainConfig, model_uri: str, sft_dir: Path, out_dir: Path, on_step: StepCallback | None = None,
        merge_k: int | None = None, fisher_dir: Path | None = None, corpus_dir: Path | None = None,
        gpus: int = 1, processes: int | None = None, state_dir: Path | None = None, nodes: int = 1,
        trainjob: TrainJobSettings | None = None) -> TrainResult:
    """Train and write ``epoch-<k>/`` per epoch (adapter only for LoRA) plus ``checkpoints.json``.

    ``on_step(loss, tokens_per_second, epoch)`` sees every batch (telemetry; ``epoch`` is fractional).
    ``merge_k``: the rank a later OrthoMerge will use, checked against the model before training.
    RPSA needs ``fisher_dir`` (the fisher stage's output for this method) and ``corpus_dir`` (the
    reasoning corpus, for the dynamic ratio's reasoning gradients); it also writes ``rpsa.json`` and
    ``rpsa_ratio.png`` (conflict and frozen ratio over training).

    ``gpus`` (the pipeline's ``train_gpus``) > 1 trains data-parallel in this pod: one torchrun worker
    per visible requested GPU (:mod:`safetax.training.distributed`); fewer visible GPUs give fewer
    workers, no CUDA one process on the CPU. ``processes`` overrides the count (on the CPU: gloo
    workers, as the tests run). ``batch_size`` is the global batch whatever the count.

    Resumable state (:mod:`safetax.training.resume`) goes to ``state_dir`` (default: ``state/`` in
    ``out_dir``, which the finished output replaces) every ``checkpoint_every_steps`` optimiser steps
    and at each epoch's end; a rerun into the same ``out_dir`` after a kill resumes from the newest one.

    ``nodes`` (the pipeline's ``train_nodes``) > 1 hands the training to a Kubeflow Trainer TrainJob on
    ``nodes`` x ``gpus`` GPUs (:mod:`safetax.training.multinode`; ``trainjob`` says where); the state
    then lives in its work directory on the shared volume.
    """
    check_data_parallel(cfg, gpus)
    if not (isinstance(nodes, int) and nodes >= 1) or (nodes > 1 and trainjob is None):
        raise ConfigError("train", [f"`train_nodes` must be 1, or > 1 with the TrainJob settings (namespace, image, shared "
                                    f"volume) of the platform, got {nodes!r}"])
    model_ref = resolve_model(model_uri, "model_uri")
    sft_dir = input_dir(sft_dir, "sft data")
    examples = read_jsonl(sft_dir / SFT_FILE)
    check_model(cfg, model_ref, merge_k)
    if cfg.method == "rpsa" and (fisher_dir is None or corpus_dir is None):
        raise ConfigError("TrainConfig", [f"method 'rpsa' ({cfg.label}) needs the fisher stage's output and the reasoning corpus "
                                          "(pipeline parameter rpsa_corpus_size > 0)"])
    if cfg.method == "rpsa":  # other methods neither read nor fetch them
        fisher_dir, corpus_dir = input_dir(fisher_dir, "fisher"), input_dir(corpus_dir, "rpsa corpus")  # type: ignore[arg-type]
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    n_proc = processes if processes is not None else processes_for(gpus, visible)
    if nodes > 1:  # this pod only follows the TrainJob: its own GPUs do not matter
        n_proc = 1
    elif n_proc < gpus:
        log.warning("train: %d GPU(s) requested, %d visible: training with %d process(es)", gpus, visible, n_proc)
    if n_proc > 1:
        check_data_parallel(cfg, n_proc)
        if visible and n_proc > visible:
            raise ConfigError("train", [f"`processes` must be at most the {visible} visible GPU(s), got {n_proc}"])
    if state_dir is None and cfg.checkpoint_every_steps >= 0:
        state_dir = Path(out_dir) / STATE_DIR
    with timed(f"train {cfg.label}"), atomic_dir(out_dir) as tmp:
        job = {"config": {k: getattr(cfg, k) for k in _FIELDS}, "model_ref": model_ref, "sft_file": str(sft_dir / SFT_FILE),
               "out_dir": str(tmp), "state_dir": None if state_dir is None else str(state_dir),
               "fisher_dir": None if fisher_dir is None else str(fisher_dir),
               "corpus_dir": None if corpus_dir is None else str(corpus_dir)}
        if nodes > 1:
            from safetax.training.multinode import train_on_trainjob

            job["model_ref"] = model_uri  # resolved on each node (an s3:// model is fetched there)
            trained = Trained(**train_on_trainjob(job, nodes, gpus, trainjob, cfg.label, tmp, on_step))  # type: ignore[arg-type]
        elif n_proc > 1:
            with tempfile.TemporaryDirectory(prefix="safetax-train-") as work:
                trained = Trained(**launch(job | {"result": str(Path(work) / "result.json")}, n_proc, Path(work), on_step))
        else:
            trained = train_model(cfg, model_ref, examples, tmp, on_step, fisher_dir, corpus_dir, state_dir=state_dir)
        write_checkpoints(tmp, CheckpointManifest.from_dict({
            "method": cfg.method, "label": cfg.label, "base_model": model_uri,
            "kind": "adapter" if cfg.lora else "full",
            "checkpoints": trained.entries, "config": {k: getattr(cfg, k) for k in _FIELDS},
            "trainable_parameters": trained.trainable_parameters,
        }))
    return TrainResult(out_dir, [e["name"] for e in trained.entries], trained.losses)


@dataclass(frozen=True)
class Trained:
    """What :func:`train_model` hands back for the manifest (also as a data-parallel worker's ``result.json``)."""

    losses: list[float]
    entries: list[dict[str, Any]]
    trainable_parameters: int


def train_model(cfg: TrainConfig, model_ref: str, examples: list[dict[str, Any]], tmp: Path, on_step: StepCallback | None,
                fisher_dir: Path | None = None, corpus_dir: Path | None = None, ranks: DataParallel | None = None,
                state_dir: Path | None = None) -> Trained:
    """Load, train and write the checkpoints (and RPSA's records) into ``tmp``; the manifest is the caller's.

    ``ranks``: as a data-parallel worker (:mod:`safetax.training.worker`); the model is then
    sharded (FSDP for full fine-tuning, DDP for LoRA) and rank 0 writes the files. ``state_dir``:
    where the resumable state is written and resumed from (None: none).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = ranks.device if ranks is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bf16 = _use_bf16(cfg.precision, device)
    main = ranks is None or ranks.main
    torch.manual_seed(cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_ref)
    dtype = torch.bfloat16 if bf16 and cfg.lora else torch.float32
    if ranks is not None and device.type == "cuda":
        # Straight onto this rank's GPU (the files are memory-mapped): no full copy per rank in host memory.
        model = AutoModelForCausalLM.from_pretrained(model_ref, dtype=dtype, device_map={"": device})
    else:
        model = AutoModelForCausalLM.from_pretrained(model_ref, dtype=dtype)
        model.to(device)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if cfg.lora:
        if cfg.method == "rpsa":
            torch.manual_seed(cfg.seed)  # the LoRA initialisation the Fisher stage scored
        model = _attach_lora(model, cfg)
    regularizer = None
    if cfg.ortho_reg != "none":
        from safetax.training.ortho_reg import lora_orthogonality_regularizer

        regularizer = lora_orthogonality_regularizer(model, cfg.ortho_reg, cfg.ortho_beta, cfg.ortho_k, cfg.seed)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("%s: %d trainable parameters, %d examples, %d epochs, bf16=%s", cfg.label, n_train, len(examples), cfg.num_epochs, bf16)
    trained = model
    if ranks is not None:
        trained = shard(model, ranks, cfg.lora, bf16)
        torch.manual_seed(cfg.seed + ranks.rank)  # LoRA dropout: independent masks on each rank's share
    entries: list[dict[str, Any]] = []

    stored = save_dtype(cfg.save_dtype, cfg.lora, model_ref)

    def save(epoch: int, loss: float) -> None:
        ref = CheckpointRef(cfg.label, epoch)  # the one naming of checkpoints (safetax.checkpoints)
        path = tmp / ref.dirname
        if ranks is None:
            write_checkpoint(model, path, stored)
        else:
            save_checkpoint(trained, path, ranks, stored)
        if not cfg.lora and main:
            tokenizer.save_pretrained(path)
        if state is not None:
            state.keep_epoch(path)
        entries.append({"name": ref.dirname, "epoch": epoch, "loss": loss, "dtype": str(stored).removeprefix("torch.")})

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    warmup_steps = cfg.warmup_steps if cfg.warmup_steps >= 0 else (100 if cfg.method == "rpsa" else -1)
    loop = LoopConfig(cfg.num_epochs, cfg.lr, cfg.weight_decay, cfg.batch_size, cfg.grad_accum,
                      cfg.warmup_ratio, cfg.grad_clip, cfg.seed, bf16, warmup_steps)
    controller = None
    if cfg.method == "rpsa":
        from safetensors.torch import load_file

        from safetax.stages.corpus import corpus_examples
        from safetax.training.rpsa_train import RPSAController

        fisher_file = fisher_dir / "fisher.safetensors"  # type: ignore[operator]
        if not fisher_file.is_file():
            raise ConfigError("TrainConfig", [f"method 'rpsa' ({cfg.label}): {fisher_file} is missing (the fisher stage "
                                              "scored no parameters: was rpsa_corpus_size 0?)"])
        keep = read_json(fisher_dir / "fisher.json").get("keep", "all")  # type: ignore[operator]
        controller = RPSAController(model, load_file(fisher_file), cfg, corpus_examples(tokenizer, corpus_dir, keep), pad_id,  # type: ignore[arg-type]
                                   ranks)
    state = None
    if state_dir is not None:
        state = _train_state(cfg, model_ref, examples, state_dir, ranks, entries, tmp, controller)
    losses = train_loop(trained, examples, pad_id, loop, save, on_step, regularizer,
                        optimizer=controller.optimizer if controller else None,
                        before_step=controller.before_step if controller else None, ranks=ranks, state=state)
    if controller is not None:
        from safetax.rpsa.plots import plot_dynamic_ratio

        write_json(tmp / "rpsa.json", {"history": controller.history, "final_k": controller.k, "frozen_share": controller.frozen})
        if controller.dynamic.history:
            plot_dynamic_ratio(controller.dynamic.history, tmp / "rpsa_ratio.png")
    return Trained(losses, entries, n_train)


def _train_state(cfg: TrainConfig, model_ref: str, examples: list[dict[str, Any]], state_dir: Path, ranks: DataParallel | None,
                 entries: list[dict[str, Any]], tmp: Path, controller: Any) -> TrainState:
    """The resumable state of this run: the loop's, plus the checkpoints written so far and RPSA's controller."""
    world = 1 if ranks is None else ranks.world
    settings = {k: getattr(cfg, k) for k in _FIELDS if k != "checkpoint_every_steps"}
    digest = fingerprint(settings, model_ref, fingerprint(examples), world)

    def extra() -> dict[str, Any]:
        return {"entries": entries, "rpsa": controller.state_dict() if controller is not None else None}

    def on_restore(saved: dict[str, Any]) -> None:
        entries[:] = saved["entries"]
        state.take_epochs([e["name"] for e in entries], tmp)
        if controller is not None:
            controller.load_state_dict(saved["rpsa"])

    state = TrainState(state_dir, digest, max(0, cfg.checkpoint_every_steps), ranks, extra, on_restore)
    return state
