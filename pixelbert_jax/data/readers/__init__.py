"""Readers of the official annotation formats (COCO, Karpathy, Flickr30K, VG, VQA, NLVR2).

Each reader yields the records of `pixelbert_jax.data.records` and reports every
malformed entry to a `pixelbert_jax.data.skips.SkipCounter` with a reason.
"""
