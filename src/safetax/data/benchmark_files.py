"""The benchmark files behind ``SAFETAX_DATA_DIR``: their pinned public sources, and seeding a store.

A data directory is laid out like the project's ``shared/data``: every registered benchmark reads
``<dir>/<its default_path>``. :data:`SOURCES` pins where each of those files comes from (a GitHub
repository at a full commit, and the sha256 of the bytes served there); :func:`fetch_sources`
downloads them with that check (``safetax data fetch``), :func:`upload` publishes a directory to
``s3://bucket/prefix`` with a manifest written last (``safetax data upload``), and a run reads it
back through :func:`safetax.benchmarks.registry.resolve_data`.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from safetax.store import Manifest, is_s3, publish

log = logging.getLogger(__name__)
GITHUB_RAW = "https://raw.githubusercontent.com"  # serves <owner>/<repo>/<commit>/<path>
STORE_AS = ("as-is", "gzip", "encrypted-zip")


class DataFilesError(ValueError):
    """A data directory that lacks files, or a download that failed or did not match its pinned sha256."""


@dataclass(frozen=True)
class Source:
    """Where one benchmark file comes from, pinned."""

    path: str  # where it is stored, relative to the data directory: a benchmark's default_path
    repo: str  # GitHub owner/name
    revision: str  # the full commit the download is pinned to
    file: str  # the file's path in the repository at that commit
    sha256: str  # of the bytes downloaded (before `store_as` and `header`)
    store_as: str = "as-is"  # as-is | gzip (mtime 0: reproducible) | encrypted-zip (GPQA's password, see gpqa.py)
    header: str = ""  # replaces the downloaded file's first line when the copy's header differs

    def url(self, base: str = GITHUB_RAW) -> str:
        return f"{base.rstrip('/')}/{self.repo}/{self.revision}/{self.file}"


# Each sha256 was checked against the copy in the project's shared/data (the same bytes, or the same
# bytes once the shared copy is decompressed / decrypted / given the upstream header), so a fetched
# directory loads exactly like the shared one.
SOURCES: tuple[Source, ...] = (
    Source("aime24/aime24.jsonl", "YihaoXue/lora-safety-reasoning", "79500488ba286bf48a09484113d00d2b9853dced",
           "lm-evaluation-harness/math_eval_data/aime24/test.jsonl",
           "af2b8bd2aa911b6333ad0df32f3ca05c7ae8ed10f1731f4372c8ae26990bf7ac"),
    # GPQA's authors distribute a password-protected zip of several CSVs; simple-evals' plain
    # gpqa_diamond.csv holds the same bytes as the member of the shared zip. The shared zip itself was
    # made locally, so it has no upstream: fetch stores the CSV in a zip of its own, encrypted with
    # GPQA's password (same content, other bytes than the shared zip), and never writes it out plain.
    Source("gpqa/gpqa_diamond.zip", "openai/simple-evals", "be11f462e3834c4571e4683b171101db8300944e",
           "gpqa_diamond.csv", "41d1213cd7a4998605a26c2798500652572007161b3a92817ba46b35befcd305",
           store_as="encrypted-zip"),
    Source("humanevalplus/HumanEvalPlus-v0.1.10.jsonl.gz", "evalplus/humanevalplus_release",
           "200defce9e3429d28ca215b6dd061c0f7f31c18b", "HumanEvalPlus.jsonl.gz",
           "272720b90ac375502c8ed23cd791c2a93dfb22a911641a494da74a426c09f101"),
    # Byte-identical to openai/prm800k's prm800k/math_splits/test.jsonl (a Git LFS object there, oid
    # sha256 the same); this copy is a plain blob that raw.githubusercontent.com serves directly.
    Source("math500/math500.jsonl", "YihaoXue/lora-safety-reasoning", "79500488ba286bf48a09484113d00d2b9853dced",
           "lm-evaluation-harness/math_eval_data/MATH-500/test.jsonl",
           "35dc41080a3680858b27fa7e0533d2d547825316fc5dafe5d316f4ccc5a06132"),
    Source("mbppplus/MbppPlus-prerelease-767efcc-2023-11-16.jsonl.gz", "evalplus/evalplus",
           "767efcc368e0ef16568bba4ee2f1b005e849e8a6", "MbppPlus.jsonl",
           "08405a4e8764a4941cfe0945d25a956355a0454f364ea902c4020a44e7057973", store_as="gzip"),
    # StrongREJECT's own repository (alexandrasouly/strongreject) could not be read here, so its exact
    # file and a commit are unknown; this copy's bytes equal the shared file except that its header
    # names the prompt column `meli_query`, which `header` restores.
    Source("strongreject/strongreject_dataset.csv", "jiang-111/rebuttalAttackMem0",
           "f472d0c55129a51ce27be3e0fbea973641bcfedf", "data/strongreject_dataset.csv",
           "ab3a843b39033d7de4b41671f31cc84cea565be5b77efd71042fc6eba6abfc5f",
           header="category,source,forbidden_prompt"),
    Source("strongreject/strongreject_small_dataset.csv", "jiang-111/rebuttalAttackMem0",
           "8446166a9428e080ecc60eab451dfda801816b42", "data/strongreject_small_dataset.csv",
           "3051340e3e89a3598d764dde497d5fcda80e258ac05cc35e6bd87228ac3d467c"),
    Source("wildjailbreak/wildjailbreak_eval.tsv.gz", "allenai/wildteaming", "0897f74313db62bb55560bd9dc94c1d65e1f5456",
           "data/eval.tsv", "eeb7e43aafa0151588f5cb8994b99adc0ee34a57819d92f43a6084f0b7fe4fa4", store_as="gzip"),
    Source("xstest/xstest_prompts.csv", "paul-rottger/exaggerated-safety", "d7bb5bd738c1fcbc36edd83d5e7d1b71a3e2d84d",
           "xstest_prompts.csv", "11783fb294ed017473ee53c207d71f2161c7672c8d0b037501e78387f801cb5a"),
)
SOURCE_OF = {s.path: s for s in SOURCES}


def benchmark_paths(names: Sequence[str] = ()) -> dict[str, list[str]]:
    """Default path -> the benchmarks that read it, for ``names`` (all registered benchmarks when empty).

    Raises:
        ValueError: an unknown benchmark name (the message lists the known ones).
    """
    from safetax.benchmarks.registry import benchmark_names, get_benchmark

    paths: dict[str, list[str]] = {}
    for name in dict.fromkeys(names or benchmark_names()):
        paths.setdefault(get_benchmark(name).default_path, []).append(name)
    return dict(sorted(paths.items()))


def check_layout(root: Path, names: Sequence[str] = ()) -> dict[str, int]:
    """Check that ``root`` holds the files of ``names`` and that each loads; benchmark -> item count.

    Raises:
        DataFilesError: files are missing (every missing one is named, with its benchmarks).
        DataError: a file does not parse (names file, row and column).
    """
    from safetax.benchmarks.registry import get_benchmark

    if not root.is_dir():
        raise DataFilesError(f"{root} is not a directory (expected one laid out like the project's shared/data)")
    paths = benchmark_paths(names)
    missing = [f"{p} ({', '.join(b)})" for p, b in paths.items() if not (root / p).is_file()]
    if missing:
        raise DataFilesError(f"{root} is not laid out like the benchmark data: missing {len(missing)} of "
                             f"{len(paths)} expected file(s): {'; '.join(missing)}")
    return {name: len(get_benchmark(name).load(str(root / p))) for p, bs in paths.items() for name in bs}


@dataclass(frozen=True)
class Upload:
    uri: str
    manifest: Manifest
    items: dict[str, int]  # benchmark -> item count, as loaded before the upload


def upload(root: Path, uri: str, names: Sequence[str] = ()) -> Upload:
    """Publish the files of ``names`` (all benchmarks when empty) from ``root`` to ``uri``, checked first.

    Only those files are uploaded, at their default paths, with the store's manifest written last:
    a reader sees all of them or none. ``uri`` is ``s3://bucket/prefix`` (a prefix is needed: the
    store finds a published file by the manifest of a directory above it) or a local directory.
    """
    if is_s3(uri):
        from safetax.store.s3 import parse_uri

        if not parse_uri(uri)[1]:
            raise DataFilesError(f"{uri}: give a prefix inside the bucket, e.g. {uri.rstrip('/')}/benchmarks")
    root = Path(root)
    items = check_layout(root, names)
    with tempfile.TemporaryDirectory(prefix="safetax-data-") as tmp:
        for p in benchmark_paths(names):
            dest = Path(tmp) / p
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(root / p, dest)  # no copy where the file system allows it
            except OSError:
                shutil.copyfile(root / p, dest)
        return Upload(uri, publish(Path(tmp), uri), items)


def download(src: Source, base: str = GITHUB_RAW, timeout_s: float = 60.0) -> bytes:
    """The bytes of ``src``, checked against its pinned sha256 (held in memory: the largest is ~3 MB)."""
    import http.client
    import urllib.error
    import urllib.request

    url = src.url(base)
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            data: bytes = resp.read()
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:  # HTTPError is a URLError; a timeout an OSError
        reason = f"HTTP {e.code}" if isinstance(e, urllib.error.HTTPError) else f"{type(e).__name__}: {getattr(e, 'reason', e)}"
        raise DataFilesError(
            f"cannot download {src.path} from {src.repo}@{src.revision[:7]}:{src.file} ({url}): {reason}. Without access "
            "to it, run `safetax data fetch --to DIR` on a machine that has, seed a bucket with `safetax data upload DIR "
            "s3://bucket/prefix` (or copy DIR), and point SAFETAX_DATA_DIR at that prefix or directory") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != src.sha256:
        raise DataFilesError(f"{src.path}: {url} served {len(data)} bytes with sha256 {digest}, expected {src.sha256} "
                             "(pinned in safetax.data.benchmark_files.SOURCES); nothing was written")
    return data


def store_file(src: Source, data: bytes, dest: Path) -> Path:
    """Write downloaded bytes to ``dest`` as the benchmark reads them (header, compression), atomically."""
    if src.header:
        data = src.header.encode() + data[data.index(b"\n"):]
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.parent / f".{dest.name}.part"
    with part.open("wb") as f:
        if src.store_as == "gzip":
            f.write(gzip.compress(data, mtime=0))
        elif src.store_as == "encrypted-zip":
            from safetax.benchmarks.gpqa import ZIP_PASSWORD
            from safetax.data.encrypted_zip import encrypted_zip

            encrypted_zip(f, Path(src.file).name, data, ZIP_PASSWORD)
        else:
            f.write(data)
    os.replace(part, dest)
    return dest


def fetch_sources(to: Path, names: Sequence[str] = (), base: str = GITHUB_RAW, timeout_s: float = 60.0) -> list[Path]:
    """Download the files of ``names`` (all benchmarks when empty) into ``to``, laid out like shared/data.

    Stops at the first failure; files written before it stay (each was checked).
    """
    paths = benchmark_paths(names)
    unpinned = [f"{p} ({', '.join(b)})" for p, b in paths.items() if p not in SOURCE_OF]
    if unpinned:
        raise DataFilesError(f"no pinned source for {'; '.join(unpinned)}: add one to safetax.data.benchmark_files.SOURCES")
    written = []
    for path in paths:
        src = SOURCE_OF[path]
        written.append(store_file(src, download(src, base, timeout_s), Path(to) / path))
        log.info("%s: %s@%s:%s, sha256 verified", path, src.repo, src.revision[:7], src.file)
    return written
