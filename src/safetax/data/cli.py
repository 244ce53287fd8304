"""``safetax data upload | fetch``: put the benchmark files where a cluster's pods can read them.

Wired into ``safetax`` by :func:`add_parser` and :func:`main`; the work is done in
:mod:`safetax.data.benchmark_files`. Importing this module is cheap (the benchmark modules load
only when a command runs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from safetax.data.benchmark_files import GITHUB_RAW

_BENCHMARK_HELP = ("only this benchmark's file (repeatable), e.g. --benchmark xstest --benchmark aime24 "
                   "(default: every registered benchmark)")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``data`` with its ``upload`` and ``fetch`` commands to the ``safetax`` subcommands."""
    p = subparsers.add_parser(
        "data", help="seed a bucket with the benchmark files, or fetch them from their pinned sources",
        description="Benchmarks given no uri read <SAFETAX_DATA_DIR>/<default path>, where SAFETAX_DATA_DIR is a "
                    "local directory laid out like the project's shared/data or an s3://bucket/prefix seeded from "
                    "one. On a cluster, upload the files once and set SAFETAX_DATA_DIR on the pipeline pods (the "
                    "chart's `dataDir` value); each pod downloads a file once and caches it by digest.")
    actions = p.add_subparsers(dest="data_command", required=True)
    u = actions.add_parser(
        "upload", help="publish the benchmark files of a local directory to s3://bucket/prefix",
        description="Checks that DIR holds every expected file (each missing one is named) and that each loads, "
                    "then publishes them to URI with the store (files first, the manifest last, so a reader sees "
                    "all or none). Only the benchmarks' files are uploaded, at their default paths. Then set "
                    "SAFETAX_DATA_DIR=URI. Endpoint and credentials: SAFETAX_S3_ENDPOINT, SAFETAX_S3_ACCESS_KEY, "
                    "SAFETAX_S3_SECRET_KEY, SAFETAX_S3_REGION.")
    u.add_argument("dir", type=Path, metavar="DIR",
                   help="local directory laid out like the project's shared/data (or the output of `safetax data fetch`)")
    u.add_argument("uri", metavar="URI",
                   help="destination: s3://bucket/prefix (a prefix inside the bucket is required) or a local directory")
    u.add_argument("--benchmark", action="append", default=[], metavar="NAME", help=_BENCHMARK_HELP)
    f = actions.add_parser(
        "fetch", help="download the benchmark files from their public sources at pinned commits",
        description="Downloads each benchmark file from its public source (a GitHub repository at a pinned "
                    "commit), checks its sha256 against the table in safetax.data.benchmark_files, and writes it "
                    "under DIR at its default path. Needs internet access (or a mirror); offline it stops with a "
                    "message naming the source.")
    f.add_argument("--to", type=Path, required=True, metavar="DIR", help="directory to write the files into (created if needed)")
    f.add_argument("--benchmark", action="append", default=[], metavar="NAME", help=_BENCHMARK_HELP)
    f.add_argument("--mirror", default=GITHUB_RAW, metavar="URL",
                   help=f"base URL serving <owner>/<repo>/<commit>/<path> like raw.githubusercontent.com, e.g. an "
                        f"internal proxy of it (default: {GITHUB_RAW})")
    f.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS", help="time limit of each download (default: 60)")
    return p


def main(args: argparse.Namespace) -> int:
    """Run ``safetax data <command>``; 0 on success, 1 with the reason on stderr."""
    from safetax.data import benchmark_files

    try:
        if args.data_command == "upload":
            up = benchmark_files.upload(args.dir, args.uri, args.benchmark)
            for name, count in up.items.items():
                print(f"{name}: {count} items")
            print(f"published {len(up.manifest.files)} file(s), {up.manifest.total_bytes / 1e6:.2f} MB to {up.uri}")
            print(f"set SAFETAX_DATA_DIR={up.uri}")
        else:
            for path in benchmark_files.fetch_sources(args.to, args.benchmark, args.mirror, args.timeout):
                print(path)
            print(f"sha256 verified; seed a bucket with: safetax data upload {args.to} s3://bucket/prefix")
    except ValueError as e:  # DataFilesError, StoreError, DataError, an unknown benchmark
        print(f"safetax data {args.data_command}: {e}", file=sys.stderr)
        return 1
    return 0
