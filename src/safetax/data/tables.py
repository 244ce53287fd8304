"""Read row-oriented data files (JSONL, CSV, parquet) with errors that name file, row and column.

Every message places a problem by one numbering: ``line N``, the file's own 1-based line number (the
one an editor opens at; blank lines and a CSV header count), for the text formats (JSONL, CSV, gzipped
or not). Parquet files have no lines: there it is ``row N``, the 1-based row of the table.
Text is read as UTF-8; a leading byte-order mark (Excel's "CSV UTF-8") is dropped.
"""

from __future__ import annotations

import csv
import gzip
import json
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

FORMATS = (".jsonl", ".jsonl.gz", ".csv", ".csv.gz", ".parquet")
ENCODING = "utf-8-sig"  # UTF-8; a byte-order mark at the start is not part of the first column's name


class DataError(ValueError):
    """A data file is missing, unreadable, or lacks a required column or value."""


class Rows(list[dict[str, Any]]):
    """The rows of a file, each with the file line it ends on (``lines``; empty for parquet)."""

    def __init__(self, rows: Iterable[dict[str, Any]] = (), lines: Iterable[int] = ()) -> None:
        super().__init__(rows)
        self.lines: list[int] = list(lines)


def row_label(rows: list[dict[str, Any]], i: int) -> str:
    """Where the ``i``-th (1-based) of ``rows`` is: ``line M`` of its file, or ``row i`` without line numbers.

    >>> row_label(Rows([{"a": 1}, {"a": 2}], lines=[1, 3]), 2)
    'line 3'
    >>> row_label([{"a": 1}], 1)
    'row 1'
    """
    lines = getattr(rows, "lines", None)
    return f"line {lines[i - 1]}" if lines and 0 < i <= len(lines) else f"row {i}"


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for fmt in sorted(FORMATS, key=len, reverse=True):
        if name.endswith(fmt):
            return fmt
    raise DataError(f"{path}: unsupported file type; allowed: {', '.join(FORMATS)}")


def open_text(path: Path, newline: str | None = None) -> IO[str]:
    """A data file as text: UTF-8 with a leading byte-order mark dropped, gunzipped when it ends in ``.gz``."""
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding=ENCODING, newline=newline)
    return open(path, encoding=ENCODING, newline=newline)


def _first_bad_line(path: Path) -> str:
    """Where the first byte that is not UTF-8 is: ``line N, byte 0xNN`` (read again, only on that error)."""
    raw = gzip.decompress(path.read_bytes()) if path.name.lower().endswith(".gz") else path.read_bytes()
    for n, line in enumerate(raw.split(b"\n"), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as e:
            return f"line {n}, byte 0x{line[e.start]:02x}"
    return "unknown line"


def _jsonl(path: Path, f: IO[str]) -> Rows:
    rows = Rows()
    for n, line in enumerate(f, start=1):
        if not line.strip():
            continue
        where = f"{path}: line {n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
        rows.lines.append(n)
    return rows


def _csv(path: Path, f: IO[str]) -> Rows:
    rows = Rows()
    reader = csv.DictReader(f)
    records: Iterator[dict[str, Any]] = iter(reader)
    while True:
        try:
            row = next(records)
        except StopIteration:
            return rows
        except csv.Error as e:
            raise DataError(f"{path}: line {reader.line_num}: not valid CSV ({e})") from None
        rows.append(row)
        rows.lines.append(reader.line_num)  # the record's last line (a quoted field may span lines)


def read_rows(path: Path) -> Rows:
    """All rows of a JSONL, CSV or parquet file as dicts; ``Rows.lines`` holds each row's line number.

    Raises:
        DataError: a missing, unsupported, undecodable (not UTF-8, bad gzip) or malformed file,
            naming the file and, for text formats, the line.
    """
    if not path.is_file():
        raise DataError(f"{path}: file does not exist")
    fmt = _suffix(path)
    if fmt == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return Rows(pq.read_table(path).to_pylist())
        except (pa.ArrowException, OSError) as e:
            raise DataError(f"{path}: not a readable parquet file ({e})") from None
    try:
        with open_text(path, newline="" if fmt.startswith(".csv") else None) as f:  # csv wants newline=""
            return _csv(path, f) if fmt.startswith(".csv") else _jsonl(path, f)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text ({_first_bad_line(path)}); save the file as UTF-8") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataError(f"{path}: not a readable gzip file ({e})") from None


def require_columns(path: Path, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    """Fail on the first row that lacks one of ``columns`` or has it empty, naming file, row and column."""
    if not rows:
        raise DataError(f"{path}: no rows")
    missing = [c for c in columns if c not in rows[0]]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}; required: {', '.join(columns)}; "
            f"found: {', '.join(str(k) for k in rows[0])}"
        )
    for i, row in enumerate(rows, start=1):
        for c in columns:
            value = row.get(c)
            if value is None or (isinstance(value, str) and not value.strip()):
                raise DataError(f"{path}: {row_label(rows, i)}: column {c!r} is empty")
