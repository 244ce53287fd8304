"""Apply the platform config to pipeline tasks through kfp.kubernetes."""

from kfp import kubernetes
from kfp.dsl import PipelineTask

from safetax.platform import PlatformConfig


def place(task: PipelineTask, stage: str, platform: PlatformConfig) -> PipelineTask:
    """GPU stages get accelerator type and limit, node selector and tolerations; CPU stages nothing."""
    p = platform.placement(stage)
    if p is None:
        return task
    task.set_accelerator_type(p.accelerator_type).set_accelerator_limit(p.accelerator_count)
    for key, value in p.node_selector.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    for t in p.tolerations:
        kubernetes.add_toleration(task, key=t.key, operator=t.operator, value=t.value or None, effect=t.effect or None)
    return task
