"""Where and how each pipeline stage runs on Kubernetes.

Plain data, loaded at compile time (``SAFETAX_PLATFORM=platform.yaml``, or the
Helm chart's ConfigMap for the registrar); ``safetax.runner.pipelines._k8s`` applies it to
every task through ``kfp.kubernetes`` and the task's resource setters. The
local runner ignores all of it.

A platform file has ``defaults`` (applied to every stage) and ``stages``
(per stage, merged over the built-in defaults of that stage)::

    defaults:
      image_pull_secrets: [regcred]
      pod_labels: {team: safety}
      env: {SAFETAX_S3_ENDPOINT: "http://minio.kubeflow:9000", SAFETAX_PUSHGATEWAY: "pushgateway.monitoring:9091"}
      s3_secret: mlpipeline-minio-artifact          # existing Secret with the S3 credentials
      s3_secret_keys: {access_key: accesskey, secret_key: secretkey}
      pipeline_root: minio://mlpipeline/v2/artifacts  # KFP's artifact root ("" = the deployment's default)
      generation_backend: vllm                       # a GPU cluster's profile: vLLM for generation and judging
      judge_backend: vllm
      vllm: {max_model_len: 40960, gpu_memory_utilization: 0.9, lora_serving: auto}
    stages:
      train:
        accelerator_count: 2
        node_selector: {cloud.google.com/gke-accelerator: nvidia-h100-80gb}
        memory_limit: 200Gi

Every GPU stage (``accelerator_count > 0``) gets an in-memory emptyDir at
``/dev/shm`` (PyTorch data loaders and NCCL need more than the 64 MB default).
The code stage, the one that runs model-generated code, carries the label
``safetax.io/code-execution: "true"``: the chart's NetworkPolicy limits the egress of
pods with it to what KFP's launcher needs (DNS, the object store, KFP's API and metadata).
It gets no store Secret, no Hugging Face token and no platform environment.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetax.config import Checks, ConfigError
from safetax.platform_shape import DEFAULT_KINDS, STAGE_KINDS, mapping, tolerations

if TYPE_CHECKING:
    from safetax.generation.backends import EngineSettings

STAGES = ("plan", "prepare", "train", "analyze", "generate", "judge", "code", "score", "analytics")
GPU_STAGES = ("train", "generate", "judge")
# Stages of earlier releases, folded into others so that no pod starts without work.
FOLDED = {"corpus": "train (an RPSA method's train pod writes its corpus and Fisher first)",
          "fisher": "train (an RPSA method's train pod writes its corpus and Fisher first)",
          "merge": "analyze (one pod per method merges and analyses the weight updates)"}
# Stages that load a model or a tokenizer: they get HF_TOKEN from `hf_token_secret`. The code stage runs
# model-written code and gets no credential at all (CODE_STAGE).
MODEL_STAGES = ("plan", "prepare", "train", "analyze", "generate", "judge")
BACKENDS = ("hf", "vllm")
OPERATORS = ("Exists", "Equal")
EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute", "")
CODE_EXECUTION_LABEL = ("safetax.io/code-execution", "true")
CODE_STAGE = "code"  # the stage whose pods run model-written code
# Environment variables the stages read; the S3 credentials come from a Secret, never from the platform file.
S3_ACCESS_KEY_ENV = "SAFETAX_S3_ACCESS_KEY"
S3_SECRET_KEY_ENV = "SAFETAX_S3_SECRET_KEY"
_QUANTITY = re.compile(r"^([0-9]+(\.[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_LABEL = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Toleration:
    key: str
    operator: str = "Exists"
    value: str = ""
    effect: str = "NoSchedule"

    def __post_init__(self) -> None:
        c = Checks("Toleration")
        c.one_of("operator", self.operator, OPERATORS)
        c.one_of("effect", self.effect, EFFECTS)
        c.raise_if_any()


GPU_TOLERATIONS = (Toleration("nvidia.com/gpu"),)


@dataclass(frozen=True)
class StageSettings:
    """Kubernetes settings of one stage's pods. Quantities are Kubernetes strings ("8", "500m", "64Gi")."""

    # The NVIDIA device plugin's resource name; 0 GPUs makes a CPU stage.
    accelerator_type: str = "nvidia.com/gpu"
    accelerator_count: int = 0
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    cpu_request: str = "1"
    cpu_limit: str = "4"
    memory_request: str = "4Gi"
    memory_limit: str = "16Gi"
    shm_size: str = ""  # "" = no /dev/shm volume (CPU stages); GPU stages default to 16Gi
    pod_labels: dict[str, str] = field(default_factory=dict)
    # Disk for downloads, caches and checkpoints before upload: a generic ephemeral volume of this size at /scratch
    # (KFP's IR has no ephemeral-storage resource); "" = none (the node's own disk).
    scratch_size: str = ""
    retries: int = 0  # KFP retries of a failed pod (preemption, a lost node), with exponential backoff
    retry_backoff: str = "60s"  # first backoff; doubled each retry, at most 1h
    timeout: int = 0  # seconds the pod may run (activeDeadlineSeconds); 0 = no limit

    @property
    def gpu(self) -> bool:
        return self.accelerator_count > 0

    def check(self, c: Checks, where: str) -> None:
        if isinstance(self.accelerator_count, bool) or not isinstance(self.accelerator_count, int) or self.accelerator_count < 0:
            c.fail(f"{where}.accelerator_count", self.accelerator_count, "an integer >= 0")
        for name in ("retries", "timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                c.fail(f"{where}.{name}", value, "an integer >= 0" + (" (seconds)" if name == "timeout" else ""))
        if not (isinstance(self.retry_backoff, str) and re.fullmatch(r"[0-9]+(s|m|h)", self.retry_backoff)):
            c.fail(f"{where}.retry_backoff", self.retry_backoff, 'a duration such as "30s", "5m" or "1h"')
        for name in ("cpu_request", "cpu_limit", "memory_request", "memory_limit", "shm_size", "scratch_size"):
            value = getattr(self, name)
            if not (value == "" and name in ("shm_size", "scratch_size")) and not (isinstance(value, str) and _QUANTITY.match(value)):
                c.fail(f"{where}.{name}", value, 'a Kubernetes quantity string such as "4", "500m" or "16Gi"')
        for key, value in {**self.node_selector, **self.pod_labels}.items():
            if not _LABEL.match(str(key)) or not isinstance(value, str) or len(value) > 63:
                c.fail(f"{where} label/selector {key!r}", value, "a valid Kubernetes label key with a string value (<= 63 chars)")


_GPU_DEFAULTS = StageSettings(
    accelerator_count=1,
    node_selector={"nvidia.com/gpu.present": "true"},  # the GPU operator's feature-discovery label
    tolerations=GPU_TOLERATIONS,
    cpu_request="8",
    cpu_limit="16",
    memory_request="64Gi",
    memory_limit="128Gi",
    shm_size="16Gi",
    retries=2,
    retry_backoff="120s",
)
_CPU_DEFAULTS = StageSettings()
BUILTIN: dict[str, StageSettings] = {s: (_GPU_DEFAULTS if s in GPU_STAGES else _CPU_DEFAULTS) for s in STAGES}
# A day for a 7B sweep's training or a checkpoint's generation; a hung pod is ended, not left holding GPUs.
BUILTIN["train"] = replace(_GPU_DEFAULTS, timeout=2 * 86400, scratch_size="")
BUILTIN["generate"] = replace(_GPU_DEFAULTS, timeout=86400)
BUILTIN["judge"] = replace(_GPU_DEFAULTS, timeout=43200)
# The code stage runs model-written code in sandbox subprocesses: more cores, and the egress-deny label.
BUILTIN[CODE_STAGE] = replace(_CPU_DEFAULTS, cpu_request="4", cpu_limit="8", retries=2, pod_labels=dict([CODE_EXECUTION_LABEL]))
BUILTIN["analytics"] = replace(_CPU_DEFAULTS, memory_request="2Gi", memory_limit="8Gi")
# Merging holds the base model in memory (CPU tensors; no GPU needed); the analysis reads one matrix pair at a time.
BUILTIN["analyze"] = replace(_CPU_DEFAULTS, cpu_request="8", cpu_limit="16", memory_request="64Gi", memory_limit="128Gi", retries=1)


@dataclass(frozen=True)
class PlatformConfig:
    stages: dict[str, StageSettings] = field(default_factory=lambda: dict(BUILTIN))
    image_pull_secrets: tuple[str, ...] = ()
    pod_labels: dict[str, str] = field(default_factory=dict)  # on every stage's pods
    env: dict[str, str] = field(default_factory=dict)  # plain environment variables of every stage
    s3_secret: str = ""  # an existing Secret with the S3 credentials ("" = none)
    s3_secret_keys: dict[str, str] = field(default_factory=lambda: {"access_key": "accesskey", "secret_key": "secretkey"})
    # KFP's pipeline_root for the compiled pipeline, e.g. minio://mlpipeline/v2/artifacts or s3://bucket/kfp;
    # "" = the KFP deployment's default. The local runner takes a local folder instead (safetax demo/run --out).
    pipeline_root: str = ""
    # An existing Secret with a Hugging Face token (gated models such as Llama-Guard-3): its key becomes HF_TOKEN in
    # the stages that load models (MODEL_STAGES). Never a value in this file.
    hf_token_secret: str = ""
    hf_token_secret_key: str = "token"
    # The pipelines' default `generation_backend` (a cluster profile sets vllm; the local runner has no vLLM).
    generation_backend: str = "hf"
    # The judge stage's Llama-Guard backend (hf | vllm); a cluster profile sets vllm. Pipelines read it through
    # engine_settings(), compiled into the generate and judge components.
    judge_backend: str = "hf"
    # vLLM engine settings and the lora_serving rule's constants (safetax.generation.backends.EngineSettings, less
    # judge_backend and tokens_per_second, which are defaults keys of their own), e.g.
    # {max_model_len: 40960, gpu_memory_utilization: 0.9, lora_serving: auto}. Unset keys keep EngineSettings' defaults.
    vllm: dict[str, Any] = field(default_factory=dict)
    # Methods trained and evaluated at the same time (ParallelFor parallelism; 0 = all). KFP compiles it into the
    # pipeline: it is a platform setting, not a run parameter.
    max_parallel_methods: int = 0
    # Checkpoints of one method (or of one audit run) evaluated at the same time (their generate -> judge -> code ->
    # score chains; ParallelFor parallelism; 0 = all). Compiled into the pipeline: KFP fixes a loop's parallelism at compile time.
    max_parallel_evaluations: int = 0
    # Output tokens/s of one model replica on this platform's generate GPUs (vLLM, long outputs), for `safetax estimate`;
    # 0 = its default (5000, the low end of a 7-8B model on one H100/H200).
    tokens_per_second: float = 0.0
    # Training on several nodes (run parameter train_nodes > 1) goes to Kubeflow Trainer v2 as a TrainJob on this
    # ClusterTrainingRuntime, with a shared ReadWriteMany volume (an existing PersistentVolumeClaim, mounted at
    # trainjob_volume_path in the train pod and every node) for the data, states and checkpoints.
    trainjob_runtime: str = "torch-distributed"
    trainjob_volume_claim: str = ""
    trainjob_volume_path: str = "/shared"
    # StorageClass of the stages' scratch volumes ("" = the cluster's default).
    scratch_storage_class: str = ""
    # The containers' identity, e.g. {run_as_user: 1000, run_as_group: 0, run_as_non_root: true} (kfp-kubernetes'
    # set_security_context; the backend adds no-privilege-escalation, drop ALL and RuntimeDefault seccomp). Empty =
    # the image's user (UID 1000). Needs a KFP backend that applies task security contexts (newer than the 2.15 minimum).
    security_context: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        c = Checks("platform config")
        for name, s in self.stages.items():
            c.one_of("stages key", name, STAGES)
            s.check(c, f"stages.{name}")
        if self.pipeline_root and not self.pipeline_root.startswith(("minio://", "s3://", "gs://")):
            c.fail("defaults.pipeline_root", self.pipeline_root, "a minio://, s3:// or gs:// URI, or empty")
        if set(self.s3_secret_keys) != {"access_key", "secret_key"}:
            c.fail("defaults.s3_secret_keys", self.s3_secret_keys, "a mapping with exactly the keys access_key and secret_key")
        c.one_of("defaults.generation_backend", self.generation_backend, BACKENDS)
        c.one_of("defaults.judge_backend", self.judge_backend, BACKENDS)
        self._check_vllm(c)
        for key, value in self.security_context.items():
            if key not in ("run_as_user", "run_as_group", "run_as_non_root"):
                c.fail(f"defaults.security_context.{key}", value, "one of the keys run_as_user, run_as_group, run_as_non_root")
            elif key == "run_as_non_root" and not isinstance(value, bool):
                c.fail(f"defaults.security_context.{key}", value, "true or false")
            elif key != "run_as_non_root" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                c.fail(f"defaults.security_context.{key}", value, "an integer id >= 0")
        if self.security_context.get("run_as_non_root") and self.security_context.get("run_as_user") == 0:
            c.fail("defaults.security_context.run_as_user", 0, "a non-zero id with run_as_non_root: true")
        for name, st in self.stages.items():
            label, on = CODE_EXECUTION_LABEL
            if label in st.pod_labels and (name != CODE_STAGE or st.pod_labels[label] != on):
                c.fail(f"stages.{name}.pod_labels.{label}", st.pod_labels[label],
                       "left to safetax: the code stage's pods (which run model-written code) always carry it, as "
                       f"{label}: \"{on}\", so that the egress policy applies to them")
        if isinstance(self.tokens_per_second, bool) or not isinstance(self.tokens_per_second, (int, float)) or not self.tokens_per_second >= 0:
            c.fail("defaults.tokens_per_second", self.tokens_per_second, "a number >= 0 (0 = the estimate's default)")
        for key in ("max_parallel_methods", "max_parallel_evaluations"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                c.fail(f"defaults.{key}", value, "an integer >= 0 (0 = no limit)")
        for key in ("trainjob_runtime", "trainjob_volume_claim"):
            value = getattr(self, key)
            if value and not _DNS_NAME.match(str(value)):
                c.fail(f"defaults.{key}", value, "the name of an existing object (a DNS subdomain name)")
        if not str(self.trainjob_volume_path).startswith("/"):
            c.fail("defaults.trainjob_volume_path", self.trainjob_volume_path, "an absolute path, e.g. /shared")
        if self.hf_token_secret and not _DNS_NAME.match(self.hf_token_secret):
            c.fail("defaults.hf_token_secret", self.hf_token_secret, "the name of an existing Secret (a DNS subdomain name)")
        for key in self.env:
            if key == "HF_TOKEN" or key.startswith("AWS_SECRET") or key in (S3_ACCESS_KEY_ENV, S3_SECRET_KEY_ENV):
                c.fail(f"defaults.env.{key}", "<hidden>", "absent: credentials come from `s3_secret` / `hf_token_secret`, "
                                                           "never from the platform file")
        c.raise_if_any()

    def _check_vllm(self, c: Checks) -> None:
        from safetax.generation.backends import check_platform_engine

        check_platform_engine(c, self.vllm, judge_backend=self.judge_backend, tokens_per_second=self.tokens_per_second)

    def engine_settings(self) -> EngineSettings:
        """What the generate and judge components get, compiled in as a constant (``.to_dict()``)."""
        from safetax.generation.backends import DEFAULT_TOKENS_PER_SECOND, EngineSettings

        return EngineSettings(**self.vllm, judge_backend=self.judge_backend,
                              tokens_per_second=self.tokens_per_second or DEFAULT_TOKENS_PER_SECOND)

    def trainjob(self, image: str) -> dict[str, Any]:
        """What the train task needs to start a TrainJob (safetax.training.multinode.trainjob_settings): compiled
        into the pipeline as a constant, so the train image, the train stage's placement and the Secrets' names
        (never their values) reach every node."""
        s = self.settings("train")
        return {"image": image, "runtime": self.trainjob_runtime, "volume_claim": self.trainjob_volume_claim,
                "volume_path": self.trainjob_volume_path, "env": dict(self.env), "s3_secret": self.s3_secret,
                "s3_secret_keys": dict(self.s3_secret_keys), "hf_token_secret": self.hf_token_secret,
                "hf_token_secret_key": self.hf_token_secret_key, "node_selector": dict(s.node_selector),
                "tolerations": [{f.name: getattr(t, f.name) for f in fields(t) if getattr(t, f.name)} for t in s.tolerations]}

    def settings(self, stage: str) -> StageSettings:
        """The settings of a stage; an unknown stage is an error naming the known ones."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
        return self.stages.get(stage, BUILTIN[stage])

    def secret_env(self) -> dict[str, str]:
        """Secret key -> environment variable, for ``kfp.kubernetes.use_secret_as_env``."""
        if not self.s3_secret:
            return {}
        keys = self.s3_secret_keys
        return {keys["access_key"]: S3_ACCESS_KEY_ENV, keys["secret_key"]: S3_SECRET_KEY_ENV}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "platform config") -> PlatformConfig:
        """Build from the YAML structure in the module docstring; unknown keys and wrong kinds are errors."""
        c = Checks(source)
        if not isinstance(d, dict):
            c.fail("the file's top level", d, "a mapping with the keys defaults and stages")
            c.raise_if_any()
        _unknown(c, "", d, {"defaults", "stages"})
        defaults = mapping(c, "defaults", d.get("defaults"), DEFAULT_KINDS)
        _unknown(c, "defaults.", defaults, set(_DEFAULT_KEYS) | {"image_pull_secrets"})
        allowed = {f.name for f in fields(StageSettings)}
        stages = dict(BUILTIN)
        for name, raw in mapping(c, "stages", d.get("stages"), {}).items():
            if name in FOLDED:
                c.fail(f"stages.{name}", "(a stage of earlier releases)", f"moved: its work now runs in {FOLDED[name]}; set that stage")
                continue
            if name not in STAGES:
                c.one_of("stages key", name, STAGES)
                continue
            raw = mapping(c, f"stages.{name}", raw, STAGE_KINDS)
            _unknown(c, f"stages.{name}.", raw, allowed)
            raw = {k: v for k, v in raw.items() if k in allowed}
            if "tolerations" in raw:
                items = tolerations(c, f"stages.{name}.tolerations", raw["tolerations"])
                for i, t in enumerate(items or ()):
                    try:
                        Toleration(**t)
                    except ConfigError as e:
                        c.errors += [f"stages.{name}.tolerations[{i}]: {m}" for m in e.errors]
                        items = None
                if items is None:
                    continue
                raw["tolerations"] = tuple(Toleration(**t) for t in items)
            for key in ("cpu_request", "cpu_limit", "memory_request", "memory_limit", "shm_size", "scratch_size"):
                if isinstance(raw.get(key), (int, float)) and not isinstance(raw.get(key), bool):
                    raw[key] = str(raw[key])  # YAML `cpu_limit: 8`
            base = BUILTIN[name]
            gpu_now = raw.get("accelerator_count", base.accelerator_count)
            if base.gpu and gpu_now == 0:  # a GPU stage moved to CPU drops its GPU placement defaults
                base = replace(_CPU_DEFAULTS, pod_labels=base.pod_labels)
            elif not base.gpu and isinstance(gpu_now, int) and gpu_now > 0:
                base = replace(_GPU_DEFAULTS, pod_labels=base.pod_labels)
            if isinstance(raw.get("pod_labels"), dict):  # added to the built-in labels (the code-execution one stays)
                raw["pod_labels"] = {**base.pod_labels, **raw["pod_labels"]}
            stages[name] = replace(base, **raw)
        kw: dict[str, Any] = {"stages": stages}
        for key in _DEFAULT_KEYS:
            if key in defaults:
                kw[key] = defaults[key]
        if "image_pull_secrets" in defaults:
            kw["image_pull_secrets"] = tuple(defaults["image_pull_secrets"])
        try:
            config = cls(**kw)
        except ConfigError as e:  # report value problems together with unknown keys
            c.errors += e.errors
        c.raise_if_any()
        return config


_DEFAULT_KEYS = ("pod_labels", "env", "s3_secret", "s3_secret_keys", "pipeline_root", "hf_token_secret", "hf_token_secret_key",
                 "generation_backend", "judge_backend", "vllm", "max_parallel_methods", "max_parallel_evaluations", "scratch_storage_class",
                 "security_context", "tokens_per_second", "trainjob_runtime", "trainjob_volume_claim", "trainjob_volume_path")


def _unknown(c: Checks, prefix: str, d: dict[str, Any], allowed: set[str]) -> None:
    for key in d:
        if key not in allowed:
            c.fail(f"{prefix}{key}", "(unknown key)", "one of " + ", ".join(sorted(allowed)))


def load_platform(path: str | None = None) -> PlatformConfig:
    """From a YAML file (argument or ``SAFETAX_PLATFORM``), else the built-in defaults."""
    import yaml

    path = path or os.environ.get("SAFETAX_PLATFORM")
    if not path:
        return PlatformConfig()
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"platform config {path!r} (SAFETAX_PLATFORM) does not exist")
    source = f"platform config {path}"
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(source, [f"not valid YAML{at}: {getattr(e, 'problem', None) or e}"]) from None
    except UnicodeDecodeError as e:
        raise ConfigError(source, [f"not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start})"]) from None
    return PlatformConfig.from_dict({} if data is None else data, source=source)
