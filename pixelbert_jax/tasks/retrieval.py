"""Image-text retrieval fine-tuning: a ranking loss through the hardest negatives.

The paper's recipe: each training image comes with its own caption and N = 20 random
captions of other images. Every (image, caption) pair goes through the cross-modal
Transformer and a one-logit score head on the pooled [CLS]; the loss is the softmax
cross-entropy of the positive against the 5 highest-scoring negatives, chosen inside
the graph (`top_k`), so only those 5 negatives receive gradients. The CNN runs once per
image and its pixel tokens are repeated across the image's 1 + N captions; every feature
pixel is kept (random pixel sampling is for pre-training only).

The CNN is frozen by the config's optimiser groups (a `frozen` group for the backbone).
With `stop_backbone_gradients`, the backbone's parameters also enter the step through
`stop_gradient`, so XLA never runs the CNN's backward pass and the global gradient
norm (clipping, `l2_grads`) counts only the parameters that train.

Loss normalisation: the cross-entropy is averaged over the valid images of the global
batch; padding and skipped images (`valid` False) count in neither sum nor count.
"""

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from pixelbert_jax.models import heads, layers
from pixelbert_jax.models.pixelbert import PixelBert
from pixelbert_jax.models.variants import ModelConfig

# The objective: the one loss term, at weight 1.
LOSS_WEIGHTS = {"retrieval_loss": 1.0}
NUM_HARD_NEGATIVES = 5


class RetrievalModel(nnx.Module):
  """The Pixel-BERT body with a one-logit (image, text) score head."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    dtype = layers.compute_dtype(config.dtype)
    self.pixelbert = PixelBert(config, rngs=rngs)
    self.score_head = heads.ScoreHead(config.transformer.hidden, dtype=dtype, rngs=rngs,
                                      init_std=config.transformer.init_std)

  def score_pairs(self, pixel_tokens: jax.Array, pixel_mask: jax.Array,
                  token_ids: jax.Array, text_mask: jax.Array) -> jax.Array:
    """(K, P, D) pixel tokens and (K, T) captions, pair by pair -> (K,) float32 scores."""
    _, aux = self.pixelbert(token_ids, text_mask, pixel_tokens, pixel_mask)
    return self.score_head(aux["pooled"])

  def __call__(self, token_ids: jax.Array, text_mask: jax.Array, images: jax.Array,
               image_sizes: jax.Array) -> jax.Array:
    """(B, C, T) captions per image and (B, H, W, 3) uint8 images -> (B, C) scores."""
    batch, captions = token_ids.shape[:2]
    pixels, pixel_mask = self.pixelbert.encode_pixels(images, image_sizes)
    # Row b * C + c pairs image b with its caption c: the CNN ran once per image.
    scores = self.score_pairs(jnp.repeat(pixels, captions, axis=0),
                              jnp.repeat(pixel_mask, captions, axis=0),
                              token_ids.reshape(batch * captions, -1),
                              text_mask.reshape(batch * captions, -1))
    return scores.reshape(batch, captions)


def hardest_negative_losses(scores: jax.Array,
                            num_hard: int = NUM_HARD_NEGATIVES) -> jax.Array:
  """(B, 1 + N) scores, positive first -> (B,) cross-entropy over the positive and the
  `num_hard` highest-scoring negatives; the other negatives get no gradient."""
  hardest, _ = jax.lax.top_k(scores[:, 1:], min(num_hard, scores.shape[1] - 1))
  logits = jnp.concatenate([scores[:, :1], hardest], axis=1)
  return optax.softmax_cross_entropy_with_integer_labels(
      logits, jnp.zeros(scores.shape[0], jnp.int32))


def stop_backbone_gradients(model: RetrievalModel) -> None:
  """Feeds the CNN's parameters through `stop_gradient` (see the module docstring)."""
  backbone = model.pixelbert.pixel_encoder.backbone
  nnx.update(backbone, jax.tree.map(jax.lax.stop_gradient, nnx.state(backbone, nnx.Param)))


def make_loss_fn(num_hard: int = NUM_HARD_NEGATIVES, frozen_backbone: bool = True):
  """`loss_fn(model, batch, key)` -> {"retrieval_loss", "retrieval_accuracy"} sums."""

  def loss_fn(model: RetrievalModel, batch: dict, key: jax.Array) -> dict:
    del key  # No pixel sampling; dropout draws from the model's own stream.
    if frozen_backbone:
      stop_backbone_gradients(model)
    scores = model(batch["token_ids"], batch["text_mask"], batch["images"],
                   batch["image_sizes"])
    valid = batch["valid"].astype(jnp.float32)
    # Accuracy: the positive outscores all N negatives (R@1 among 1 + N captions).
    right = (jnp.argmax(scores, axis=1) == 0).astype(jnp.float32)
    return {"retrieval_loss": jnp.sum(hardest_negative_losses(scores, num_hard) * valid),
            "retrieval_accuracy": jnp.sum(right * valid)}

  return loss_fn


def counts_fn(batch: dict) -> dict:
  """Both sums are per valid image of the global batch."""
  valid = jnp.sum(batch["valid"].astype(jnp.float32))
  return {"retrieval_loss": valid, "retrieval_accuracy": valid}
