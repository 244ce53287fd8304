"""Benchmarks: a registry of loaders, prompts and scorers (``get_benchmark("aime24")``)."""
