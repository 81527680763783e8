"""Recall@K for image-text retrieval (Flickr30K, COCO 5K and COCO 1K).

Inputs are a score matrix of shape (num_images, num_texts), higher meaning a
better match, and `text_to_image`, the image each text describes (an image
usually has 5 captions). Two directions are scored:

* image -> text ("text retrieval", TR in papers): an image's rank is that of its
  best-ranked caption among all texts;
* text -> image ("image retrieval", IR): a text's rank is that of its image
  among all images.

Ranks are 0-based and counted, not sorted: the rank of a correct item is the
number of wrong items scoring at least as high. Ties are therefore broken
pessimistically and deterministically: a correct item tied with wrong ones is
ranked after all of them (captions of the same image never push each other
down). The usual argsort-based scripts break ties in whatever order the sort
leaves them; with real-valued model scores exact ties are rare and the two
agree. Counting costs O(num_texts) per image and runs over blocks of rows, so a
5000 x 25000 float32 matrix needs no sorting and little memory beyond itself.

Recalls are percentages; "rsum" adds the six R@1/5/10 of both directions.
COCO 1K averages every metric over 5 folds of 1000 consecutive images, each
scored with its own captions only.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

KS = (1, 5, 10)
_ROWS_PER_BLOCK = 256  # 256 x 25000 comparisons: a few MB per block.


def _checked_inputs(scores, text_to_image) -> tuple[np.ndarray, np.ndarray]:
  """(scores as a float array, text_to_image as int64), or a ValueError."""
  scores = np.asarray(scores)
  if np.issubdtype(scores.dtype, np.integer):
    scores = scores.astype(np.float64)  # Exact for the integers scores could be.
  elif not np.issubdtype(scores.dtype, np.floating):
    scores = scores.astype(np.float32)  # E.g. bfloat16 straight from a model.
  text_to_image = np.asarray(text_to_image)
  if scores.ndim != 2 or not scores.shape[0] or text_to_image.shape != (scores.shape[1],):
    raise ValueError(f"scores {scores.shape} need to be (num_images > 0, num_texts) "
                     f"and text_to_image {text_to_image.shape} (num_texts,)")
  if not np.issubdtype(text_to_image.dtype, np.integer):
    raise ValueError(f"text_to_image must hold integers, not {text_to_image.dtype}")
  text_to_image = text_to_image.astype(np.int64)
  if text_to_image.size and (text_to_image.min() < 0
                             or text_to_image.max() >= scores.shape[0]):
    raise ValueError(f"text_to_image holds indices outside [0, {scores.shape[0]})")
  captionless = np.flatnonzero(np.bincount(text_to_image, minlength=scores.shape[0]) == 0)
  if captionless.size:
    raise ValueError(f"images without a text: {captionless[:10].tolist()}"
                     f"{' ...' if captionless.size > 10 else ''} ({captionless.size})")
  return scores, text_to_image


def retrieval_ranks(scores, text_to_image) -> tuple[np.ndarray, np.ndarray]:
  """(image->text ranks (num_images,), text->image ranks (num_texts,)), 0-based.

  Raises ValueError on NaN scores: a NaN compares false with everything and
  would rank a broken model's correct items first.
  """
  scores, text_to_image = _checked_inputs(scores, text_to_image)
  num_images, num_texts = scores.shape
  correct = scores[text_to_image, np.arange(num_texts)]  # Each text's own image.
  if np.isnan(correct).any():
    raise ValueError("scores contain NaN")
  best = np.full(num_images, -np.inf, scores.dtype)
  np.maximum.at(best, text_to_image, correct)  # Each image's best caption.
  # Captions tied with their image's best caption are not wrong items.
  tied_own = np.bincount(text_to_image, weights=correct >= best[text_to_image],
                         minlength=num_images).astype(np.int64)
  image_counts = np.empty(num_images, np.int64)
  text_counts = np.zeros(num_texts, np.int64)
  for start in range(0, num_images, _ROWS_PER_BLOCK):
    block = scores[start:start + _ROWS_PER_BLOCK]
    if np.isnan(block).any():
      raise ValueError("scores contain NaN")
    rows = slice(start, start + len(block))
    image_counts[rows] = np.sum(block >= best[rows, None], axis=1)
    text_counts += np.sum(block >= correct[None, :], axis=0)
  return image_counts - tied_own, text_counts - 1  # A text's own image is not wrong.


def recall_at_k(ranks: np.ndarray, ks: Sequence[int] = KS) -> dict[int, float]:
  """{k: percentage of queries whose correct item is among the top k}."""
  ranks = np.asarray(ranks)
  return {k: 100.0 * float(np.mean(ranks < k)) for k in ks}


def retrieval_metrics(scores, text_to_image, ks: Sequence[int] = KS) -> dict[str, float]:
  """{"i2t_r1", ..., "t2i_r1", ..., "rsum"}: recalls in percent, both directions.

  i2t is image->text (text retrieval, TR), t2i text->image (image retrieval, IR).
  """
  image_ranks, text_ranks = retrieval_ranks(scores, text_to_image)
  metrics = {f"i2t_r{k}": r for k, r in recall_at_k(image_ranks, ks).items()}
  metrics.update({f"t2i_r{k}": r for k, r in recall_at_k(text_ranks, ks).items()})
  metrics["rsum"] = sum(metrics.values())
  return metrics


def fold_metrics(scores, text_to_image, num_folds: int = 5,
                 ks: Sequence[int] = KS) -> list[dict[str, float]]:
  """Metrics of each fold of consecutive images, scored with their own texts only.

  With COCO's 5000 test images in the Karpathy order and 5 folds this is the
  COCO 1K protocol.
  """
  scores, text_to_image = _checked_inputs(scores, text_to_image)
  num_images = scores.shape[0]
  if num_folds < 1 or num_images % num_folds:
    raise ValueError(f"{num_images} images do not split into {num_folds} equal folds")
  size = num_images // num_folds
  folds = []
  for start in range(0, num_images, size):
    texts = np.flatnonzero((text_to_image >= start) & (text_to_image < start + size))
    fold_scores = scores[start:start + size][:, texts]
    folds.append(retrieval_metrics(fold_scores, text_to_image[texts] - start, ks))
  return folds


def fold_average_metrics(scores, text_to_image, num_folds: int = 5,
                         ks: Sequence[int] = KS) -> dict[str, float]:
  """Each metric (rsum included) averaged over the folds: COCO 1K by default."""
  folds = fold_metrics(scores, text_to_image, num_folds, ks)
  return {name: float(np.mean([fold[name] for fold in folds])) for name in folds[0]}
