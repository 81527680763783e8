"""VQA v2 fine-tuning: the Pixel-BERT body, an MLP over answers, BCE on soft scores.

The paper treats VQA as multi-label classification over the answer vocabulary with an
MLP on the pooled [CLS] state. Fine-tuning keeps every valid feature pixel: random pixel
sampling is a pre-training device only.

Loss normalisation: binary cross-entropy with logits against the soft scores, summed
over the answers of an example and averaged over the valid examples of the global
batch. UNITER and ViLT write the same quantity as the element-wise mean times the number
of answers; taking the mean over answers instead would shrink the gradient by ~3000 and
make the learning rate depend on the vocabulary size. Padding and skipped examples
(`valid` False) count in neither the sum nor the number of examples.
"""

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from pixelbert_jax.models import heads, layers
from pixelbert_jax.models.pixelbert import PixelBert
from pixelbert_jax.models.variants import ModelConfig

# The objective: the one loss term, at weight 1.
LOSS_WEIGHTS = {"vqa_loss": 1.0}


class VqaModel(nnx.Module):
  """The Pixel-BERT body with the VQA answer classifier."""

  def __init__(self, config: ModelConfig, num_answers: int, *, rngs: nnx.Rngs):
    dtype = layers.compute_dtype(config.dtype)
    self.pixelbert = PixelBert(config, rngs=rngs)
    self.vqa_head = heads.vqa_head(config.transformer.hidden, num_answers, dtype=dtype,
                                   rngs=rngs)

  def __call__(self, token_ids: jax.Array, text_mask: jax.Array, images: jax.Array,
               image_sizes: jax.Array) -> jax.Array:
    """Questions and padded uint8 images -> (B, num_answers) float32 logits."""
    pixels, pixel_mask = self.pixelbert.encode_pixels(images, image_sizes)
    _, aux = self.pixelbert(token_ids, text_mask, pixels, pixel_mask)
    return self.vqa_head(aux["pooled"])


def logits(model: VqaModel, batch: dict) -> jax.Array:
  return model(batch["token_ids"], batch["text_mask"], batch["images"],
               batch["image_sizes"])


def example_losses(answer_logits: jax.Array, targets: jax.Array) -> jax.Array:
  """(B,) BCE summed over the answers (see the module docstring)."""
  return jnp.sum(optax.sigmoid_binary_cross_entropy(answer_logits, targets), axis=-1)


def predict(answer_logits: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(B,) index of the most likely answer and its probability."""
  best = jnp.argmax(answer_logits, axis=-1).astype(jnp.int32)
  best_logit = jnp.take_along_axis(answer_logits, best[:, None], axis=-1)[:, 0]
  return best, jax.nn.sigmoid(best_logit)


def target_score(targets: jax.Array, answer_index: jax.Array) -> jax.Array:
  """(B,) the soft score of the predicted answer: the usual training-time VQA score."""
  return jnp.take_along_axis(targets, answer_index[:, None], axis=-1)[:, 0]


def loss_fn(model: VqaModel, batch: dict, key: jax.Array) -> dict:
  """{"vqa_loss", "vqa_score"} summed over the valid examples; `key` is unused (no
  pixel sampling; dropout draws from the model's own stream)."""
  del key
  answer_logits = logits(model, batch)
  valid = batch["valid"].astype(jnp.float32)
  answer, _ = predict(answer_logits)
  return {"vqa_loss": jnp.sum(example_losses(answer_logits, batch["targets"]) * valid),
          "vqa_score": jnp.sum(target_score(batch["targets"], answer) * valid)}


def counts_fn(batch: dict) -> dict:
  """Both sums are per valid example of the global batch."""
  valid = jnp.sum(batch["valid"].astype(jnp.float32))
  return {"vqa_loss": valid, "vqa_score": valid}
