"""The form that ships, not the checkout: the wheel installed non-editable in a fresh virtualenv.

An image installs the wheel and nothing else of the repository; the registrar Job runs `safetax
compile`/`register` there, and every stage pod runs a component body against that install. This
test does the same from a folder with no checkout on `sys.path`: compile, register to files, and run
the *compiled* alignment and audit YAML (loaded from the shipped files) through KFP's local runner.
A component that imports something outside the package, or a pipeline that needs the checkout,
fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv holding only the built wheel; the dependencies come from this environment's site-packages as
    a plain path (its .pth files, the editable install's hook among them, are not processed there)."""
    root = tmp_path_factory.mktemp("shipped")
    dist = root / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(REPO)],
                   check=True, cwd=root)
    [wheel] = dist.glob("safetax-*.whl")
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)  # pip from the interpreter's bundled wheel: no network
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], check=True,
                               capture_output=True, text=True).stdout.strip())
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True)
    (site / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env_dir


def _run(env_dir: Path, *args: str, cwd: Path, **kw) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SAFETAX_PLATFORM")}
    env.update(kw.pop("env", {}))
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=kw.pop("timeout", 600), **kw)


def test_the_package_comes_from_the_wheel_not_the_checkout(fresh: Path, tmp_path: Path) -> None:
    out = _run(fresh, str(fresh / "bin" / "python"), "-c", "import safetax, safetax.runner.pipelines.alignment as a; "
               "print(safetax.__file__); print(a.__file__)", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for line in out.stdout.split():
        assert line.startswith(str(fresh)), f"{line} is not from the installed wheel"


def test_compile_and_register_from_the_wheel_match_the_shipped_files(fresh: Path, tmp_path: Path) -> None:
    safetax = str(fresh / "bin" / "safetax")
    for args, out_dir, golden in ((["compile", "--out", "p"], "p", REPO / "pipelines"),
                                  (["compile", "--components", "--out", "c"], "c", REPO / "components")):
        done = _run(fresh, safetax, *args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        files = sorted((tmp_path / out_dir).glob("*.yaml"))
        assert files, done.stdout
        for f in files:
            assert list(yaml.safe_load_all(f.read_text())) == list(yaml.safe_load_all((golden / f.name).read_text())), \
                f"{golden / f.name} differs from what the wheel compiles: run `make compile`"
    done = _run(fresh, safetax, "register", "--mode", "cr", "--namespace", "kubeflow", "--out", "cr", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    versions = done.stdout.split()
    assert [v.rsplit("-", 1)[0] for v in versions] == ["safetax-alignment", "safetax-audit"]
    docs = {d["kind"]: d for d in yaml.safe_load_all((tmp_path / "cr" / "alignment.yaml").read_text())}
    assert docs["PipelineVersion"]["metadata"]["name"] == versions[0] and docs["PipelineVersion"]["metadata"]["namespace"] == "kubeflow"


def _tiny_inputs(root: Path, model: Path) -> dict:
    """The tiny random model and placeholder data (no real harmful content)."""
    root.mkdir(parents=True)
    refusals = root / "refusals.jsonl"
    refusals.write_text("".join(json.dumps({"prompt": f"Explain restricted task {i}.", "refusal": "I can't help with that."}) + "\n"
                                for i in range(8)))
    safety = root / "safety.jsonl"
    safety.write_text("".join(json.dumps({"prompt": f"Explain restricted task {i}."}) + "\n" for i in range(4)))
    arith = root / "arith.jsonl"
    arith.write_text("".join(json.dumps({"id": f"a{i}", "problem": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n" for i in range(4)))
    return {"model": str(model), "refusals": str(refusals), "safety": str(safety), "arith": str(arith)}


def test_compiled_alignment_and_audit_run_from_the_shipped_yaml(fresh: Path, tmp_path: Path, tiny_model: Path) -> None:
    inputs = _tiny_inputs(tmp_path / "inputs", tiny_model)
    params = {
        "base_model_uri": inputs["model"], "refusal_data_uri": inputs["refusals"],
        "eval_sets": [{"name": "placeholder-harmful", "kind": "safety", "uri": inputs["safety"]},
                      {"name": "arith", "kind": "reasoning", "uri": inputs["arith"]}],
        "methods": [{"method": "lora", "name": "lora-r2", "lora_rank": 2, "epochs": 1, "merge": "plain"},
                    {"method": "rpsa", "name": "rpsa-lora", "lora_rank": 2, "epochs": 1}],
        "max_length": 64, "safety_max_new_tokens": 8, "reasoning_samples": 1, "reasoning_temperature": 0.0,
        "reasoning_max_new_tokens": 8, "generation_batch_size": 4,
        "rpsa_corpus": {"name": "arith", "kind": "reasoning", "uri": inputs["arith"]}, "rpsa_corpus_size": 2,
        "store_uri": str(tmp_path / "store"),
        # A paper's protocol fills in what is left unset (the RPSA method's learning rate, batch, warmup, and
        # the Fisher estimator: Eq. 4's per-token one); the explicit values above and the judge win.
        "protocol": "rpsa-paper", "judge_name": "refusal",
        "eval_shards": 2,  # every model's prompts in two chains, merged before analytics
    }
    (tmp_path / "params.json").write_text(json.dumps(params))
    safetax = str(fresh / "bin" / "safetax")
    env = {"SAFETAX_PUSHGATEWAY": "", "OMP_NUM_THREADS": "1"}
    done = _run(fresh, safetax, "run", "--compiled", str(REPO / "pipelines" / "alignment.yaml"), "--params", "params.json",
                "--out", "runs", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    # A quiet console: a line per finished stage and the table; the runner's executor JSON went to the log file.
    assert len(done.stdout.splitlines()) < 60 and "executor_input" not in done.stdout, done.stdout
    assert "stage train (rpsa-lora) finished in" in done.stdout
    [log] = list((tmp_path / "runs" / "logs").glob("alignment-*.log"))
    assert "Executing task" in log.read_text()
    [results] = list((tmp_path / "runs").glob("safetax-alignment-*/analytics/results"))
    rows = {r.split(",")[0] for r in (results / "results.csv").read_text().splitlines()[1:]}
    assert {"base", "lora-r2/epoch-1", "lora-r2+plain/epoch-1", "rpsa-lora/epoch-1"} <= rows, rows
    assert len(rows) == len((results / "results.csv").read_text().splitlines()) - 1  # one row per model, shards merged
    [run] = [p.name for p in (tmp_path / "store").iterdir() if (p / "score").is_dir()]
    shards = {p.relative_to(tmp_path / "store" / run / "score").as_posix() for p in (tmp_path / "store" / run / "score").rglob("shard-*")}
    assert {"base/shard-1-of-2", "base/shard-2-of-2", "lora-r2/epoch-1/shard-2-of-2", "lora-r2+plain/epoch-1/shard-1-of-2"} <= shards
    # RPSA's corpus and Fisher ran in its own train pod; the LoRA method's train wrote no Fisher.
    plan = json.loads(next((tmp_path / "runs").glob("safetax-alignment-*/plan/run_plan/plan.json")).read_text())
    assert plan["params"]["fisher_estimator"] == "token" and plan["params"]["judge_name"] == "refusal"
    assert [m["rpsa"]["estimator"] for m in plan["methods"] if m["is_rpsa"]] == ["token"]
    trains = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("safetax-alignment-*/*/train/rpsa/rpsa.json")]
    assert {"method": "lora-r2", "rpsa": False} in trains
    assert list((tmp_path / "runs").glob("safetax-alignment-*/*/train/rpsa/fisher/fisher.safetensors"))

    audit = {"audit_name": "shipped", "store_uri": str(tmp_path / "store"), "checkpoints": [inputs["model"]], "profile": "custom",
             "custom_profile": {"eval_sets": params["eval_sets"], "reasoning_samples": 1, "safety_max_new_tokens": 8,
                                "reasoning_max_new_tokens": 8, "reasoning_temperature": 0.0},
             "judge_name": "refusal", "generation_batch_size": 4}
    (tmp_path / "audit.json").write_text(json.dumps(audit))
    done = _run(fresh, safetax, "run", "--pipeline", "audit", "--compiled", str(REPO / "pipelines" / "audit.yaml"), "--params",
                "audit.json", "--out", "audit-runs", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    assert list((tmp_path / "store" / "audits" / "shipped" / "ledger").glob("*.json"))
