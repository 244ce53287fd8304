from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from safetax.cli import main


@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"], ["compile", "--help"], ["run", "--help"],
                                  ["register", "--help"], ["data", "upload", "--help"], ["data", "fetch", "--help"]])
def test_help_explains_every_option(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: safetax" in out
    if argv[0] == "demo":
        for opt in ("--out", "--cache-dir", "--epochs", "--safety-limit", "--reasoning-limit", "--max-new-tokens"):
            assert opt in out


def test_compile_writes_pipeline_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["compile", "--out", str(tmp_path)])
    path = tmp_path / "alignment.yaml"
    assert str(path) in capsys.readouterr().out
    spec = next(yaml.safe_load_all(path.read_text()))
    assert spec["pipelineInfo"]["name"] == "safetax-alignment"


def test_unknown_command_fails(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["align"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err
