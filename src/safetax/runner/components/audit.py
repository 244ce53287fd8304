from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Output

from safetax.runner.components._image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def audit_plan(audit_name: str, store_uri: str, checkpoint_prefix: str, checkpoints: list, profile: str, custom_profile: dict,
               thresholds: dict, baseline: str, baseline_model: str, audit_schedule: str, promote: bool, max_attempts: int,
               judge_name: str, judge_model: str, judge_mode: str, judge_scope: str, equivalence_model: str,
               plan: Output[Dataset], seed: int = 42, generation_batch_size: int = 32, generation_backend: str = "hf",
               tensor_parallel_size: int = 1, generate_gpus: str = "1", judge_gpus: str = "1", eval_shards: int = 1,
               generation_cache: str = "") -> int:
    """Validate the audit's parameters (the evaluation engine's too: a typo must not fail every GPU pod after the
    checkpoints are claimed) and inputs (eval data; judge and baseline models reachable), then list the checkpoints
    to audit (complete models, no ledger record yet, not given up); returns how many."""
    from pathlib import Path

    from safetax.audit.inputs import AuditJudge
    from safetax.stages import audit as stage
    from safetax.stages.engine_params import EngineParams
    from safetax.stages.runtime import RunContext, stage_run
    from safetax.runid import run_id_of
    from safetax.timing import setup_logging

    setup_logging()
    with stage_run("audit-plan", RunContext(run_id_of(plan.uri), audit=audit_name), Path(plan.path)):  # a bad parameter fails the run visibly
        cfg = stage.AuditConfig.from_dict({
            "audit_name": audit_name, "store_uri": store_uri, "checkpoint_prefix": checkpoint_prefix, "checkpoints": checkpoints,
            "profile": profile, "custom_profile": custom_profile, "thresholds": thresholds, "baseline": baseline,
            "baseline_model": baseline_model, "audit_schedule": audit_schedule, "promote": promote, "max_attempts": max_attempts,
        })
        judge = AuditJudge(judge_name, judge_model, judge_mode, judge_scope, equivalence_model)
        engine = EngineParams(generation_backend, generation_batch_size, tensor_parallel_size, generate_gpus, judge_gpus,
                              eval_shards, generation_cache, seed)
        return len(stage.plan(cfg, Path(plan.path), run_id=run_id_of(plan.uri), judge=judge, engine=engine)["targets"])


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def audit_targets(plan: Input[Dataset], eval_shards: int = 1) -> list:
    """The plan's targets, one {label, uri, digest, role, part, eval sets, sampling} each (one per shard with
    eval_shards > 1): what the evaluation loop fans out over."""
    from pathlib import Path

    from safetax.stages import audit as stage

    return stage.targets(Path(plan.path), int(eval_shards))


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def audit_finish(plan: Input[Dataset], scores: Input[list[Dataset]], results: Output[Dataset],
                 report: Output[Markdown]):
    """Verdicts against the baseline and thresholds, reports, ledger records, metrics, and the safety gate."""
    from pathlib import Path

    from safetax.stages import audit as stage
    from safetax.stages.runtime import RunContext, stage_run
    from safetax.runid import run_id_of
    from safetax.timing import setup_logging

    setup_logging()
    audit = stage.audit_name(Path(plan.path))
    run_id = run_id_of(results.uri)
    with stage_run("audit-finish", RunContext(run_id, audit=audit), Path(results.path)):
        stage.finish(Path(plan.path), [Path(s.path) for s in scores], Path(results.path), run_id)
    Path(report.path).write_text((Path(results.path) / stage.REPORT).read_text())


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def audit_idle(plan: Input[Dataset], results: Output[Dataset], report: Output[Markdown]):
    """Nothing new to audit: say so, and push the audit's heartbeat (time of the last completed audit)."""
    from pathlib import Path

    from safetax.stages import audit as stage
    from safetax.stages.runtime import RunContext, stage_run
    from safetax.runid import run_id_of
    from safetax.timing import setup_logging

    setup_logging()
    run_id = run_id_of(results.uri)
    with stage_run("audit-finish", RunContext(run_id, audit=stage.audit_name(Path(plan.path))), Path(results.path)):
        Path(report.path).write_text(stage.idle(Path(plan.path), Path(results.path), run_id))


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def audit_release(store_uri: str, audit_name: str, released: Output[Dataset]):
    """Exit handler: release the checkpoint claims this run still holds (none after a finished run; after a failed
    evaluation, the next run audits them at once instead of waiting for the leases to expire), each counted as a
    failed attempt in the ledger (the audit gives a checkpoint up at max_attempts)."""
    from pathlib import Path

    from safetax.runid import run_id_of
    from safetax.stages import audit as stage
    from safetax.store import write_json
    from safetax.timing import setup_logging

    setup_logging()
    run_id = run_id_of(released.uri)
    count = stage.release_run_claims(store_uri, audit_name, run_id)
    Path(released.path).mkdir(parents=True, exist_ok=True)
    write_json(Path(released.path) / "released.json", {"run_id": run_id, "released": count})
