"""Pixel-BERT in JAX / Flax NNX: pixel encoder, cross-modal Transformer, training and evaluation."""

__version__ = "0.1.0"
