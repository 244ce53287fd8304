"""The plan's checks that read the run's inputs: the refusal data's rows and the base model's architecture.

Reading is kept cheap: the refusal file is read when it is local or an ``s3://`` object (refusal sets are small),
a hub dataset is left to ``prepare``; of the base model only ``config.json`` is read (a local directory, one
object of a published ``s3://`` directory, or a hub id's file from the local HF cache or one small download
when online), and the model is built on the meta device: no weight is read, no memory is taken.

Against that skeleton every method's ``target_modules`` and ``layers`` are checked, and the SVD ranks it will use
(``ortho_k``, ``merge_k`` of an OrthoMerge, the run's ``analysis_k``) against the smallest matrix it updates; with
vLLM, ``tensor_parallel_size`` against the model's attention heads.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from safetax.config import Checks, ConfigError

log = logging.getLogger(__name__)
CONFIG = "config.json"


def check_refusal_data(uri: str, c: Checks) -> None:
    """Read and validate every row of the refusal SFT file (``prepare``'s reader) when it is a local file or an
    ``s3://`` object; a hub dataset is only checked for reachability here."""
    from safetax.data.refusal_sets import load_refusal_rows
    from safetax.data.tables import DataError
    from safetax.store import StoreError, fetch, is_hub_id

    if not uri or is_hub_id(uri):
        if uri:
            log.info("refusal_data_uri: hub dataset %s: its rows are checked by prepare", uri)
        return
    try:
        rows = load_refusal_rows(fetch(uri, "refusal_data_uri"))
    except (DataError, StoreError, OSError, ValueError) as e:
        c.errors.append(f"refusal_data_uri: {e}")
        return
    if not rows:
        c.fail("refusal_data_uri", uri, "a file with at least one (prompt, refusal) row")


def model_config_dir(uri: str) -> Path | None:
    """A local directory holding the model's ``config.json`` (only that file is fetched), or None when it cannot be
    read cheaply from here (logged: the model checks then run in the train and analyze pods)."""
    from safetax.store import fetch, is_hub_id, local_path, parse_store_uri

    try:
        if parse_store_uri(uri, "base_model_uri").is_s3:
            return fetch(f"{uri.rstrip('/')}/{CONFIG}", "base_model_uri").parent
        path = local_path(uri, "base_model_uri")
        if (path / CONFIG).is_file():
            return path
        if is_hub_id(uri):
            return _hub_config_dir(uri)
    except Exception as e:  # noqa: BLE001 - a model that cannot be read here is only checked later; say why
        log.warning("base_model_uri: %s: config.json not readable here (%s); targets, layers and ranks are checked "
                    "in the train pods", uri, e)
        return None
    log.info("base_model_uri: %s has no config.json here; targets, layers and ranks are checked in the train pods", uri)
    return None


def _hub_config_dir(repo_id: str) -> Path | None:
    """The HF cache's copy of a hub model's config.json (downloaded when online: one small file)."""
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

    from safetax.store import split_hub_id

    repo, commit = split_hub_id(repo_id)  # org/name@<commit>: that commit's config
    cached = try_to_load_from_cache(repo, CONFIG, revision=commit)
    if isinstance(cached, str):
        return Path(cached).parent
    if constants.is_offline_mode():
        log.info("base_model_uri: %s: config.json not in the local HF cache (offline); model checks skipped", repo_id)
        return None
    return Path(hf_hub_download(repo, CONFIG, revision=commit)).parent


def _skeleton(config_dir: Path) -> tuple[Any, Any]:
    """(config, model on the meta device): every module and shape, no weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    mcfg = AutoConfig.from_pretrained(config_dir)
    with torch.device("meta"):
        return mcfg, AutoModelForCausalLM.from_config(mcfg)


def _updated_sides(skeleton: Any, targets: tuple[str, ...], layers: tuple[int, ...] | None) -> int:
    """The smaller side of the smallest Linear matrix a method updates (LoRA: its targets in its layers; full
    fine-tuning: every Linear matrix but ``lm_head``, as the analysis reads them); 0 when there is none."""
    import torch

    from safetax.training.targets import layer_index

    sides = [min(m.weight.shape) for n, m in skeleton.named_modules()
             if isinstance(m, torch.nn.Linear) and "lm_head" not in n
             and (not targets or (n.rsplit(".", 1)[-1] in targets and (layers is None or layer_index(n) in layers)))]
    return min(sides, default=0)


def _method_problems(item: dict[str, Any], mcfg: Any, skeleton: Any, names: list[str], analysis_k: int | None) -> list[str]:
    """What one method item gets wrong about the model (the checks of :func:`safetax.stages.train.check_model`)."""
    from safetax.stages.merge import MergeConfig
    from safetax.stages.train import TrainConfig
    from safetax.training.targets import check_against_model, parse_layers, resolve_targets

    cfg, merge = TrainConfig.from_dict(item["config"]), MergeConfig.from_method(item["config"])
    n_layers = int(mcfg.num_hidden_layers)
    targets = resolve_targets(cfg.target_modules) if cfg.lora else ()
    try:
        layers = parse_layers(cfg.layers, n_layers)
    except ValueError as e:
        return [str(e)]
    errors = check_against_model(targets, layers, names, n_layers)
    if errors:
        return errors
    smallest = _updated_sides(skeleton, targets, layers)
    ranks = {"ortho_k": cfg.ortho_k if cfg.ortho_reg != "none" else None,
             "merge_k": merge.k if merge.mode.startswith("ortho") else None, "analysis_k": analysis_k}
    return [f"`{name}` must be at most {smallest} (the smaller side of the smallest matrix this method updates), got {k}"
            for name, k in ranks.items() if k and smallest and k > smallest]


def check_against_model(base_model_uri: str, items: list[dict[str, Any]], c: Checks, analysis_k: int | None = None,
                        vllm_tensor_parallel: int | None = None) -> None:
    """Check every method item against the base model's architecture (when its config.json can be read here);
    ``analysis_k`` None = not checked; ``vllm_tensor_parallel`` (vLLM only) must divide the attention heads."""
    config_dir = model_config_dir(base_model_uri)
    if config_dir is None:
        return
    try:
        mcfg, skeleton = _skeleton(config_dir)
    except Exception as e:  # noqa: BLE001 - transformers' own message says what is wrong with the config
        c.errors.append(f"base_model_uri: {base_model_uri}: its config.json does not build a causal LM: {e}")
        return
    names = [n for n, _ in skeleton.named_modules()]
    for i, item in enumerate(items):
        try:
            problems = _method_problems(item, mcfg, skeleton, names, analysis_k)
        except (ConfigError, ValueError, TypeError) as e:  # already reported by the method's own checks
            log.debug("methods[%d]: not checked against the model: %s", i, e)
            continue
        c.errors += [f"methods[{i}] ({item['label']}) for {base_model_uri}: {m}" for m in problems]
    heads = getattr(mcfg, "num_attention_heads", None)
    if vllm_tensor_parallel and isinstance(heads, int) and heads % vllm_tensor_parallel:
        c.fail("tensor_parallel_size", vllm_tensor_parallel,
               f"a divisor of the model's {heads} attention heads (vLLM splits the heads over the GPUs)")
