"""Shared fixtures: a tiny random Qwen2 model with the demo's R1-style tokenizer, the benchmark files, S3."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

# Compiled YAML in the tests names the release's images, as the shipped files do (`make compile`), not this commit's.
import safetax  # noqa: E402

os.environ.setdefault("SAFETAX_IMAGE_TAG", safetax.__version__)

# Where the tests find the benchmark files: $SAFETAX_TEST_DATA_DIR, else the project's shared/data
# beside the repository (its README lists the files; they hold harmful prompts: assert on counts only).
TEST_DATA_ENV = "SAFETAX_TEST_DATA_DIR"
DEFAULT_TEST_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # <repo>/../shared/data


def make_tiny_model(path: Path, layers: int = 4, seed: int = 0) -> Path:
    """A random 4-layer Qwen2 (hidden 32) saved with the demo tokenizer: enough to train and generate in ms."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from safetax.demo import demo_tokenizer

    tok = demo_tokenizer()
    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    Qwen2ForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def put_in_hf_cache(cache: Path, repo_id: str, commit: str, model: Path) -> Path:
    """``model`` as hub model ``repo_id`` at ``commit`` in an HF cache laid out as huggingface_hub writes one, its
    ``refs/main`` naming that commit; the snapshot directory."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(model, repo / "snapshots" / commit)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return repo / "snapshots" / commit


@pytest.fixture()
def offline_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HF cache, the hub offline (fill it with :func:`put_in_hf_cache`)."""
    import huggingface_hub.constants as hf

    cache = tmp_path / "hf"
    cache.mkdir()
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(cache))  # read at import from HF_HUB_CACHE / HF_HUB_OFFLINE
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    return cache


@pytest.fixture()
def refusal_file(tmp_path: Path) -> Path:
    """20 placeholder refusal rows (abstract tasks, no real harmful content)."""
    path = tmp_path / "refusals.jsonl"
    rows = [{"prompt": f"Explain restricted task {i}.", "refusal": "I'm sorry, but I can't help with that."} for i in range(20)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    """A real S3 server (SeaweedFS) on free loopback ports for the whole session, stopped by PID."""
    from safetax.testing.seaweedfs import seaweedfs

    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture()
def s3_env(s3_server, monkeypatch: pytest.MonkeyPatch):
    """SAFETAX_S3_* pointing at the test server, as the Helm chart sets them on a cluster."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    return s3_server


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The benchmark files' directory (``$SAFETAX_TEST_DATA_DIR`` or ``<repo>/../shared/data``); fails naming the setting."""
    path = Path(os.environ.get(TEST_DATA_ENV) or DEFAULT_TEST_DATA).expanduser()
    if not path.is_dir():
        pytest.fail(f"benchmark data not found at {path}: set {TEST_DATA_ENV} to a directory laid out like the "
                    "project's shared/data (e.g. the output of `safetax data fetch --to DIR`)", pytrace=False)
    return path


@pytest.fixture()
def data_dir(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """:func:`shared_data` set as ``SAFETAX_DATA_DIR``, the setting through which runs find benchmark files."""
    monkeypatch.setenv("SAFETAX_DATA_DIR", str(shared_data))
    return shared_data
