"""The alignment pipeline: plan, refusal SFT per method, evaluation of every epoch, analytics, gate."""

from typing import Any

from kfp import dsl
from kfp.dsl import Dataset

from safetax.platform import PlatformConfig
from safetax.runner.components.analytics import analytics
from safetax.runner.components.analyze import analyze
from safetax.runner.components.gate import gate
from safetax.runner.components.generate import generate
from safetax.runner.components.judge import judge
from safetax.runner.components.plan import plan
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
              after: dsl.PipelineTask | None = None) -> dsl.PipelineTask:
    extra = {"checkpoints": checkpoints, "merged": merged} if checkpoints is not None else {}
    # The GPU counts are also task arguments: KFP wires a loop's inputs only from task arguments,
    # not from resource settings, so without them a per-run count inside ParallelFor is unresolved.
    gen = place(generate(model_uri=model_uri, eval_sets=eval_sets, gpus=gpus["generate"], **gen_args, **store, **extra), "generate",
                platform, gpus["generate"], display=f"generate ({who})")
    if after is not None:
        gen.after(after)
    verdicts = place(judge(generations=gen.outputs["generations"], base_model=model_uri, gpus=gpus["judge"], **judge_args, **store),
                     "judge", platform, gpus["judge"], display=f"judge ({who})")
    scored = score(equivalence_model=equivalence_model, base_model=model_uri, generations=gen.outputs["generations"],
                   judgements=verdicts.outputs["judgements"], **store)
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
        judge_name: str = "refusal",
        judge_model: str = "meta-llama/Llama-Guard-3-8B",
        judge_mode: str = "logit",
        judge_scope: str = "answer",
        equivalence_model: str = "",
        safety_max_new_tokens: int = 1024,
        reasoning_samples: int = 8,
        reasoning_temperature: float = 0.6,
        reasoning_top_p: float = 0.95,
        reasoning_max_new_tokens: int = 32768,
        generation_batch_size: int = 32,
        generation_backend: str = platform.generation_backend,
        tensor_parallel_size: int = 1,
        store_uri: str = "",
        analysis_k: int = 16,
        rpsa_corpus: dict = {"benchmark": "math500"},
        rpsa_corpus_size: int = 0,
        rpsa_keep: str = "all",
        rpsa_validate: bool = False,
        fisher_estimator: str = "sequence",
        fisher_tokens_per_sequence: int = 32,
        train_gpus: str = str(platform.settings("train").accelerator_count),
        generate_gpus: str = str(platform.settings("generate").accelerator_count),
        judge_gpus: str = str(platform.settings("judge").accelerator_count),
        gate_thresholds: dict = {},
    ) -> Dataset:
        """Align a reasoning model with refusal SFT and measure the safety tax of every checkpoint.

        Args:
            base_model_uri: The reasoning model to align: a model directory, file:// path, or hub id (e.g. deepseek-ai/DeepSeek-R1-Distill-Qwen-7B).
            refusal_data_uri: Refusal SFT data (JSONL, CSV or parquet with `prompt` and `refusal` columns).
            eval_sets: Evaluation sets (the default is an example: the seeds' safety and reasoning benchmarks): registered benchmarks {"benchmark": "strongreject"|"strongreject-small"|"wildjailbreak"|"wildjailbreak-benign"|"xstest"|"aime24"|"math500"|"gpqa"|"humanevalplus"|"mbppplus", optional "uri", "limit"} or plain files {"name", "kind": "safety"|"overrefusal"|"reasoning", "uri", optional "limit", "prompt_template" with {text}}.
            methods: Method configs to compare (a sweep: one training run each, in parallel), e.g. {"method": "lora", "name": "lora-r4", "lora_rank": 4, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": "mlp"|"attn"|"all"|"up_proj"|"q_proj,v_proj", "layers": "16-31"|"middle", "ortho_reg": "none"|"col"|"both", "ortho_beta": 1, "ortho_k": 64, "merge": "none"|"plain"|"ortho-col"|"ortho-both", "merge_k": 64, "merge_lambdas": [1, 1.15, 1.2, 1.25, 1.75], "merge_epochs": "last"|"all"} or {"method": "full", "gradient_checkpointing": true}; keys are TrainConfig fields plus the merge keys.
            epochs: Epochs for every method that does not set its own; 0 = the seeds' defaults (full 5, LoRA 10).
            seed: Seed for training (unless a method sets its own) and for sampling.
            max_length: Maximum tokens per SFT example.
            judge_name: Safety judge: refusal (pattern-based, offline) or llama-guard (Llama-Guard-3).
            judge_model: Llama-Guard model directory or hub id (judge_name=llama-guard).
            judge_mode: Llama-Guard mode: logit (one forward pass, P(unsafe)) or generate (generate and parse).
            judge_scope: What the safety judge reads: answer (the text after </think>) or full (the reasoning trace too: a harmful trace is a real risk). Neither paper states its scope.
            equivalence_model: Optional LLM that re-checks math answers math-verify calls different (LoRA paper: Qwen2.5-32B-Instruct); empty = off. Put "score" in the platform's gpu_stages when set.
            safety_max_new_tokens: Token budget of each (greedy) response to a safety prompt.
            reasoning_samples: Samples per reasoning problem; pass@1 averages over them (seeds: 8).
            reasoning_temperature: Sampling temperature for reasoning (seeds: 0.6; 0 = greedy, needs reasoning_samples=1).
            reasoning_top_p: Nucleus sampling for reasoning (seeds: 0.95).
            reasoning_max_new_tokens: Token budget of each reasoning response (seeds: 32768).
            generation_batch_size: Prompts per batch in the transformers backend.
            generation_backend: hf (transformers) or vllm (default: the platform file's; a cluster's is vllm) (one generate call per stage, LoRA adapters served without merging).
            tensor_parallel_size: GPUs per model for the vllm backend (set the platform's accelerator count to match).
            store_uri: Run store, e.g. s3://safetax/runs: every stage also publishes its outputs (adapters, generations, judgements, scores, report) to <store_uri>/<run id>/<stage>/<method> with a manifest; empty = KFP's artifacts only.
            rpsa_corpus: Reasoning set whose problems the base model answers for RPSA's Fisher: a registered benchmark {"benchmark": "math500"} or a plain reasoning file {"name", "kind": "reasoning", "uri"}.
            rpsa_corpus_size: Problems in RPSA's reference corpus (paper: 100, drawn with the seed), generated in each RPSA method's train pod; needed (> 0) when a method is "rpsa".
            rpsa_keep: Corpus answers the Fisher uses: all, or only the correct ones.
            rpsa_validate: Also run the paper's Figure 3 check in the fisher stage (top 1% Fisher vs random 1% parameters scaled by 0.9; full-fine-tuning RPSA only).
            fisher_estimator: RPSA's Fisher: sequence (squared gradient of each answer's mean log-likelihood, one backward per answer) or token (the RPSA paper's Eq. 4: squared per-token gradients, estimated from sampled token positions).
            fisher_tokens_per_sequence: With fisher_estimator=token: token positions sampled per answer (unbiased; 0 = every token, exact but one backward per token).
            analysis_k: Top singular vectors of each base weight for the weight-update analysis's subspace overlaps (LoRA paper: 16).
            train_gpus: GPUs per training task for this run (a whole number, as text: KFP resolves accelerator counts from strings): data-parallel workers in one pod for full fine-tuning (FSDP) and LoRA (DDP); RPSA methods need 1 (default: the platform file's; applies when train is a GPU stage).
            generate_gpus: GPUs per generation task for this run (match tensor_parallel_size with vllm).
            judge_gpus: GPUs per judge task for this run (Llama-Guard-3-8B fits on one).
            gate_thresholds: Safety gate, e.g. {"min_safety_score": 0.9, "max_reasoning_drop": 0.05}: the best Pareto checkpoint passing every threshold (min_safety_score, max_attack_success_rate, max_overrefusal_rate, max_reasoning_drop, max_safety_tax_rate; drops against the base model; "confidence": 0.95 decides each on its one-sided bound instead of the point estimate) is published under <store_uri>/promoted/<run id>/ with its audit record, and the run fails naming the failed criteria when none passes; empty = no gate.
        """
        params = {k: v for k, v in locals().items() if k in plan.component_spec.inputs}
        store = {"store_uri": store_uri}
        gpus = {"generate": generate_gpus, "judge": judge_gpus}
        gen_args = {
            "safety_max_new_tokens": safety_max_new_tokens,
            "reasoning_samples": reasoning_samples,
            "reasoning_temperature": reasoning_temperature,
            "reasoning_top_p": reasoning_top_p,
            "reasoning_max_new_tokens": reasoning_max_new_tokens,
            "batch_size": generation_batch_size,
            "backend": generation_backend,
            "tensor_parallel_size": tensor_parallel_size,
            "seed": seed,
        }
        judge_args = {"judge": judge_name, "judge_model": judge_model, "mode": judge_mode, "judge_scope": judge_scope}
        # Everything is checked on a CPU before any GPU pod starts; the methods come back resolved.
        planned = place(plan(**params), "plan", platform, display="plan: validate the run", cache=False)
        data = place(prepare(refusal_uri=refusal_data_uri, model_uri=base_model_uri, max_length=max_length, **store), "prepare", platform,
                     display="prepare refusal data").after(planned)
        base = _evaluate(platform, "base model", base_model_uri, eval_sets, gen_args, judge_args, equivalence_model, store, gpus,
                         after=planned)
        with dsl.ParallelFor(planned.outputs["Output"], parallelism=platform.max_parallel_methods or None) as method:
            trained = place(train(method=method, model_uri=base_model_uri, sft=data.outputs["sft"], gpus=train_gpus, **store), "train",
                            platform, train_gpus, display="train (per method)")
            weights = place(analyze(method=method, model_uri=base_model_uri, k=analysis_k, checkpoints=trained.outputs["checkpoints"], **store),
                            "analyze", platform, display="merge + analyze weights (per method)")
            scored = _evaluate(platform, "per method", base_model_uri, eval_sets, gen_args, judge_args, equivalence_model, store, gpus,
                               checkpoints=trained.outputs["checkpoints"], merged=weights.outputs["merged"])
        report = place(
            analytics(base_model=base_model_uri, base_scores=base.outputs["scores"], scores=dsl.Collected(scored.outputs["scores"]),
                      analyses=dsl.Collected(weights.outputs["analysis"]), **store),
            "analytics", platform, display="analytics: table, report, plots",
        )
        place(gate(thresholds=gate_thresholds, base_model=base_model_uri, base_scores=base.outputs["scores"],
                   scores=dsl.Collected(scored.outputs["scores"]), checkpoints=dsl.Collected(trained.outputs["checkpoints"]),
                   merged=dsl.Collected(weights.outputs["merged"]), **store),
              "analytics", platform, display="safety gate", cache=False).after(report)
        return report.outputs["results"]

    return alignment_pipeline
