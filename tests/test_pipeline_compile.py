"""The compiled pipelines and components are golden files; GPU settings sit on GPU executors only; the run shape
starts no pod without work; tasks are KFP-native (display names, retries, timeouts, caching)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from safetax.platform import PlatformConfig
from safetax.runner import compile_components, compile_pipelines

REPO_ROOT = Path(__file__).resolve().parents[1]
GOLDEN = REPO_ROOT / "pipelines"
GPU_STAGES = {"train", "generate", "judge"}


def _stage(executor: str) -> str:
    """The platform stage of a compiled executor (exec-<component>[-<n>]); execute-code is the code stage."""
    name = executor.removeprefix("exec-").rsplit("-", 1)[0] if executor[-1].isdigit() else executor.removeprefix("exec-")
    return "code" if name == "execute-code" else name


def test_compiled_pipeline_matches_golden(tmp_path: Path) -> None:
    for path in compile_pipelines(tmp_path):
        golden = GOLDEN / path.name
        # Compared as parsed YAML: KFP's header comment prints dict defaults in hash order.
        fresh, stored = list(yaml.safe_load_all(path.read_text())), list(yaml.safe_load_all(golden.read_text()))
        assert fresh == stored, f"{golden} is stale: run `make compile`"


def test_component_specs_match_golden_and_load(tmp_path: Path) -> None:
    """components/<stage>.yaml: each stage's component for users' own pipelines, kept fresh like the pipelines."""
    from kfp import components

    paths = compile_components(tmp_path)
    assert {p.name for p in paths} == {p.name for p in (REPO_ROOT / "components").glob("*.yaml")}
    for path in paths:
        golden = REPO_ROOT / "components" / path.name
        assert yaml.safe_load(path.read_text()) == yaml.safe_load(golden.read_text()), f"{golden} is stale: run `make compile`"
    train = components.load_component_from_file(str(REPO_ROOT / "components" / "train.yaml"))
    assert {"method", "model_uri", "sft", "gpus"} <= set(train.component_spec.inputs)


def test_kubernetes_settings_per_stage() -> None:
    spec, platform = yaml.safe_load_all((GOLDEN / "alignment.yaml").read_text())
    executors = spec["deploymentSpec"]["executors"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert {_stage(e) for e in executors} == {"plan", "prepare", "train", "analyze", "generate", "judge", "code", "score", "analytics",
                                              "gate", "gather-scores", "base-items"}
    for name, ex in executors.items():
        resources = ex["container"]["resources"]
        assert {"cpuRequest", "cpuLimit", "memoryRequest", "memoryLimit"} <= resources.keys()
        if _stage(name) in GPU_STAGES:
            assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
            # Per-run GPU counts: a pipeline parameter per GPU stage, defaulting to the platform's count.
            param = f"{_stage(name)}_gpus"
            assert resources["accelerator"]["resourceCount"] == f"{{{{$.inputs.parameters['pipelinechannel--{param}']}}}}"
            # A string parameter: KFP's backend resolves accelerator counts from strings only.
            assert spec["root"]["inputDefinitions"]["parameters"][param] | {"description": "", "isOptional": True} == \
                {"parameterType": "STRING", "defaultValue": "1", "description": "", "isOptional": True}
            assert k8s[name]["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
            assert k8s[name]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
            assert k8s[name]["emptyDirMounts"] == [{"volumeName": "dshm", "mountPath": "/dev/shm", "medium": "Memory", "sizeLimit": "16Gi"}]
        else:
            assert "accelerator" not in resources
            assert "nodeSelector" not in k8s.get(name, {}) and "emptyDirMounts" not in k8s.get(name, {})
        labels = k8s.get(name, {}).get("podMetadata", {}).get("labels", {})
        assert (labels.get("safetax.io/code-execution") == "true") == (_stage(name) == "code")
        assert ":latest" not in ex["container"]["image"] and ex["container"]["image"].endswith(":0.1.0")
        # GPU stages retry (preemption, a lost node) and have a deadline; a hung pod never holds GPUs forever.
        if _stage(name) in GPU_STAGES:
            assert int(k8s[name]["activeDeadlineSeconds"]) > 0


def test_platform_file_reaches_every_task(tmp_path: Path) -> None:
    platform_file = tmp_path / "platform.yaml"
    platform_file.write_text(yaml.safe_dump({
        "defaults": {"image_pull_secrets": ["regcred"], "pod_labels": {"team": "safety"}, "s3_secret": "mlpipeline-minio-artifact",
                     "env": {"SAFETAX_S3_ENDPOINT": "http://minio-service.kubeflow:9000", "SAFETAX_SANDBOX_REQUIRE": "landlock"},
                     "pipeline_root": "minio://mlpipeline/v2/artifacts"},
        "stages": {"train": {"accelerator_count": 4, "node_selector": {"pool": "h100"}, "memory_limit": "512Gi"},
                   "judge": {"accelerator_count": 0}},
    }))
    paths = {p.stem: p for p in compile_pipelines(tmp_path / "out", platform=str(platform_file))}
    assert set(paths) == {"alignment", "audit"}
    spec, platform = yaml.safe_load_all(paths["alignment"].read_text())
    assert spec["defaultPipelineRoot"] == "minio://mlpipeline/v2/artifacts"
    executors = spec["deploymentSpec"]["executors"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    train = next(e for e in executors if _stage(e) == "train")
    judge = next(e for e in executors if _stage(e) == "judge")
    assert spec["root"]["inputDefinitions"]["parameters"]["train_gpus"]["defaultValue"] == "4"
    assert executors[train]["container"]["resources"]["memoryLimit"] == 512 * 2**30 / 1e9 or \
        executors[train]["container"]["resources"]["resourceMemoryLimit"] == "512Gi"
    assert k8s[train]["nodeSelector"]["labels"] == {"pool": "h100"}
    assert "accelerator" not in executors[judge]["container"]["resources"] and "nodeSelector" not in k8s[judge]
    assert sum(_stage(name) == "code" for name in executors) == 2  # the base model's and the methods'
    for name, ex in executors.items():
        assert [p["secretName"] for p in k8s[name]["imagePullSecret"]] == ["regcred"]
        assert k8s[name]["podMetadata"]["labels"]["team"] == "safety"
        if _stage(name) == "code":  # runs model-written code: no store Secret; of the environment, the sandbox's settings only
            assert "secretAsEnv" not in k8s[name] and ex["container"]["env"] == [{"name": "SAFETAX_SANDBOX_REQUIRE", "value": "landlock"}]
            assert k8s[name]["podMetadata"]["labels"]["safetax.io/code-execution"] == "true"
            continue
        assert {"name": "SAFETAX_S3_ENDPOINT", "value": "http://minio-service.kubeflow:9000"} in ex["container"]["env"]
        secret = k8s[name]["secretAsEnv"][0]
        assert secret["secretName"] == "mlpipeline-minio-artifact"
        assert {m["envVar"] for m in secret["keyToEnv"]} == {"SAFETAX_S3_ACCESS_KEY", "SAFETAX_S3_SECRET_KEY"}
    audit, audit_platform = yaml.safe_load_all(paths["audit"].read_text())  # the audit's tasks are placed the same way
    for name, ex in audit["deploymentSpec"]["executors"].items():
        code = _stage(name) == "code"
        assert ({"name": "SAFETAX_S3_ENDPOINT", "value": "http://minio-service.kubeflow:9000"} in ex["container"].get("env", [])) != code
        assert ("secretAsEnv" in audit_platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][name]) != code
        assert audit_platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][name]["podMetadata"]["labels"]["team"] == "safety"


def test_manifests_are_versioned_by_spec_digest(tmp_path: Path) -> None:
    from safetax.runner import compile_manifests

    def version(out: Path, platform: str | None = None) -> dict:
        paths = {p.stem: p for p in compile_manifests(out, platform, namespace="kubeflow")}
        assert set(paths) == {"alignment", "audit"}
        pipeline, version = yaml.safe_load_all(paths["alignment"].read_text())
        assert (pipeline["kind"], version["kind"]) == ("Pipeline", "PipelineVersion")
        assert version["spec"]["pipelineName"] == pipeline["metadata"]["name"] == "safetax-alignment"
        return version

    a, b = version(tmp_path / "a"), version(tmp_path / "b")
    assert a["metadata"]["name"] == b["metadata"]["name"] and a["metadata"]["name"].startswith("safetax-alignment-")
    other = tmp_path / "platform.yaml"
    other.write_text("stages: {train: {accelerator_count: 2}}\n")
    assert version(tmp_path / "c", str(other))["metadata"]["name"] != a["metadata"]["name"]  # KFP rejects spec updates
    stored = yaml.safe_load_all((REPO_ROOT / "k8s" / "pipelines" / "alignment.yaml").read_text())
    assert list(stored)[1]["metadata"]["name"].removeprefix("safetax-alignment-") == a["metadata"]["name"].removeprefix("safetax-alignment-"), \
        "k8s/pipelines/alignment.yaml is stale: run `make compile`"


def test_pipeline_parameters_are_documented() -> None:
    audit = next(yaml.safe_load_all((GOLDEN / "audit.yaml").read_text()))["root"]["inputDefinitions"]["parameters"]
    assert {"audit_name", "store_uri", "checkpoint_prefix", "checkpoints", "profile", "thresholds", "baseline", "promote"} <= audit.keys()
    assert all(p.get("description") for p in audit.values())
    spec = yaml.safe_load_all((GOLDEN / "alignment.yaml").read_text()).__next__()
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert {"base_model_uri", "refusal_data_uri", "eval_sets", "methods", "epochs", "seed"} <= params.keys()
    assert all(p.get("description") for p in params.values())
    assert not params["base_model_uri"].get("isOptional")  # required in the UI
    assert params["methods"]["defaultValue"][0]["method"] == "lora"


def test_platform_config_from_dict_and_errors() -> None:
    import pytest

    from safetax.config import ConfigError

    cfg = PlatformConfig.from_dict({"stages": {"train": {"accelerator_count": 2, "node_selector": {"pool": "a100"},
                                                         "tolerations": [{"key": "gpu", "effect": "NoExecute"}]},
                                               "score": {"accelerator_count": 1, "pod_labels": {"team": "x"}},
                                               "code": {"pod_labels": {"team": "x"}}}})
    assert cfg.settings("train").accelerator_count == 2 and cfg.settings("train").shm_size == "16Gi"
    assert cfg.settings("score").gpu and cfg.settings("score").pod_labels == {"team": "x"}
    assert cfg.settings("code").pod_labels == {"safetax.io/code-execution": "true", "team": "x"}
    assert not cfg.settings("prepare").gpu
    with pytest.raises(ConfigError) as err:
        PlatformConfig.from_dict({"stages": {"training": {}, "train": {"accelerator_count": "two", "memory_limit": "lots", "gpus": 1}},
                                  "defaults": {"env": {"SAFETAX_S3_SECRET_KEY": "x"}}})
    msg = str(err.value)
    assert "`stages key` must be one of 'plan', 'prepare'" in msg and "stages.train.gpus" in msg
    assert "`stages.train.accelerator_count` must be an integer >= 0, got 'two'" in msg
    assert "stages.train.memory_limit" in msg and "defaults.env.SAFETAX_S3_SECRET_KEY" in msg


@pytest.mark.parametrize("pipeline", ["alignment", "audit"])
def test_every_dag_input_a_task_reads_is_wired(pipeline: str) -> None:
    """KFP wires a ParallelFor's inputs from task arguments only: a per-run setting used just in a
    resource setter would reach the loop unresolved (on a cluster as in the local runner)."""
    spec = next(yaml.safe_load_all((GOLDEN / f"{pipeline}.yaml").read_text()))
    dags = {"root": spec["root"], **{k: v for k, v in spec["components"].items() if "dag" in v}}
    for name, comp in dags.items():
        defined = set(comp.get("inputDefinitions", {}).get("parameters", {}))
        for task_name, task in comp["dag"]["tasks"].items():
            for param in task.get("inputs", {}).get("parameters", {}).values():
                ref = param.get("componentInputParameter")
                assert ref is None or ref in defined, f"{name}/{task_name} reads {ref}, which {name} does not define"


def _tasks(spec: dict) -> dict[str, dict]:
    """Every task of every DAG, by task name."""
    out = {}
    for comp in [spec["root"], *spec["components"].values()]:
        out |= comp.get("dag", {}).get("tasks", {})
    return out


def test_no_gpu_pod_without_work_and_plan_first() -> None:
    """RPSA's corpus and Fisher run inside an RPSA method's train pod, merging inside the per-method analyze pod:
    no GPU executor exists for a stage that only some methods need, and every GPU task waits for the CPU plan."""
    spec, _ = yaml.safe_load_all((GOLDEN / "alignment.yaml").read_text())
    gpu = {e for e, ex in spec["deploymentSpec"]["executors"].items() if "accelerator" in ex["container"]["resources"]}
    assert {_stage(e) for e in gpu} == GPU_STAGES
    tasks = _tasks(spec)
    assert not any(_stage(f"exec-{t}") in {"corpus", "fisher", "merge"} for t in tasks)

    def upstream(name: str, seen: set[str]) -> set[str]:
        task = tasks[name]
        deps = set(task.get("dependentTasks", []))
        for group in task.get("inputs", {}).get("artifacts", {}).values():
            deps.add(group.get("taskOutputArtifact", {}).get("producerTask", ""))
        for p in task.get("inputs", {}).get("parameters", {}).values():
            deps.add(p.get("taskOutputParameter", {}).get("producerTask", ""))
        deps.discard("")
        for d in deps - seen:
            seen |= {d} | upstream(d, seen | {d})
        return seen

    loop = next(t for t, task in spec["root"]["dag"]["tasks"].items() if "parameterIterator" in task)
    for name, task in tasks.items():
        stage = _stage(task["componentRef"]["name"].replace("comp-", "exec-"))
        if stage in GPU_STAGES and name in spec["root"]["dag"]["tasks"]:
            assert "plan" in upstream(name, set()), f"{name} can start before the plan validated the run"
    assert "plan" in upstream(loop, set())  # the loop iterates over the plan's method items


def test_tasks_are_kfp_native() -> None:
    spec, platform = yaml.safe_load_all((GOLDEN / "alignment.yaml").read_text())
    tasks = _tasks(spec)
    for name, task in tasks.items():
        if "componentRef" in task and not task["componentRef"]["name"].startswith("comp-for-loop"):
            assert task["taskInfo"]["name"] != name or not name[-1].isdigit(), f"{name} has no display name"
    names = {t["taskInfo"]["name"] for t in tasks.values()}
    assert {"plan: validate the run", "generate (base model)", "generate (per checkpoint)", "train (per method)", "safety gate"} <= names
    # The run id never enters a cache key: no task takes the job id placeholder as an input.
    assert "pipeline_job_uuid" not in (GOLDEN / "alignment.yaml").read_text()
    assert "pipeline_job_uuid" not in (GOLDEN / "audit.yaml").read_text()
    by_display = {t["taskInfo"]["name"]: t for t in tasks.values()}
    assert by_display["safety gate"]["cachingOptions"] == {} or not by_display["safety gate"]["cachingOptions"].get("enableCache")
    assert by_display["train (per method)"]["cachingOptions"]["enableCache"] is True
    assert by_display["train (per method)"]["retryPolicy"]["maxRetryCount"] == 2
    audit = {t["taskInfo"]["name"]: t for t in _tasks(next(yaml.safe_load_all((GOLDEN / "audit.yaml").read_text()))).values()}
    assert not audit["audit-plan: new checkpoints"]["cachingOptions"].get("enableCache")
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["eval_sets"]["defaultValue"][0] == {"benchmark": "strongreject"}  # an example in the UI


def test_platform_cluster_profile_and_secrets(tmp_path: Path) -> None:
    """A cluster profile: vLLM by default, a parallelism limit, a scratch volume, HF_TOKEN from a Secret on the
    stages that load models and on no other (never the scoring pod, which runs model-written code)."""
    platform_file = tmp_path / "platform.yaml"
    platform_file.write_text(yaml.safe_dump({
        "defaults": {"generation_backend": "vllm", "max_parallel_methods": 2, "hf_token_secret": "hf-token",
                     "security_context": {"run_as_user": 1000, "run_as_non_root": True}},
        "stages": {"train": {"scratch_size": "200Gi", "timeout": 3600, "retries": 1}},
    }))
    paths = {p.stem: p for p in compile_pipelines(tmp_path / "out", platform=str(platform_file))}
    spec, platform = yaml.safe_load_all(paths["alignment"].read_text())
    assert spec["root"]["inputDefinitions"]["parameters"]["generation_backend"]["defaultValue"] == "vllm"
    loops = {t["parameterIterator"]["items"]["inputParameter"]: t for t in spec["root"]["dag"]["tasks"].values() if "parameterIterator" in t}
    assert loops["pipelinechannel--plan-Output"]["iteratorPolicy"]["parallelismLimit"] == 2
    assert "iteratorPolicy" not in loops["pipelinechannel--base-items-Output"]  # max_parallel_evaluations: 0 = no limit
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name in spec["deploymentSpec"]["executors"]:
        secrets = {s["secretName"]: s for s in k8s.get(name, {}).get("secretAsEnv", [])}
        loads_models = _stage(name) in {"plan", "prepare", "train", "analyze", "generate", "judge"}
        assert ("hf-token" in secrets) == loads_models, name
        if loads_models:
            assert secrets["hf-token"]["keyToEnv"] == [{"secretKey": "token", "envVar": "HF_TOKEN"}]
    train = next(e for e in k8s if _stage(e) == "train")
    assert int(k8s[train]["activeDeadlineSeconds"]) == 3600
    assert all(k8s[e]["securityContext"] == {"runAsUser": "1000", "runAsNonRoot": True} or
               k8s[e]["securityContext"] == {"runAsUser": 1000, "runAsNonRoot": True} for e in k8s)
    [volume] = k8s[train]["genericEphemeralVolume"]
    assert volume["mountPath"] == "/scratch" and volume["size"] == "200Gi"
    env = {e["name"]: e["value"] for e in spec["deploymentSpec"]["executors"][train]["container"]["env"]}
    assert env["SAFETAX_CACHE"].startswith("/scratch") and "HF_TOKEN" not in env


def test_platform_rejects_folded_stages_and_token_values() -> None:
    from safetax.config import ConfigError

    with pytest.raises(ConfigError) as err:
        PlatformConfig.from_dict({"stages": {"fisher": {"accelerator_count": 1}, "train": {"retry_backoff": "soon", "timeout": -1}},
                                  "defaults": {"env": {"HF_TOKEN": "hf_x"}, "generation_backend": "tgi"}})
    msg = str(err.value)
    assert "stages.fisher" in msg and "train" in msg and "hf_x" not in msg
    assert "stages.train.retry_backoff" in msg and "stages.train.timeout" in msg
    assert "defaults.env.HF_TOKEN" in msg and "defaults.generation_backend" in msg


def test_factories_hold_no_global_state(tmp_path: Path) -> None:
    """Two platforms in one process give two different pipelines, each as its platform says, in any order."""
    from safetax.platform import load_platform
    from safetax.runner import pipeline

    four = tmp_path / "four.yaml"
    four.write_text("stages: {train: {accelerator_count: 4}}\n")
    a, b, c = pipeline("alignment", str(four)), pipeline("alignment", None), pipeline("alignment", load_platform(str(four)))
    default = lambda p: p.pipeline_spec.root.input_definitions.parameters["train_gpus"].default_value.string_value  # noqa: E731
    assert (default(a), default(b), default(c)) == ("4", "1", "4")


@pytest.mark.parametrize("path", sorted((GOLDEN / "params").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_parameter_files_fit_their_pipeline(path: Path) -> None:
    """Every key of a ready-to-run parameter file is a parameter of its pipeline, and every required one is set."""
    params = yaml.safe_load(path.read_text())
    name = "audit" if "audit_name" in params else "alignment"
    inputs = next(yaml.safe_load_all((GOLDEN / f"{name}.yaml").read_text()))["root"]["inputDefinitions"]["parameters"]
    assert set(params) <= set(inputs), set(params) - set(inputs)
    assert {k for k, v in inputs.items() if not v.get("isOptional")} <= set(params)
    assert all(isinstance(params[k], str) for k in params if k.endswith("_gpus"))


def test_every_checkpoint_is_evaluated_in_a_chain_of_its_own(tmp_path: Path) -> None:
    """Fan-out: within a method's loop, analyze lists the method's checkpoints and merge candidates, and a nested loop
    runs generate -> judge -> code -> score for each (generate gets the loop item as `target`); a gather task hands
    one score output per method to analytics and the gate. The platform's max_parallel_evaluations is the nested
    loop's parallelism."""
    spec = next(yaml.safe_load_all((GOLDEN / "alignment.yaml").read_text()))
    comps = spec["components"]
    method_loop = next(c["dag"]["tasks"] for name, c in comps.items() if name.startswith("comp-for-loop") and "train" in c["dag"]["tasks"])
    assert {"train", "analyze"} <= method_loop.keys() and any(t.startswith("gather-scores") for t in method_loop)
    [inner] = [t for t in method_loop.values() if "parameterIterator" in t]
    assert inner["parameterIterator"]["items"] == {"inputParameter": "pipelinechannel--analyze-Output"}
    assert "iteratorPolicy" not in inner  # 0 = every checkpoint at once
    chain = comps[inner["componentRef"]["name"]]["dag"]["tasks"]
    assert {_stage(f"exec-{t}") for t in chain} == {"generate", "judge", "code", "score"}
    gen = next(t for name, t in chain.items() if name.startswith("generate"))
    assert gen["inputs"]["parameters"]["target"] == {"componentInputParameter": "pipelinechannel--analyze-Output-loop-item"}
    root = spec["root"]["dag"]["tasks"]
    assert root["analytics"]["inputs"]["artifacts"]["scores"]["taskOutputArtifact"]["producerTask"].startswith("for-loop")
    # The base model: its chains (one, or one per eval shard) in a loop of their own over base-items, then a gather.
    [base_loop] = [t for t in root.values() if t.get("parameterIterator", {}).get("items") ==
                   {"inputParameter": "pipelinechannel--base-items-Output"}]
    base_chain = comps[base_loop["componentRef"]["name"]]["dag"]["tasks"]
    assert {_stage(f"exec-{t}") for t in base_chain} == {"generate", "judge", "code", "score"}
    base_gather = root["analytics"]["inputs"]["artifacts"]["base_scores"]["taskOutputArtifact"]["producerTask"]
    assert base_gather.startswith("gather-scores") and root["base-items"]["inputs"]["parameters"]["eval_shards"] == \
        {"componentInputParameter": "eval_shards"}

    platform_file = tmp_path / "platform.yaml"
    platform_file.write_text(yaml.safe_dump({"defaults": {"max_parallel_evaluations": 3}}))
    paths = {p.stem: p for p in compile_pipelines(tmp_path / "out", platform=str(platform_file))}
    comps = next(yaml.safe_load_all(paths["alignment"].read_text()))["components"]
    method_loop = next(c["dag"]["tasks"] for name, c in comps.items() if name.startswith("comp-for-loop") and "train" in c["dag"]["tasks"])
    [inner] = [t for t in method_loop.values() if "parameterIterator" in t]
    assert inner["iteratorPolicy"] == {"parallelismLimit": 3}
