"""Task heads on the cross-modal Transformer's output: MLM, ITM, VQA, NLVR2, retrieval."""

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from pixelbert_jax.models import layers
from pixelbert_jax.models.variants import TransformerSpec


class Pooler(nnx.Module):
  """BERT's pooler: dense + tanh on the [CLS] state."""

  def __init__(self, hidden: int, *, dtype: Any, rngs: nnx.Rngs,
               init_std: float = layers.BERT_INIT_STD):
    self.dense = layers.dense(hidden, hidden, ("embed", "mlp"), dtype=dtype, rngs=rngs,
                              init_std=init_std)

  def __call__(self, hidden_states: jax.Array) -> jax.Array:
    return jnp.tanh(self.dense(hidden_states[:, 0]))


class MLMHead(nnx.Module):
  """BERT's prediction head; the decoder is tied to the word embeddings (plus a bias)."""

  def __init__(self, spec: TransformerSpec, *, dtype: Any, rngs: nnx.Rngs):
    self.transform = layers.dense(spec.hidden, spec.hidden, ("embed", "mlp"),
                                  dtype=dtype, rngs=rngs, init_std=spec.init_std)
    self.norm = layers.layer_norm(spec.hidden, "embed", epsilon=spec.layer_norm_eps,
                                  dtype=dtype, rngs=rngs)
    self.bias = layers.param(rngs, nnx.initializers.zeros, (spec.vocab_size,), ("vocab",))

  def __call__(self, hidden_states: jax.Array, word_embeddings: jax.Array) -> jax.Array:
    """(B, T, D) text states and the (V, D) embedding table -> (B, T, V) float32 logits."""
    h = self.norm(layers.gelu(self.transform(hidden_states)))
    logits = jnp.einsum("btd,vd->btv", h, word_embeddings.astype(h.dtype),
                        preferred_element_type=jnp.float32)
    return logits + self.bias[...]


class ScoreHead(nnx.Module):
  """One logit from the pooled [CLS]: image-text match (ITM) or retrieval score."""

  def __init__(self, hidden: int, *, dtype: Any, rngs: nnx.Rngs,
               init_std: float = layers.BERT_INIT_STD):
    self.dense = layers.dense(hidden, 1, ("embed", None), dtype=dtype, rngs=rngs,
                              init_std=init_std)

  def __call__(self, pooled: jax.Array) -> jax.Array:
    return self.dense(pooled)[:, 0].astype(jnp.float32)


class DualEmbedding(nnx.Module):
  """Two linear maps into one space, for retrieval's cheap first stage: pooled pixel
  tokens and pooled caption embeddings (both from before the cross-modal Transformer)
  become unit vectors whose dot product ranks the candidates."""

  def __init__(self, hidden: int, dim: int, *, dtype: Any, rngs: nnx.Rngs,
               init_std: float = layers.BERT_INIT_STD):
    self.image_proj = layers.dense(hidden, dim, ("embed", None), dtype=dtype, rngs=rngs,
                                   init_std=init_std)
    self.text_proj = layers.dense(hidden, dim, ("embed", None), dtype=dtype, rngs=rngs,
                                  init_std=init_std)

  @staticmethod
  def _unit(x: jax.Array) -> jax.Array:
    x = x.astype(jnp.float32)
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-6)

  def embed_images(self, pooled_pixels: jax.Array) -> jax.Array:
    return self._unit(self.image_proj(pooled_pixels))

  def embed_texts(self, pooled_text: jax.Array) -> jax.Array:
    return self._unit(self.text_proj(pooled_text))


class MLPClassifier(nnx.Module):
  """Two-layer MLP (dense, GELU, LayerNorm, dense), as UNITER / ViLT use for VQA / NLVR2."""

  def __init__(self, in_features: int, hidden: int, num_classes: int, *, dtype: Any,
               rngs: nnx.Rngs):
    self.dense_in = layers.dense(in_features, hidden, ("embed", "mlp"), dtype=dtype,
                                 rngs=rngs)
    self.norm = layers.layer_norm(hidden, "mlp", epsilon=1e-12, dtype=dtype, rngs=rngs)
    self.dense_out = layers.dense(hidden, num_classes, ("mlp", None), dtype=dtype,
                                  rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    h = self.norm(layers.gelu(self.dense_in(x)))
    return self.dense_out(h).astype(jnp.float32)


def vqa_head(hidden: int, num_answers: int, *, dtype: Any, rngs: nnx.Rngs) -> MLPClassifier:
  """Pooled [CLS] -> answer logits (trained with BCE on soft scores)."""
  return MLPClassifier(hidden, 2 * hidden, num_answers, dtype=dtype, rngs=rngs)


def nlvr2_pair_head(hidden: int, *, dtype: Any, rngs: nnx.Rngs) -> MLPClassifier:
  """The "pair" setting: both images' pooled [CLS] concatenated -> 2 logits."""
  return MLPClassifier(2 * hidden, 2 * hidden, 2, dtype=dtype, rngs=rngs)

