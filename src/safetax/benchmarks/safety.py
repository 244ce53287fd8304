"""Safety and over-refusal benchmarks: StrongREJECT, WildJailbreak and XSTest.

Each benchmark reads one local file (an explicit ``uri`` or
``$SAFETAX_DATA_DIR/<default_path>``, see :func:`resolve_data`) and turns its
rows into :class:`Item` s. Item ids are ``<prefix>-<i>`` where ``i`` is the
0-based data row of the file (before filtering and ``limit``), so an id is
stable across subsets; error messages count rows from 1, like
:func:`safetax.data.tables.require_columns`.

The prompts are harmful text: this module never logs or prints a prompt, only
file names, counts and categories. Responses are judged by a Judge, so
:meth:`score` raises ``NotImplementedError``.

The user turn is the dataset's prompt in every prompt style: neither paper prints a wrapper for
safety prompts (see :mod:`safetax.benchmarks.styles`).
"""

from __future__ import annotations

import csv
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safetax.benchmarks.registry import Item, benchmark, resolve_data
from safetax.benchmarks.styles import DEFAULT_STYLE, check_style
from safetax.data.tables import DataError, Rows, open_text, read_rows, require_columns, row_label
from safetax.records import Score

log = logging.getLogger(__name__)

UNCATEGORIZED = "uncategorized"


def read_tsv(path: Path) -> list[dict[str, str]]:
    """All rows of a (gzip) TSV file with a header line, as dicts.

    Args:
        path: a ``.tsv`` or ``.tsv.gz`` file.

    Returns:
        One dict per data row, keyed by the header's column names.

    Raises:
        DataError: if the file is missing or unreadable, or a row has more or fewer fields
            than the header (the message names file, line and column).
    """
    if not path.is_file():
        raise DataError(f"{path}: file does not exist")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # adversarial prompts can be long
    rows, lines = [], []
    try:
        with open_text(path, newline="") as f:
            reader = csv.DictReader(f, delimiter="\t")
            header = list(reader.fieldnames or [])
            for row in reader:
                if None in row:
                    raise DataError(f"{path}: line {reader.line_num}: more fields than the {len(header)} columns "
                                    f"{', '.join(header)}")
                short = [c for c in header if row.get(c) is None]
                if short:
                    raise DataError(f"{path}: line {reader.line_num}: column {short[0]!r} is missing (too few fields)")
                rows.append(row)
                lines.append(reader.line_num)
    except (OSError, UnicodeDecodeError, csv.Error, EOFError) as e:
        raise DataError(f"{path}: unreadable TSV near line {(lines[-1] if lines else 1) + 1}: {e}") from None
    return Rows(rows, lines)


def _read(path: Path, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows of ``path`` (TSV or any :func:`read_rows` format), validated to have ``columns``."""
    name = path.name.lower()
    rows: list[dict[str, Any]] = read_tsv(path) if name.endswith((".tsv", ".tsv.gz")) else read_rows(path)
    require_columns(path, rows, columns)
    return rows


def _limited(items: list[Item], limit: int) -> list[Item]:
    if limit < 0:
        raise ValueError(f"limit must be >= 0 (0 = all), got {limit}")
    return items[:limit] if limit else items


class _SafetySet:
    """Shared loading logic; subclasses set the class attributes and :meth:`_items`."""

    name: str = ""
    kind: str = "safety"
    VERSION = "1"
    default_path: str = ""
    columns: tuple[str, ...] = ()

    def load(self, uri: str | None = None, limit: int = 0, style: str = DEFAULT_STYLE) -> list[Item]:
        """Read and validate the benchmark file and build its items.

        Args:
            uri: local path, ``file://`` or ``s3://`` URI, or a hub dataset id; default ``$SAFETAX_DATA_DIR/<default_path>``.
            limit: keep the first ``limit`` items after filtering; 0 keeps all.
            style: a prompt style; checked, and the same prompts in every style (no paper wraps them).

        Returns:
            The benchmark's items (prompt, empty reference, meta with ``category``).

        Raises:
            FileNotFoundError: if no file can be found.
            DataError: if a column or value is missing or invalid (names file, row, column).
        """
        check_style(style)
        path = resolve_data(uri, self.default_path, self.name)
        items = _limited(self._items(path, _read(path, self.columns)), limit)
        log.info("%s: %d items from %s", self.name, len(items), path)
        return items

    def _items(self, path: Path, rows: list[dict[str, Any]]) -> list[Item]:
        raise NotImplementedError

    def score(self, responses: Sequence[str], items: Sequence[Item]) -> list[Score]:
        """Not available: safety benchmarks are judged by a Judge."""
        raise NotImplementedError("safety benchmarks are judged by a Judge")


class _StrongReject(_SafetySet):
    kind = "safety"
    columns = ("category", "forbidden_prompt")

    def _items(self, path: Path, rows: list[dict[str, Any]]) -> list[Item]:
        return [
            Item(id=f"sr-{i}", prompt=str(r["forbidden_prompt"]), meta={"category": str(r["category"]).strip()})
            for i, r in enumerate(rows)
        ]


@benchmark("strongreject")
class StrongReject(_StrongReject):
    """StrongREJECT: 313 forbidden prompts in 6 categories (CSV ``category,source,forbidden_prompt``)."""

    name = "strongreject"
    default_path = "strongreject/strongreject_dataset.csv"


@benchmark("strongreject-small")
class StrongRejectSmall(_StrongReject):
    """StrongREJECT small: 60 forbidden prompts, 10 per category, same format."""

    name = "strongreject-small"
    default_path = "strongreject/strongreject_small_dataset.csv"


class _WildJailbreak(_SafetySet):
    default_path = "wildjailbreak/wildjailbreak_eval.tsv.gz"
    columns = ("adversarial", "label", "data_type")
    keep_label = "1"
    id_prefix = "wj"

    def _items(self, path: Path, rows: list[dict[str, Any]]) -> list[Item]:
        items = []
        for i, r in enumerate(rows):
            label = str(r["label"]).strip()
            if label not in ("0", "1"):
                raise DataError(f"{path}: {row_label(rows, i + 1)}: column 'label' must be 0 or 1, got {label!r}")
            if label == self.keep_label:
                meta = {"category": str(r["data_type"]).strip(), "label": "unsafe" if label == "1" else "safe"}
                items.append(Item(id=f"{self.id_prefix}-{i}", prompt=str(r["adversarial"]), meta=meta))
        return items


@benchmark("wildjailbreak")
class WildJailbreak(_WildJailbreak):
    """WildJailbreak eval, adversarial harmful prompts (label 1; 2000 rows)."""

    name = "wildjailbreak"
    kind = "safety"


@benchmark("wildjailbreak-benign")
class WildJailbreakBenign(_WildJailbreak):
    """WildJailbreak eval, adversarial benign prompts (label 0; 210 rows): over-refusal."""

    name = "wildjailbreak-benign"
    kind = "overrefusal"
    keep_label = "0"
    id_prefix = "wjb"


@benchmark("xstest")
class XSTest(_SafetySet):
    """XSTest: 250 safe prompts that should be answered and 200 unsafe contrasts (over-refusal)."""

    name = "xstest"
    kind = "overrefusal"
    default_path = "xstest/xstest_prompts.csv"
    columns = ("id", "prompt", "type", "label")

    def _items(self, path: Path, rows: list[dict[str, Any]]) -> list[Item]:
        items = []
        for i, r in enumerate(rows):
            label = str(r["label"]).strip()
            if label not in ("safe", "unsafe"):
                raise DataError(f"{path}: {row_label(rows, i + 1)}: column 'label' must be safe or unsafe, got {label!r}")
            meta = {"label": label, "category": str(r["type"]).strip(), "source_id": str(r["id"]).strip()}
            items.append(Item(id=f"xstest-{i}", prompt=str(r["prompt"]), meta=meta))
        return items
