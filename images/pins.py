"""Build-time pins for the images: what pip installs, and at which versions.

    python3 images/pins.py requirements pyproject.toml --exclude torch  # safetax's dependencies, less torch
    python3 images/pins.py constraints images/constraints.txt          # the image's packages, then the lock
    python3 images/pins.py constraints images/constraints.txt --installed torch  # only torch from the image
    .venv/bin/python images/pins.py lock > images/constraints.txt       # regenerate the lock from `make test`'s venv

``constraints`` pins the distributions already in the image at their installed versions (all of
them: everything the vLLM image ships; or those named by ``--installed``: the torch that the train
and CPU images installed first, not the pip and setuptools a fresh venv was seeded with) and takes
``constraints.txt`` for the rest, so pip adds safetax's dependencies but never swaps that torch or
vLLM's transformers.
``requirements`` and ``constraints`` use the standard library only (they run inside the images);
``lock`` needs ``packaging`` (it runs in the dev venv).
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path

# Not locked: safetax itself, and torch, which each image pins by its TORCH_VERSION build arg or its base.
UNLOCKED = frozenset({"safetax", "torch"})


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


def merge(lock_lines: Iterable[str], installed: Mapping[str, str], keep: Iterable[str] | None = None) -> list[str]:
    """Constraints: installed distributions at their versions (those in ``keep``, or all), then the lock's pins for the others.

    >>> merge(["torch==2.13.0", "pandas==3.1.1", "# comment"], {"torch": "2.14.0+cu128"})
    ['torch==2.14.0+cu128', 'pandas==3.1.1']
    >>> merge(["setuptools==84.2.1"], {"torch": "2.13.0+cpu", "setuptools": "65.5.0"}, keep=["torch"])
    ['torch==2.13.0+cpu', 'setuptools==84.2.1']
    """
    if keep is not None:
        wanted = {normalize(n) for n in keep}
        missing = wanted - installed.keys()
        if missing:
            raise ValueError(f"--installed names distributions that are not installed: {', '.join(sorted(missing))}")
        installed = {n: v for n, v in installed.items() if n in wanted}
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


def lock(root: str = "safetax") -> list[str]:
    """``name==version`` of every installed runtime dependency of ``root``, recursively, less UNLOCKED."""
    from packaging.requirements import Requirement

    seen: dict[str, str] = {}
    todo: list[tuple[str, frozenset[str]]] = [(root, frozenset())]
    while todo:
        name, extras = todo.pop()
        dist = metadata.distribution(name)
        seen[normalize(name)] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            # A dependency counts when its marker holds here for no extra or for a requested one.
            if req.marker and not any(req.marker.evaluate({"extra": e}) for e in extras | {""}):
                continue
            if normalize(req.name) not in seen:
                todo.append((req.name, frozenset(req.extras)))
    return [f"{n}=={v}" for n, v in sorted(seen.items()) if n not in UNLOCKED]


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
    sub.add_parser("lock", help="print a new constraints.txt from this environment")
    args = p.parse_args(argv)
    if args.command == "requirements":
        lines = requirements(args.pyproject, args.exclude)
    elif args.command == "constraints":
        try:
            lines = merge(args.lock.read_text().splitlines(), installed_distributions(), args.installed)
        except ValueError as e:
            p.error(str(e))
    else:
        header = "# Generated by `.venv/bin/python images/pins.py lock`: "
        header += "safetax's runtime dependencies as `make test` ran them.\n"
        header += "# torch is pinned by each image (TORCH_VERSION build arg, or the vLLM base); kfp also by KFP_VERSION.\n"
        sys.stdout.write(header)
        lines = lock()
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
