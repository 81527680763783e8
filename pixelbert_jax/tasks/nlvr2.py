"""NLVR2 fine-tuning: the "pair" setting of LXMERT and UNITER on the Pixel-BERT body.

An NLVR2 example is a statement about a pair of images. Each (image, statement) pair
goes through the cross-modal Transformer on its own; the two pooled [CLS] vectors,
left then right, are concatenated and a two-layer MLP gives two logits (false, true),
trained with softmax cross-entropy. The CNN sees the two images of every example as
one batch of 2B images, so each image is encoded once per step.

Loss normalisation: the cross-entropy is averaged over the labelled valid examples of
the global batch. Padding, skipped examples (`valid` False) and examples without a
label (`label` -1, the hidden test set) count in neither the sum nor the count.
"""

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from pixelbert_jax.models import heads, layers
from pixelbert_jax.models.pixelbert import PixelBert
from pixelbert_jax.models.variants import ModelConfig

# The objective: the one loss term, at weight 1.
LOSS_WEIGHTS = {"nlvr2_loss": 1.0}


class Nlvr2Model(nnx.Module):
  """The Pixel-BERT body with the NLVR2 pair classifier."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    dtype = layers.compute_dtype(config.dtype)
    self.pixelbert = PixelBert(config, rngs=rngs)
    self.nlvr2_head = heads.nlvr2_pair_head(config.transformer.hidden, dtype=dtype,
                                            rngs=rngs)

  def __call__(self, token_ids: jax.Array, text_mask: jax.Array, images: jax.Array,
               image_sizes: jax.Array) -> jax.Array:
    """(B, T) statements, (B, 2, H, W, 3) uint8 images and (B, 2, 2) sizes -> (B, 2)
    float32 logits (false, true)."""
    batch, pair = images.shape[:2]
    # (B, 2, ...) -> (2B, ...): rows 2i and 2i + 1 are example i's left and right image.
    pixels, pixel_mask = self.pixelbert.encode_pixels(
        images.reshape((batch * pair,) + images.shape[2:]),
        image_sizes.reshape(batch * pair, image_sizes.shape[-1]))
    _, aux = self.pixelbert(jnp.repeat(token_ids, pair, axis=0),
                            jnp.repeat(text_mask, pair, axis=0), pixels, pixel_mask)
    pooled = aux["pooled"]
    return self.nlvr2_head(pooled.reshape(batch, pair * pooled.shape[-1]))


def logits(model: Nlvr2Model, batch: dict) -> jax.Array:
  return model(batch["token_ids"], batch["text_mask"], batch["images"],
               batch["image_sizes"])


def labelled(batch: dict) -> jax.Array:
  """(B,) float32: 1 on valid examples that carry a label."""
  return (batch["valid"] & (batch["label"] >= 0)).astype(jnp.float32)


def example_losses(pair_logits: jax.Array, labels: jax.Array) -> jax.Array:
  """(B,) cross-entropy; hidden labels (-1) are read as 0 and must be masked out."""
  return optax.softmax_cross_entropy_with_integer_labels(pair_logits,
                                                         jnp.maximum(labels, 0))


def predict(pair_logits: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(B,) int32 prediction (1 true, 0 false) and the probability of "true"."""
  return (jnp.argmax(pair_logits, axis=-1).astype(jnp.int32),
          jax.nn.softmax(pair_logits, axis=-1)[:, 1])


def loss_fn(model: Nlvr2Model, batch: dict, key: jax.Array) -> dict:
  """{"nlvr2_loss", "nlvr2_accuracy"} summed over the labelled examples; `key` is
  unused (no pixel sampling; dropout draws from the model's own stream)."""
  del key
  pair_logits = logits(model, batch)
  weight = labelled(batch)
  prediction, _ = predict(pair_logits)
  right = (prediction == batch["label"]).astype(jnp.float32)
  return {"nlvr2_loss": jnp.sum(example_losses(pair_logits, batch["label"]) * weight),
          "nlvr2_accuracy": jnp.sum(right * weight)}


def counts_fn(batch: dict) -> dict:
  """Both sums are per labelled valid example of the global batch."""
  count = jnp.sum(labelled(batch))
  return {"nlvr2_loss": count, "nlvr2_accuracy": count}
