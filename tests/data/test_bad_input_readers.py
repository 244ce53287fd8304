"""Data readers: BOM, undecodable bytes, line numbers, duplicate ids of plain eval files."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from safetax.data.eval_sets import EvalSet, load_eval_set
from safetax.data.tables import DataError, read_rows, require_columns


def test_csv_with_utf8_bom_keeps_its_first_column_name(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffprompt,id\nhello,1\n".encode())
    rows = read_rows(path)
    require_columns(path, rows, ("prompt",))
    assert rows == [{"prompt": "hello", "id": "1"}]


def test_jsonl_with_bom_reads(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes('\ufeff{"prompt": "p"}\n'.encode())
    assert read_rows(path) == [{"prompt": "p"}]


@pytest.mark.parametrize("name", ["latin1.jsonl", "latin1.csv.gz"])
def test_non_utf8_names_file_and_line(tmp_path: Path, name: str) -> None:
    data = '{"prompt": "ok"}\n{"prompt": "caf\u00e9"}\n' if name.endswith("jsonl") else "prompt\nok\ncaf\u00e9\n"
    path = tmp_path / name
    raw = data.encode("latin-1")
    path.write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
    line = 2 if name.endswith("jsonl") else 3
    with pytest.raises(DataError, match=rf"{name}: not UTF-8 text \(line {line}, byte 0xe9\)"):
        read_rows(path)


def test_messages_use_file_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "gaps.jsonl"
    path.write_text('{"prompt": "a"}\n\n{"prompt": ""}\n')
    with pytest.raises(DataError, match=r"gaps\.jsonl: line 3: column 'prompt' is empty"):
        require_columns(path, read_rows(path), ("prompt",))
    path.write_text('{"prompt": "a"}\n\n{oops\n')
    with pytest.raises(DataError, match=r"gaps\.jsonl: line 3: not valid JSON"):
        read_rows(path)
    csv_path = tmp_path / "t.csv"
    csv_path.write_text('prompt\na\n""\n')  # the header is line 1
    with pytest.raises(DataError, match=r"t\.csv: line 3: column 'prompt' is empty"):
        require_columns(csv_path, read_rows(csv_path), ("prompt",))


def test_bad_gzip_names_file(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"x\.jsonl\.gz: not a readable gzip file"):
        read_rows(path)


def _eval(tmp_path: Path, text: str, kind: str = "reasoning") -> EvalSet:
    path = tmp_path / "set.jsonl"
    path.write_text(text)
    return EvalSet(name="s", kind=kind, uri=str(path))


def test_plain_eval_file_with_duplicate_id_is_refused(tmp_path: Path) -> None:
    es = _eval(tmp_path, '{"id":"1","problem":"1+1?","answer":"2"}\n\n{"id":1,"problem":"2+2?","answer":"4"}\n')
    with pytest.raises(DataError, match=r"set\.jsonl: line 3: duplicate id '1'"):
        load_eval_set(es)


def test_plain_eval_file_checks_ids_beyond_the_limit_and_text(tmp_path: Path) -> None:
    rows = '{"id":"a","prompt":"p"}\n{"id":"b","prompt":"q"}\n{"id":"a","prompt":"r"}\n'
    with pytest.raises(DataError, match="line 3: duplicate id 'a'"):
        load_eval_set(EvalSet(name="s", kind="safety", uri=str(_eval(tmp_path, rows).uri), limit=1))
    with pytest.raises(DataError, match=r"line 2: column 'problem' must be text, got dict"):
        load_eval_set(_eval(tmp_path, '{"problem":"1+1?","answer":"2"}\n{"problem":{"a":1},"answer":"3"}\n'))


def test_plain_eval_file_without_ids_numbers_rows(tmp_path: Path) -> None:
    items, bench = load_eval_set(_eval(tmp_path, '{"problem":"1+1?","answer":2}\n{"problem":"2+2?","answer":"4"}\n'))
    assert bench is None and [(it.id, it.reference) for it in items] == [("0", "2"), ("1", "4")]
