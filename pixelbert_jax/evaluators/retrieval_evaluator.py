"""Retrieval evaluation (COCO, Flickr30K): score (image, caption) pairs, then Recall@K.

Pixel-BERT has no separate image and text embeddings to compare: a pair's score needs
the whole cross-modal Transformer. What can be shared is the CNN, the expensive half
(≈ 45 of 60 ms per pair for R50): this evaluator runs one pass of `image_pipeline` over
the split, keeps every image's pixel tokens on the devices (one CNN call per image
batch, counted in `cnn_calls`), and then scores pairs in calls of
`pairs_per_call` (image row, caption) pairs. A call gathers its pixel tokens from one
cached image batch and its captions from the split's token table, both on the device,
so the host sends only two int32 index vectors per call.

Modes:
* full (`top_k` 0): every pair is scored, as the paper does;
* two-stage (`top_k` > 0): a cheap first stage ranks by the cosine similarity of the
  model's first-stage embeddings (projections of the mean pixel token and of the
  caption's mean input embedding, trained contrastively beside the ranking loss; see
  `tasks/retrieval.py`); only each image's top-k captions and each caption's top-k
  images are scored by the model, the other pairs score -inf. Metric names carry the
  mode.

Images that could not be loaded are left unscored (-inf), so they count as misses.
Every process gets every score (`gather`); index vectors are split across processes
and the jitted calls run over the global mesh. Folds (`num_folds` > 1, COCO 1K)
average the metrics over folds of consecutive images.
"""

import copy
import dataclasses
import time
from collections.abc import Callable, Iterator

import jax
import numpy as np
from absl import logging

from pixelbert_jax.evaluators import context as context_lib
from pixelbert_jax.evaluators import gather
from pixelbert_jax.metrics import retrieval as retrieval_metric

LOG_EVERY_S = 30.0
# The three predict functions the evaluator needs (each `fn(model, batch)`): the
# CNN's pixel tokens and first-stage embedding per image ({"pixel_tokens",
# "pixel_mask", "image_embedding"}), first-stage caption embeddings
# ({"text_embedding"}), and scores of (image row, caption) pairs ({"scores"}).
PREDICT_FNS = ("encode_images", "embed_texts", "score_pairs")


def process_share(rows: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
  """Rows every process holds, padded to `size` (a multiple of the device count) by
  repeating the last row, and cut to this process's equal share for `to_global`."""
  share = size // jax.process_count()
  start = jax.process_index() * share
  padded = {}
  for name, value in rows.items():
    extra = size - len(value)
    if extra:
      value = np.concatenate([value, np.repeat(value[-1:], extra, axis=0)])
    padded[name] = value[start:start + share]
  return padded


def padded_size(count: int) -> int:
  """`count` rounded up to a multiple of the global device count."""
  return -(-count // jax.device_count()) * jax.device_count()


@dataclasses.dataclass
class ImageBlock:
  """One image batch's pixel tokens, left on the devices, and the items of its rows."""
  pixel_tokens: jax.Array
  pixel_mask: jax.Array
  rows: np.ndarray  # positions in the batch of the valid images
  items: np.ndarray  # their indices in the split


def candidate_pairs(image_emb: np.ndarray, text_emb: np.ndarray, top_k: int) -> np.ndarray:
  """(num_images, num_texts) bool: each image's top-k captions and each caption's
  top-k images by cosine similarity (the first stage)."""
  normalise = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
  similarity = normalise(image_emb) @ normalise(text_emb).T
  chosen = np.zeros(similarity.shape, bool)
  num_images, num_texts = similarity.shape
  k_texts, k_images = min(top_k, num_texts), min(top_k, num_images)
  best_texts = np.argpartition(-similarity, k_texts - 1, axis=1)[:, :k_texts]
  np.put_along_axis(chosen, best_texts, True, axis=1)
  best_images = np.argpartition(-similarity, k_images - 1, axis=0)[:k_images]
  np.put_along_axis(chosen, best_images, True, axis=0)
  return chosen


class RetrievalEvaluator:
  """Scores a split's (image, caption) pairs and reports Recall@K in both directions."""

  def __init__(self, predict_fns: dict[str, Callable], context: context_lib.EvalContext,
               *, make_image_iterator: Callable[[], Iterator], num_images: int,
               texts: dict[str, np.ndarray], pairs_per_call: int, top_k: int = 0,
               num_folds: int = 1):
    """`predict_fns`: {name in PREDICT_FNS: fn(model, batch)}, jitted here; `texts` is
    `pipeline.tokenize_retrieval_texts` of the split's items."""
    self.predict = {name: context.jit(predict_fns[name]) for name in PREDICT_FNS}
    self.make_image_iterator = make_image_iterator
    self.to_global = context.to_global
    self.num_images = num_images
    self.texts = texts
    self.pairs_per_call = padded_size(pairs_per_call)
    self.top_k = top_k
    self.num_folds = num_folds
    self.cnn_calls = 0  # over the evaluator's life: one per image batch per run
    self.images_encoded = 0  # over the evaluator's life: real images through the CNN
    self.pairs_scored = 0  # by the last run
    self.pairs_per_s = 0.0

  def variant(self, **changes) -> "RetrievalEvaluator":
    """This evaluator with some fields changed (`texts`, `top_k`,
    `make_image_iterator`), sharing its compiled predict functions; counters reset."""
    twin = copy.copy(self)
    for name, value in changes.items():
      if not hasattr(self, name):
        raise AttributeError(f"RetrievalEvaluator has no field {name!r}")
      setattr(twin, name, value)
    twin.cnn_calls = twin.images_encoded = twin.pairs_scored = 0
    twin.pairs_per_s = 0.0
    return twin

  @property
  def mode(self) -> str:
    return f"two_stage_top{self.top_k}" if self.top_k > 0 else "full"

  def encode_images(self, state) -> tuple[list[ImageBlock], np.ndarray]:
    """Runs the CNN once per image batch; (cached blocks, (num_images, E) first-stage
    embedding per item, NaN where the image was not loaded)."""
    blocks, embeddings = [], None
    for batch in self.make_image_iterator():
      batch = self.to_global({k: batch[k] for k in ("images", "image_sizes", "valid",
                                                    "example_index")})
      outputs = self.predict["encode_images"](state, batch)
      self.cnn_calls += 1
      host = gather.to_host({"example_index": batch["example_index"],
                             "valid": batch["valid"],
                             "image_embedding": outputs["image_embedding"]})
      rows = np.flatnonzero(host["valid"])
      self.images_encoded += len(rows)
      items = host["example_index"][rows].astype(np.int64)
      if embeddings is None:
        embeddings = np.full((self.num_images, host["image_embedding"].shape[1]), np.nan,
                             np.float32)
      if not np.all(np.isnan(embeddings[items, 0])):
        raise RuntimeError(f"images {items} were encoded twice")
      embeddings[items] = host["image_embedding"][rows]
      blocks.append(ImageBlock(outputs["pixel_tokens"], outputs["pixel_mask"], rows, items))
    return blocks, embeddings

  def embed_texts(self, state) -> np.ndarray:
    """(num_texts, E) first-stage caption embeddings."""
    count = len(self.texts["token_ids"])
    chunks = []
    for start in range(0, count, self.pairs_per_call):
      rows = {k: self.texts[k][start:start + self.pairs_per_call]
              for k in ("token_ids", "text_mask")}
      outputs = self.predict["embed_texts"](
          state, self.to_global(process_share(rows, self.pairs_per_call)))
      chunks.append(gather.to_host(outputs)["text_embedding"][:len(rows["token_ids"])])
    return np.concatenate(chunks)

  def token_table(self) -> dict:
    """The split's captions, placed once per evaluation on the devices."""
    table = {"table_token_ids": self.texts["token_ids"],
             "table_text_mask": self.texts["text_mask"]}
    size = padded_size(len(self.texts["token_ids"]))
    return self.to_global(process_share(table, size))

  def block_pairs(self, block: ImageBlock, candidates: np.ndarray | None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(image rows, text indices) of the pairs to score in a block, row-major."""
    num_texts = len(self.texts["token_ids"])
    if candidates is None:
      return (np.repeat(block.rows, num_texts),
              np.tile(np.arange(num_texts), len(block.rows)))
    positions, texts = np.nonzero(candidates[block.items])
    return block.rows[positions], texts

  def score_block(self, state, block: ImageBlock, pairs: tuple[np.ndarray, np.ndarray],
                  table: dict, progress: "Progress") -> np.ndarray:
    """Scores of the given pairs, in calls of `pairs_per_call` pairs; the next call
    is dispatched before the previous one's scores are fetched."""
    rows, texts = pairs
    scores, pending = [], None
    for start in range(0, len(rows), self.pairs_per_call):
      index = {"image_rows": rows[start:start + self.pairs_per_call].astype(np.int32),
               "text_rows": texts[start:start + self.pairs_per_call].astype(np.int32)}
      batch = {**self.to_global(process_share(index, self.pairs_per_call)), **table,
               "pixel_tokens": block.pixel_tokens, "pixel_mask": block.pixel_mask}
      outputs = (self.predict["score_pairs"](state, batch), len(index["image_rows"]))
      if pending is not None:
        scores.append(self._fetch(*pending, progress))
      pending = outputs
    if pending is not None:
      scores.append(self._fetch(*pending, progress))
    return np.concatenate(scores) if scores else np.zeros(0, np.float32)

  def _fetch(self, outputs: dict, count: int, progress: "Progress") -> np.ndarray:
    scores = gather.to_host(outputs)["scores"][:count]
    progress.update(count)
    return scores

  def score_matrix(self, state) -> np.ndarray:
    """The (num_images, num_texts) float32 scores; -inf where a pair is not scored."""
    blocks, image_embeddings = self.encode_images(state)
    logging.info("Retrieval: %d images encoded in %d CNN calls", sum(
        len(b.rows) for b in blocks), len(blocks))
    candidates = None
    if self.top_k > 0:
      encoded = ~np.isnan(image_embeddings[:, 0])
      candidates = np.zeros((self.num_images, len(self.texts["token_ids"])), bool)
      candidates[encoded] = candidate_pairs(image_embeddings[encoded], self.embed_texts(state),
                                            self.top_k)
    pairs = [self.block_pairs(block, candidates) for block in blocks]
    progress = Progress(sum(len(rows) for rows, _ in pairs), self.mode)
    table = self.token_table()
    matrix = np.full((self.num_images, len(self.texts["token_ids"])), -np.inf, np.float32)
    for block, (rows, texts) in zip(blocks, pairs):
      scores = self.score_block(state, block, (rows, texts), table, progress)
      items = block.items[np.searchsorted(block.rows, rows)]
      matrix[items, texts] = scores
    self.pairs_scored, self.pairs_per_s = progress.done, progress.rate()
    return matrix

  def run(self, state) -> Iterator[tuple[str, float]]:
    matrix = self.score_matrix(state)
    unscored = int(np.sum(np.all(np.isneginf(matrix), axis=1)))
    yield "num_images", float(self.num_images)
    yield "num_texts", float(matrix.shape[1])
    yield "num_unscored_images", float(unscored)
    yield "cnn_calls", float(self.cnn_calls)
    yield "images_encoded", float(self.images_encoded)
    yield "pairs_scored", float(self.pairs_scored)
    yield "pairs_per_s", float(self.pairs_per_s)
    yield from self.metrics(matrix)

  def metrics(self, matrix: np.ndarray) -> Iterator[tuple[str, float]]:
    """Recall@K named "{mode}/{metric}", plus "{mode}/{F}fold_{metric}" with folds."""
    text_to_image = self.texts["text_to_image"]
    results = retrieval_metric.retrieval_metrics(matrix, text_to_image)
    logging.info("Retrieval (%s): %s", self.mode, results)
    for name, value in results.items():
      yield f"{self.mode}/{name}", value
    if self.num_folds > 1 and self.num_images % self.num_folds == 0:
      folds = retrieval_metric.fold_average_metrics(matrix, text_to_image, self.num_folds)
      for name, value in folds.items():
        yield f"{self.mode}/{self.num_folds}fold_{name}", value
    elif self.num_folds > 1:
      logging.warning("Retrieval: %d images do not split into %d folds; no fold metrics",
                      self.num_images, self.num_folds)


class Progress:
  """Logs pairs scored, pairs/s and the time left, every `LOG_EVERY_S` seconds."""

  def __init__(self, total: int, mode: str):
    self.total, self.mode = total, mode
    self.done = 0
    self.start = self.last_log = time.monotonic()

  def rate(self) -> float:
    return self.done / max(time.monotonic() - self.start, 1e-9)

  def update(self, count: int) -> None:
    self.done += count
    now = time.monotonic()
    if now - self.last_log < LOG_EVERY_S and self.done < self.total:
      return
    self.last_log = now
    rate = self.rate()
    logging.info("Retrieval (%s): %d / %d pairs, %.1f pairs/s, ETA %.0f s", self.mode,
                 self.done, self.total, rate, (self.total - self.done) / max(rate, 1e-9))
