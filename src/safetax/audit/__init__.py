"""Scheduled safety audits of new checkpoints: profiles, thresholds and verdicts, the ledger, reports, the gate.

The audit pipeline (``pipelines/audit.py``) calls :mod:`safetax.stages.audit`, which composes these:
:mod:`.profiles` (which benchmarks, how many samples), :mod:`.discover` (complete checkpoints with no
record yet), :mod:`.verdict` (thresholds, pass/fail against a baseline), :mod:`.ledger` (records and
reports in the bucket), :mod:`.report`, :mod:`.telemetry` (the audit metrics) and :mod:`.gate`.
"""
