"""Readers of the official formats: COCO, Karpathy, Flickr30K, VG, VQA, NLVR2, SNLI-VE,
and of the web corpora (CC3M / CC12M TSV, SBU Captions, img2dataset output).

Each reader yields the records of `pixelbert_jax.data.records` and reports every
malformed entry to a `pixelbert_jax.data.skips.SkipCounter` with a reason.
"""
