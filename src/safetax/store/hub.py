"""Hub ids (``org/name``): a model's files in the local HF cache, and a cheap reachability check.

``huggingface_hub`` is imported only here, and reads its own settings from the environment:
``HF_ENDPOINT``, ``HF_HUB_CACHE`` (or ``HF_HOME``), ``HF_HUB_OFFLINE`` and ``HF_TOKEN``, which it
sends for gated and private repos. The token never appears in our logs or errors.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from safetax.store import split_hub_id
from safetax.store.local import StoreError

log = logging.getLogger(__name__)
REPO_TYPES = ("model", "dataset")
# What a model directory needs (config, safetensors weights, tokenizer, chat template); Llama repos'
# original/ holds a second, consolidated copy of the weights for Meta's own code.
MODEL_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.jinja"]
SKIP_FILES = ["original/*"]


def snapshot(repo_id: str, what: str, repo_type: str = "model") -> Path:
    """The local directory of a hub repo (``org/name``, or ``org/name@<commit>``: that commit's files), downloaded to
    the HF cache if missing (resumable, shared by every process on the machine); offline only the cache is used.
    Models get :data:`MODEL_FILES` only."""
    from huggingface_hub import snapshot_download

    files = _files(repo_type)
    repo, commit = split_hub_id(repo_id)
    try:
        path = snapshot_download(repo, revision=commit, **files)
    except Exception as e:  # noqa: BLE001 - every failure becomes one message that says what to do
        raise _explain(e, repo_id, what, repo_type) from None
    log.info("%s: hub %s %s at %s", what, repo_type, repo_id, path)
    return Path(path)


def revision(repo_id: str, what: str) -> str:
    """The commit a hub model's main branch names now: one metadata request to the hub (nothing downloaded);
    offline, the commit the local HF cache's ``refs/main`` names, with its snapshot there. A pinned id
    (``org/name@<commit>``) names its commit: no request."""
    from huggingface_hub import HfApi, constants, snapshot_download

    repo_id, pinned = split_hub_id(repo_id)
    if pinned is not None:
        return pinned
    try:
        if constants.is_offline_mode():
            return Path(snapshot_download(repo_id, local_files_only=True, **_files("model"))).name
        commit = HfApi().model_info(repo_id).sha
    except Exception as e:  # noqa: BLE001 - every failure becomes one message that says what to do
        raise _explain(e, repo_id, what, "model") from None
    if not commit:
        raise StoreError(f"{what}: hub model {repo_id!r}: the hub named no commit for its main branch")
    return str(commit)


def check(repo_id: str, what: str, repo_type: str = "model") -> None:
    """Raise a StoreError unless the repo can be read here: in the local cache when offline, else an
    access check against the hub (one small request: no files are downloaded)."""
    from huggingface_hub import HfApi, constants, snapshot_download

    files = _files(repo_type)
    repo, commit = split_hub_id(repo_id)
    if constants.is_offline_mode():
        try:  # the files snapshot() would fetch, all in the cache
            snapshot_download(repo, revision=commit, local_files_only=True, **files)
        except Exception as e:  # noqa: BLE001
            raise _explain(e, repo_id, what, repo_type) from None
        return
    try:
        if commit is None:
            HfApi().auth_check(repo, repo_type=repo_type)
        else:  # the access check and that the commit exists, in one request
            HfApi().repo_info(repo, revision=commit, repo_type=repo_type)
    except Exception as e:  # noqa: BLE001
        raise _explain(e, repo_id, what, repo_type) from None


def _files(repo_type: str) -> dict[str, Any]:
    """``snapshot_download``'s repo type and patterns: a model's :data:`MODEL_FILES`, a dataset's every file."""
    if repo_type not in REPO_TYPES:
        raise ValueError(f"`repo_type` must be one of {', '.join(map(repr, REPO_TYPES))}, got {repo_type!r}")
    model = repo_type == "model"
    return {"repo_type": repo_type, "allow_patterns": MODEL_FILES if model else None, "ignore_patterns": SKIP_FILES if model else None}


def _explain(e: Exception, repo_id: str, what: str, repo_type: str) -> StoreError:
    """One message per cause: offline and not cached, gated (401/403), not found (404), unreachable."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    where = f"{what}: hub {repo_type} {repo_id!r}"
    alternative = "or pass a local path or s3:// URI of a copy"
    status = getattr(getattr(e, "response", None), "status_code", None)
    code = f"HTTP {status}" if status else type(e).__name__
    if constants.is_offline_mode() or isinstance(e, LocalEntryNotFoundError) and not isinstance(e, HfHubHTTPError):
        reason = "the hub is offline (HF_HUB_OFFLINE=1)" if constants.is_offline_mode() else "the hub cannot be reached"
        return StoreError(f"{where}: {reason} and the repo is not (completely) in the local HF cache "
                          f"({constants.HF_HUB_CACHE}); download it there first, {alternative}")
    if isinstance(e, GatedRepoError) or status in (401, 403) and not isinstance(e, RepositoryNotFoundError):
        return StoreError(f"{where}: access denied ({code}): a gated or private repo needs HF_TOKEN set to a token of an "
                          "account that was granted access (accept the terms on the repo's page)")
    if isinstance(e, RevisionNotFoundError):
        return StoreError(f"{where}: the repo has no commit {split_hub_id(repo_id)[1]!r} ({code}); pin a commit of its history "
                          "(org/name@<40 hex digits>) or leave the pin out to load the main branch")
    if isinstance(e, RepositoryNotFoundError):
        return StoreError(f"{where}: not found on {constants.ENDPOINT} ({code}); check the id, and for a private repo "
                          "set HF_TOKEN")
    if isinstance(e, HfHubHTTPError):
        return StoreError(f"{where}: the hub answered {code}")
    return StoreError(f"{where}: cannot reach {constants.ENDPOINT} ({type(e).__name__}); without network set "
                      f"HF_HUB_OFFLINE=1 with the repo in the local HF cache, {alternative}")
