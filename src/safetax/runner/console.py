"""A quiet console for local runs: one line per finished stage, warnings and errors; the rest to a log file.

KFP's local runner prints every task's executor input and output (thousands of lines for the demo).
While a run lasts, :class:`QuietConsole` takes the place of ``sys.stdout``: every line goes to the run's
log file, and only what a person needs on the console passes through: each stage's
``stage <name> (<method>) finished in <s>`` line (a method's per-checkpoint tasks are summed up by its
``evaluated N checkpoint(s)`` line), warnings and errors, and the runner's failure lines.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import IO

# What reaches the console: a stage's end (runtime.stage_run), a warning or error of safetax's or a task's, a failure.
_SHOW = re.compile(r"INFO safetax\.stages\.runtime: stage \S+( \(.*\))? finished in|INFO safetax\.stages\.gather: evaluated|"
                   r"(WARNING|ERROR) safetax|finished with status .*FAILURE|Traceback|Error: ")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STAMP = re.compile(r"^\d\d:\d\d:\d\d(\.\d+)? (- )?")


class QuietConsole:
    """A stand-in for ``sys.stdout``: all text to ``log``, selected lines (condensed) to ``console``."""

    def __init__(self, log: IO[str], console: IO[str]) -> None:
        self.log, self.console, self._line = log, console, ""
        self.shown = 0

    def write(self, text: str) -> int:
        if self.log.closed:  # the run is over: a logging handler made during it still holds this object
            if not getattr(self.console, "closed", False):  # (a test's captured stdout closes when the test ends)
                self.console.write(text)
            return len(text)
        self.log.write(text)
        self._line += text
        while "\n" in self._line:
            line, self._line = self._line.split("\n", 1)
            self._show(line)
        return len(text)

    def _show(self, line: str) -> None:
        plain = plain_text(line).strip()
        if not _SHOW.search(plain) or plain.startswith("[KFP Executor"):
            return
        plain = _STAMP.sub("", plain).replace("INFO safetax.stages.runtime: ", "").replace("INFO safetax.stages.gather: ", "")
        self.console.write(f"  {plain}\n")
        self.console.flush()
        self.shown += 1

    def flush(self) -> None:
        if not self.log.closed:
            self.log.flush()
        if not getattr(self.console, "closed", False):
            self.console.flush()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return "utf-8"

    def fileno(self) -> int:  # subprocesses that ask for a real descriptor get the log file's
        return self.log.fileno()


def plain_text(text: str) -> str:
    """``text`` without terminal colour codes (the local runner colours task names and statuses)."""
    return _ANSI.sub("", text)


def log_path(pipeline_root: Path, name: str) -> Path:
    """A new log file for a run of pipeline ``name`` under ``<pipeline_root>/logs/``."""
    import time

    folder = pipeline_root / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.log"


def real_stdout() -> IO[str]:
    return sys.__stdout__ if sys.__stdout__ is not None else sys.stdout
