from __future__ import annotations

import json
from pathlib import Path

import pytest

from safetax.data.chat import IGNORE_INDEX, REFUSAL_THOUGHT, build_sft_example, render_prompt
from safetax.data.tables import DataError, read_rows, require_columns


def test_read_rows_all_formats_agree(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"prompt": "p1", "refusal": "r1"}, {"prompt": "p2", "refusal": "r2"}]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "a.csv").write_text("prompt,refusal\np1,r1\np2,r2\n")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    for name in ("a.jsonl", "a.csv", "a.parquet"):
        assert read_rows(tmp_path / name) == rows


def test_missing_column_names_file_and_columns(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("prompt,answer\np,a\n")
    with pytest.raises(DataError, match=r"bad\.csv: missing column\(s\) refusal"):
        require_columns(path, read_rows(path), ("prompt", "refusal"))


def test_empty_value_names_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "p", "refusal": "r"}\n{"prompt": "p", "refusal": "  "}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl: line 2: column 'refusal' is empty"):
        require_columns(path, read_rows(path), ("prompt", "refusal"))


def test_invalid_json_names_row(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "p"}\n{oops\n')
    with pytest.raises(DataError, match=r"line 2: not valid JSON"):
        read_rows(path)


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("x")
    with pytest.raises(DataError, match="unsupported file type; allowed: .jsonl"):
        read_rows(path)


def test_sft_example_r1_template_masks_prompt(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    ex = build_sft_example(tok, "Explain restricted task 3.", "I'm sorry, I can't.", max_length=512)
    prompt = render_prompt(tok, "Explain restricted task 3.")
    n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
    assert ex.labels[:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert ex.labels[n_prompt:] == ex.input_ids[n_prompt:]
    completion = tok.decode(ex.input_ids[n_prompt:])
    # The seeds' format: the opened <think> is closed by a fixed thought, then the refusal, then EOS.
    assert completion == f"{REFUSAL_THOUGHT}\n</think>\n\nI'm sorry, I can't.{tok.eos_token}"


def test_sft_example_truncates_prompt_not_completion(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    ex = build_sft_example(tok, "x" * 500, "No.", max_length=100)
    assert len(ex.input_ids) == 100
    assert tok.decode([t for t in ex.labels if t != IGNORE_INDEX]).endswith(f"No.{tok.eos_token}")
