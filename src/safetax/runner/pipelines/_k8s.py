"""Apply the platform config to pipeline tasks through kfp.kubernetes and the task's resource setters."""

from __future__ import annotations

from kfp import kubernetes
from kfp.dsl import PipelineTask

from safetax.platform import CODE_EXECUTION_LABEL, CODE_STAGE, MODEL_STAGES, PlatformConfig

SCRATCH = "/scratch"


def place(task: PipelineTask, stage: str, platform: PlatformConfig, gpus=None, display: str = "", cache: bool = True) -> PipelineTask:
    """Display name, resources, GPUs, node selector, tolerations, /dev/shm, scratch volume, pod labels, env, Secrets,
    pull secrets, retries and timeout of a stage's task.

    ``gpus`` may be a pipeline parameter: a per-run override of a GPU stage's GPU count, which KFP
    resolves at run time (node selectors and tolerations stay as compiled). ``cache=False`` for steps
    that must always run (discovery, gates). The code stage's pods, which run model-written code, get the
    code-execution label and nothing that opens the run store: no store Secret, no HF token, of the platform's
    environment only the sandbox's settings (SAFETAX_SANDBOX_*).
    """
    s = platform.settings(stage)
    task.set_display_name(display or stage)
    task.set_caching_options(cache)
    task.set_cpu_request(s.cpu_request).set_cpu_limit(s.cpu_limit)
    task.set_memory_request(s.memory_request).set_memory_limit(s.memory_limit)
    if s.gpu:
        task.set_accelerator_type(s.accelerator_type).set_accelerator_limit(s.accelerator_count if gpus is None else gpus)
    for key, value in s.node_selector.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    for t in s.tolerations:
        kubernetes.add_toleration(task, key=t.key, operator=t.operator, value=t.value or None, effect=t.effect or None)
    if s.shm_size:
        kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=s.shm_size)
    code = stage == CODE_STAGE
    # The code stage gets only the sandbox's own settings (SAFETAX_SANDBOX_REQUIRE, ...) of the platform's env.
    env = {k: v for k, v in platform.env.items() if not code or k.startswith("SAFETAX_SANDBOX_")}
    if s.scratch_size:
        kubernetes.add_ephemeral_volume(task, volume_name="scratch", mount_path=SCRATCH, access_modes=["ReadWriteOnce"],
                                        size=s.scratch_size, storage_class_name=platform.scratch_storage_class or None)
        env |= {"SAFETAX_CACHE": f"{SCRATCH}/safetax", "HF_HOME": f"{SCRATCH}/hf", "TMPDIR": SCRATCH}
    labels = {**platform.pod_labels, **s.pod_labels}
    if code:  # model-written code runs here: the egress policy selects these pods by this label, always
        labels[CODE_EXECUTION_LABEL[0]] = CODE_EXECUTION_LABEL[1]
    for key, value in labels.items():
        kubernetes.add_pod_label(task, label_key=key, label_value=value)
    if platform.security_context:
        kubernetes.set_security_context(task, **platform.security_context)
    for name, value in sorted(env.items()):
        task.set_env_variable(name, value)
    if platform.s3_secret and not code:
        kubernetes.use_secret_as_env(task, secret_name=platform.s3_secret, secret_key_to_env=platform.secret_env())
    if platform.hf_token_secret and stage in MODEL_STAGES:
        kubernetes.use_secret_as_env(task, secret_name=platform.hf_token_secret,
                                     secret_key_to_env={platform.hf_token_secret_key: "HF_TOKEN"})
    if platform.image_pull_secrets:
        kubernetes.set_image_pull_secrets(task, list(platform.image_pull_secrets))
    if s.retries:
        task.set_retry(num_retries=s.retries, backoff_duration=s.retry_backoff, backoff_factor=2.0, backoff_max_duration="3600s")
    if s.timeout:
        kubernetes.set_timeout(task, s.timeout)
    return task
