"""Pre-training: masked language modelling and image-text matching with pixel sampling.

Per step, inside the graph: the CNN runs once per image; each example keeps k random
valid pixels (per-example keys, so micro-batching does not change the draw); MLM is
computed on the matched pairs with masked text; for ITM half of the examples get the
caption of another example of the (micro-)batch and the rest keep their own. With
`itm_swap_share` > 0 and batches carrying swapped captions (`data.swaps`), that share
of the negatives instead gets its own caption with one word swapped: a hard negative.
"""

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from pixelbert_jax.models import heads, layers
from pixelbert_jax.models.pixel_sampling import sample_pixels
from pixelbert_jax.models.pixelbert import PixelBert
from pixelbert_jax.models.variants import ModelConfig

class PretrainModel(nnx.Module):
  """The Pixel-BERT body with the MLM and ITM heads."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    dtype = layers.compute_dtype(config.dtype)
    self.pixelbert = PixelBert(config, rngs=rngs)
    self.mlm_head = heads.MLMHead(config.transformer, dtype=dtype, rngs=rngs)
    self.itm_head = heads.ScoreHead(config.transformer.hidden, dtype=dtype, rngs=rngs,
                                    init_std=config.transformer.init_std)

  def mlm_logits(self, text_states: jax.Array) -> jax.Array:
    return self.mlm_head(text_states, self.pixelbert.text_embedder.word.embedding[...])


def example_keys(key: jax.Array, example_index: jax.Array) -> jax.Array:
  """One key per example, a function of its index in the global batch."""
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(example_index)


def sampled_pixels(model: PretrainModel, batch: dict, key: jax.Array, num_samples: int):
  """Encodes the images once and keeps `num_samples` random valid pixels per example."""
  tokens, mask = model.pixelbert.encode_pixels(batch["images"], batch["image_sizes"])
  keys = example_keys(jax.random.fold_in(key, 0), batch["example_index"])
  pick = lambda k, t, m: sample_pixels(k, t[None], m[None], num_samples)[:2]
  tokens, mask = jax.vmap(pick)(keys, tokens, mask)
  return tokens[:, 0], mask[:, 0]


def itm_partners(key: jax.Array, batch_size: int) -> jax.Array:
  """For each example, whose caption it gets: itself, or (for half) another example's."""
  shuffle_key, offset_key = jax.random.split(key)
  order = jax.random.permutation(shuffle_key, batch_size)
  negative = jnp.zeros(batch_size, bool).at[order[:batch_size // 2]].set(True)
  offsets = jax.random.randint(offset_key, (batch_size,), 1, max(batch_size, 2))
  others = (jnp.arange(batch_size) + offsets) % batch_size
  return jnp.where(negative & (batch_size > 1), others, jnp.arange(batch_size))


def swapped_negatives(key: jax.Array, batch: dict, partner: jax.Array,
                      share: float) -> jax.Array:
  """(B,) bool: the negatives that take their own swapped caption instead."""
  if share <= 0 or "swap_ids" not in batch:
    return jnp.zeros(partner.shape, bool)
  negative = partner != jnp.arange(partner.shape[0])
  chosen = jax.random.uniform(key, partner.shape) < share
  return negative & chosen & batch["has_swap"]


def mlm_sums(model, batch, tokens, mask) -> dict:
  """Masked-token cross-entropy and accuracy sums on the (matched) pairs."""
  _, aux = model.pixelbert(batch["mlm_ids"], batch["text_mask"], tokens, mask)
  logits = model.mlm_logits(aux["text"])
  weights = batch["mlm_weights"] * batch["valid"][:, None]
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["mlm_labels"])
  correct = jnp.argmax(logits, -1) == batch["mlm_labels"]
  return {"mlm_loss": jnp.sum(loss * weights), "mlm_accuracy": jnp.sum(correct * weights)}


def itm_sums(model, batch, tokens, mask, key, swap_share: float = 0.0) -> dict:
  """Binary match loss on clean text, half of it re-paired with other images (or,
  for `swap_share` of those, with its own caption one word off)."""
  partner = itm_partners(jax.random.fold_in(key, 1), batch["token_ids"].shape[0])
  swap = swapped_negatives(jax.random.fold_in(key, 2), batch, partner, swap_share)
  ids, text_mask = batch["token_ids"][partner], batch["text_mask"][partner]
  if "swap_ids" in batch:  # a swap keeps every position, so its own text mask
    ids = jnp.where(swap[:, None], batch["swap_ids"], ids)
    text_mask = jnp.where(swap[:, None], batch["text_mask"], text_mask)
  _, aux = model.pixelbert(ids, text_mask, tokens, mask)
  logits = model.itm_head(aux["pooled"])
  labels = (partner == jnp.arange(partner.shape[0])).astype(jnp.float32)
  if "image_ids" in batch:  # a caption of the same image is a match, not a negative
    labels = jnp.maximum(labels, batch["image_ids"][partner] == batch["image_ids"])
  labels = jnp.where(swap, 0.0, labels)
  weights = (batch["valid"] & (batch["valid"][partner] | swap)).astype(jnp.float32)
  loss = optax.sigmoid_binary_cross_entropy(logits, labels)
  correct = (logits > 0) == (labels > 0.5)
  return {"itm_loss": jnp.sum(loss * weights), "itm_accuracy": jnp.sum(correct * weights)}


def make_loss_fn(num_sampled_pixels: int | None, use_mlm: bool = True, use_itm: bool = True,
                 itm_swap_share: float = 0.0):
  """The pre-training loss as {name: sum}; either objective may be switched off."""

  def loss_fn(model: PretrainModel, batch: dict, key: jax.Array) -> dict:
    tokens, mask = sampled_pixels(model, batch, key, num_sampled_pixels)
    sums = {}
    if use_mlm:
      sums.update(mlm_sums(model, batch, tokens, mask))
    if use_itm:
      sums.update(itm_sums(model, batch, tokens, mask, key, itm_swap_share))
    return sums

  return loss_fn


def counts_fn(batch: dict) -> dict:
  """Global normalisers: masked tokens for MLM, valid examples for ITM."""
  valid = batch["valid"].astype(jnp.float32)
  masked = jnp.sum(batch["mlm_weights"] * valid[:, None])
  return {"mlm_loss": masked, "mlm_accuracy": masked, "itm_loss": jnp.sum(valid),
          "itm_accuracy": jnp.sum(valid)}


def loss_weights(use_mlm: bool = True, use_itm: bool = True) -> dict:
  """The objective's terms: each enabled loss with weight 1, as the paper sums them."""
  return {name: 1.0 for name, on in (("mlm_loss", use_mlm), ("itm_loss", use_itm)) if on}
