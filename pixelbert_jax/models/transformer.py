"""The cross-modal Transformer: BERT's post-LN encoder layers over text and pixel tokens.

Attention logits and softmax run in float32 whatever the compute dtype, and the layer can
hand back its attention probabilities for visualisation. `fused_attention` routes the
attention core through `jax.nn.dot_product_attention`; `remat` picks a
rematerialisation policy per layer (`models/remat.py`).
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

from pixelbert_jax.models import layers
from pixelbert_jax import sharding
from pixelbert_jax.models import remat as remat_lib
from pixelbert_jax.models.variants import TransformerSpec


class SelfAttention(nnx.Module):
  """Multi-head self-attention with BERT's separate query / key / value projections.

  `fused` hands the attention core to `jax.nn.dot_product_attention` (cuDNN's fused
  kernel on a GPU where it applies, XLA elsewhere), which neither returns the
  probabilities nor applies dropout to them: asked for the probabilities, or training
  with attention dropout, the layer runs its explicit products instead. Both keep BERT's
  semantics: float32 logits and softmax, masked keys excluded.
  """

  def __init__(self, spec: TransformerSpec, *, dropout: float, dtype: Any,
               fused: bool = False, rngs: nnx.Rngs):
    if spec.hidden % spec.heads:
      raise ValueError(f"hidden {spec.hidden} is not divisible by heads {spec.heads}")
    self.heads = spec.heads
    self.fused = fused
    kw = dict(dtype=dtype, rngs=rngs, init_std=spec.init_std)
    self.query = layers.dense(spec.hidden, spec.hidden, ("embed", "qkv"), **kw)
    self.key = layers.dense(spec.hidden, spec.hidden, ("embed", "qkv"), **kw)
    self.value = layers.dense(spec.hidden, spec.hidden, ("embed", "qkv"), **kw)
    self.out = layers.dense(spec.hidden, spec.hidden, ("qkv", "embed"), **kw)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)

  def _split_heads(self, x: jax.Array) -> jax.Array:
    """(B, L, H * Dh) -> (B, L, H, Dh)."""
    return x.reshape(*x.shape[:2], self.heads, -1)

  def _dropout_active(self) -> bool:
    return self.dropout.rate > 0 and not self.dropout.deterministic

  def _explicit(self, q, k, v, mask) -> tuple[jax.Array, jax.Array]:
    """Heads lead, so both products are plain batched matmuls: XLA:CPU runs the demo
    encoder's forward pass 1.8x faster so than with einsums that transpose inside
    (benchmarks/RESULTS.md, "The demo in minutes")."""
    q, k, v = (t.transpose(0, 2, 1, 3) for t in (q, k, v))  # (B, H, L, Dh)
    scale = 1.0 / jnp.sqrt(q.shape[-1]).astype(jnp.float32)
    logits = jnp.matmul(q, k.swapaxes(-1, -2), preferred_element_type=jnp.float32)
    logits = jnp.where(mask[:, None, None, :], logits * scale, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1)  # (B, H, L, L)
    context = jnp.matmul(self.dropout(probs).astype(v.dtype), v)
    return context.transpose(0, 2, 1, 3), probs

  def __call__(self, x: jax.Array, mask: jax.Array,
               need_probs: bool = True) -> tuple[jax.Array, jax.Array | None]:
    """x: (B, L, D); mask: (B, L) bool of keys that may be attended to. Returns the
    output and the (B, H, L, L) probabilities (None from the fused core)."""
    q, k, v = (self._split_heads(f(x)) for f in (self.query, self.key, self.value))
    if self.fused and not need_probs and not self._dropout_active():
      context = jax.nn.dot_product_attention(q, k, v, mask=mask[:, None, None, :])
      probs = None
    else:
      context, probs = self._explicit(q, k, v, mask)
    context = checkpoint_name(context.reshape(x.shape[:2] + (-1,)), "attention_context")
    return self.out(context), probs


class EncoderLayer(nnx.Module):
  """Attention and MLP sub-layers, each followed by residual add and LayerNorm (post-LN)."""

  def __init__(self, spec: TransformerSpec, *, dropout: float, dtype: Any,
               fused_attention: bool = False, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, rngs=rngs)
    eps = spec.layer_norm_eps
    self.attention = SelfAttention(spec, dropout=dropout, fused=fused_attention, **kw)
    self.attention_norm = layers.layer_norm(spec.hidden, "embed", epsilon=eps, **kw)
    self.mlp_in = layers.dense(spec.hidden, spec.mlp, ("embed", "mlp"),
                               init_std=spec.init_std, **kw)
    self.mlp_out = layers.dense(spec.mlp, spec.hidden, ("mlp", "embed"),
                                init_std=spec.init_std, **kw)
    self.mlp_norm = layers.layer_norm(spec.hidden, "embed", epsilon=eps, **kw)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)

  def __call__(self, x: jax.Array, mask: jax.Array,
               need_probs: bool = True) -> tuple[jax.Array, jax.Array | None]:
    attended, probs = self.attention(x, mask, need_probs)
    x = checkpoint_name(self.attention_norm(x + self.dropout(attended)), "attention_block")
    h = self.mlp_out(layers.gelu(self.mlp_in(x)))
    return self.mlp_norm(x + self.dropout(h)), probs


class Encoder(nnx.Module):
  """A stack of encoder layers over an already-embedded token sequence; each layer is
  rematerialised under `remat`'s policy (`models/remat.py`)."""

  def __init__(self, spec: TransformerSpec, *, dropout: float, dtype: Any,
               remat: str = "none", fused_attention: bool = False, rngs: nnx.Rngs):
    self.layers = nnx.List([
        EncoderLayer(spec, dropout=dropout, dtype=dtype, fused_attention=fused_attention,
                     rngs=rngs) for _ in range(spec.num_layers)])
    self.remat = remat_lib.policy_name(remat)

  def __call__(self, x: jax.Array, mask: jax.Array, *,
               return_attention: bool = False) -> tuple[jax.Array, list[jax.Array]]:
    """Returns the final hidden states and, if asked, each layer's (B, H, L, L) probs."""
    attention = []

    def call_layer(layer, x, mask):  # the flag is closed over: remat traces arguments
      return layer(x, mask, need_probs=return_attention)

    call = remat_lib.wrap(call_layer, self.remat)
    x = sharding.constrain_batch(x)  # each device runs its own examples (sharding.py)
    for layer in self.layers:
      x, probs = call(layer, x, mask)
      x = sharding.constrain_batch(x)
      if return_attention:
        attention.append(probs)
    return x, attention
