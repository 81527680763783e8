"""The cross-modal Transformer: BERT's post-LN encoder layers over text and pixel tokens.

Attention logits and softmax run in float32 whatever the compute dtype, and the layer can
hand back its attention probabilities for visualisation.
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from pixelbert_jax.models import layers
from pixelbert_jax.models.variants import TransformerSpec


class SelfAttention(nnx.Module):
  """Multi-head self-attention with BERT's separate query / key / value projections."""

  def __init__(self, spec: TransformerSpec, *, dropout: float, dtype: Any,
               rngs: nnx.Rngs):
    if spec.hidden % spec.heads:
      raise ValueError(f"hidden {spec.hidden} is not divisible by heads {spec.heads}")
    self.heads = spec.heads
    kw = dict(dtype=dtype, rngs=rngs, init_std=spec.init_std)
    self.query = layers.dense(spec.hidden, spec.hidden, ("embed", "qkv"), **kw)
    self.key = layers.dense(spec.hidden, spec.hidden, ("embed", "qkv"), **kw)
    self.value = layers.dense(spec.hidden, spec.hidden, ("embed", "qkv"), **kw)
    self.out = layers.dense(spec.hidden, spec.hidden, ("qkv", "embed"), **kw)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)

  def _heads_first(self, x: jax.Array) -> jax.Array:
    """(B, L, H * Dh) -> (B, H, L, Dh): heads lead, so that both attention products
    are plain batched matmuls. XLA:CPU runs the demo encoder's forward pass 1.8x
    faster this way than with einsums that transpose inside (the training step's time
    is unchanged; benchmarks/RESULTS.md, "The demo in minutes")."""
    return x.reshape(*x.shape[:2], self.heads, -1).transpose(0, 2, 1, 3)

  def __call__(self, x: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """x: (B, L, D); mask: (B, L) bool of keys that may be attended to."""
    q, k, v = (self._heads_first(f(x)) for f in (self.query, self.key, self.value))
    scale = 1.0 / jnp.sqrt(q.shape[-1]).astype(jnp.float32)
    logits = jnp.matmul(q, k.swapaxes(-1, -2), preferred_element_type=jnp.float32)
    logits = jnp.where(mask[:, None, None, :], logits * scale, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1)  # (B, H, L, L)
    context = jnp.matmul(self.dropout(probs).astype(v.dtype), v).transpose(0, 2, 1, 3)
    return self.out(context.reshape(x.shape[:2] + (-1,))), probs


class EncoderLayer(nnx.Module):
  """Attention and MLP sub-layers, each followed by residual add and LayerNorm (post-LN)."""

  def __init__(self, spec: TransformerSpec, *, dropout: float, dtype: Any,
               rngs: nnx.Rngs):
    kw = dict(dtype=dtype, rngs=rngs)
    eps = spec.layer_norm_eps
    self.attention = SelfAttention(spec, dropout=dropout, **kw)
    self.attention_norm = layers.layer_norm(spec.hidden, "embed", epsilon=eps, **kw)
    self.mlp_in = layers.dense(spec.hidden, spec.mlp, ("embed", "mlp"),
                               init_std=spec.init_std, **kw)
    self.mlp_out = layers.dense(spec.mlp, spec.hidden, ("mlp", "embed"),
                                init_std=spec.init_std, **kw)
    self.mlp_norm = layers.layer_norm(spec.hidden, "embed", epsilon=eps, **kw)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)

  def __call__(self, x: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    attended, probs = self.attention(x, mask)
    x = self.attention_norm(x + self.dropout(attended))
    h = self.mlp_out(layers.gelu(self.mlp_in(x)))
    return self.mlp_norm(x + self.dropout(h)), probs


class Encoder(nnx.Module):
  """A stack of encoder layers over an already-embedded token sequence."""

  def __init__(self, spec: TransformerSpec, *, dropout: float, dtype: Any,
               remat: bool = False, rngs: nnx.Rngs):
    self.layers = nnx.List([EncoderLayer(spec, dropout=dropout, dtype=dtype, rngs=rngs)
                            for _ in range(spec.num_layers)])
    self.remat = remat

  def __call__(self, x: jax.Array, mask: jax.Array, *,
               return_attention: bool = False) -> tuple[jax.Array, list[jax.Array]]:
    """Returns the final hidden states and, if asked, each layer's (B, H, L, L) probs."""
    attention = []
    for layer in self.layers:
      call = nnx.remat(type(layer).__call__) if self.remat else type(layer).__call__
      x, probs = call(layer, x, mask)
      if return_attention:
        attention.append(probs)
    return x, attention
