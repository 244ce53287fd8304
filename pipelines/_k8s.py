"""Apply the platform config to pipeline tasks through kfp.kubernetes and the task's resource setters."""

from kfp import kubernetes
from kfp.dsl import PipelineTask

from safetax.platform import PlatformConfig


def place(task: PipelineTask, stage: str, platform: PlatformConfig, gpus=None) -> PipelineTask:
    """Resources, GPUs, node selector, tolerations, /dev/shm, pod labels, env, S3 Secret and pull secrets of a stage.

    ``gpus`` may be a pipeline parameter: a per-run override of a GPU stage's GPU count, which KFP
    resolves at run time (node selectors and tolerations stay as compiled).
    """
    s = platform.settings(stage)
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
    for key, value in {**platform.pod_labels, **s.pod_labels}.items():
        kubernetes.add_pod_label(task, label_key=key, label_value=value)
    for name, value in sorted(platform.env.items()):
        task.set_env_variable(name, value)
    if platform.s3_secret:
        kubernetes.use_secret_as_env(task, secret_name=platform.s3_secret, secret_key_to_env=platform.secret_env())
    if platform.image_pull_secrets:
        kubernetes.set_image_pull_secrets(task, list(platform.image_pull_secrets))
    return task
