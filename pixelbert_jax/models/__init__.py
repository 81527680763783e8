"""Flax NNX modules of Pixel-BERT: pixel tower, text embedder, cross-modal encoder, heads."""
