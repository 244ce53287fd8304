from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from safetax.runner.components._image import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def train(method: dict, model_uri: str, gpus: str, store_uri: str, sft: Input[Dataset], checkpoints: Output[Model],
          rpsa: Output[Dataset], metrics: Output[Metrics], nodes: int = 1, trainjob_platform: dict = {}):
    """Refusal SFT (full, LoRA or RPSA) of one plan item, a checkpoint per epoch. For an RPSA method the pod first
    writes RPSA's inputs to `rpsa`: the base model's own answers (corpus) and the Fisher of the trained parameters.

    With `nodes` > 1 the training runs as a Kubeflow Trainer TrainJob on `nodes` x `gpus` GPUs (`trainjob_platform`:
    the platform's runtime, shared volume, image and Secrets' names), which this task creates, follows and cleans up."""
    from pathlib import Path

    from safetax.runid import run_id_of
    from safetax.stages import rpsa_inputs
    from safetax.stages import train as stage
    from safetax.stages.merge import MergeConfig
    from safetax.stages.runtime import RunContext, check_gpus, stage_run
    from safetax.store import write_json
    from safetax.timing import setup_logging

    setup_logging()
    gpus = int(gpus)  # a string parameter: KFP resolves accelerator counts from strings only
    check_gpus("train", gpus)
    cfg = stage.TrainConfig.from_dict(dict(method["config"]))
    merge_cfg = MergeConfig.from_method(dict(method["config"]))
    checkpoints.metadata["method"] = cfg.label
    ctx = RunContext(run_id_of(checkpoints.uri), store_uri, model_uri)
    fisher_dir = corpus_dir = None
    if method["is_rpsa"]:  # RPSA's inputs stay in this task's artifact (the train stage reads them right here)
        with stage_run("fisher", RunContext(ctx.run_id, "", model_uri), Path(rpsa.path), cfg.label):
            fisher_dir, corpus_dir = rpsa_inputs.run(dict(method), cfg, model_uri, Path(rpsa.path))
    else:
        Path(rpsa.path).mkdir(parents=True, exist_ok=True)
        write_json(Path(rpsa.path) / "rpsa.json", {"method": cfg.label, "rpsa": False})
    trainjob = None
    if nodes > 1:
        from safetax.training.multinode import trainjob_settings

        trainjob = trainjob_settings(dict(trainjob_platform), ctx.run_id, cfg.label)
    # With a run store (one pod), resumable states are copied there as they are written, so that a retry of this
    # task on another node (a preempted pod) resumes; several nodes keep theirs on the shared volume.
    mirror = None
    state_dir = None
    if store_uri and nodes <= 1 and cfg.checkpoint_every_steps >= 0:
        import tempfile

        from safetax.training.state_sync import StateMirror

        state_dir = Path(tempfile.mkdtemp(prefix="safetax-train-state-"))
        mirror = StateMirror(state_dir, f"{store_uri.rstrip('/')}/{ctx.run_id}/partial/train/{cfg.label}")
        mirror.restore()
        mirror.start()
    try:
        with stage_run("train", ctx, Path(checkpoints.path), cfg.label) as tel:
            stage.run(cfg, model_uri, Path(sft.path), Path(checkpoints.path), on_step=tel.train_progress,
                      merge_k=merge_cfg.k if merge_cfg.mode.startswith("ortho") else None,
                      fisher_dir=fisher_dir, corpus_dir=corpus_dir, gpus=gpus, nodes=nodes, trainjob=trainjob,
                      state_dir=state_dir)
    finally:
        if mirror is not None:
            mirror.stop()
    if mirror is not None:  # finished: the states are no longer needed
        mirror.discard()
    for name, value in tel.kfp_metrics().items():
        metrics.log_metric(name, value)
