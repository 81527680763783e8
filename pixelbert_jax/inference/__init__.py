"""Inference on trained checkpoints: load a run once, then answer, match and rank."""

from pixelbert_jax.inference.predictor import Predictor, UnsupportedTaskError

__all__ = ["Predictor", "UnsupportedTaskError"]
