"""Pixel-BERT: pixel tower + text embedder -> `[CLS] text [SEP] pixels` -> Transformer.

The image side and the cross-modal side are separate calls, so the CNN runs once per
image and its features can be re-paired with other captions (ITM negatives, retrieval).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from pixelbert_jax.models import layers
from pixelbert_jax.models.heads import Pooler
from pixelbert_jax.models.pixel_encoder import PixelEncoder
from pixelbert_jax.models.text import TextEmbedder
from pixelbert_jax.models.transformer import Encoder
from pixelbert_jax.models.variants import ModelConfig


class PixelBert(nnx.Module):
  """The shared body of every task; heads live beside it."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    dtype = layers.compute_dtype(config.dtype)
    spec = config.transformer
    self.config = config
    self.pixel_encoder = PixelEncoder(config, rngs=rngs)
    self.text_embedder = TextEmbedder(spec, dropout=config.dropout, dtype=dtype, rngs=rngs)
    self.encoder = Encoder(spec, dropout=config.dropout, dtype=dtype, remat=config.remat,
                           fused_attention=config.fused_attention, rngs=rngs)
    self.pooler = Pooler(spec.hidden, dtype=dtype, rngs=rngs, init_std=spec.init_std)

  def encode_pixels(self, images: jax.Array,
                    image_sizes: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(B, H, W, 3) padded images + (B, 2) true sizes -> pixel tokens and mask."""
    return self.pixel_encoder(images, image_sizes)

  def __call__(self, token_ids: jax.Array, text_mask: jax.Array, pixel_tokens: jax.Array,
               pixel_mask: jax.Array, *, token_type_ids: jax.Array | None = None,
               return_attention: bool = False) -> tuple[jax.Array, dict]:
    """Runs the cross-modal Transformer.

    Args:
      token_ids: (B, T) `[CLS] text [SEP]` ids, padded.
      text_mask: (B, T) bool, True on real tokens.
      pixel_tokens: (B, P, D) from `encode_pixels` (optionally sampled).
      pixel_mask: (B, P) bool.
      token_type_ids: optional (B, T) segment ids.
      return_attention: also return each layer's attention probabilities.

    Returns:
      (B, T + P, D) hidden states, and an aux dict with `pooled` (B, D), `text` (B, T, D),
      `pixels` (B, P, D) and, if asked, `attention` (a list of (B, H, T+P, T+P)).
    """
    text = self.text_embedder(token_ids, token_type_ids)
    x = jnp.concatenate([text, pixel_tokens.astype(text.dtype)], axis=1)
    mask = jnp.concatenate([text_mask.astype(bool), pixel_mask.astype(bool)], axis=1)
    hidden, attention = self.encoder(x, mask, return_attention=return_attention)
    num_text = token_ids.shape[1]
    aux = {"pooled": self.pooler(hidden), "text": hidden[:, :num_text],
           "pixels": hidden[:, num_text:]}
    if return_attention:
      aux["attention"] = attention
    return hidden, aux
