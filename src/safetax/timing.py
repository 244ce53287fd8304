"""Stage timing log lines and progress bars with an ETA for long loops."""

from __future__ import annotations

import logging
import os
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


def _bar_disabled() -> bool:
    # Bars go to stderr when it is a terminal; SAFETAX_PROGRESS=1 forces them (e.g. kubectl logs), =0 hides them.
    forced = os.environ.get("SAFETAX_PROGRESS")
    return forced == "0" or (forced != "1" and not sys.stderr.isatty())


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterable[T]:
    """Iterate with a tqdm bar on stderr showing rate and ETA."""
    return tqdm(items, desc=desc, total=total, unit=unit, disable=_bar_disabled(), file=sys.stderr, mininterval=1.0)


def progress_bar(total: int, desc: str, unit: str = "it") -> tqdm:
    """A bar to advance by hand with ``.update(n)`` (use as a context manager)."""
    return tqdm(total=total, desc=desc, unit=unit, disable=_bar_disabled(), file=sys.stderr, mininterval=1.0)


RUNNER_PID_ENV = "SAFETAX_RUNNER_PID"


def setup_logging(level: int = logging.INFO) -> None:
    """One log format for the CLI and every KFP component; a task of a local run also ends with its runner."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    runner = os.environ.get(RUNNER_PID_ENV, "")
    if runner.isdigit() and int(runner) != os.getpid():
        end_with_runner(int(runner))


def end_with_runner(pid: int, every: float = 1.0) -> None:
    """End this process when process ``pid`` (the local runner that started this task) is gone.

    A killed ``safetax run`` (SIGKILL runs no cleanup) would otherwise leave its running tasks
    training on. The task checks once a second from a daemon thread; on a cluster the variable is
    unset and nothing runs.
    """
    import threading

    def watch() -> None:
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                logging.getLogger("safetax").error("the local runner (pid %d) is gone: ending this task", pid)
                os._exit(137)
            except PermissionError:
                pass  # alive, another user's
            time.sleep(every)

    threading.Thread(target=watch, name="safetax-runner-watch", daemon=True).start()
