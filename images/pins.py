"""Build-time pins for the images: what pip installs, and at which versions. One lock per image, images/locks/<profile>.txt.

    python3 images/pins.py requirements pyproject.toml --exclude torch   # safetax's dependencies, less torch
    python3 images/pins.py constraints images/locks/vllm.txt --relock-shared  # the image's packages, then the lock
    python3 images/pins.py constraints images/locks/cpu.txt --installed torch # only torch from the image
    .venv/bin/python images/pins.py lock vllm > images/locks/vllm.txt       # re-resolve a lock (vllm first)

``constraints`` pins the distributions already in the image at their installed versions (all of
them: everything the vLLM image ships; or those named by ``--installed``: the torch that the train
and CPU images installed first, not the pip and setuptools a fresh venv was seeded with) and takes
the lock for the rest, so pip adds safetax's dependencies but never swaps the image's torch. With
``--relock-shared`` the SHARED distributions take the lock's version even where the image has
another, so that every image runs the same transformers, peft, math-verify, kfp, ...

``lock`` asks pip's resolver (``pythonX.Y -m pip install --dry-run --report``) what it would
install into the image: with the CPython of the image's base, torch at the Dockerfile's
TORCH_VERSION (train, cpu) or vLLM's (vllm, under all of the VLLM_IMAGE release's own
requirements as constraints), and SHARED at the vllm lock's versions for train and cpu. vllm's
transformers range (>=5.16.1,<5.21 for 0.33.0) so decides every image's.
``requirements`` and ``constraints`` use the standard library only (they run inside the images);
``lock`` needs ``packaging`` and the package index (it runs in the dev venv).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path

# Not locked: safetax itself, and torch, which each image pins by its TORCH_VERSION build arg or its base.
UNLOCKED = frozenset({"safetax", "torch"})
# One version in every image that has them: they render chat templates and tokenize (prepare runs in
# cpu, train in train, generate in vllm), write and read each other's adapters and checkpoints,
# score the same answers, or speak KFP's executor protocol. Everything else may differ per image.
SHARED = frozenset({
    "transformers", "tokenizers", "huggingface-hub", "safetensors", "peft", "accelerate",
    "math-verify", "latex2sympy2-extended", "antlr4-python3-runtime", "sympy",
    "kfp", "kfp-kubernetes", "kfp-pipeline-spec", "kfp-server-api",
})
PROFILES = ("vllm", "train", "cpu")  # lock order: vllm's base decides SHARED
# CPython of each image's base: python:3.11-slim (cpu), Ubuntu 24.04's python3 (train), and the
# vLLM image's (built with PYTHON_VERSION=3.12: vllm-project/vllm docker/Dockerfile).
PYTHON = {"vllm": "3.12", "train": "3.12", "cpu": "3.11"}
# PyPI's torch wheel is a CUDA build; the cpu image's (TORCH_INDEX_URL) has none of these.
CUDA_ONLY = re.compile(r"nvidia-.*|triton|cuda-.*")


def normalize(name: str) -> str:
    """PEP 503 name: ``Foo_Bar.baz`` and ``foo-bar-baz`` are one distribution.

    >>> normalize("PyYAML"), normalize("prometheus_client"), normalize("zope.interface")
    ('pyyaml', 'prometheus-client', 'zope-interface')
    """
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """The normalized distribution name a requirement line starts with.

    >>> requirement_name("math-verify[antlr4_13_2]>=0.9,<0.10")
    'math-verify'
    """
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return normalize(match.group(1))


def requirements(pyproject: Path, exclude: Iterable[str] = ()) -> list[str]:
    """``[project].dependencies`` of a pyproject.toml, less the excluded distributions."""
    skip = {normalize(n) for n in exclude}
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return [d for d in deps if requirement_name(d) not in skip]


def merge(lock_lines: Iterable[str], installed: Mapping[str, str], keep: Iterable[str] | None = None,
          relock: Iterable[str] = ()) -> list[str]:
    """Constraints: installed distributions at their versions (those in ``keep``, or all, less ``relock``), then the lock's pins.

    >>> merge(["torch==2.13.0", "pandas==3.1.1", "# comment"], {"torch": "2.14.0+cu128"})
    ['torch==2.14.0+cu128', 'pandas==3.1.1']
    >>> merge(["setuptools==84.2.1"], {"torch": "2.13.0+cpu", "setuptools": "65.5.0"}, keep=["torch"])
    ['torch==2.13.0+cpu', 'setuptools==84.2.1']
    >>> merge(["transformers==5.20.0"], {"transformers": "5.19.1", "vllm": "0.33.0"}, relock=["transformers"])
    ['vllm==0.33.0', 'transformers==5.20.0']
    """
    if keep is not None:
        wanted = {normalize(n) for n in keep}
        missing = wanted - installed.keys()
        if missing:
            raise ValueError(f"--installed names distributions that are not installed: {', '.join(sorted(missing))}")
        installed = {n: v for n, v in installed.items() if n in wanted}
    relocked = {normalize(n) for n in relock}
    installed = {n: v for n, v in installed.items() if n not in relocked}
    out = [f"{name}=={version}" for name, version in sorted(installed.items())]
    for line in lock_lines:
        line = line.split("#", 1)[0].strip()
        if line and requirement_name(line) not in installed:
            out.append(line)
    return out


def installed_distributions() -> dict[str, str]:
    """Normalized name -> version of every distribution in this interpreter's environment.

    Where a name is installed twice (``/usr/local`` and ``/usr/lib`` site-packages), the first on
    ``sys.path`` wins, as for ``import``.
    """
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        if dist.metadata["Name"]:
            found.setdefault(normalize(dist.metadata["Name"]), dist.version)
    return found


def read_lock(path: Path) -> dict[str, str]:
    """Normalized name -> version of a lock's ``name==version`` lines (comments and blanks skipped).

    Raises:
        ValueError: a line that is not an exact pin.
    """
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, eq, version = line.partition("==")
            if not eq or not version or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name.strip()):
                raise ValueError(f"{path}: {raw!r} is not an exact pin name==version")
            pins[normalize(name)] = version.strip()
    return pins


def dockerfile_arg(dockerfile: Path, name: str) -> str:
    """The default of ``ARG name=...`` in a Dockerfile.

    Raises:
        ValueError: the Dockerfile declares no default for it.
    """
    match = re.search(rf"^ARG {name}=\"?([^\"\s]+)\"?\s*$", dockerfile.read_text(), flags=re.M)
    if match is None:
        raise ValueError(f"{dockerfile}: no `ARG {name}=...`")
    return match.group(1)


def _pip_report(requirements: list[str], constraints: list[str], python: str, no_deps: bool = False) -> list[dict]:
    """What ``pythonX.Y -m pip install`` would install (a dry run, ignoring what is installed): the report's items.

    A real interpreter of the image's version, not pip's ``--python-version``: that one takes wheels
    only, and kfp, kfp-kubernetes and kfp-server-api are published as sdists.
    """
    with tempfile.TemporaryDirectory() as tmp:
        req, con, report = Path(tmp, "requirements.txt"), Path(tmp, "constraints.txt"), Path(tmp, "report.json")
        req.write_text("".join(f"{r}\n" for r in requirements))
        con.write_text("".join(f"{c}\n" for c in constraints))
        args = [python, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                "--report", str(report), "-r", str(req), "-c", str(con)] + (["--no-deps"] if no_deps else [])
        try:
            done = subprocess.run(args, capture_output=True, text=True)
        except FileNotFoundError:
            raise RuntimeError(f"{python} not found: `lock` resolves with the image's Python version (--python)") from None
        if done.returncode != 0:
            raise RuntimeError(f"{python}'s pip could not resolve {requirements}:\n{done.stderr[-3000:]}")
        return json.loads(report.read_text())["install"]


def base_requirements(dist: str, python: str, interpreter: str) -> list[str]:
    """The requirements (no extras asked) of a release such as ``vllm==0.33.0`` that hold on CPython ``python``, x86_64 Linux,
    as constraint lines: name and specifier, no extras and no markers."""
    from packaging.requirements import Requirement

    (item,) = _pip_report([dist], [], interpreter, no_deps=True)
    env = {"python_version": python, "python_full_version": f"{python}.0", "platform_machine": "x86_64",
           "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "extra": ""}
    lines = []
    for text in item["metadata"].get("requires_dist", []):
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate(env):
            lines.append(f"{normalize(req.name)}{req.specifier}")
    return lines


def lock(profile: str, images: Path, pyproject: Path, interpreter: str | None = None) -> tuple[list[str], list[str]]:
    """(header comment lines, ``name==version`` lines) of ``images/locks/<profile>.txt``; see the module docstring.

    ``interpreter``: a CPython of the image's version to resolve with (default ``pythonX.Y`` on PATH).
    """
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    python, dockerfile = PYTHON[profile], images / f"{profile}.Dockerfile"
    interpreter = interpreter or f"python{python}"
    wanted, constraints = requirements(pyproject, ["torch"]), []
    if profile == "vllm":
        base = "vllm==" + dockerfile_arg(dockerfile, "VLLM_IMAGE").rsplit(":", 1)[1].removeprefix("v")
        constraints = base_requirements(base, python, interpreter)
        torch = [c for c in constraints if requirement_name(c) == "torch"]
        wanted += torch
        how = f"under {base}'s own requirements (VLLM_IMAGE), with its {torch[0]}"
    else:
        wanted.append(f"torch=={dockerfile_arg(dockerfile, 'TORCH_VERSION')}")
        shared = {n: v for n, v in read_lock(images / "locks" / "vllm.txt").items() if n in SHARED}
        constraints = [f"{n}=={v}" for n, v in sorted(shared.items())]
        how = f"with {wanted[-1]} (TORCH_VERSION) and SHARED at images/locks/vllm.txt's versions"
    found = {normalize(i["metadata"]["name"]): i["metadata"]["version"] for i in _pip_report(wanted, constraints, interpreter)}
    drop = UNLOCKED | ({n for n in found if CUDA_ONLY.fullmatch(n)} if profile == "cpu" else set())
    header = [f"# Generated by `.venv/bin/python images/pins.py lock {profile} > images/locks/{profile}.txt`:",
              f"# what pip installs into the {profile} image for pyproject.toml's dependencies, resolved by CPython {python}'s",
              f"# pip on x86_64 Linux {how}.",
              "# torch itself is the image's (not listed); kfp is also pinned by KFP_VERSION."]
    if profile == "cpu":
        header.append("# The CPU torch wheel needs no CUDA libraries: nvidia-*, triton and cuda-* are left out.")
    return header, [f"{n}=={v}" for n, v in sorted(found.items()) if n not in drop]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pins.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("requirements", help="safetax's dependencies from pyproject.toml")
    r.add_argument("pyproject", type=Path)
    r.add_argument("--exclude", action="append", default=[], help="a distribution the image provides (repeatable)")
    c = sub.add_parser("constraints", help="installed distributions, then the lock")
    c.add_argument("lock", type=Path)
    c.add_argument("--installed", action="append", default=None,
                   help="pin only this installed distribution (repeatable; default: all)")
    c.add_argument("--relock-shared", action="store_true", help="installed SHARED distributions take the lock's version")
    k = sub.add_parser("lock", help="print a new images/locks/<profile>.txt (pip's resolver; needs the package index)")
    k.add_argument("profile", choices=PROFILES)
    k.add_argument("--pyproject", type=Path, default=Path(__file__).resolve().parents[1] / "pyproject.toml")
    k.add_argument("--python", default=None, help="CPython of the image's version to resolve with (default: pythonX.Y)")
    args = p.parse_args(argv)
    if args.command == "requirements":
        lines = requirements(args.pyproject, args.exclude)
    elif args.command == "constraints":
        try:
            lines = merge(args.lock.read_text().splitlines(), installed_distributions(), args.installed,
                          SHARED if args.relock_shared else ())
        except ValueError as e:
            p.error(str(e))
    else:
        try:
            header, lines = lock(args.profile, Path(__file__).resolve().parent, args.pyproject, args.python)
        except (ValueError, RuntimeError) as e:
            p.error(str(e))
        lines = header + lines
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
