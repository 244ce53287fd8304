"""The quiet console of local runs: stage ends, warnings and errors pass; the runner's chatter goes to the log."""

from __future__ import annotations

import io
import logging

from safetax.runner.console import QuietConsole


def _log_through(handler: logging.Handler, logger_name: str, message: str) -> None:
    """One warning through ``handler`` on a logger of its own (removed again)."""
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        logger.warning(message)
    finally:
        logger.removeHandler(handler)


def test_only_what_a_person_needs_reaches_the_console() -> None:
    log, console = io.StringIO(), io.StringIO()
    q = QuietConsole(log, console)
    lines = [
        "22:00:01.000 - INFO - Executing task \x1b[96m'train'\x1b[0m",
        '    [KFP Executor 2026-12-01 INFO]: Looking for component `train` in --component_module_path',
        '        "executor_input": {"inputs": {"parameterValues": {"method": {}}}}',
        "    22:00:05 INFO safetax.training.sft: epoch 1/1: loss 5.5711 (0.0s elapsed)",
        "    22:00:06 INFO safetax.stages.runtime: stage train (lora-r4) finished in 9.39s",
        "    22:00:06 WARNING safetax.telemetry.publish: Pushgateway 127.0.0.1:9 is down",
        "22:00:07.000 - ERROR - Task \x1b[96m'judge'\x1b[0m finished with status \x1b[91mFAILURE\x1b[0m",
    ]
    q.write("\n".join(lines[:3]) + "\n")
    q.write(lines[3] + "\n" + lines[4][:20])  # a line written in pieces is shown once it is complete
    assert console.getvalue() == ""
    q.write(lines[4][20:] + "\n" + "\n".join(lines[5:]) + "\n")
    shown = console.getvalue().splitlines()
    assert shown == ["  stage train (lora-r4) finished in 9.39s",
                     "  WARNING safetax.telemetry.publish: Pushgateway 127.0.0.1:9 is down",
                     "  ERROR - Task 'judge' finished with status FAILURE"]
    assert log.getvalue() == "\n".join(lines) + "\n"  # everything in the log, unchanged


def test_after_the_run_a_handler_that_kept_the_console_writes_through_it(tmp_path) -> None:
    """A logging handler made during the run holds the quiet console after the log file closed: its lines go to the
    console as they are (no "I/O operation on closed file" traceback)."""
    console = io.StringIO()
    with (tmp_path / "run.log").open("w") as log:
        q = QuietConsole(log, console)
        handler = logging.StreamHandler(q)  # type: ignore[arg-type]
        q.write("chatter\n")
    _log_through(handler, "test-after-run", "demo finished in 3.0s")
    assert console.getvalue() == "demo finished in 3.0s\n"
    assert (tmp_path / "run.log").read_text() == "chatter\n"


def test_a_methods_per_checkpoint_tasks_show_as_one_line() -> None:
    """Per-checkpoint chains log `checkpoint <c>: <stage> finished` (log only); the gather line sums them up."""
    log, console = io.StringIO(), io.StringIO()
    q = QuietConsole(log, console)
    q.write("    22:00:06 INFO safetax.stages.runtime: checkpoint lora-r4/epoch-2: generate finished in 3.10s\n"
            "    22:00:09 INFO safetax.stages.gather: evaluated 3 checkpoint(s): lora-r4/epoch-1 .. lora-r4+plain/epoch-2\n")
    assert console.getvalue().splitlines() == ["  evaluated 3 checkpoint(s): lora-r4/epoch-1 .. lora-r4+plain/epoch-2"]


def test_a_handler_left_holding_a_console_whose_stdout_closed_writes_and_flushes_nothing(tmp_path) -> None:
    """A later run re-points a handler left from an earlier one (logging flushes the old stream then): a quiet console
    whose log and console (a test's captured stdout) have both closed takes the flush and a line without an error."""
    console = io.StringIO()
    with (tmp_path / "run.log").open("w") as log:
        q = QuietConsole(log, console)
    console.close()
    handler = logging.StreamHandler(q)  # type: ignore[arg-type]
    handler.setStream(io.StringIO())  # flushes q
    handler.setStream(q)
    _log_through(handler, "test-closed-console", "late line")
    assert q.write("x") == 1
