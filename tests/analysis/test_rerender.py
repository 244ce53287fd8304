"""`safetax report RUN` and `safetax compare RUN RUN...` from a run directory, a local store prefix and an s3://
prefix (a real S3 server), reading what the run wrote and recomputing nothing."""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pytest

from safetax.cli import main
from safetax.records import CheckpointScores
from safetax.stages import analytics
from safetax.store import publish, write_json

RUN = "safetax-alignment-2026-01-02-03-04-05-000001"


def _record(name: str, method: str, epoch: int, reasoning: float, safety: float) -> dict:
    return CheckpointScores(name, method, epoch, reasoning={"arith": reasoning}, safety={"harm": safety}).to_dict()


def _output(path: Path, files: dict[str, object]) -> Path:
    """A complete task output (COMPLETE marker) and its task's executor_output.json, as the local runner leaves them."""
    path.mkdir(parents=True)
    for name, content in files.items():
        write_json(path / name, content)
    (path / "COMPLETE").write_text("")
    (path.parent / "executor_output.json").write_text("{}")
    return path


def make_run(root: Path, shift: float = 0.0) -> Path:
    """A finished run's directory: base and lora scores, an RPSA train output, analytics' results, the gate's verdicts."""
    run = root / RUN
    base = _output(run / "score" / "scores", {"scores.json": [_record("base", "base", 0, 0.8, 0.1 + shift)]})
    lora = _output(run / "for-loop-1-iteration-0" / "score-2" / "scores",
                   {"scores.json": [_record(f"lora/epoch-{e}", "lora", e, 0.8 - 0.1 * e, 0.5 + 0.2 * e) for e in (1, 2)]})
    history = [{"step": s, "conflict": 0.4, "k": 0.5, "frozen_share": 0.5} for s in (0, 5)]
    _output(run / "for-loop-1-iteration-0" / "train" / "checkpoints",
            {"checkpoints.json": {"label": "lora", "checkpoints": []}, "rpsa.json": {"history": history, "final_k": 0.5}})
    (run / "analytics").mkdir()
    (run / "analytics" / "executor_output.json").write_text("{}")
    analytics.run([base, lora], run / "analytics" / "results")
    _output(run / "gate" / "result", {"gate.json": {"gate": "promoted", "checkpoint": "lora/epoch-2", "uri": "s3://b/p"},
                                      "verdicts.json": {"lora/epoch-2": {"verdict": "pass", "failed": []}}})
    return run


def _mark_results(run: Path) -> None:
    """Change analytics' stored table (as an older release's definitions would): a report recomputes its table from
    the score records, so the mark must not show."""
    path = run / "analytics" / "results" / "results.csv"
    table = pd.read_csv(path)
    table.loc[table["checkpoint"] == "lora/epoch-1", "reasoning_mean"] = 12.345
    table.to_csv(path, index=False)


def test_report_of_a_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path / "runs")
    _mark_results(run)
    main(["report", str(tmp_path / "runs")])  # a pipeline root: its newest run
    out = run / "report"
    assert f"report: {out / 'report.md'}" in capsys.readouterr().out
    md = (out / "report.md").read_text()
    assert "| lora/epoch-1 | lora | 1 |" in md and "12.3" not in md  # recomputed from the scores, not the stored table
    assert "## RPSA's frozen ratio" in md and "| lora | 2 | 0.50 |" in md
    assert "| lora/epoch-2 | PASS |" in md and "Promoted `lora/epoch-2`" in md
    assert (out / "report.html").read_text().count('src="data:image/png;base64,') == 2  # trade-off and RPSA plots
    assert sorted(p.name for p in out.glob("*.png")) == ["rpsa-ratio-lora.png", "tradeoff.png"]


def _publish_run(run: Path, prefix: str) -> None:
    """Publish a run's outputs as its stages would with store_uri: <prefix>/<stage>/<method>."""
    for src, dest in (("score/scores", "score/base"), ("for-loop-1-iteration-0/score-2/scores", "score/lora"),
                      ("for-loop-1-iteration-0/train/checkpoints", "train/lora"), ("analytics/results", "analytics/analytics")):
        publish(run / src, f"{prefix}/{dest}")


def test_report_follows_store_pointers_and_names_a_lost_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Outputs published to a run store leave pointers in the run directory; the report reads through them, and
    when the store copy is gone the error names it."""
    import shutil

    from safetax.store import leave_pointer

    run = make_run(tmp_path / "runs")
    store = tmp_path / "store" / RUN
    for src, dest in (("score/scores", "score/base"), ("for-loop-1-iteration-0/score-2/scores", "score/lora")):
        leave_pointer(run / src, str(store / dest), publish(run / src, str(store / dest)))
    main(["report", str(run), "--out", str(tmp_path / "out")])
    assert "## Results (3 checkpoint(s))" in (tmp_path / "out" / "report.md").read_text()
    shutil.rmtree(store / "score")
    shutil.rmtree(run / "analytics")  # nor a table to fall back on: only the scores would do
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(run)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "no scores of any checkpoint" in err and f"{store / 'score' / 'base'} has no MANIFEST.json" in err


def test_report_of_a_local_store_prefix(tmp_path: Path) -> None:
    run = make_run(tmp_path / "runs")
    _publish_run(run, str(tmp_path / "store" / RUN))
    main(["report", str(tmp_path / "store" / RUN), "--out", str(tmp_path / "out")])
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Results (3 checkpoint(s))" in md and "## RPSA's frozen ratio" in md


def test_analytics_reads_rpsa_history_from_the_run_store(tmp_path: Path) -> None:
    """The analytics task gets no train outputs; with a store it reads RPSA's history from <store>/<run id>/train."""
    _publish_run(make_run(tmp_path / "runs"), str(tmp_path / "store" / RUN))
    histories = analytics.rpsa_from_store(str(tmp_path / "store"), RUN)
    assert list(histories) == ["lora"] and [h["step"] for h in histories["lora"]["history"]] == [0, 5]
    assert analytics.rpsa_from_store("", RUN) == {}
    assert analytics.rpsa_from_store(str(tmp_path / "store"), "no-such-run") == {}  # a warning, not a failure


def test_report_of_an_s3_prefix(s3_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFETAX_CACHE", str(tmp_path / "cache"))
    prefix = f"s3://safetax-runs/{uuid.uuid4().hex[:10]}/{RUN}"
    _publish_run(make_run(tmp_path / "runs"), prefix)
    main(["report", prefix, "--out", str(tmp_path / "out")])
    table = pd.read_csv(tmp_path / "out" / "results.csv")
    assert list(table["checkpoint"]) == ["base", "lora/epoch-1", "lora/epoch-2"]
    assert "## RPSA's frozen ratio" in (tmp_path / "out" / "report.md").read_text()


def test_compare_puts_runs_in_one_table(tmp_path: Path) -> None:
    a, b = make_run(tmp_path / "a"), make_run(tmp_path / "b", shift=0.05)
    main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp")])
    table = pd.read_csv(tmp_path / "cmp" / "results.csv")
    # same run name twice: the second gets "#2"
    assert list(table["checkpoint"]) == [f"{RUN}: base", f"{RUN}: lora/epoch-1", f"{RUN}: lora/epoch-2",
                                         f"{RUN}#2: base", f"{RUN}#2: lora/epoch-1", f"{RUN}#2: lora/epoch-2"]
    assert table.loc[3, "safety_mean"] == pytest.approx(15.0)
    # the front over both runs: run b's base (safer than a's at the same reasoning) dominates run a's
    assert list(table["pareto"]) == [False, True, True, True, True, True]
    md = (tmp_path / "cmp" / "report.md").read_text()
    assert md.startswith("# safetax comparison of 2 runs") and md.count("data:image/png;base64,") == 1


@pytest.mark.parametrize(("make", "expected"), [
    (lambda root: root / "nowhere", "nowhere: no such run directory"),
    (lambda root: root, "not a run directory"),
    (lambda root: (root / RUN / "analytics").mkdir(parents=True) or (root / RUN / "analytics" / "executor_output.json").write_text("{}")
     and root, "no scores of any checkpoint (no scores.json in a score output)"),
])
def test_errors_name_the_path_and_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str], make, expected: str) -> None:
    path = make(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert expected in err and str(tmp_path) in err


def test_compare_needs_two_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(make_run(tmp_path))])
    assert exit_info.value.code == 2 and "at least two runs, got 1" in capsys.readouterr().err
