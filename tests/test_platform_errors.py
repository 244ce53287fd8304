"""Platform files of the wrong shape: one error naming the file, the key and what is expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from safetax.config import ConfigError
from safetax.platform import load_platform

CASES = {
    "stages:\n  train: [1, 2]\n": "`stages.train` must be a mapping (key: value), got [1, 2]",
    "defaults: [x]\n": "`defaults` must be a mapping (key: value), got ['x']",
    "- a\n": "`the file's top level` must be a mapping with the keys defaults and stages, got ['a']",
    "stages: [train]\n": "`stages` must be a mapping (key: value), got ['train']",
    "stages:\n  train:\n    accelerator_count: 2\n   memory_limit: 1Gi\n": "not valid YAML at line 4, column 4",
    "defaults:\n  env: {PORT: 9091}\n": "`defaults.env.PORT` must be text, with a text key",
    "defaults:\n  s3_secret: [a]\n": "`defaults.s3_secret` must be text, got ['a']",
    "stages:\n  train:\n    node_selector: gpu\n": "`stages.train.node_selector` must be a mapping (key: value), got 'gpu'",
    "stages:\n  generate:\n    tolerations: [nvidia.com/gpu]\n": "`stages.generate.tolerations[0]` must be a mapping",
    "stages:\n  generate:\n    tolerations: [{key: a, operator: Exist}]\n":
        "stages.generate.tolerations[0]: `operator` must be one of 'Exists', 'Equal', got 'Exist'",
}


@pytest.mark.parametrize("text", list(CASES))
def test_wrong_shapes_are_one_named_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "platform.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_platform(str(path))
    assert str(path) in str(e.value) and "<unicode string>" not in str(e.value)
    assert len(e.value.errors) == 1 and CASES[text] in e.value.errors[0]


def test_good_file_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "platform.yaml"
    path.write_text("defaults:\n  env: {SAFETAX_PUSHGATEWAY: \"pg:9091\"}\n  image_pull_secrets: [regcred]\n"
                    "stages:\n  train:\n    accelerator_count: 2\n    cpu_limit: 8\n"
                    "    tolerations: [{key: nvidia.com/gpu, operator: Exists}]\n")
    p = load_platform(str(path))
    assert p.settings("train").accelerator_count == 2 and p.settings("train").cpu_limit == "8"
    assert p.env == {"SAFETAX_PUSHGATEWAY": "pg:9091"} and p.image_pull_secrets == ("regcred",)
    assert p.settings("train").tolerations[0].key == "nvidia.com/gpu"
