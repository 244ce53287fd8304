"""Run model-written code isolated from the scorer: its credentials, files, network and processes.

:func:`run_untrusted` runs a Python program through the jail (``jail.py``) with the strongest isolation
this machine allows (:func:`isolation`, probed once and logged). What is and is not a boundary, per layer,
is in :mod:`safetax.scoring.sandbox.layers`.
"""

from safetax.scoring.sandbox.execute import ExecResult, read_paths, run_untrusted
from safetax.scoring.sandbox.layers import Isolation, SandboxError, isolation, probe

__all__ = ["ExecResult", "Isolation", "SandboxError", "isolation", "probe", "read_paths", "run_untrusted"]
