"""The benchmark registry: plain dicts behind a decorator.

A benchmark module defines a class with ``name``, ``kind``, ``VERSION``,
``default_path`` and the methods of :class:`Benchmark`, decorates it with
``@benchmark("name")``, and is imported in :data:`MODULES` so that
:func:`get_benchmark` finds it. ``VERSION`` is written into every result.

Data location (:func:`resolve_data`, the one place that finds a benchmark's file): an explicit
``uri`` (local path, ``file://``, ``s3://`` or a hub dataset id); else
``$SAFETAX_DATA_DIR/<default_path>``, where ``SAFETAX_DATA_DIR`` is a local directory laid out like
the project's ``shared/data`` or an ``s3://bucket/prefix`` seeded from one (``safetax data upload``):
its files are downloaded once through the store and cached by digest.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from safetax.records import Score
from safetax.store import StoreError, fetch, is_hub_id, is_s3

KINDS = ("safety", "overrefusal", "reasoning")
DATA_DIR_ENV = "SAFETAX_DATA_DIR"  # where benchmarks without a uri find <default_path>: a directory or s3:// prefix
# Modules that register benchmarks when imported.
MODULES = ("safetax.benchmarks.safety", "safetax.benchmarks.math", "safetax.benchmarks.gpqa", "safetax.benchmarks.code")
_REGISTRY: dict[str, Callable[[], Benchmark]] = {}


@dataclass(frozen=True)
class Item:
    """One benchmark question: the user turn and what scoring needs."""

    id: str
    prompt: str  # the user turn, ready for the model's chat template
    reference: str = ""  # answer, correct letter, or "" for safety prompts
    meta: dict[str, Any] = field(default_factory=dict)  # category, label, task id, ... (JSON-serialisable)


class Benchmark(Protocol):
    name: str
    kind: str  # safety | overrefusal | reasoning
    VERSION: str
    default_path: str  # relative to $SAFETAX_DATA_DIR, e.g. "aime24/aime24.jsonl"

    def load(self, uri: str | None = None, limit: int = 0, style: str = "deepseek") -> list[Item]:
        """Read and validate every row (errors name file, row, column) and build the prompts in the prompt
        ``style`` (:mod:`safetax.benchmarks.styles`; an unknown style raises ValueError naming the allowed ones)."""
        ...

    def score(self, responses: Sequence[str], items: Sequence[Item]) -> list[Score]:
        """Reasoning benchmarks: correctness of each full response (``<think>`` included). Safety
        benchmarks are judged by a Judge instead and raise NotImplementedError here."""
        ...


def benchmark(name: str) -> Callable[[type], type]:
    """Register a benchmark class under ``name``."""

    def register(cls: type) -> type:
        if name in _REGISTRY:
            raise ValueError(f"benchmark {name!r} registered twice")
        _REGISTRY[name] = cls
        return cls

    return register


def _load_modules() -> None:
    for m in MODULES:
        try:
            importlib.import_module(m)
        except ModuleNotFoundError as e:
            if e.name != m:  # a missing dependency inside a benchmark module is a real error
                raise


def benchmark_names() -> list[str]:
    _load_modules()
    return sorted(_REGISTRY)


def get_benchmark(name: str) -> Benchmark:
    """A fresh instance of a registered benchmark; unknown names list the known ones."""
    _load_modules()
    if name not in _REGISTRY:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]()


class BenchmarkDataError(FileNotFoundError):
    """A benchmark's file cannot be found or read; the message names the setting and the expected path."""


def resolve_data(uri: str | None, default_path: str, what: str) -> Path:
    """The local file of a benchmark: ``uri`` if given, else ``$SAFETAX_DATA_DIR/default_path``.

    An ``s3://`` uri is downloaded (and cached) through the artifact store. A ``uri`` that is
    no local file but a hub dataset id (``org/name``) is fetched from the hub: only when
    asked, and offline that fails at once with a clear error.
    """
    if uri and is_s3(uri):
        return fetch(uri, what)
    if uri:
        if is_hub_id(uri):
            from safetax.data.refusal_sets import fetch_hub_dataset

            return fetch_hub_dataset(uri, split="test")
        path = Path(uri.removeprefix("file://")).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{what}: {uri!r} does not exist")
        return path
    return data_dir_file(default_path, what)


def data_dir_file(default_path: str, what: str) -> Path:
    """``$SAFETAX_DATA_DIR/default_path`` as a local file.

    ``SAFETAX_DATA_DIR`` is a local directory (``file://`` too) or an ``s3://bucket/prefix``; an
    ``s3://`` file is fetched through the store (a file of a published directory, as ``safetax data
    upload`` writes, or a plain object), downloaded once and cached by digest under ``$SAFETAX_CACHE``.

    Raises:
        BenchmarkDataError: the setting is missing, or the file is not there or cannot be read; the
            message names ``SAFETAX_DATA_DIR``, its value and the expected path.
    """
    data_dir = os.environ.get(DATA_DIR_ENV, "").strip()
    hint = f"expected <{DATA_DIR_ENV}>/{default_path}"
    if not data_dir:
        raise BenchmarkDataError(
            f"{what}: no uri given and {DATA_DIR_ENV} is not set ({hint}); set it to a directory laid out like the "
            "project's shared/data, or to an s3://bucket/prefix seeded with `safetax data upload`")
    location = f"{data_dir.rstrip('/')}/{default_path}"
    if is_s3(data_dir):
        try:
            return fetch(location, what)
        except StoreError as e:
            reason = str(e).removeprefix(f"{what}: ")
            raise BenchmarkDataError(f"{what}: cannot read {location} ({DATA_DIR_ENV}={data_dir}, {hint}): {reason}") from None
    if "://" in data_dir and not data_dir.startswith("file://"):
        raise BenchmarkDataError(f"{what}: {DATA_DIR_ENV}={data_dir} is neither a local directory, file:// nor s3:// ({hint})")
    path = Path(data_dir.removeprefix("file://")).expanduser() / default_path
    if not path.is_file():
        raise BenchmarkDataError(f"{what}: {path} does not exist ({DATA_DIR_ENV}={data_dir}, {hint})")
    return path
