"""Stage timing log lines and progress bars with an ETA for long loops."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
log = logging.getLogger("safetax")


@contextmanager
def timed(what: str) -> Iterator[None]:
    """Log ``what`` with its wall time when the block ends (also when it raises)."""
    start = time.perf_counter()
    ok = False
    try:
        yield
        ok = True
    finally:
        status = "done" if ok else "failed"
        log.info("%s %s in %.2fs", what, status, time.perf_counter() - start)


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterable[T]:
    """A tqdm bar on stderr (rate and ETA); silent when stderr is not a terminal and
    SAFETAX_PROGRESS is unset, so CI logs stay readable."""
    import os

    disable = not (sys.stderr.isatty() or os.environ.get("SAFETAX_PROGRESS") == "1")
    return tqdm(items, desc=desc, total=total, unit=unit, disable=disable, file=sys.stderr, mininterval=1.0)


def setup_logging(level: int = logging.INFO) -> None:
    """One log format for the CLI and every KFP component."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
