"""Read row-oriented data files (JSONL, CSV, parquet) with errors that name file, row and column."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from typing import Any

FORMATS = (".jsonl", ".jsonl.gz", ".csv", ".csv.gz", ".parquet")


class DataError(ValueError):
    """A data file is missing, unreadable, or lacks a required column or value."""


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for fmt in sorted(FORMATS, key=len, reverse=True):
        if name.endswith(fmt):
            return fmt
    raise DataError(f"{path}: unsupported file type; allowed: {', '.join(FORMATS)}")


def _open_text(path: Path):  # type: ignore[no-untyped-def]
    return gzip.open(path, "rt", encoding="utf-8") if path.name.endswith(".gz") else open(path, encoding="utf-8")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """All rows of a JSONL, CSV or parquet file as dicts (row numbers in errors are 1-based data rows)."""
    if not path.is_file():
        raise DataError(f"{path}: file does not exist")
    fmt = _suffix(path)
    if fmt == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    with _open_text(path) as f:
        if fmt.startswith(".csv"):
            return list(csv.DictReader(f))
        rows = []
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: row {i}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}: row {i}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
        return rows


def require_columns(path: Path, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    """Fail on the first row that lacks one of ``columns`` or has it empty, naming file, row and column."""
    if not rows:
        raise DataError(f"{path}: no rows")
    missing = [c for c in columns if c not in rows[0]]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}; required: {', '.join(columns)}; "
            f"found: {', '.join(rows[0])}"
        )
    for i, row in enumerate(rows, start=1):
        for c in columns:
            value = row.get(c)
            if value is None or (isinstance(value, str) and not value.strip()):
                raise DataError(f"{path}: row {i}: column {c!r} is empty")
