"""Random pixel sampling (the paper's pre-training regulariser), inside the jitted graph.

Each example keeps `k` feature pixels drawn uniformly without replacement from its valid
ones: every valid pixel gets an independent uniform score, invalid pixels score below any
valid one, and the top k scores win. A uniform random ranking of the valid pixels gives a
uniform random subset, and the whole draw is one vectorised top-k with no host round-trip.
"""

import jax
import jax.numpy as jnp


def sample_pixels(key: jax.Array, tokens: jax.Array, mask: jax.Array,
                  num_samples: int | None) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Keeps `num_samples` valid pixel tokens per example.

  Args:
    key: a `jax.random` key; the same key gives the same draw.
    tokens: (B, P, D) pixel tokens.
    mask: (B, P) bool validity.
    num_samples: k, static. Where an example has fewer than k valid pixels, the extra
      slots hold padding and are masked out. None or 0 disables sampling (fine-tuning
      and evaluation use every pixel).

  Returns:
    (B, k, D) sampled tokens, (B, k) their mask, (B, k) their indices into P.
  """
  batch, num_pixels = mask.shape
  if not num_samples:
    return tokens, mask, jnp.broadcast_to(jnp.arange(num_pixels), (batch, num_pixels))
  if num_samples > num_pixels:
    extra = num_samples - num_pixels
    tokens = jnp.pad(tokens, ((0, 0), (0, extra), (0, 0)))
    mask = jnp.pad(mask, ((0, 0), (0, extra)))
  scores = jax.random.uniform(key, mask.shape)
  scores = jnp.where(mask, scores, -1.0)
  _, indices = jax.lax.top_k(scores, num_samples)
  sampled = jnp.take_along_axis(tokens, indices[..., None], axis=1)
  sampled_mask = jnp.take_along_axis(mask, indices, axis=1)
  return sampled, sampled_mask, indices
