"""Analytics of safety vs reasoning across checkpoints.

``metrics`` (pure metric functions), ``summary`` (one table of all checkpoints),
``plots`` (trade-off scatter) and ``report`` (Markdown/CSV/PNG report, CLI table).
"""
