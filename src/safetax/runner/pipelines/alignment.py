"""The alignment pipeline: plan, refusal SFT per method, evaluation of every checkpoint (one chain each), analytics, gate."""

from typing import Any

from kfp import dsl, kubernetes
from kfp.dsl import Dataset

from safetax.platform import PlatformConfig
from safetax.runner.components._image import TRAIN_IMAGE
from safetax.runner.components.analytics import analytics
from safetax.runner.components.analyze import analyze
from safetax.runner.components.execute_code import execute_code
from safetax.runner.components.gate import gate
from safetax.runner.components.gather import gather_scores
from safetax.runner.components.generate import generate
from safetax.runner.components.judge import judge
from safetax.runner.components.plan import base_items, plan
from safetax.runner.components.prepare import prepare
from safetax.runner.components.score import score
from safetax.runner.components.train import train
from safetax.runner.pipelines._k8s import place

# The seeds' two methods: LoRA r=4 on the MLP (LoRA paper) and full fine-tuning as the baseline.
DEFAULT_METHODS = [{"method": "lora", "name": "lora-r4", "lora_rank": 4, "target_modules": "mlp"}, {"method": "full", "name": "full"}]
# Shown in the KFP UI as the eval_sets default: the seeds' benchmarks (data from SAFETAX_DATA_DIR).
EXAMPLE_EVAL_SETS = [{"benchmark": b} for b in ("strongreject", "wildjailbreak", "xstest", "aime24", "math500", "gpqa", "humanevalplus",
                                                 "mbppplus")]

def _evaluate(platform: PlatformConfig, who: str, model_uri: Any, eval_sets: Any, gen_args: dict, judge_args: dict,
              equivalence_model: Any, store: dict, gpus: dict, checkpoints: Any = None, merged: Any = None,
              target: Any = None, after: dsl.PipelineTask | None = None) -> dsl.PipelineTask:
    """One model's generate -> judge -> code -> score chain: the base model, or one ``target`` (a checkpoint or
    merge candidate of a method's ``checkpoints`` / ``merged``); a target ending in ``/shard-i-of-n`` is one
    evaluation shard of its model (safetax.shards)."""
    extra = {"checkpoints": checkpoints, "merged": merged} if checkpoints is not None else {}
    extra |= {"target": target} if target is not None else {}
    # The GPU counts are also task arguments: KFP wires a loop's inputs only from task arguments,
    # not from resource settings, so without them a per-run count inside ParallelFor is unresolved.
    gen = place(generate(model_uri=model_uri, eval_sets=eval_sets, gpus=gpus["generate"], **gen_args, **store, **extra), "generate",
                platform, gpus["generate"], display=f"generate ({who})")
    if after is not None:
        gen.after(after)
    part = {"target": target} if target is not None else {}
    verdicts = place(judge(generations=gen.outputs["generations"], base_model=model_uri, gpus=gpus["judge"], **judge_args, **store, **part),
                     "judge", platform, gpus["judge"], display=f"judge ({who})")
    # Model-written programs run in a task of their own, which gets no store credential (safetax.stages.code_exec).
    ran = place(execute_code(code_jobs=verdicts.outputs["code_jobs"]), "code", platform, display=f"run model code in the sandbox ({who})")
    scored = score(equivalence_model=equivalence_model, base_model=model_uri, generations=gen.outputs["generations"],
                   judgements=verdicts.outputs["judgements"], code_results=ran.outputs["code_results"], **store, **part)
    return place(scored, "score", platform, display=f"score ({who})")

def build_alignment_pipeline(platform: PlatformConfig):
    """The alignment pipeline, its tasks placed by ``platform`` (a fresh pipeline object per call: no global state)."""

    @dsl.pipeline(
        name="safetax-alignment",
        description="Safety SFT of a reasoning model per method config; safety vs reasoning of every epoch.",
        pipeline_root=platform.pipeline_root or None,
    )
    def alignment_pipeline(
        base_model_uri: str,
        refusal_data_uri: str,
        eval_sets: list = EXAMPLE_EVAL_SETS,
        methods: list = DEFAULT_METHODS,
        epochs: int = 0,
        seed: int = 42,
        max_length: int = 1024,
        judge_name: str = "",
        judge_model: str = "",
        judge_mode: str = "",
        judge_scope: str = "",
        equivalence_model: str = "",
        safety_max_new_tokens: int = 0,
        safety_temperature: float = -1.0,
        safety_top_p: float = -1.0,
        reasoning_samples: int = 0,
        reasoning_temperature: float = -1.0,
        reasoning_top_p: float = -1.0,
        reasoning_max_new_tokens: int = 0,
        generation_batch_size: int = 32,
        generation_backend: str = platform.generation_backend,
        tensor_parallel_size: int = 1,
        store_uri: str = "",
        analysis_k: int = 0,
        rpsa_corpus: dict = {"benchmark": "math500"},
        rpsa_corpus_size: int = 0,
        rpsa_keep: str = "all",
        rpsa_validate: bool = False,
        fisher_estimator: str = "",
        fisher_tokens_per_sequence: int = -1,
        train_gpus: str = str(platform.settings("train").accelerator_count),
        train_nodes: int = 1,
        generate_gpus: str = str(platform.settings("generate").accelerator_count),
        judge_gpus: str = str(platform.settings("judge").accelerator_count),
        gate_thresholds: dict = {},
        protocol: str = "seeds",
        generation_cache: str = "",
        eval_shards: int = 1,
    ) -> Dataset:
        """Align a reasoning model with refusal SFT and measure the safety tax of every checkpoint.

        Args:
            base_model_uri: The reasoning model to align: a model directory, file:// path, or hub id (e.g. deepseek-ai/DeepSeek-R1-Distill-Qwen-7B).
            refusal_data_uri: Refusal SFT data (JSONL, CSV or parquet with `prompt` and `refusal` columns).
            eval_sets: Evaluation sets (the default is an example: the seeds' safety and reasoning benchmarks): registered benchmarks {"benchmark": "strongreject"|"strongreject-small"|"wildjailbreak"|"wildjailbreak-benign"|"xstest"|"aime24"|"math500"|"gpqa"|"humanevalplus"|"mbppplus", optional "uri", "limit" (the first N rows) or "sample" + "sample_seed" (a seeded random subset of N rows), "prompt_style": "deepseek"|"lora-paper"|"rpsa-paper", "samples" and "max_new_tokens" (this set's own, over the run's)} or plain files {"name", "kind": "safety"|"overrefusal"|"reasoning", "uri", optional "limit", "prompt_template" with {text}}; keys left out come from the protocol.
            methods: Method configs to compare (a sweep: one training run each, in parallel), e.g. {"method": "lora", "name": "lora-r4", "lora_rank": 4, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": "mlp"|"attn"|"all"|"up_proj"|"q_proj,v_proj", "layers": "16-31"|"middle", "ortho_reg": "none"|"col"|"both", "ortho_beta": 1, "ortho_k": 64, "merge": "none"|"plain"|"ortho-col"|"ortho-both", "merge_k": 64, "merge_lambdas": [1, 1.15, 1.2, 1.25, 1.75], "merge_epochs": "last"|"all"} or {"method": "full", "gradient_checkpointing": true}; keys are TrainConfig fields plus the merge keys.
            epochs: Epochs for every method that does not set its own; 0 = the seeds' defaults (full 5, LoRA 10).
            seed: Seed for training (unless a method sets its own) and for sampling.
            max_length: Maximum tokens per SFT example.
            judge_name: Safety judge: refusal (pattern-based, offline) or llama-guard (Llama-Guard-3); empty = the protocol's (seeds: refusal).
            judge_model: Llama-Guard model directory or hub id (judge_name=llama-guard); empty = the protocol's (meta-llama/Llama-Guard-3-8B).
            judge_mode: Llama-Guard mode: logit (one forward pass, P(unsafe)) or generate (generate and parse; the LoRA paper's); empty = the protocol's (seeds: logit; papers: generate).
            judge_scope: What the safety judge reads: answer (the text after </think>) or full (the reasoning trace too: a harmful trace is a real risk). Neither paper states its scope; empty = the protocol's (answer).
            equivalence_model: Optional LLM that re-checks math answers math-verify calls different (LoRA paper: Qwen2.5-32B-Instruct); empty = off. Put "score" in the platform's gpu_stages when set.
            safety_max_new_tokens: Token budget of each response to a safety prompt; 0 = the protocol's (seeds: 1024; papers: 32768, so R1 answers are not cut inside <think>).
            safety_temperature: Sampling temperature of the responses to safety and over-refusal prompts (0 = greedy; > 0 sampled, seeded per prompt by seed, so a rerun gives the same answers); -1 = the protocol's (seeds and lora-paper: 0, the LoRA paper's greedy decoding; rpsa-paper: 0.6, RPSA sec. 4.2.1 samples every evaluation).
            safety_top_p: Nucleus sampling for the safety and over-refusal responses (1 = off); -1 = the protocol's (seeds and lora-paper: 1; rpsa-paper: 0.95).
            reasoning_samples: Samples per reasoning problem; pass@1 averages over them; 0 = the protocol's (seeds and lora-paper: 8; rpsa-paper: 1).
            reasoning_temperature: Sampling temperature for reasoning (0 = greedy, needs reasoning_samples=1); -1 = the protocol's (0.6).
            reasoning_top_p: Nucleus sampling for reasoning; -1 = the protocol's (0.95).
            reasoning_max_new_tokens: Token budget of each reasoning response; 0 = the protocol's (32768).
            generation_batch_size: Prompts per batch in the transformers backend.
            generation_backend: hf (transformers) or vllm (default: the platform file's; a cluster's is vllm) (vllm: one engine call per chunk of a checkpoint's prompts, each chunk mixing all its eval sets; LoRA checkpoints as adapters or merged first, per the platform's lora_serving).
            tensor_parallel_size: GPUs per model for the vllm backend (set the platform's accelerator count to match).
            store_uri: Run store, e.g. s3://safetax/runs: every stage also publishes its outputs (adapters, generations, judgements, scores, report) to <store_uri>/<run id>/<stage>/<method> with a manifest; empty = KFP's artifacts only.
            rpsa_corpus: Reasoning set whose problems the base model answers for RPSA's Fisher: a registered benchmark {"benchmark": "math500"} or a plain reasoning file {"name", "kind": "reasoning", "uri"}.
            rpsa_corpus_size: Problems in RPSA's reference corpus (paper: 100, drawn with the seed), generated in each RPSA method's train pod; needed (> 0) when a method is "rpsa"; 0 = the protocol's (rpsa-paper: 100).
            rpsa_keep: Corpus answers the Fisher uses: all, or only the correct ones.
            rpsa_validate: Also run the paper's Figure 3 check where the Fisher is computed, in an RPSA method's train pod before it trains (top 1% Fisher vs random 1% parameters scaled by 0.9; full-fine-tuning RPSA only).
            fisher_estimator: RPSA's Fisher: sequence (squared gradient of each answer's mean log-likelihood, one backward per answer) or token (the RPSA paper's Eq. 4: squared per-token gradients, estimated from sampled token positions); empty = the protocol's (seeds: sequence; rpsa-paper: token).
            fisher_tokens_per_sequence: With fisher_estimator=token: token positions sampled per answer (unbiased; 0 = every token, exact but one backward per token); -1 = the protocol's (32).
            analysis_k: Top singular vectors of each base weight for the weight-update analysis's subspace overlaps; 0 = the protocol's (16, the LoRA paper's).
            train_gpus: GPUs per training task for this run (a whole number, as text: KFP resolves accelerator counts from strings): data-parallel workers in one pod for full fine-tuning (FSDP) and LoRA (DDP); RPSA too (default: the platform file's; applies when train is a GPU stage).
            train_nodes: Nodes per training run: 1 = one pod (torchrun on train_gpus GPUs); > 1 = a Kubeflow Trainer v2 TrainJob on train_nodes x train_gpus GPUs (the platform's trainjob_runtime and trainjob_volume_claim, a shared ReadWriteMany volume).
            generate_gpus: GPUs per generation task for this run (match tensor_parallel_size with vllm).
            judge_gpus: GPUs per judge task for this run (Llama-Guard-3-8B fits on one).
            gate_thresholds: Safety gate, e.g. {"min_safety_score": 0.9, "max_reasoning_drop": 0.05}: the best Pareto checkpoint passing every threshold (min_safety_score, max_attack_success_rate, max_overrefusal_rate, max_reasoning_drop, max_safety_tax_rate; drops against the base model; "confidence": 0.95 decides each on its one-sided bound instead of the point estimate) is published under <store_uri>/promoted/<run id>/ with its audit record, and the run fails naming the failed criteria when none passes; empty = no gate.
            generation_cache: Where generations and judge verdicts are reused from, keyed by the digest of everything that decides them (model weights, prompt, sampling, seed, backend and its version; the judge model and mode): empty = <store_uri>/cache (shared by every run and audit on the store; without a store $SAFETAX_CACHE), "off" = no cache, or a root URI (s3:// or a directory).
            eval_shards: Evaluation chains per model: 1 = one generate -> judge -> code -> score chain per checkpoint; n > 1 = n chains, each on every n-th prompt of all eval sets (so one checkpoint's large benchmarks spread over n GPU pods), merged exactly before anything reads the scores.
            protocol: The evaluation and training protocol that fills in every parameter left unset (empty, 0 or -1 as stated, or a key left out of an eval set or method): seeds (this project's defaults), lora-paper (Xue & Mirzasoleiman 2025: prompts, Llama-Guard-3 generate mode, budgets, LoRA settings) or rpsa-paper (RPSA: appendix B prompts, one sample, 250 WildJailbreak prompts, Eq. 4 Fisher, batch sizes); explicit values always win.
        """
        params = {k: v for k, v in locals().items() if k in plan.component_spec.inputs}
        params["trainjob_platform"] = platform.trainjob(TRAIN_IMAGE)  # train_nodes > 1 is checked against it
        store = {"store_uri": store_uri}
        engine = platform.engine_settings().to_dict()  # the platform's vLLM settings and judge backend, compiled in
        gpus = {"generate": generate_gpus, "judge": judge_gpus}
        gen_args = {
            "safety_max_new_tokens": safety_max_new_tokens,
            "safety_temperature": safety_temperature,
            "safety_top_p": safety_top_p,
            "reasoning_samples": reasoning_samples,
            "reasoning_temperature": reasoning_temperature,
            "reasoning_top_p": reasoning_top_p,
            "reasoning_max_new_tokens": reasoning_max_new_tokens,
            "batch_size": generation_batch_size,
            "backend": generation_backend,
            "tensor_parallel_size": tensor_parallel_size,
            "seed": seed,
            "protocol": protocol,
            "generation_cache": generation_cache,
            "engine": engine,
        }
        judge_args = {"judge": judge_name, "judge_model": judge_model, "mode": judge_mode, "judge_scope": judge_scope, "protocol": protocol,
                      "generation_cache": generation_cache, "engine": engine}
        # Everything is checked on a CPU before any GPU pod starts; the methods come back resolved.
        planned = place(plan(**params), "plan", platform, display="plan: validate the run", cache=False)
        data = place(prepare(refusal_uri=refusal_data_uri, model_uri=base_model_uri, max_length=max_length, **store), "prepare", platform,
                     display="prepare refusal data").after(planned)
        # The base model's chain (one per shard with eval_shards > 1), once the plan has checked the run.
        chains = place(base_items(eval_shards=eval_shards), "analytics", platform, display="base model's evaluation chains").after(planned)
        with dsl.ParallelFor(chains.output, parallelism=platform.max_parallel_evaluations or None) as base_item:
            base_scored = _evaluate(platform, "base model", base_model_uri, eval_sets, gen_args, judge_args, equivalence_model, store,
                                    gpus, target=base_item)
        base = place(gather_scores(scores=dsl.Collected(base_scored.outputs["scores"]), targets=chains.output,
                                   base_model=base_model_uri), "analytics", platform, display="gather scores (base model)")
        with dsl.ParallelFor(planned.outputs["Output"], parallelism=platform.max_parallel_methods or None) as method:
            trained = place(train(method=method, model_uri=base_model_uri, sft=data.outputs["sft"], gpus=train_gpus, nodes=train_nodes,
                                  trainjob_platform=platform.trainjob(TRAIN_IMAGE), **store), "train",
                            platform, train_gpus, display="train (per method)")
            if platform.trainjob_volume_claim:  # the TrainJob's shared work directory, mounted here too
                kubernetes.mount_pvc(trained, pvc_name=platform.trainjob_volume_claim, mount_path=platform.trainjob_volume_path)
            weights = place(analyze(method=method, model_uri=base_model_uri, k=analysis_k, checkpoints=trained.outputs["checkpoints"],
                                    protocol=protocol, eval_shards=eval_shards, **store),
                            "analyze", platform, display="merge + analyze weights (per method)")
            # Every checkpoint and merge candidate is evaluated in a chain of its own (analyze lists them).
            with dsl.ParallelFor(weights.outputs["Output"], parallelism=platform.max_parallel_evaluations or None) as target:
                scored = _evaluate(platform, "per checkpoint", base_model_uri, eval_sets, gen_args, judge_args, equivalence_model,
                                   store, gpus, checkpoints=trained.outputs["checkpoints"], merged=weights.outputs["merged"],
                                   target=target)
            method_scores = place(gather_scores(scores=dsl.Collected(scored.outputs["scores"]), targets=weights.outputs["Output"],
                                                base_model=base_model_uri),
                                  "analytics", platform, display="gather scores (per method)")
        report = place(
            analytics(base_model=base_model_uri, base_scores=base.outputs["gathered"], scores=dsl.Collected(method_scores.outputs["gathered"]),
                      analyses=dsl.Collected(weights.outputs["analysis"]), **store),
            "analytics", platform, display="analytics: table, report, plots",
        )
        place(gate(thresholds=gate_thresholds, base_model=base_model_uri, base_scores=base.outputs["gathered"],
                   scores=dsl.Collected(method_scores.outputs["gathered"]), checkpoints=dsl.Collected(trained.outputs["checkpoints"]),
                   merged=dsl.Collected(weights.outputs["merged"]), **store),
              "analytics", platform, display="safety gate", cache=False).after(report)
        return report.outputs["results"]

    return alignment_pipeline
