"""Refusal SFT data: (prompt, refusal) pairs from a local file or the Hugging Face hub.

Two layouts are read:

- any JSONL, JSON (array of objects), CSV or parquet file with ``prompt`` and ``refusal`` columns;
- DirectRefusal (hub ``TianshengHuang/DirectRefusal``): no ``prompt`` column, and
  each ``refusal`` is ``"Question: <q> Answer: <a>"``; it is split into
  ``prompt=<q>`` and ``refusal=<a>``.

Prompts may be harmful text: nothing here logs a prompt, only files and counts.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from safetax.data.tables import FORMATS, DataError, read_rows, require_columns, row_label

log = logging.getLogger(__name__)

DIRECT_REFUSAL = "TianshengHuang/DirectRefusal"
_QA = re.compile(r"^\s*Question:\s*(?P<q>.*?)\s*Answer:\s*(?P<a>.*?)\s*$", re.DOTALL)
_OFFLINE_VALUES = ("1", "true", "yes", "on")


class HubUnavailableError(RuntimeError):
    """The dataset hub cannot be reached (offline, or ``huggingface_hub`` missing)."""


def _read_any(path: Path) -> list[dict[str, Any]]:
    """Rows of a file: :func:`read_rows` formats plus a ``.json`` array of objects."""
    if not path.name.lower().endswith(".json"):
        return read_rows(path)
    if not path.is_file():
        raise DataError(f"{path}: file does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
        data = next(iter(data.values()))  # {"train": [...]} style
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON array of objects, got {type(data).__name__}")
    for i, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise DataError(f"{path}: row {i}: expected a JSON object, got {type(row).__name__}")
    return data


def _text(path: Path, where: str, row: dict[str, Any], column: str) -> str:
    value = row.get(column)
    if not isinstance(value, str):
        raise DataError(f"{path}: {where}: column {column!r} must be text, got {type(value).__name__}")
    return value


def split_question_answer(text: str) -> tuple[str, str] | None:
    """Split a DirectRefusal ``"Question: <q> Answer: <a>"`` string.

    Whitespace and newlines around the markers are tolerated; the first
    ``Answer:`` ends the question.

    Args:
        text: the ``refusal`` field of a DirectRefusal row.

    Returns:
        ``(question, answer)``, or None when ``text`` is not in that form or a part is empty.

    >>> split_question_answer("Question: do X?\\n Answer:\\nI can't help with that.")
    ('do X?', "I can't help with that.")
    >>> split_question_answer("I can't help with that.") is None
    True
    """
    m = _QA.match(text)
    if not m or not m["q"] or not m["a"]:
        return None
    return m["q"], m["a"]


def load_refusal_rows(path: Path) -> list[dict[str, str]]:
    """Read a refusal SFT file as ``{"prompt", "refusal"}`` rows.

    Args:
        path: JSONL, JSON, CSV or parquet (optionally gzip for JSONL/CSV) with ``prompt`` and
            ``refusal`` columns, or DirectRefusal rows (``refusal`` = ``"Question: .. Answer: .."``).

    Returns:
        One dict per row with text ``prompt`` and ``refusal``.

    Raises:
        DataError: on a missing file or column, an empty or non-text value, or a DirectRefusal
            row without ``Question:``/``Answer:``; messages name file, 1-based row and column.
    """
    rows = _read_any(path)
    if rows and "prompt" not in rows[0]:
        require_columns(path, rows, ("refusal",))
        out = []
        for i, row in enumerate(rows, start=1):
            parts = split_question_answer(_text(path, row_label(rows, i), row, "refusal"))
            if parts is None:
                raise DataError(
                    f"{path}: {row_label(rows, i)}: column 'refusal' is not 'Question: <prompt> Answer: <refusal>' "
                    "(no 'Answer:' or an empty part) and the file has no 'prompt' column"
                )
            out.append({"prompt": parts[0], "refusal": parts[1]})
        log.info("%s: %d DirectRefusal rows (prompt split from 'refusal')", path, len(out))
        return out
    require_columns(path, rows, ("prompt", "refusal"))
    out = [{"prompt": _text(path, row_label(rows, i), r, "prompt"), "refusal": _text(path, row_label(rows, i), r, "refusal")}
           for i, r in enumerate(rows, 1)]
    log.info("%s: %d refusal rows", path, len(out))
    return out


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in _OFFLINE_VALUES for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _pick_split_file(root: Path, repo_id: str, split: str) -> Path:
    allowed = (*FORMATS, ".json")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name.lower().endswith(allowed))
    for p in files:
        if p.name.lower().startswith(split.lower()) or f"/{split.lower()}" in p.relative_to(root).as_posix().lower():
            return p
    if len(files) == 1:
        return files[0]
    found = ", ".join(p.relative_to(root).as_posix() for p in files) or "none"
    raise DataError(f"hub dataset {repo_id}: no data file for split {split!r}; files: {found}")


def fetch_hub_dataset(repo_id: str, split: str = "train") -> Path:
    """Download (or find in the local cache) a hub dataset and return its file for ``split``.

    ``huggingface_hub`` is imported only here. With ``HF_HUB_OFFLINE`` (or
    ``HF_DATASETS_OFFLINE``) set, only the local cache is used; nothing is retried.

    Args:
        repo_id: hub dataset id, e.g. ``"TianshengHuang/DirectRefusal"``, optionally pinned to a commit
            (``org/name@<40 hex digits>``).
        split: split name, matched against the data files' names.

    Returns:
        Local path of a data file readable by :func:`load_refusal_rows`.

    Raises:
        HubUnavailableError: if the hub cannot be reached, the dataset is not cached while
            offline, or ``huggingface_hub`` is not installed.
        DataError: if the dataset has no data file for ``split``.
    """
    hint = "pass a local path or s3:// URI of the data file instead"
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise HubUnavailableError(f"hub dataset {repo_id}: huggingface_hub is not installed; {hint}") from None
    from safetax.store import split_hub_id

    offline = _offline()
    repo, commit = split_hub_id(repo_id)  # org/name@<commit>: that commit's files
    try:
        root = snapshot_download(repo, revision=commit, repo_type="dataset", local_files_only=offline)
    except Exception as e:  # network errors, missing cache, gated repos: all mean "not reachable here"
        why = "offline (HF_HUB_OFFLINE set) and not in the local cache" if offline else f"{type(e).__name__}: {e}"
        raise HubUnavailableError(f"hub dataset {repo_id} is unreachable ({why}); {hint}") from None
    path = _pick_split_file(Path(root), repo_id, split)
    log.info("hub dataset %s split %s: %s", repo_id, split, path)
    return path
