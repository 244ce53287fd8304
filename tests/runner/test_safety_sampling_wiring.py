"""Safety sampling reaches every generate task: the alignment pipeline's run parameters (-1 = the protocol's) are passed
to the base model's and each checkpoint's generate task; the audit pipeline passes none and gets the component's greedy
defaults. Compiled fresh here (the golden YAML files are recompiled by `make compile`)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from safetax.platform import PlatformConfig

SAFETY = ("safety_temperature", "safety_top_p")


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    from kfp import compiler

    from safetax.runner import pipeline

    out, compiled = tmp_path_factory.mktemp("compiled"), {}
    for name in ("alignment", "audit"):
        path = out / f"{name}.yaml"
        compiler.Compiler().compile(pipeline(name, PlatformConfig()), str(path))
        compiled[name] = next(yaml.safe_load_all(path.read_text()))
    return compiled


def _generate_tasks(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every generate task of every DAG, by task name."""
    dags = [spec["root"], *spec["components"].values()]
    return {name: t for comp in dags for name, t in comp.get("dag", {}).get("tasks", {}).items() if name.startswith("generate")}


def test_alignment_run_parameters_default_to_the_protocol_and_are_documented(specs: dict[str, dict[str, Any]]) -> None:
    params = specs["alignment"]["root"]["inputDefinitions"]["parameters"]
    for name in SAFETY:
        assert params[name]["defaultValue"] == -1.0 and params[name]["parameterType"] == "NUMBER_DOUBLE"
        assert "-1 = the protocol's" in params[name]["description"]
    assert "rpsa-paper: 0.6" in params["safety_temperature"]["description"]
    assert "rpsa-paper: 0.95" in params["safety_top_p"]["description"]


def test_every_alignment_generate_task_gets_the_run_parameters(specs: dict[str, dict[str, Any]]) -> None:
    """The base model's chain and the per-checkpoint chain both evaluate with the run's safety sampling."""
    tasks = _generate_tasks(specs["alignment"])
    assert len(tasks) == 2, sorted(tasks)  # base model; every checkpoint and merge candidate
    for task_name, task in tasks.items():
        inputs = task["inputs"]["parameters"]
        for name in SAFETY:
            ref = inputs[name].get("componentInputParameter")
            assert ref in (name, f"pipelinechannel--{name}"), (task_name, name, inputs[name])


def test_the_audit_keeps_greedy_safety_answers(specs: dict[str, dict[str, Any]]) -> None:
    """The generate component defaults to greedy (0 / top-p 1), and the audit passes no safety sampling."""
    generate = specs["audit"]["components"]["comp-generate"]["inputDefinitions"]["parameters"]
    assert (generate["safety_temperature"]["defaultValue"], generate["safety_top_p"]["defaultValue"]) == (0.0, 1.0)
    tasks = _generate_tasks(specs["audit"])
    assert tasks and not any(name in t["inputs"]["parameters"] for t in tasks.values() for name in SAFETY)
