"""Thin KFP components: each body imports safetax and calls its stage functions.

A component's body runs in the stage's pod from the image's installed package; its signature is
what KFP shows and caches on. The run id is never an input (it would defeat caching across runs):
each body reads it from its output artifact's URI (:func:`safetax.runid.run_id_of`).
"""
