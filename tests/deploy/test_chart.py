"""The Helm chart, rendered by real Helm for its defaults and every ci/*-values.yaml: lint, schema,
every object valid for Kubernetes, and the values reaching the platform config the registrar compiles with."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from safetax.platform import BUILTIN, CODE_EXECUTION_LABEL, PlatformConfig, Toleration

CHART = Path(__file__).resolve().parents[2] / "helm" / "safetax"
STANDARD_LABELS = ("helm.sh/chart", "app.kubernetes.io/name", "app.kubernetes.io/instance",
                   "app.kubernetes.io/managed-by", "app.kubernetes.io/version")


def platform_of(rendered: Any) -> PlatformConfig:
    """The platform.yaml of the rendered ConfigMap, parsed by the compiler's own loader."""
    data = rendered.one("ConfigMap", "platform")["data"]["platform.yaml"]
    return PlatformConfig.from_dict(yaml.safe_load(data), source="rendered platform ConfigMap")


def test_lint_is_clean(values: dict[str, Any]) -> None:
    helm = pytest.importorskip("helm_python")
    report = helm.lint(str(CHART), values, strict=True, kube_version="v1.30.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # 2 warning, 3 error
    assert not problems and not report["errors"], problems or report["errors"]


def test_values_file_passes_the_schema(chart: Any, values: dict[str, Any]) -> None:
    chart.validate_schema(values)


def test_every_rendered_object_validates(render: Any, validate: Any, values: dict[str, Any]) -> None:
    rendered = render(values)
    assert rendered.objects
    for template, doc in rendered.objects:
        validate(doc)
        labels = doc["metadata"].get("labels", {})
        missing = [key for key in STANDARD_LABELS if key not in labels]
        assert not missing, f"{template}: {doc['kind']} lacks the labels {missing}"
    names = [(doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"]) for _, doc in rendered.objects]
    assert len(names) == len(set(names)), f"duplicate objects: {names}"
    assert "safetax" in rendered.notes


def test_platform_configmap_is_a_valid_platform_config(render: Any, values: dict[str, Any]) -> None:
    rendered = render(values)
    platform = platform_of(rendered)
    assert platform.env["SAFETAX_S3_ENDPOINT"] == values.get("s3", {}).get("endpoint", "http://minio-service.kubeflow:9000")
    assert re.fullmatch(r"[a-z0-9.-]+:[0-9]+", platform.env["SAFETAX_PUSHGATEWAY"])
    assert platform.settings("code").pod_labels[CODE_EXECUTION_LABEL[0]] == CODE_EXECUTION_LABEL[1]
    assert CODE_EXECUTION_LABEL[0] not in platform.settings("score").pod_labels  # the score stage runs no model code


def test_defaults_fit_a_standard_kubeflow_pipelines(render: Any) -> None:
    rendered = render({}, namespace="kubeflow")
    platform = platform_of(rendered)
    assert platform.env == {"SAFETAX_S3_ENDPOINT": "http://minio-service.kubeflow:9000", "SAFETAX_S3_REGION": "us-east-1",
                            "SAFETAX_PUSHGATEWAY": "safetax-pushgateway.kubeflow:9091"}
    assert platform.s3_secret == "mlpipeline-minio-artifact"
    assert platform.secret_env() == {"accesskey": "SAFETAX_S3_ACCESS_KEY", "secretkey": "SAFETAX_S3_SECRET_KEY"}
    assert platform.stages == BUILTIN  # no stage overridden: the compiler's own placement
    assert platform.generation_backend == "vllm"  # a cluster generates with vLLM (the platform's own default is hf)
    assert platform.hf_token_secret == "" and "SAFETAX_DATA_DIR" not in platform.env
    # The address the stages push to is the bundled Pushgateway's Service.
    service = rendered.one("Service", "pushgateway")
    host, port = platform.env["SAFETAX_PUSHGATEWAY"].split(":")
    assert host == f"{service['metadata']['name']}.{service['metadata']['namespace']}"
    assert int(port) == service["spec"]["ports"][0]["port"]
    job = rendered.one("Job", "registrar")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/safetax/safetax-cpu:0.1.0"
    assert container["command"] + container["args"] == [
        "safetax", "register", "--mode", "api", "--platform", "/etc/safetax/platform.yaml",
        "--host", "http://ml-pipeline.kubeflow:8888"]
    assert rendered.one("NetworkPolicy")["metadata"]["namespace"] == "kubeflow"
    # The notes name both pipelines and the KFP backend the chart needs.
    assert '"safetax-alignment" and "safetax-audit"' in rendered.notes
    assert "Kubeflow Pipelines backend 2.15.0 or newer" in rendered.notes
    # Optional features that need the Prometheus Operator or Grafana are off by default.
    assert not rendered.kinds() & {"ServiceMonitor", "PrometheusRule"}
    assert not [c for c in rendered.of_kind("ConfigMap") if "grafana_dashboard" in c["metadata"]["labels"]]


def test_custom_node_pools_reach_the_platform_config(render: Any) -> None:
    rendered = render(yaml.safe_load((CHART / "ci" / "custom-node-pools-values.yaml").read_text()))
    platform = platform_of(rendered)
    train = platform.settings("train")
    assert train.accelerator_count == 4 and train.accelerator_type == "nvidia.com/gpu"
    assert train.node_selector == {"cloud.google.com/gke-nodepool": "h100-train",
                                   "cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert train.tolerations == (Toleration("nvidia.com/gpu", "Exists", "", "NoSchedule"),
                                 Toleration("dedicated", "Equal", "training", "NoSchedule"))
    assert (train.cpu_request, train.cpu_limit, train.memory_request, train.memory_limit, train.shm_size) == (
        "32", "48", "400Gi", "600Gi", "64Gi")
    assert (train.scratch_size, train.retries, train.retry_backoff, train.timeout) == ("200Gi", 3, "5m", 172800)
    generate = platform.settings("generate")
    assert generate.accelerator_count == 2 and generate.node_selector == {"cloud.google.com/gke-nodepool": "l4-inference"}
    assert generate.scratch_size == "100Gi"
    assert generate.memory_limit == BUILTIN["generate"].memory_limit  # unset keys keep the built-in default
    assert (generate.retries, generate.retry_backoff, generate.timeout) == (
        BUILTIN["generate"].retries, BUILTIN["generate"].retry_backoff, BUILTIN["generate"].timeout)
    judge = platform.settings("judge")  # a GPU stage moved to CPU, its retries and timeout switched off
    assert not judge.gpu and judge.node_selector == {} and judge.tolerations == () and judge.shm_size == ""
    assert (judge.retries, judge.timeout) == (0, 0)
    score = platform.settings("score")
    assert (score.cpu_request, score.cpu_limit, score.memory_limit) == ("8", "16", "32Gi")
    assert score.pod_labels == {"sandbox": "true"}
    # The code stage keeps the code-execution label, whatever else the values give it.
    assert platform.settings("code").pod_labels[CODE_EXECUTION_LABEL[0]] == CODE_EXECUTION_LABEL[1]
    assert platform.pod_labels == {"team": "safety"}
    assert platform.env["HF_HUB_OFFLINE"] == "1" and platform.env["SAFETAX_DATA_DIR"] == "s3://safetax/data"
    assert (platform.hf_token_secret, platform.hf_token_secret_key) == ("hf-token", "hf_token")
    assert (platform.generation_backend, platform.scratch_storage_class, platform.max_parallel_methods) == ("hf", "premium-rwo", 2)
    assert platform.settings("prepare") == BUILTIN["prepare"]
    # Only the Secret's name and key reach the ConfigMap, and the notes say where the Secret must be.
    data = rendered.one("ConfigMap", "platform")["data"]["platform.yaml"]
    assert "HF_TOKEN" not in data and "hf-token" in data
    assert 'key "hf_token" of Secret hf-token' in rendered.notes


def test_stages_of_earlier_releases_name_where_their_settings_go(render: Any, helm_error: Any) -> None:
    """corpus, fisher and merge were folded into train and analyze: left empty they are ignored, set they fail."""
    assert platform_of(render({"stages": {"fisher": {}, "merge": {}}})).stages == BUILTIN
    message = helm_error({"stages": {"fisher": {"gpus": 2}}})
    assert "stages.fisher: that stage of earlier releases is gone, its work now runs in train" in message
    assert "stages.merge" in helm_error({"stages": {"merge": {"resources": {"limits": {"memory": "256Gi"}}}}})


def test_data_dir_must_be_an_s3_prefix_or_an_absolute_path(render: Any, assert_rejected: Any) -> None:
    for good in ("s3://safetax/data", "s3://safetax", "/data/safetax"):
        assert platform_of(render({"dataDir": good})).env["SAFETAX_DATA_DIR"] == good
    for bad in ("data/safetax", "http://minio:9000/safetax", "s3:/safetax", "gs://bucket/data"):
        assert_rejected({"dataDir": bad}, ["/dataDir"])


@pytest.mark.parametrize(("mode", "namespace"), [("customResources", "safetax"), ("customResources", "kubeflow"),
                                                 ("api", "kubeflow"), ("none", "kubeflow")])
def test_registration_modes(render: Any, validate: Any, mode: str, namespace: str) -> None:
    rendered = render({"registration": {"mode": mode}}, namespace=namespace)
    if mode == "none":
        assert not rendered.kinds() & {"Role", "RoleBinding"}
        assert not [job for job in rendered.of_kind("Job") if job["metadata"]["labels"]["app.kubernetes.io/component"] == "registrar"]
        # The schedule-sync Job still runs (scheduleSync.enabled), as the ServiceAccount it names.
        sync = rendered.one("Job", "schedule-sync")["spec"]["template"]["spec"]
        assert sync["serviceAccountName"] == rendered.one("ServiceAccount")["metadata"]["name"]
        return
    job = rendered.one("Job", "registrar")
    pod = job["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    sa = rendered.one("ServiceAccount")
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    if mode == "api":
        assert args[args.index("--mode") + 1] == "api" and args[args.index("--host") + 1] == "http://ml-pipeline.kubeflow:8888"
        assert not rendered.kinds() & {"Role", "RoleBinding"}
        assert pod["automountServiceAccountToken"] is False and sa["automountServiceAccountToken"] is False
        assert_kfp_token(pod)  # the KFP API's own token, not the Kubernetes API's
        return
    assert args[args.index("--mode") + 1] == "cr" and args[args.index("--namespace") + 1] == "kubeflow"
    assert pod["automountServiceAccountToken"] is True
    assert not [v for v in pod["volumes"] if "projected" in v]  # the Kubernetes API takes the automounted token
    role, binding = rendered.one("Role"), rendered.one("RoleBinding")
    # The custom resources live in KFP's namespace, whatever the release's namespace.
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "kubeflow"
    assert role["rules"] == [{"apiGroups": ["pipelines.kubeflow.org"], "resources": ["pipelines", "pipelineversions"],
                              "verbs": ["get", "list", "create"]},
                             {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["ml-pipeline"], "verbs": ["get"]}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": namespace}]
    for _, doc in rendered.objects:
        validate(doc)


def assert_kfp_token(pod: dict[str, Any]) -> None:
    """The pod has a projected token for the KFP API where kfp and safetax look for it."""
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    token = Path(env["KF_PIPELINES_SA_TOKEN_PATH"])
    assert token == Path("/var/run/secrets/kubeflow/pipelines/token")  # kfp.client.KF_PIPELINES_SA_TOKEN_PATH
    mount = next(m for m in container["volumeMounts"] if Path(m["mountPath"]) == token.parent)
    assert mount["readOnly"] is True
    (source,) = next(v for v in pod["volumes"] if v["name"] == mount["name"])["projected"]["sources"]
    assert source["serviceAccountToken"]["audience"] == "pipelines.kubeflow.org"
    assert source["serviceAccountToken"]["path"] == token.name
    assert 600 <= source["serviceAccountToken"]["expirationSeconds"] <= 86400


def test_registrar_token_can_be_switched_off(render: Any) -> None:
    pod = render({"registration": {"kfpServiceAccountToken": False}}).one("Job", "registrar")["spec"]["template"]["spec"]
    assert not [v for v in pod["volumes"] if "projected" in v]
    assert "KF_PIPELINES_SA_TOKEN_PATH" not in {e["name"] for e in pod["containers"][0]["env"]}


def test_registrar_is_a_well_behaved_hook_job(render: Any, values: dict[str, Any]) -> None:
    rendered = render(values)
    jobs = [job for job in rendered.of_kind("Job") if job["metadata"]["labels"]["app.kubernetes.io/component"] == "registrar"]
    if values.get("registration", {}).get("mode") == "none":
        assert not jobs
        return
    (job,) = jobs
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "post-install,post-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert spec["backoffLimit"] >= 0 and spec["ttlSecondsAfterFinished"] > 0 and spec["activeDeadlineSeconds"] > 0
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True and sc["capabilities"]["drop"] == ["ALL"]
    assert set(container["resources"]) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    # --platform is the rendered ConfigMap's key, mounted read-only.
    args = container["args"]
    platform_path = Path(args[args.index("--platform") + 1])
    mount = next(m for m in container["volumeMounts"] if Path(m["mountPath"]) == platform_path.parent)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    configmap = rendered.one("ConfigMap", "platform")
    assert mount["readOnly"] is True and volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert platform_path.name in configmap["data"]
    env = {e["name"]: e["value"] for e in container["env"]}
    registry = values.get("image", {}).get("registry", "ghcr.io/safetax")
    assert env["SAFETAX_IMAGE_REGISTRY"] == registry
    assert container["image"] == f"{registry}/safetax-cpu:{values.get('image', {}).get('tag') or '0.1.0'}"
    # image.tag reaches the compiled stage images; unset, the tag baked into the registrar image does.
    assert env.get("SAFETAX_IMAGE_TAG") == (values.get("image", {}).get("tag") or None)
    # A changed platform config changes the pod template (the checksum annotation).
    other = render({**values, "podLabels": {"changed": "yes"}}).one("Job", "registrar")
    assert other["spec"]["template"]["metadata"]["annotations"] != job["spec"]["template"]["metadata"]["annotations"]


def test_pushgateway_and_its_servicemonitor(render: Any) -> None:
    rendered = render({"serviceMonitor": {"enabled": True}})
    deployment, service = rendered.one("Deployment", "pushgateway"), rendered.one("Service", "pushgateway")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert re.fullmatch(r"docker\.io/prom/pushgateway:v\d+\.\d+\.\d+", container["image"])
    assert pod["securityContext"]["runAsNonRoot"] is True and container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert set(container["resources"]) == {"requests", "limits"}
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["selector"] == selector
    monitor = rendered.one("ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["honorLabels"] is True
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_external_pushgateway(render: Any, helm_error: Any) -> None:
    rendered = render({"pushgateway": {"enabled": False, "address": "pushgateway.monitoring:9091"},
                       "serviceMonitor": {"enabled": True}})
    assert not rendered.of_kind("Deployment") and not rendered.of_kind("Service") and not rendered.of_kind("ServiceMonitor")
    assert platform_of(rendered).env["SAFETAX_PUSHGATEWAY"] == "pushgateway.monitoring:9091"
    message = helm_error({"pushgateway": {"enabled": False}})
    assert "/pushgateway" in message and "address" in message


@pytest.mark.parametrize(("values", "expected"), [
    ({"stages": {"train": {"gpus": "two"}}}, ["/stages/train/gpus", "integer"]),
    ({"stages": {"generate": {"gpus": -1}}}, ["/stages/generate/gpus", "minimum"]),
    ({"stages": {"train": {"gpus": 1.5}}}, ["/stages/train/gpus", "integer"]),
    ({"stages": {"train": {"gpu": 2}}}, ["/stages/train", "'gpu'"]),
    ({"stages": {"trian": {"gpus": 2}}}, ["/stages", "'trian'"]),
    ({"stages": {"train": {"resources": {"limits": {"memory": "lots"}}}}}, ["/stages/train/resources/limits/memory"]),
    ({"stages": {"train": {"tolerations": [{"key": "k", "operator": "Maybe"}]}}}, ["/stages/train/tolerations/0/operator"]),
    ({"registration": {"mode": "kubectl"}}, ["/registration/mode", "customResources"]),
    ({"extraEnv": {"SAFETAX_S3_SECRET_KEY": "x"}}, ["/extraEnv"]),
    ({"image": {"registry": "https://ghcr.io/safetax"}}, ["/image/registry"]),
    ({"prometheusRule": {"safetyScore": {"threshold": 80, "for": "5m", "severity": "warning"}}},
     ["/prometheusRule/safetyScore/threshold", "maximum"]),
    ({"prometheusRule": {"reasoningDrop": {"threshold": 0.1, "for": "five minutes", "severity": "warning"}}},
     ["/prometheusRule/reasoningDrop/for"]),
    ({"pushgateway": {"image": {"tag": "latest"}}}, ["/pushgateway/image/tag"]),
    ({"unknownTopLevel": True}, ["'unknownTopLevel'"]),
    ({"extraEnv": {"HF_TOKEN": "hf_x"}}, ["/extraEnv"]),  # a token never goes into values or a ConfigMap
    ({"extraEnv": {"AWS_SECRET_ACCESS_KEY": "x"}}, ["/extraEnv"]),
    ({"extraEnv": {"SAFETAX_DATA_DIR": "/data"}}, ["/extraEnv"]),  # dataDir is the key for it
    ({"huggingface": {"tokenSecret": {"name": "HF Token"}}}, ["/huggingface/tokenSecret/name"]),
    ({"huggingface": {"tokenSecret": {"name": "hf", "key": ""}}}, ["/huggingface/tokenSecret/key"]),
    ({"huggingface": {"token": "hf_x"}}, ["/huggingface", "'token'"]),
    ({"generationBackend": "tgi"}, ["/generationBackend", "vllm"]),
    ({"stages": {"train": {"retries": -1}}}, ["/stages/train/retries", "minimum"]),
    ({"stages": {"train": {"retryBackoff": "1 minute"}}}, ["/stages/train/retryBackoff"]),
    ({"stages": {"train": {"retryBackoff": 60}}}, ["/stages/train/retryBackoff"]),
    ({"stages": {"generate": {"timeoutSeconds": 1.5}}}, ["/stages/generate/timeoutSeconds", "integer"]),
    ({"stages": {"train": {"scratchSize": "lots"}}}, ["/stages/train/scratchSize"]),
    ({"stages": {"train": {"ephemeralStorage": "200Gi"}}}, ["/stages/train", "'ephemeralStorage'"]),
    ({"scratchStorageClass": "Fast SSD"}, ["/scratchStorageClass"]),
    ({"maxParallelMethods": -1}, ["/maxParallelMethods"]),
    ({"kfp": {"namespace": "kubeflow", "minBackendVersion": "two"}}, ["/kfp/minBackendVersion"]),
])
def test_bad_values_are_rejected_naming_the_value(assert_rejected: Any, values: dict[str, Any], expected: list[str]) -> None:
    assert_rejected(values, expected)


def test_dashboard_configmap(render: Any) -> None:
    rendered = render({"dashboard": {"enabled": True, "namespace": "monitoring", "additionalLabels": {"grafana_dashboard": "0"}}})
    configmap = next(c for c in rendered.of_kind("ConfigMap") if c["metadata"]["name"].endswith("-dashboard"))
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"  # the sidecar's label cannot be overridden
    (body,) = configmap["data"].values()
    assert body == (CHART / "dashboards" / "safetax.json").read_text().rstrip("\n")


def _values_lines() -> list[tuple[int, int, str, str]]:
    """(line number, indent, key, comment above) for every key of values.yaml."""
    rows, comment = [], ""
    for number, line in enumerate((CHART / "values.yaml").read_text().splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("#"):
            comment = comment + stripped + "\n" if comment or stripped.startswith("# --") else ""
            continue
        match = re.match(r"^(\s*)([A-Za-z_][\w.-]*):", line)
        if match:
            rows.append((number, len(match.group(1)), match.group(2), comment))
        if stripped:
            comment = ""
    return rows


def test_every_value_is_documented() -> None:
    """helm-docs style: every key has a `# --` comment, lies inside a documented block, or only groups such keys."""
    rows = _values_lines()
    inside = _documented_blocks(rows)
    undocumented = []
    for i, (number, indent, key, comment) in enumerate(rows):
        groups = i + 1 < len(rows) and rows[i + 1][1] > indent
        if not (comment.startswith("# --") or number in inside or groups):
            undocumented.append(f"values.yaml:{number}: {key}")
    assert not undocumented, "values without a `# --` comment:\n" + "\n".join(undocumented)


def _documented_blocks(rows: list[tuple[int, int, str, str]]) -> set[int]:
    """Line numbers of keys nested under a key that has a `# --` comment."""
    inside: set[int] = set()
    for i, (_, indent, _, comment) in enumerate(rows):
        if not comment.startswith("# --"):
            continue
        for number, child_indent, _, _ in rows[i + 1:]:
            if child_indent <= indent:
                break
            inside.add(number)
    return inside


@pytest.mark.parametrize(("kind", "mutate", "expected"), [
    ("Deployment", lambda d: d["spec"]["template"]["spec"]["containers"][0].update(imagePullpolicy="Always"), "imagePullpolicy"),
    ("Job", lambda d: d["spec"].update(backoffLimit="2"), "backoffLimit"),
    ("ServiceMonitor", lambda d: d["spec"]["endpoints"][0].update(honorlabels=True), "honorlabels"),
    ("PrometheusRule", lambda d: d["spec"]["groups"][0]["rules"][0].pop("expr"), "expr"),
    ("PrometheusRule", lambda d: d["spec"]["groups"][0]["rules"][0].update({"for": "5 minutes"}), "for"),
    ("ConfigMap", lambda d: d.update(kind="Widget", apiVersion="example.com/v1"), "no schema"),
])
def test_validator_rejects_bad_objects(render: Any, validate: Any, kind: str, mutate: Any, expected: str) -> None:
    """The validation above can fail: a typo, a wrong type, a missing field or an unknown kind is an error."""
    rendered = render({"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}})
    doc = rendered.one(kind, {"ConfigMap": "platform", "Job": "registrar"}.get(kind))
    validate(doc)
    mutate(doc)
    with pytest.raises(AssertionError, match=expected):
        validate(doc)


def test_pushgateway_persistence_and_retention(render: Any, validate: Any) -> None:
    rendered = render({"pushgateway": {"persistence": {"enabled": True, "size": "2Gi"}, "prune": {"olderThan": "3d"}}})
    deployment = rendered.one("Deployment", "pushgateway")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "--persistence.file=/data/pushgateway.db" in container["args"]
    assert container["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
    claim = rendered.one("PersistentVolumeClaim", "pushgateway")
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert deployment["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    cron = rendered.one("CronJob", "pushgateway-prune")
    [prune] = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert prune["command"] == ["safetax"] and prune["args"][:2] == ["metrics", "prune"]
    assert prune["args"][-2:] == ["--older-than", "3d"] and prune["args"][3].endswith(":9091")
    for _, doc in rendered.objects:
        validate(doc)
    default = render()
    assert "PersistentVolumeClaim" not in default.kinds() and "CronJob" in default.kinds()
    with pytest.raises(Exception, match="olderThan"):
        render({"pushgateway": {"prune": {"olderThan": "a week"}}})


def test_cluster_profile_judges_on_vllm_with_the_compilers_engine_defaults(render: Any) -> None:
    platform = platform_of(render())
    assert (platform.generation_backend, platform.judge_backend, platform.vllm) == ("vllm", "vllm", {})
    engine = platform.engine_settings()
    assert (engine.judge_backend, engine.lora_serving, engine.max_model_len, engine.tokens_per_second) == ("vllm", "auto", 0, 5000.0)


def test_vllm_values_reach_the_engine_settings(render: Any) -> None:
    values = {"judgeBackend": "hf", "tokensPerSecond": 8000,
              "vllm": {"maxModelLen": 40960, "gpuMemoryUtilization": 0.85, "maxLoraRank": 128, "loraServing": "merge",
                       "judgeMaxModelLen": 16384, "adapterSlowdown": 0.3, "mergeBytesPerSecond": 2000000000,
                       "engineStartSeconds": 90}}
    platform = platform_of(render(values))
    engine = platform.engine_settings()
    assert engine.to_dict() == {"max_model_len": 40960, "gpu_memory_utilization": 0.85, "max_lora_rank": 128,
                                "lora_serving": "merge", "judge_backend": "hf", "judge_max_model_len": 16384,
                                "adapter_slowdown": 0.3, "merge_bytes_per_second": 2e9, "engine_start_seconds": 90,
                                "tokens_per_second": 8000}
    assert isinstance(engine.max_model_len, int) and isinstance(engine.max_lora_rank, int)  # not 40960.0: vLLM wants ints
    # Only the keys set are rendered: the others keep the compiler's defaults.
    assert platform_of(render({"vllm": {"loraServing": "adapter"}})).vllm == {"lora_serving": "adapter"}


@pytest.mark.parametrize(("values", "expected"), [
    ({"judgeBackend": "tgi"}, ["/judgeBackend", "vllm"]),
    ({"tokensPerSecond": -1}, ["/tokensPerSecond", "minimum"]),
    ({"vllm": {"maxLoraRank": 12}}, ["/vllm/maxLoraRank"]),
    ({"vllm": {"loraServing": "both"}}, ["/vllm/loraServing"]),
    ({"vllm": {"gpuMemoryUtilization": 1.5}}, ["/vllm/gpuMemoryUtilization", "maximum"]),
    ({"vllm": {"maxModelLen": 4096.5}}, ["/vllm/maxModelLen", "integer"]),
    ({"vllm": {"adapterSlowdown": 1}}, ["/vllm/adapterSlowdown"]),
    ({"vllm": {"max_model_len": 4096}}, ["/vllm", "'max_model_len'"]),
])
def test_bad_vllm_values_are_rejected_naming_the_value(assert_rejected: Any, values: dict[str, Any], expected: list[str]) -> None:
    assert_rejected(values, expected)


DIGESTS = {"train": "sha256:" + "1" * 64, "vllm": "sha256:" + "2" * 64, "cpu": "sha256:" + "3" * 64}


def registrar_env(rendered: Any) -> dict[str, str]:
    container = rendered.one("Job", "registrar")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"]}


def test_image_tag_and_digests_reach_the_pipelines_the_registrar_compiles(render: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The registrar compiles with the rendered environment: safetax.images, which the components take their images
    from, reads it to the references the registered pipelines run."""
    from safetax import images

    env = registrar_env(render({"image": {"registry": "registry.example.com/ml", "tag": "0.1.0", "digests": DIGESTS}}))
    assert env["SAFETAX_IMAGE_TAG"] == "0.1.0"
    for name in (images.REGISTRY_ENV, images.TAG_ENV, images.DIGESTS_ENV):
        monkeypatch.setenv(name, env[name])
    assert {p: images.image(p) for p in images.PROFILES} == {
        p: f"registry.example.com/ml/safetax-{p}:0.1.0@{DIGESTS[p]}" for p in images.PROFILES}
    # Without image.tag and image.digests the registrar's own image decides both (its SAFETAX_IMAGE_TAG, no pins).
    bare = registrar_env(render({}))
    assert images.TAG_ENV not in bare and images.DIGESTS_ENV not in bare


@pytest.mark.parametrize(("values", "expected"), [
    ({"image": {"digests": {"train": DIGESTS["train"]}}}, ["/image/digests"]),  # all three profiles or none
    ({"image": {"digests": {**DIGESTS, "cpu": "sha256:abc"}}}, ["/image/digests/cpu"]),
    ({"image": {"digests": {**DIGESTS, "gpu": DIGESTS["cpu"]}}}, ["/image/digests", "gpu"]),
    ({"image": {"tag": "0.1.0+local"}}, ["/image/tag"]),
])
def test_bad_image_values_are_rejected(assert_rejected: Any, values: dict[str, Any], expected: list[str]) -> None:
    assert_rejected(values, expected)
