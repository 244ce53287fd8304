"""Analytics of safety vs reasoning across checkpoints, on the figures of :mod:`safetax.metrics`.

``summary`` (one table of all checkpoints, with standard errors and intervals against the base),
``categories`` (safety per category and hazard), ``plots`` (trade-off scatter with error bars) and
``report`` (Markdown/CSV/PNG report, CLI table).
"""
