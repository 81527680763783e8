"""BERT-compatible text embeddings: word + position + token type, LayerNorm, dropout."""

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from pixelbert_jax.models import layers
from pixelbert_jax.models.variants import TransformerSpec


class TextEmbedder(nnx.Module):
  """Embeds token ids the way BERT does, so BERT-base weights load unchanged."""

  def __init__(self, spec: TransformerSpec, *, dropout: float, dtype: Any,
               rngs: nnx.Rngs):
    kw = dict(dtype=dtype, rngs=rngs)
    table = lambda n, axes: layers.embedding(n, spec.hidden, axes, init_std=spec.init_std,
                                             **kw)
    self.word = table(spec.vocab_size, ("vocab", "embed"))
    self.position = table(spec.max_positions, (None, "embed"))
    self.token_type = table(spec.type_vocab_size, (None, "embed"))
    self.norm = layers.layer_norm(spec.hidden, "embed", epsilon=spec.layer_norm_eps, **kw)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)

  def __call__(self, token_ids: jax.Array,
               token_type_ids: jax.Array | None = None) -> jax.Array:
    """Maps (B, T) int ids to (B, T, hidden) embeddings."""
    if token_type_ids is None:
      token_type_ids = jnp.zeros_like(token_ids)
    positions = jnp.arange(token_ids.shape[1])[None, :]
    x = self.word(token_ids) + self.position(positions) + self.token_type(token_type_ids)
    return self.dropout(self.norm(x))
