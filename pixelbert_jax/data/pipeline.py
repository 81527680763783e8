"""grain input pipelines for pre-training, VQA and NLVR2: bucketed, sharded, resumable.

The pipeline, for one process::

    MapDataset.range(num_batches)        element i = planned global batch i
      .map(BatchLoader)                  this process's slice: read, decode, resize,
                                         normalise, pad into the bucket, tokenise, mask
      .to_iter_dataset(ReadOptions)      a few threads, a small prefetch buffer
      .mp_prefetch(num_workers)          optional worker processes
      → SkipBoundDataset                 counts skips, enforces max_skip_fraction

The batch plan (`batch_plan.BatchPlan`, or a mixture's `mixture.MixturePlan`) is
computed from image sizes before anything is decoded, so every batch has one bucket
shape and every process knows every batch. The
iterator's `get_state()` / `set_state()` is what the trainer checkpoints; restoring a
state gives exactly the batches an uninterrupted iterator would have given.

The pipelines read a locked config from `data_config.make_config`: the data fields'
defaults (`DATA_DEFAULTS`, their one place; `configs/common.data` starts from them),
the global batch size and the number of epochs (None = forever). A misspelt field is
an error. Images leave the pipeline as uint8; the model normalises them
(`model.image_mean`, `model.image_std`).

Batches are dicts of numpy arrays holding this process's G / process_count examples;
see `pretrain_pipeline`, `vqa_pipeline` and `nlvr2_pipeline` for the keys.
"""

import collections
from collections.abc import Sequence
import dataclasses
import sys
from typing import Any

from absl import flags
from absl import logging
import grain
import numpy as np

from pixelbert_jax.data import answers as answers_lib
from pixelbert_jax.data import batch_plan
from pixelbert_jax.data import data_config
from pixelbert_jax.data import images as images_lib
from pixelbert_jax.data import masking
from pixelbert_jax.data import preprocess
from pixelbert_jax.data import skips as skips_lib
from pixelbert_jax.data import sources
from pixelbert_jax.data import swaps
from pixelbert_jax.data import tokenizer as tokenizer_lib

def as_source(examples):
  """A source as is (it has `image_bytes`), or reader records wrapped in a RawSource."""
  return examples if hasattr(examples, "image_bytes") else sources.RawSource(examples)


def buckets_from_config(cfg: Any) -> list[tuple[int, int]]:
  return images_lib.make_buckets(cfg.image_short_side, cfg.image_long_side,
                                 tuple(cfg.aspect_ratios), cfg.bucket_multiple)


@dataclasses.dataclass(frozen=True)
class BatchLoader:
  """grain map op: a planned batch index → this process's batch as numpy arrays."""

  source: Any
  plan: batch_plan.BatchPlan
  task: preprocess.Task
  buckets: tuple[tuple[int, int], ...]
  seed: int
  process_index: int
  process_count: int

  def __call__(self, step: int) -> dict[str, np.ndarray]:
    indices, positions, bucket_id = self.plan.process_batch(
        step, self.process_index, self.process_count)
    bucket = self.buckets[bucket_id]
    rows, reasons = [], []
    for index, position in zip(indices, positions):
      row, reason = self._load(int(index), bucket, step, int(position))
      rows.append(row)
      reasons.append(reason)
    return preprocess.assemble_batch(self.task, rows, bucket, reasons, indices)

  def _load(self, index: int, bucket: tuple[int, int], step: int, position: int
            ) -> tuple[preprocess.Row | None, int]:
    """(row, 0), or (None, reason code) for an image that fails, or padding."""
    if index == batch_plan.PAD_INDEX:
      return None, 0
    try:
      names = self.source.image_names(index)
      pixels = [images_lib.decode_image(data, name=name) for data, name in
                zip(self.source.image_bytes(index), names)]
    except images_lib.ImageError as error:
      return None, preprocess.reason_code(error.reason)
    # One stream per (seed, global batch, slot): the same masks whatever the process
    # count, worker count or restart point.
    rng = np.random.default_rng([self.seed, step, position])
    return self.task.example(self.source.record(index), pixels, bucket, rng), 0


class SkipBoundDataset(grain.IterDataset):
  """The last stage: counts skipped examples and stops when too many are skipped."""

  def __init__(self, parent: grain.IterDataset, source: Any, name: str,
               max_skip_fraction: float, min_seen: int, final_check: bool):
    super().__init__(parent)
    self.source = source
    self.name = name
    self.max_skip_fraction = max_skip_fraction
    self.min_seen = min_seen
    self.final_check = final_check

  def __iter__(self) -> "SkipBoundIterator":
    return SkipBoundIterator(self._parent.__iter__(), self)


class SkipBoundIterator(grain.DatasetIterator):
  """Yields batches; `skips` logs each skip with its reason; the totals checkpoint."""

  def __init__(self, parent: grain.DatasetIterator, spec: SkipBoundDataset):
    super().__init__(parent)
    self._spec = spec
    self.skips = skips_lib.SkipCounter(spec.name, max_skip_fraction=1.0)
    self.seen = 0
    self.skipped = collections.Counter()
    # A mixture bounds each of its sources' skips on its own (`skip_bounds`): a web
    # corpus may lose more images than COCO without the run stopping.
    self._bounds = getattr(spec.source, "skip_bounds", None)
    self.group_seen, self.group_skipped = collections.Counter(), collections.Counter()

  def __next__(self) -> dict[str, np.ndarray]:
    try:
      batch = next(self._parent)
    except StopIteration:
      if self._spec.final_check:
        self._check(final=True)
      raise
    reasons = batch.pop(preprocess.SKIP_REASON_KEY)
    indices = batch[preprocess.EXAMPLE_INDEX_KEY]
    self.seen += int(np.count_nonzero(indices != batch_plan.PAD_INDEX))
    groups = (self._spec.source.skip_groups(indices) if self._bounds
              else [None] * len(indices))
    for code, index, group in zip(reasons, indices, groups):
      if index != batch_plan.PAD_INDEX and group is not None:
        self.group_seen[group] += 1
        self.group_skipped[group] += bool(code)
      if code:
        self._record_skip(images_lib.REASONS[code - 1], int(index))
    self._check(final=False)
    return batch

  def _record_skip(self, reason: str, index: int) -> None:
    # Named by its image files, which a user can find (the index is ours alone).
    self.skipped[reason] += 1
    self.skips.skip(reason, ", ".join(self._spec.source.image_names(index)),
                    f"example {index}")

  def _check(self, final: bool) -> None:
    if self._bounds:
      self._check_groups(final)
      return
    total = sum(self.skipped.values())
    if not final and self.seen < self._spec.min_seen:
      return
    if self.seen and total / self.seen > self._spec.max_skip_fraction:
      by_reason = ", ".join(f"{r}: {n}" for r, n in self.skipped.most_common())
      raise skips_lib.TooManySkipped(
          f"{self._spec.name}: skipped {total} of {self.seen} examples "
          f"({total / self.seen:.2%}; {by_reason}), more than max_skip_fraction="
          f"{self._spec.max_skip_fraction:g}; fix the data or raise the bound.\n"
          f"{self.skips.summary()}")

  def _check_groups(self, final: bool) -> None:
    """Each group (a mixture's source) against its own bound."""
    for group, seen in sorted(self.group_seen.items()):
      skipped, bound = self.group_skipped[group], self._bounds[group]
      if (final or seen >= self._spec.min_seen) and skipped / seen > bound:
        raise skips_lib.TooManySkipped(
            f"{self._spec.name}: skipped {skipped} of {seen} examples of source "
            f"{group} ({skipped / seen:.2%}), more than its max_skip_fraction="
            f"{bound:g}; fix the data or raise the bound.\n{self.skips.summary()}")

  def get_state(self) -> dict[str, Any]:
    state = {"parent": self._parent.get_state(), "seen": self.seen,
             "skipped": dict(self.skipped)}
    if self._bounds:
      state["groups"] = {"seen": dict(self.group_seen),
                         "skipped": dict(self.group_skipped)}
    return state

  def set_state(self, state: dict[str, Any]) -> None:
    self._parent.set_state(state["parent"])
    self.seen = int(state["seen"])
    self.skipped = collections.Counter({k: int(v) for k, v in state["skipped"].items()})
    groups = state.get("groups", {})
    self.group_seen, self.group_skipped = (
        collections.Counter({k: int(v) for k, v in groups.get(key, {}).items()})
        for key in ("seen", "skipped"))

  def close(self) -> None:
    close = getattr(self._parent, "close", None)
    if close is not None:
      close()


def make_pipeline(task: preprocess.Task, examples, cfg: Any, *, seed: int,
                  process_index: int = 0, process_count: int = 1,
                  training: bool = True, name: str = "data") -> SkipBoundIterator:
  """Builds a task's grain pipeline over records or a packed source; see module doc.

  The returned iterator also carries `batches_per_epoch`, `buckets` and `plan`.
  """
  cfg = data_config.checked(cfg)
  source = as_source(examples)
  buckets = tuple(buckets_from_config(cfg))
  bucket_ids = batch_plan.assign_buckets(
      source.image_sizes(), cfg.image_short_side, cfg.image_long_side, buckets)
  # A mixture (`data.mixture`) plans its own batches: each source at its rate.
  make_plan = getattr(source, "make_plan", batch_plan.BatchPlan)
  plan = make_plan(bucket_ids, len(buckets), cfg.global_batch_size,
                   seed=seed, training=training)
  batch_plan.per_process_batch_size(plan.global_batch_size, process_count)
  loader = BatchLoader(source, plan, task, buckets, seed, process_index, process_count)
  dataset = grain.MapDataset.range(_num_batches(plan, cfg, training)).map(loader)
  iter_dataset = dataset.to_iter_dataset(grain.ReadOptions(
      num_threads=cfg.read_threads,
      prefetch_buffer_size=cfg.prefetch_batches))
  if cfg.num_workers > 0:
    _ensure_flags_parsed()
    iter_dataset = iter_dataset.mp_prefetch(
        grain.MultiprocessingOptions(num_workers=cfg.num_workers))
  iterator = iter(SkipBoundDataset(
      iter_dataset, source, name, cfg.max_skip_fraction, cfg.skip_min_seen,
      final_check=not training))
  iterator.batches_per_epoch, iterator.buckets, iterator.plan = (
      plan.batches_per_epoch, buckets, plan)
  logging.info("%s: %d examples, %d batches per epoch, buckets %s", name,
               len(source), plan.batches_per_epoch, list(buckets))
  return iterator


def _ensure_flags_parsed() -> None:
  """grain's worker processes read absl flags; outside `app.run` (tests, notebooks)
  nobody parsed them, so their defaults are accepted as the parsed values."""
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def _num_batches(plan: batch_plan.BatchPlan, cfg: Any, training: bool) -> int:
  if not training:
    return plan.batches_per_epoch  # Evaluation: exactly one pass.
  epochs = cfg.num_epochs
  # grain's MapDataset is lazy, so a practically endless range costs nothing.
  return sys.maxsize if epochs is None else plan.batches_per_epoch * int(epochs)


def _image_transform(cfg: Any) -> preprocess.ImageTransform:
  return preprocess.ImageTransform(cfg.image_short_side, cfg.image_long_side)


def pretrain_pipeline(examples: Sequence | Any, tokenizer: tokenizer_lib.Tokenizer,
                      cfg: Any, *, seed: int, process_index: int = 0,
                      process_count: int = 1, training: bool = True
                      ) -> SkipBoundIterator:
  """MLM/ITM batches from `records.ImageText` (COCO, VG, ... mixed) or a packed source.

  Keys (B = G / process_count, T = max_text_len, (H, W) = the batch's bucket):
    images uint8 (B, H, W, 3), zero-padded; image_sizes int32 (B, 2) true (h, w);
    token_ids int32 (B, T) `[CLS] text [SEP]`; text_mask bool (B, T);
    mlm_ids int32 (B, T); mlm_labels int32 (B, T); mlm_weights float32 (B, T);
    image_ids int32 (B,) stable per image file (for ITM); example_index int32 (B,)
    index in the source, -1 for padding; valid bool (B,); num_skipped int32 ().
    With `itm_swap_words` (groups of words): swap_ids int32 (B, T), the caption with
    one word swapped within its group, and has_swap bool (B,) (see `data.swaps`).
  """
  cfg = data_config.checked(cfg)
  masker = masking.MlmMasker.from_tokenizer(
      tokenizer, mask_rate=cfg.mlm_probability,
      focus_ids=frozenset(swaps.single_token_ids(
          tokenizer, cfg.mlm_focus_words, "mlm_focus_words")),
      focus_share=cfg.mlm_focus_share)
  groups = cfg.itm_swap_words
  swapper = swaps.WordSwapper.from_words(tokenizer, groups) if groups else None
  task = preprocess.PretrainTask(_image_transform(cfg), tokenizer,
                                 cfg.max_text_len, masker=masker,
                                 swapper=swapper)
  return make_pipeline(task, examples, cfg, seed=seed, process_index=process_index,
                       process_count=process_count, training=training, name="pretrain")


def vqa_pipeline(examples: Sequence | Any, tokenizer: tokenizer_lib.Tokenizer,
                 answer_vocab: answers_lib.AnswerVocab, cfg: Any, *, seed: int,
                 process_index: int = 0, process_count: int = 1,
                 training: bool = True) -> SkipBoundIterator:
  """VQA batches from `records.VqaExample`s.

  Keys: images, image_sizes, token_ids, text_mask (as in `pretrain_pipeline`);
    targets float32 (B, len(answer_vocab)) soft scores; question_id int64 (B,);
    example_index int32 (B,); valid bool (B,); num_skipped int32 ().
  """
  cfg = data_config.checked(cfg)
  task = preprocess.VqaTask(_image_transform(cfg), tokenizer,
                            cfg.max_text_len, answer_vocab=answer_vocab)
  return make_pipeline(task, examples, cfg, seed=seed, process_index=process_index,
                       process_count=process_count, training=training, name="vqa")


def nlvr2_pipeline(examples: Sequence | Any, tokenizer: tokenizer_lib.Tokenizer,
                   cfg: Any, *, seed: int, process_index: int = 0,
                   process_count: int = 1, training: bool = True
                   ) -> SkipBoundIterator:
  """NLVR2 batches from `records.Nlvr2Example`s; both images share one bucket.

  Keys: images uint8 (B, 2, H, W, 3); image_sizes int32 (B, 2, 2);
    token_ids int32 (B, T); text_mask bool (B, T); label int32 (B,) (1 true,
    0 false, -1 hidden); example_index int32 (B,); valid bool (B,);
    num_skipped int32 ().
  """
  cfg = data_config.checked(cfg)
  task = preprocess.Nlvr2Task(_image_transform(cfg), tokenizer,
                              cfg.max_text_len)
  return make_pipeline(task, examples, cfg, seed=seed, process_index=process_index,
                       process_count=process_count, training=training, name="nlvr2")


def retrieval_train_pipeline(examples: Sequence | Any,
                             tokenizer: tokenizer_lib.Tokenizer, cfg: Any, *, seed: int,
                             num_negatives: int = 20, process_index: int = 0,
                             process_count: int = 1) -> SkipBoundIterator:
  """Ranking batches from `records.ImageText` captions (the paper's retrieval recipe).

  Each example is an image with its caption and `num_negatives` captions of other
  images drawn from all of `examples`. Keys: images, image_sizes (as in
  `pretrain_pipeline`); token_ids int32 (B, 1 + N, T) and text_mask bool (B, 1 + N, T),
  the positive first; image_ids int32 (B,); example_index; valid; num_skipped.
  """
  cfg = data_config.checked(cfg)
  source = as_source(examples)
  pool = tuple((record.text, int(preprocess.image_id_number(record.image_path)))
               for record in (source.record(i) for i in range(len(source))))
  if len({owner for _, owner in pool}) < 2:
    raise ValueError("retrieval training needs captions of at least two images")
  task = preprocess.RetrievalTrainTask(
      _image_transform(cfg), tokenizer, cfg.max_text_len,
      caption_pool=pool, num_negatives=num_negatives)
  return make_pipeline(task, source, cfg, seed=seed, process_index=process_index,
                       process_count=process_count, training=True, name="retrieval")


def image_pipeline(items: Sequence | Any, cfg: Any, *, process_index: int = 0,
                   process_count: int = 1) -> SkipBoundIterator:
  """One pass over images (e.g. `records.RetrievalItem`s) for feature extraction.

  Evaluation batches: every image exactly once, padding slots masked. Keys: images,
  image_sizes, image_ids, example_index (the item's index), valid, num_skipped.
  """
  cfg = data_config.checked(cfg)
  task = preprocess.ImageOnlyTask(_image_transform(cfg), None, 0)
  return make_pipeline(task, items, cfg, seed=0, process_index=process_index,
                       process_count=process_count, training=False, name="images")


def tokenize_retrieval_texts(items: Sequence, tokenizer: tokenizer_lib.Tokenizer,
                             max_text_len: int) -> dict[str, np.ndarray]:
  """Every caption of `records.RetrievalItem`s, in order, with the item it belongs to.

  Returns token_ids int32 (N, T), text_mask bool (N, T) and text_to_image int32 (N,)
  (an index into `items`): the text side of a retrieval evaluation.
  """
  ids, masks, owners = [], [], []
  for item_index, item in enumerate(items):
    for text in item.texts:
      token_ids, mask = tokenizer.encode(text, max_text_len)
      ids.append(token_ids)
      masks.append(mask.astype(bool))
      owners.append(item_index)
  if not ids:
    raise ValueError("no captions to tokenize")
  return {"token_ids": np.stack(ids), "text_mask": np.stack(masks),
          "text_to_image": np.asarray(owners, np.int32)}
