"""The schedules file, its cron expressions and the sync plan (safetax.schedules: pure, no KFP)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from safetax.config import ConfigError
from safetax.cron import CronError, cron_interval_seconds, parse_cron, to_kfp_cron
from safetax.schedules import (DesiredRun, ExistingRun, RecurringRun, load_schedules, owner_marker, parse_schedules, plan,
                               root_inputs, unknown_parameters)

DAY, WEEK = 86400.0, 604800.0


def entry(**overrides: Any) -> dict[str, Any]:
    return {"name": "nightly", "cron": "0 2 * * *", "pipeline": "safetax-audit", **overrides}


def errors_of(data: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse_schedules(data, source="test.yaml")
    return str(info.value)


# --- the file -------------------------------------------------------------------------------------------

def test_defaults_and_a_file_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "schedules.yaml"
    path.write_text(yaml.safe_dump({"recurringRuns": [
        entry(), entry(name="weekly-14b", cron="0 0 3 * * 1", version="safetax-audit-abc123", maxConcurrency=2,
                       enabled=False, experiment="nightly-audits", description="weekly", parameters={"profile": "weekly"})]}))
    nightly, weekly = load_schedules(path)
    assert nightly == RecurringRun("nightly", "0 2 * * *", "safetax-audit")
    assert (nightly.version, nightly.max_concurrency, nightly.enabled, nightly.experiment, nightly.parameters) == (
        "latest", 1, True, "safetax-audits", {})
    assert nightly.catchup is False  # KFP's no_catchup by default
    assert nightly.kfp_cron == "0 0 2 * * *"
    assert (weekly.version, weekly.max_concurrency, weekly.enabled, weekly.experiment, weekly.kfp_cron) == (
        "safetax-audit-abc123", 2, False, "nightly-audits", "0 0 3 * * 1")
    assert parse_schedules({"recurringRuns": []}) == []  # none declared: every owned run is deleted


def test_every_problem_is_reported_at_once_naming_file_entry_and_field() -> None:
    message = errors_of({"recurringRuns": [
        entry(cron="61 2 * * *"),
        entry(name="Weekly_Audit"),
        entry(name="b", maxConcurrency=0),
        entry(name="c", enabled="yes", parameters={"when": None}, colour="red"),
        entry(name="d", pipeline="", maxConcurrency=11, catchup="no"),
    ]})
    assert message.startswith("invalid schedules file test.yaml (9 problem(s))")
    assert "`recurringRuns[4] ('d').catchup` must be true or false, got 'no'" in message
    assert "`recurringRuns[0] ('nightly').cron` '61 2 * * *' is not a valid cron: field 1 of 5 (minute): 61 is out of range 0-59" in message
    assert "`recurringRuns[1] ('Weekly_Audit').name` must be a DNS-1123 label" in message and "ScheduledWorkflow" in message
    assert "`recurringRuns[2] ('b').maxConcurrency` must be an integer in [1, 10] (KFP's limit), got 0" in message
    assert "`recurringRuns[3] ('c').enabled` must be true or false, got 'yes'" in message
    assert "`recurringRuns[3] ('c').parameters.when`" in message and "null is not allowed" in message
    assert "`recurringRuns[3] ('c')` has unknown key(s) ['colour']" in message
    assert "`recurringRuns[4] ('d').pipeline` must be a non-empty string" in message
    assert "`recurringRuns[4] ('d').maxConcurrency`" in message and "got 11" in message


@pytest.mark.parametrize(("data", "expected"), [
    ({"recurringRuns": [entry(), entry(cron="0 3 * * *")]},
     "`recurringRuns[1].name` 'nightly' is also the name of recurringRuns[0]: names must be unique"),
    ({"recurringRuns": [entry(), entry(cron="bad")]}, "`recurringRuns[1].name` 'nightly' is also the name of recurringRuns[0]"),
    ({"recurringRuns": [entry(parameters={"x": float("nan")})]}, "nan is not allowed"),
    ({"recurringRuns": [entry(maxConcurrency=True)]}, "maxConcurrency` must be an integer in [1, 10]"),
    ({"recurringRuns": [entry(maxConcurrency=1.5)]}, "got 1.5"),
    ({"recurringRuns": [entry(cron=300)]}, "`recurringRuns[0] ('nightly').cron` must be a cron string"),
    ({"recurringRuns": [entry(parameters=["a"])]}, "parameters` must be a mapping of pipeline parameter names"),
    ({"recurringRuns": [entry(description="x [managed-by: safetax/other]")]}, "without '[managed-by:'"),
    ({"recurringRuns": [entry(name="a" * 64)]}, "DNS-1123 label"),
    ({"recurringRuns": ["nightly"]}, "`recurringRuns[0]` must be a mapping"),
    ({"recurringRuns": {"nightly": entry()}}, "under the top-level key `recurringRuns`"),
    ({"recurringRun": []}, "under the top-level key `recurringRuns`"),
    (None, "under the top-level key `recurringRuns`"),
    ({"recurringRuns": [], "audits": []}, "unknown top-level key(s) ['audits']"),
])
def test_bad_files(data: Any, expected: str) -> None:
    assert expected in errors_of(data)


def test_unreadable_or_malformed_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_schedules(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("recurringRuns: [\n")
    with pytest.raises(ConfigError, match=r"(?s)schedules file .*bad.yaml.*not valid YAML"):
        load_schedules(bad)


# --- cron -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("cron", "seconds"), [
    ("0 2 * * *", DAY),
    ("0 3 * * 1", WEEK),
    ("*/15 * * * *", 900.0),
    ("0 0 2 * * *", DAY),  # KFP's 6-field form: seconds first
    ("30 */10 * * * *", 600.0),
    ("0 9,17 * * *", 16 * 3600.0),  # irregular within a day: the longer of 8 h and 16 h
    ("0 0 * * 1-5", 3 * DAY),  # weekdays: Friday to Monday
    ("0 0 * * MON-FRI", 3 * DAY),
    ("0 0 1 * *", 31 * DAY),  # monthly: the longest month
    ("0 0 1 JAN,JUL *", 184 * DAY),  # 1 Jul -> 1 Jan
    ("0 0 29 2 *", 1461 * DAY),  # leap days only: four years
    ("0 0 13 * 5", 7 * DAY),  # both day fields restricted: the 13th OR a Friday (robfig, like cron)
    ("0 0 ? * 0", WEEK),
    ("@hourly", 3600.0),
    ("@daily", DAY),
    ("@weekly", WEEK),
    ("@monthly", 31 * DAY),
    ("* * * * * *", 1.0),
])
def test_cron_interval_is_the_longest_gap(cron: str, seconds: float) -> None:
    assert cron_interval_seconds(cron) == seconds


def test_five_fields_reach_kfp_as_six() -> None:
    assert to_kfp_cron("0 2 * * *") == "0 0 2 * * *"
    assert to_kfp_cron("  15 4   * * sun ") == "0 15 4 * * sun"
    assert to_kfp_cron("0 0 2 * * *") == "0 0 2 * * *"
    assert to_kfp_cron("@weekly") == "0 0 0 * * 0"
    c = parse_cron("5/20 1-3 * JAN-MAR/2 *")
    assert c.minutes == {5, 25, 45} and c.hours == {1, 2, 3} and c.months == {1, 3} and c.seconds == {0}


@pytest.mark.parametrize(("cron", "expected"), [
    ("61 2 * * *", "field 1 of 5 (minute): 61 is out of range 0-59"),
    ("0 24 * * *", "field 2 of 5 (hour): 24 is out of range 0-23"),
    ("0 2 0 * *", "field 3 of 5 (day of month): 0 is out of range 1-31"),
    ("0 2 * 13 *", "field 4 of 5 (month): 13 is out of range 1-12"),
    ("0 2 * * 7", "field 5 of 5 (day of week): 7 is out of range 0-6 (0 = Sunday)"),
    ("60 0 2 * * *", "field 1 of 6 (second): 60 is out of range 0-59"),
    ("0 2 * * FUNDAY", "field 5 of 5 (day of week): 'FUNDAY' is not a number or a name (SUN, MON"),
    ("*/0 * * * *", "field 1 of 5 (minute): '*/0': the step must be > 0"),
    ("5-1 * * * *", "'5-1': the range starts after it ends"),
    ("1- * * * *", "'1-': the range has no end"),
    ("1/2/3 * * * *", "'1/2/3' is not a value, range or step"),
    ("0 2 * *", "4 field(s): expected 5"),
    ("0 0 0 2 * * * *", "8 field(s): expected 5"),
    ("", "empty"),
    ("@every 1h", "unknown descriptor '@every 1h'"),
    ("0 0 30 2 *", "never fires"),
])
def test_malformed_cron_names_the_field(cron: str, expected: str) -> None:
    with pytest.raises(CronError) as info:
        cron_interval_seconds(cron)
    assert expected in str(info.value)


# --- the plan ----------------------------------------------------------------------------------------------

OWNER = "prod"


def desired(name: str, cron: str = "0 2 * * *", version_id: str = "v2", **spec: Any) -> DesiredRun:
    return DesiredRun(RecurringRun(name, cron, "safetax-audit", **spec), "p1", version_id, "e1", version_name=f"audit-{version_id}")


def existing(name: str, owner: str | None = OWNER, cron: str = "0 0 2 * * *", version_id: str = "v2",
             run_id: str | None = None, **fields: Any) -> ExistingRun:
    values = {"pipeline_id": "p1", "parameters": {}, "max_concurrency": 1, "enabled": True, "experiment_id": "e1",
              "no_catchup": True, "description": owner_marker(owner) if owner else "made by hand", **fields}
    return ExistingRun(name=name, id=run_id or f"id-{name}", cron=cron, version_id=version_id, **values)


def test_plan_creates_replaces_deletes_and_leaves_the_rest() -> None:
    declared = [desired("new"), desired("same", parameters={"t": [0.5, {"a": 1}]}), desired("moved", cron="0 3 * * *"),
                desired("bumped", version_id="v3", max_concurrency=2, enabled=False, parameters={"a": 2, "c": 1})]
    held = [existing("same", parameters={"t": [0.5, {"a": 1.0}]}),  # numbers come back from KFP as floats
            existing("moved"), existing("bumped", parameters={"a": 1, "b": 1}),
            existing("gone"), existing("hand-made", owner=None), existing("theirs", owner="staging")]
    result = plan(declared, held, OWNER)
    assert [d.spec.name for d in result.create] == ["new"]
    assert [r.name for r in result.unchanged] == ["same"]
    assert [(run.name, reason) for run, reason in result.delete] == [("gone", "no longer in the file")]
    assert not result.conflicts and result.changes == 4
    moved, bumped = result.replace
    assert moved.existing.id == "id-moved" and moved.reasons == ("cron '0 0 2 * * *' -> '0 0 3 * * *'",)
    assert bumped.reasons == ("pipeline version v2 -> audit-v3", "parameters: a changed, b removed, c added",
                              "maxConcurrency 1 -> 2", "enabled true -> false")
    text = result.render()  # names padded to the longest ("bumped")
    assert text.splitlines()[0] == "recurring runs managed by safetax/prod:"
    assert "  + create    new     [0 0 2 * * *] safetax-audit@audit-v2 (latest), experiment safetax-audits" in text
    assert "  ~ replace   moved   (cron '0 0 2 * * *' -> '0 0 3 * * *')" in text
    assert "  - delete    gone    (id id-gone; no longer in the file)" in text
    assert "  = unchanged same" in text
    assert text.splitlines()[-1] == "1 to create, 2 to replace, 1 to delete, 1 unchanged"
    assert "hand-made" not in text and "theirs" not in text  # foreign runs are not even mentioned


def test_foreign_runs_are_never_touched_and_a_name_clash_is_a_conflict() -> None:
    held = [existing("nightly", owner=None), existing("weekly", owner="staging")]
    result = plan([desired("nightly"), desired("weekly")], held, OWNER)
    assert not (result.create or result.replace or result.delete or result.unchanged)
    assert len(result.conflicts) == 2
    assert "nightly: a recurring run of that name exists that safetax/prod does not manage (id id-nightly, no safetax marker)" in result.conflicts[0]
    assert "owner safetax/staging" in result.conflicts[1]
    assert "! conflict  nightly" in result.render() and "2 conflict(s)" in result.render()
    # Removing everything from the file deletes only our own runs.
    assert plan([], held + [existing("ours")], OWNER).delete == [(existing("ours"), "no longer in the file")]


def test_other_differences_and_duplicates() -> None:
    d = desired("a", description="nightly audit")
    assert d.description(OWNER) == "nightly audit [managed-by: safetax/prod]"
    result = plan([d], [existing("a", run_id="first"), existing("a", run_id="second", experiment_id="e0")], OWNER)
    assert [(run.id, reason) for run, reason in result.delete] == [("second", "duplicate of the same name")]
    assert result.replace[0].existing.id == "first" and result.replace[0].reasons == ("description",)
    fresh = DesiredRun(RecurringRun("a", "0 2 * * *", "safetax-audit", experiment="new-exp"), "p2", "v9")
    reasons = plan([fresh], [existing("a")], OWNER).replace[0].reasons
    assert reasons == ("pipeline p1 -> p2 (safetax-audit)", "experiment -> new-exp (to be created)")
    with pytest.raises(ConfigError, match="`owner` must be a Helm release name"):
        plan([], [], "Prod Release")


def test_catchup_is_off_by_default_and_a_run_without_no_catchup_is_replaced() -> None:
    """KFP backfills every missed interval unless a run has no_catchup: runs created without it are replaced."""
    (run,) = parse_schedules({"recurringRuns": [entry()]})
    assert run.catchup is False
    created_before = existing("nightly", no_catchup=False)  # KFP's default, what older syncs created
    result = plan([desired("nightly")], [created_before], OWNER)
    assert result.replace[0].reasons == ("catchup true -> false",)
    assert plan([desired("nightly")], [existing("nightly")], OWNER).unchanged  # no_catchup set: nothing to do
    backfill = plan([desired("nightly", catchup=True)], [existing("nightly")], OWNER)
    assert backfill.replace[0].reasons == ("catchup false -> true",)
    assert "experiment safetax-audits, catchup" in plan([desired("new", catchup=True)], [], OWNER).render()


# --- parameters against the compiled pipeline ---------------------------------------------------------------

def test_root_inputs_of_both_shapes_kfp_returns_a_spec_in() -> None:
    """KFP returns a version's spec as the PipelineSpec, or with a platform spec as {pipeline_spec, platform_spec}."""
    audit, platform = yaml.safe_load_all((Path(__file__).resolve().parents[1] / "pipelines" / "audit.yaml").read_text())
    names = root_inputs(audit)
    assert names is not None and {"audit_name", "store_uri", "thresholds", "generation_batch_size"} <= names
    assert "judge_batch_size" not in names
    assert root_inputs({"pipeline_spec": audit, "platform_spec": platform}) == names
    artifacts = {"root": {"inputDefinitions": {"artifacts": {"model": {}}, "parameters": {"seed": {}}}}}
    assert root_inputs(artifacts) == {"model", "seed"}
    assert root_inputs({"root": {}}) == frozenset()  # a pipeline without inputs takes no parameters
    assert root_inputs({}) is None and root_inputs(None) is None  # nothing to check against


def test_unknown_parameters_name_the_run_the_keys_and_the_allowed_names() -> None:
    run = RecurringRun("weekly-14b", "0 3 * * 1", "safetax-audit", parameters={"profile": "weekly", "judge_batch_size": 16})
    assert unknown_parameters(run, {"profile", "judge_batch_size"}) == ""
    message = unknown_parameters(run, {"profile", "generation_batch_size"}, "safetax-audit-abc")
    assert message == ("weekly-14b: parameter(s) ['judge_batch_size'] are not inputs of pipeline 'safetax-audit' version "
                       "'safetax-audit-abc'; allowed: ['generation_batch_size', 'profile']")
