"""Held-out pre-training evaluation: MLM, ITM, and the grounding probe.

The probe masks every visual word of a caption (colours, shapes, counts) and asks the
model to fill them in twice: with the caption's own image and with the images shuffled
across the batch. Where the text alone cannot tell the word, the gap between the two
accuracies is what the model learned to read from the pixels.

Where the batches carry swapped captions (`data.swaps`), `itm_swap_ranking` is how
often the ITM head scores a caption above its own copy with one colour or shape word
swapped: whether the model binds the word to the pixels, beyond a bag of words.
"""

from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from pixelbert_jax.tasks import pretrain


def _visual_accuracy_sums(model, batch, tokens, mask, visual_ids, mask_id) -> dict:
  is_visual = jnp.isin(batch["token_ids"], visual_ids) & batch["text_mask"]
  is_visual &= batch["valid"][:, None]
  masked_ids = jnp.where(is_visual, mask_id, batch["token_ids"])
  sums = {}
  images = {"visual_words_true_image": (tokens, mask),
            "visual_words_shuffled_image": (jnp.roll(tokens, 1, 0), jnp.roll(mask, 1, 0))}
  for name, (pixels, pixel_mask) in images.items():
    _, aux = model.pixelbert(masked_ids, batch["text_mask"], pixels, pixel_mask)
    guess = jnp.argmax(model.mlm_logits(aux["text"]), -1)
    sums[name] = jnp.sum((guess == batch["token_ids"]) & is_visual)
  return sums


def _swap_ranking_sums(model, batch, tokens, mask) -> dict:
  def itm_logits(ids):
    _, aux = model.pixelbert(ids, batch["text_mask"], tokens, mask)
    return model.itm_head(aux["pooled"])

  above = itm_logits(batch["token_ids"]) > itm_logits(batch["swap_ids"])
  return {"itm_swap_ranking": jnp.sum(above & batch["has_swap"] & batch["valid"])}


def make_eval_fns(visual_ids: np.ndarray, mask_id: int, num_sampled_pixels: int | None):
  """(eval_fn, counts_fn) for `train_step.make_eval_step`."""
  visual_ids = jnp.asarray(visual_ids, jnp.int32)

  def eval_fn(model, batch, key):
    tokens, mask = pretrain.sampled_pixels(model, batch, key, num_sampled_pixels)
    sums = pretrain.mlm_sums(model, batch, tokens, mask)
    sums.update(pretrain.itm_sums(model, batch, tokens, mask, key))
    sums.update(_visual_accuracy_sums(model, batch, tokens, mask, visual_ids, mask_id))
    if "swap_ids" in batch:
      sums.update(_swap_ranking_sums(model, batch, tokens, mask))
    return sums

  def counts_fn(batch):
    counts = pretrain.counts_fn(batch)
    visual = jnp.isin(batch["token_ids"], visual_ids) & batch["text_mask"]
    visual = jnp.sum(visual & batch["valid"][:, None])
    counts.update(visual_words_true_image=visual, visual_words_shuffled_image=visual)
    if "swap_ids" in batch:
      counts["itm_swap_ranking"] = jnp.sum(batch["has_swap"] & batch["valid"])
    return counts

  return eval_fn, counts_fn


class PretrainEvaluator:
  """Runs the eval step over a fresh held-out iterator and averages over all examples."""

  def __init__(self, make_iterator: Callable[[], Iterator], eval_step, to_global,
               num_batches: int, seed: int = 0):
    self.make_iterator = make_iterator
    self.eval_step = eval_step
    self.to_global = to_global
    self.num_batches = num_batches
    self.seed = seed

  def run(self, state) -> Iterator[tuple[str, float]]:
    totals, counts = {}, {}
    key = jax.random.key(self.seed)  # the same pixels and pairings at every evaluation
    for index, batch in enumerate(self.make_iterator()):
      if 0 < self.num_batches <= index:
        break
      sums, batch_counts = self.eval_step(state, self.to_global(batch),
                                          jax.random.fold_in(key, index))
      for name, value in jax.device_get(sums).items():
        totals[name] = totals.get(name, 0.0) + float(value)
        counts[name] = counts.get(name, 0.0) + float(jax.device_get(batch_counts[name]))
    for name, total in sorted(totals.items()):
      yield name, total / max(counts[name], 1.0)
    if "visual_words_true_image" in totals:
      yield "grounding_gap", ((totals["visual_words_true_image"]
                               - totals["visual_words_shuffled_image"])
                              / max(counts["visual_words_true_image"], 1.0))
