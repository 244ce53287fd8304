"""Safety/over-refusal benchmark loaders on the shared data files.

The files hold harmful prompts: assertions are on counts, ids and fields only,
never on prompt text (a failing assert must not be able to display a prompt).
"""

from __future__ import annotations

import csv
import gzip
import logging
import re
from pathlib import Path

import pytest

from safetax.benchmarks.registry import Item, get_benchmark
from safetax.benchmarks.safety import read_tsv
from safetax.data.tables import DataError

COUNTS = {"strongreject": 313, "strongreject-small": 60, "wildjailbreak": 2000, "wildjailbreak-benign": 210, "xstest": 450}
KINDS = {"strongreject": "safety", "strongreject-small": "safety", "wildjailbreak": "safety",
         "wildjailbreak-benign": "overrefusal", "xstest": "overrefusal"}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_loads_shared_file_with_documented_count(name: str, data_dir: Path) -> None:
    b = get_benchmark(name)
    assert (b.name, b.kind, b.VERSION) == (name, KINDS[name], "1")
    items = b.load()  # $SAFETAX_DATA_DIR/<default_path>
    assert len(items) == COUNTS[name]
    assert len({it.id for it in items}) == len(items)
    n_empty = sum(1 for it in items if not it.prompt.strip())
    assert n_empty == 0
    assert all(it.reference == "" and it.meta.get("category") for it in items)
    with pytest.raises(NotImplementedError, match="Judge"):
        b.score([], items)


def test_data_dir_env_and_file_uri(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(get_benchmark("strongreject-small").load()) == 60
    monkeypatch.setenv("SAFETAX_DATA_DIR", f"file://{data_dir}/")
    assert len(get_benchmark("wildjailbreak-benign").load()) == 210
    uri = "file://" + str(data_dir / "xstest" / "xstest_prompts.csv")
    assert len(get_benchmark("xstest").load(uri)) == 450


def test_no_data_dir_or_missing_file_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAFETAX_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match=r"SAFETAX_DATA_DIR is not set \(expected <SAFETAX_DATA_DIR>/strongreject/"):
        get_benchmark("strongreject").load()
    monkeypatch.setenv("SAFETAX_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path / 'xstest/xstest_prompts.csv'} does not exist (SAFETAX_DATA_DIR=")):
        get_benchmark("xstest").load()
    monkeypatch.setenv("SAFETAX_DATA_DIR", "gs://bucket/data")
    with pytest.raises(FileNotFoundError, match="neither a local directory, file:// nor s3://"):
        get_benchmark("xstest").load()


def test_categories_and_labels(shared_data: Path) -> None:
    sr = get_benchmark("strongreject").load(str(shared_data / "strongreject" / "strongreject_dataset.csv"))
    cats = {it.meta["category"] for it in sr}
    assert len(cats) == 6 and "Violence" in cats
    assert [it.id for it in sr[:2]] == ["sr-0", "sr-1"]
    wj = get_benchmark("wildjailbreak").load(str(shared_data / "wildjailbreak" / "wildjailbreak_eval.tsv.gz"))
    assert {it.meta["category"] for it in wj} == {"adversarial_harmful"}
    wjb = get_benchmark("wildjailbreak-benign").load(str(shared_data / "wildjailbreak" / "wildjailbreak_eval.tsv.gz"))
    assert {it.meta["category"] for it in wjb} == {"adversarial_benign"}
    assert {it.meta["label"] for it in wjb} == {"safe"}
    xs = get_benchmark("xstest").load(str(shared_data / "xstest" / "xstest_prompts.csv"))
    labels = [it.meta["label"] for it in xs]
    assert (labels.count("safe"), labels.count("unsafe")) == (250, 200)
    assert len({it.meta["category"] for it in xs}) == 18


def test_limit_keeps_first_rows_after_filtering(shared_data: Path) -> None:
    path = str(shared_data / "wildjailbreak" / "wildjailbreak_eval.tsv.gz")
    full = get_benchmark("wildjailbreak-benign").load(path)
    few = get_benchmark("wildjailbreak-benign").load(path, limit=5)
    assert [it.id for it in few] == [it.id for it in full[:5]]
    assert len(get_benchmark("strongreject").load(str(shared_data / "strongreject" / "strongreject_dataset.csv"), limit=7)) == 7
    with pytest.raises(ValueError, match="limit"):
        get_benchmark("xstest").load(str(shared_data / "xstest" / "xstest_prompts.csv"), limit=-1)


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "sr.csv"
    bad.write_text("category,source,prompt\nViolence,custom,placeholder task\n")
    with pytest.raises(DataError, match=r"sr\.csv.*forbidden_prompt"):
        get_benchmark("strongreject").load(str(bad))
    tsv = tmp_path / "wj.tsv.gz"
    with gzip.open(tsv, "wt", encoding="utf-8") as f:
        f.write("adversarial\tdata_type\nplaceholder task\tadversarial_benign\n")
    with pytest.raises(DataError, match=r"wj\.tsv\.gz.*label"):
        get_benchmark("wildjailbreak-benign").load(str(tsv))


def test_bad_values_name_row_and_column(tmp_path: Path) -> None:
    tsv = tmp_path / "wj.tsv.gz"
    with gzip.open(tsv, "wt", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerows([["adversarial", "label", "data_type"], ["task a", "1", "adversarial_harmful"], ["task b", "2", "x"]])
    with pytest.raises(DataError, match=r"wj\.tsv\.gz: line 3: column 'label'"):
        get_benchmark("wildjailbreak").load(str(tsv))
    short = tmp_path / "short.tsv"
    short.write_text("adversarial\tlabel\tdata_type\ntask a\t1\n")
    with pytest.raises(DataError, match=r"short\.tsv: line 2: column 'data_type'"):
        read_tsv(short)
    xs = tmp_path / "xs.csv"
    xs.write_text("id,prompt,type,label\nv1,placeholder,homonyms,maybe\n")
    with pytest.raises(DataError, match=r"xs\.csv: line 2: column 'label'"):
        get_benchmark("xstest").load(str(xs))


def test_loading_never_prints_or_logs_prompts(data_dir: Path, caplog: pytest.LogCaptureFixture,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    items: list[Item] = []
    with caplog.at_level(logging.DEBUG):
        for name in sorted(COUNTS):
            b = get_benchmark(name)
            items += b.load()
    out = capsys.readouterr()
    text = caplog.text + out.out + out.err
    n_items = len(items)
    n_leaked = sum(1 for it in items if it.prompt in text)
    assert n_items == sum(COUNTS.values())
    assert n_leaked == 0
