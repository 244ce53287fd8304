"""safetax: safety alignment of reasoning LLMs without the safety tax."""

__version__ = "0.1.0"
