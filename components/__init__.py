"""Thin KFP components: each body imports safetax and calls one stage function."""
