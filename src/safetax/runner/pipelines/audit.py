"""The audit pipeline: evaluate every new checkpoint under a prefix, judge it against thresholds and a baseline."""


from kfp import dsl

from safetax.platform import PlatformConfig
from safetax.runner.components.audit import audit_finish, audit_idle, audit_plan, audit_release, audit_targets
from safetax.runner.components.execute_code import execute_code
from safetax.runner.components.generate import generate
from safetax.runner.components.judge import judge
from safetax.runner.components.score import score
from safetax.runner.pipelines._k8s import place


def build_audit_pipeline(platform: PlatformConfig):
    """The audit pipeline, its tasks placed by ``platform`` (a fresh pipeline object per call: no global state)."""

    @dsl.pipeline(
        name="safetax-audit",
        description="Safety and reasoning audit of every new checkpoint under a prefix (a ledger in the bucket), with verdicts and a safety gate.",
        pipeline_root=platform.pipeline_root or None,
    )
    def audit_pipeline(
        audit_name: str,
        store_uri: str,
        checkpoint_prefix: str = "",
        checkpoints: list = [],
        profile: str = "nightly",
        custom_profile: dict = {},
        thresholds: dict = {},
        baseline: str = "",
        baseline_model: str = "",
        audit_schedule: str = "",
        promote: bool = False,
        max_attempts: int = 3,
        judge_name: str = "llama-guard",
        judge_model: str = "meta-llama/Llama-Guard-3-8B",
        judge_mode: str = "logit",
        equivalence_model: str = "",
        seed: int = 42,
        generation_batch_size: int = 32,
        generation_backend: str = platform.generation_backend,
        tensor_parallel_size: int = 1,
        generate_gpus: str = str(platform.settings("generate").accelerator_count),
        judge_gpus: str = str(platform.settings("judge").accelerator_count),
        judge_scope: str = "answer",
        generation_cache: str = "",
        eval_shards: int = 1,
    ):
        """Audit the checkpoints that a training team wrote since the last run; a re-run audits nothing twice.

        Args:
            audit_name: The audit's name (a DNS label, e.g. nightly-r1-7b): its ledger, reports and metrics are keyed by it.
            store_uri: Where the ledger lives: <store_uri>/audits/<audit_name>/ holds one record per checkpoint digest (ledger/), reports (reports/, runs/), the baseline's record (baselines/) and the safety gate's choice (promoted/).
            checkpoint_prefix: s3:// prefix (or local directory) to watch: every directory under it with a manifest (MANIFEST.json, written last by safetax's store) whose files are a full model (config.json and *.safetensors at its top level) is a checkpoint; one without a manifest is skipped until complete, one that is no model (a run's generations, a training output with epoch-N/, a LoRA adapter) is skipped and listed in the run report.
            checkpoints: Explicit model URIs to audit (published s3:// directories, local directories or hub ids), with or instead of the prefix; a directory without config.json and *.safetensors fails the plan.
            profile: Benchmarks and sample counts: nightly (cheap: StrongREJECT-small, 200 WildJailbreak, XSTest, 100 MATH-500, 50 GPQA, 50 HumanEval+, 1 sample), weekly (every benchmark, 8 samples), or custom.
            custom_profile: With profile=custom: {"eval_sets": [... as the alignment pipeline's eval_sets ...], "reasoning_samples": 1, "safety_max_new_tokens": 1024, "reasoning_max_new_tokens": 8192, "reasoning_temperature": 0.6, "reasoning_top_p": 0.95}.
            thresholds: Pass criteria, each optional: min_safety_score, max_attack_success_rate, max_overrefusal_rate (shares in [0, 1]), max_reasoning_drop (pass@1 drop against the baseline as a share, 0.05 = 5 points: a number, or {benchmark: number}), max_safety_tax_rate (>= 0; fails a checkpoint that lost reasoning while its attack success rate did not fall); confidence (e.g. 0.95): decide each on its one-sided bound, not the point estimate.
            baseline: Name of the reference model whose last audit the checkpoints are compared with (needed by max_reasoning_drop and max_safety_tax_rate).
            baseline_model: URI of the reference model: audited in this run when the baseline has no audit record yet, or a different digest.
            audit_schedule: The cron this audit runs on (set by `safetax schedule sync`); the stale-audit alert fires after two intervals without a completed run. Empty = ad hoc.
            promote: Safety gate: publish the best Pareto checkpoint that passes the thresholds under promoted/ with its audit record; fail the run, naming every failed criterion, when none passes.
            max_attempts: Failed runs of one checkpoint (its claim still held when the run ended) after which later runs skip it ("given up", listed in the run report, metric safetax_audit_failed_attempts, alert SafetaxAuditCheckpointGivenUp); delete <store_uri>/audits/<audit_name>/attempts/<digest>.json to audit it again. At least 1.
            judge_name: Safety judge: llama-guard (Llama-Guard-3) or refusal (pattern-based, offline).
            judge_model: Llama-Guard model directory, s3:// URI or hub id.
            judge_mode: Llama-Guard mode: logit (one forward pass) or generate (generate and parse).
            equivalence_model: Optional LLM that re-checks math answers; empty = off.
            seed: Seed for sampling.
            generation_batch_size: Prompts per batch in the transformers backend.
            generation_backend: hf (transformers) or vllm.
            tensor_parallel_size: GPUs per model for the vllm backend.
            generate_gpus: GPUs per generation task.
            judge_gpus: GPUs per judge task.
            judge_scope: What the safety judge reads: answer (the text after </think>) or full (the reasoning trace too).
            eval_shards: Evaluation chains per checkpoint: 1 = one; n > 1 = n chains, each on every n-th prompt of the profile's eval sets (a checkpoint's benchmarks spread over n GPU pods), merged exactly before the verdicts.
            generation_cache: Where generations and verdicts are reused from (the digest of model weights, prompt, sampling, seed, backend; judge model and mode): empty = <store_uri>/cache, shared with every run and audit on the store, so an unchanged baseline is generated once; "off" = no cache; or a root URI.
        """
        # Whatever happens in the run, its checkpoint claims are released at the end (none are left after a finish).
        release = place(audit_release(store_uri=store_uri, audit_name=audit_name), "analytics", platform,
                        display="release claims (exit handler)", cache=False)
        with dsl.ExitHandler(release, name="audit"):
            planned = place(audit_plan(audit_name=audit_name, store_uri=store_uri, checkpoint_prefix=checkpoint_prefix,
                                       checkpoints=checkpoints, profile=profile, custom_profile=custom_profile, thresholds=thresholds,
                                       baseline=baseline, baseline_model=baseline_model, audit_schedule=audit_schedule, promote=promote,
                                       max_attempts=max_attempts, judge_name=judge_name, judge_model=judge_model,
                                       judge_mode=judge_mode, judge_scope=judge_scope, equivalence_model=equivalence_model,
                                       seed=seed, generation_batch_size=generation_batch_size,
                                       generation_backend=generation_backend, tensor_parallel_size=tensor_parallel_size,
                                       generate_gpus=generate_gpus, judge_gpus=judge_gpus, eval_shards=eval_shards,
                                       generation_cache=generation_cache),
                            "prepare", platform, display="audit-plan: new checkpoints", cache=False)
            run = {"store_uri": store_uri, "audit": audit_name}
            engine = platform.engine_settings().to_dict()  # the platform's vLLM settings and judge backend, compiled in
            with dsl.If(planned.outputs["Output"] > 0, "new-checkpoints"):
                items = place(audit_targets(plan=planned.outputs["plan"], eval_shards=eval_shards), "prepare", platform, display="audit targets", cache=False)
                with dsl.ParallelFor(items.output, parallelism=platform.max_parallel_evaluations or None) as t:
                    # Every item carries its profile's settings: KFP resolves loop-item fields, not another task's dict.
                    gen = place(generate(model_uri=t.uri, name=t.label, eval_sets=t.eval_sets, safety_max_new_tokens=t.safety_max_new_tokens,
                                         reasoning_samples=t.reasoning_samples, reasoning_temperature=t.reasoning_temperature,
                                         reasoning_top_p=t.reasoning_top_p, reasoning_max_new_tokens=t.reasoning_max_new_tokens,
                                         batch_size=generation_batch_size, backend=generation_backend,
                                         tensor_parallel_size=tensor_parallel_size, seed=seed, gpus=generate_gpus,
                                         generation_cache=generation_cache, target=t.part, engine=engine, **run),
                                "generate", platform, generate_gpus, display="generate (per checkpoint)")
                    verdicts = place(judge(judge=judge_name, judge_model=judge_model, mode=judge_mode, base_model=t.uri, gpus=judge_gpus,
                                           judge_scope=judge_scope, generation_cache=generation_cache,
                                           generations=gen.outputs["generations"], target=t.part, engine=engine, **run), "judge", platform,
                                     judge_gpus,
                                     display="judge (per checkpoint)")
                    ran = place(execute_code(code_jobs=verdicts.outputs["code_jobs"]), "code", platform,
                                display="run model code in the sandbox (per checkpoint)")
                    scored = place(score(equivalence_model=equivalence_model, base_model=t.uri, generations=gen.outputs["generations"],
                                         judgements=verdicts.outputs["judgements"], code_results=ran.outputs["code_results"],
                                         target=t.part, **run),
                                   "score", platform, display="score (per checkpoint)")
                place(audit_finish(plan=planned.outputs["plan"], scores=dsl.Collected(scored.outputs["scores"])),
                      "analytics", platform, display="audit-finish: verdicts, ledger, gate", cache=False)
            with dsl.Else("nothing-new"):
                place(audit_idle(plan=planned.outputs["plan"]), "analytics", platform, display="audit-idle: nothing new", cache=False)


    return audit_pipeline
