"""Per-task preprocessing: one example → arrays, and a batch of them → one dict.

A task turns an example's record and decoded image(s) into a dict of numpy arrays
whose shapes depend only on the batch's bucket and the text length, so that a batch
stacks into static shapes. `assemble_batch` fills every empty slot (an image that
failed to load, or evaluation padding) with a copy of a valid row whose loss weights
are zeroed and whose `valid` flag is False.
"""

from collections.abc import Sequence
import dataclasses
import zlib

import numpy as np

from pixelbert_jax.data import answers as answers_lib
from pixelbert_jax.data import images as images_lib
from pixelbert_jax.data import masking
from pixelbert_jax.data import swaps
from pixelbert_jax.data import tokenizer as tokenizer_lib

Bucket = tuple[int, int]
Row = dict[str, np.ndarray]

# Per slot, the reason an example was skipped (0 = not skipped, k = images.REASONS[k - 1]);
# the pipeline's last stage reads and removes it.
SKIP_REASON_KEY = "_skip_reason"
# Per slot, the example's position in the source (-1 = padding); evaluators find each
# prediction's example by it. (Per-example random draws use the row's position in the
# global batch instead: `train_step.BATCH_POSITION_KEY`.)
EXAMPLE_INDEX_KEY = "example_index"
# Per row, a tuple of unpadded uint8 images; per batch, the padded array.
IMAGES_KEY = "images"


def reason_code(reason: str) -> int:
  return images_lib.REASONS.index(reason) + 1


def image_id_number(image_path: str) -> np.int32:
  """A stable non-negative int32 per image file, the same in every process and worker.

  ITM uses it to tell a caption of the same image (a match) from a true negative; a
  CRC collision between two images of one batch is about a 1 in 2**31 event.
  """
  return np.int32(zlib.crc32(image_path.encode("utf-8", "surrogateescape")) & 0x7FFFFFFF)


@dataclasses.dataclass(frozen=True)
class ImageTransform:
  """Resize (short side S, long side ≤ L), shrinking if needed to fit the bucket.

  Images stay uint8 and unpadded here: `assemble_batch` writes them straight into the
  zeroed batch array (one copy), and the model normalises them on the device
  (`models.pixel_encoder`), which moves a quarter of the bytes between processes and
  spends no host time on float arithmetic.
  """

  short_side: int
  long_side_max: int

  def __call__(self, image: np.ndarray, bucket: Bucket) -> np.ndarray:
    """uint8 (h0, w0, 3) → uint8 (h, w, 3) with h ≤ H, w ≤ W of the bucket."""
    size = images_lib.resized_size(*image.shape[:2], self.short_side, self.long_side_max)
    # The plan chose the bucket from the header; fit_size is a no-op unless the
    # decoded image disagrees with it (or NLVR2's partner image set the bucket).
    return images_lib.resize_to(image, images_lib.fit_size(*size, bucket))


@dataclasses.dataclass(frozen=True)
class Task:
  """What every task shares: the image transform and the tokenizer."""

  transform: ImageTransform
  tokenizer: tokenizer_lib.Tokenizer
  max_text_len: int
  images_per_example = 1  # A class constant, not a field.

  def text(self, text: str) -> Row:
    ids, mask = self.tokenizer.encode(text, self.max_text_len)
    return {"token_ids": ids, "text_mask": mask.astype(bool)}

  def resized_images(self, images: list[np.ndarray], bucket: Bucket) -> Row:
    """The example's images, resized but not padded (`assemble_batch` pads them)."""
    return {IMAGES_KEY: tuple(self.transform(image, bucket) for image in images)}

  def blank_images(self, bucket: Bucket) -> Row:
    """Black full-bucket images: only used when a slice has no valid row."""
    return {IMAGES_KEY: (np.zeros((*bucket, 3), np.uint8),) * self.images_per_example}

  def silence(self, row: Row) -> Row:
    """A copy of `row` that contributes no loss (the task's weights set to zero)."""
    return dict(row)


@dataclasses.dataclass(frozen=True)
class PretrainTask(Task):
  """MLM (+ ITM in the trainer) on image-text pairs."""

  masker: masking.MlmMasker | None = None
  swapper: swaps.WordSwapper | None = None  # hard ITM negatives, when given

  def example(self, record, images: list[np.ndarray], bucket: Bucket,
              rng: np.random.Generator) -> Row:
    row = {**self.resized_images(images, bucket), **self.text(record.text),
           "image_ids": image_id_number(record.image_path)}
    row = self._with_mlm(row, rng)
    if self.swapper is not None:
      swapped, found = self.swapper(row["token_ids"], rng)
      row.update(swap_ids=swapped, has_swap=np.bool_(found))
    return row

  def _with_mlm(self, row: Row, rng: np.random.Generator) -> Row:
    masker = self.masker or masking.MlmMasker.from_tokenizer(self.tokenizer)
    mlm_ids, labels, weights = masker(row["token_ids"], rng)
    return {**row, "mlm_ids": mlm_ids.astype(np.int32), "mlm_labels": labels,
            "mlm_weights": weights}

  def blank(self, bucket: Bucket) -> Row:
    row = {**self.blank_images(bucket), **self.text("")}
    row = {**row, "image_ids": np.int32(-1), "mlm_ids": row["token_ids"].copy(),
           "mlm_labels": np.zeros(self.max_text_len, np.int32),
           "mlm_weights": np.zeros(self.max_text_len, np.float32)}
    if self.swapper is not None:
      row.update(swap_ids=row["token_ids"].copy(), has_swap=np.bool_(False))
    return row

  def silence(self, row: Row) -> Row:
    return {**row, "mlm_weights": np.zeros_like(row["mlm_weights"])}


@dataclasses.dataclass(frozen=True)
class VqaTask(Task):
  """VQA as classification over an answer vocabulary with soft-score targets."""

  answer_vocab: answers_lib.AnswerVocab | None = None

  def example(self, record, images: list[np.ndarray], bucket: Bucket,
              rng: np.random.Generator) -> Row:
    del rng  # VQA preprocessing draws nothing at random.
    return {**self.resized_images(images, bucket), **self.text(record.question),
            "targets": self.answer_vocab.dense_targets(record.answers),
            "question_id": np.int64(record.question_id)}

  def blank(self, bucket: Bucket) -> Row:
    return {**self.blank_images(bucket), **self.text(""),
            "targets": np.zeros(len(self.answer_vocab), np.float32),
            "question_id": np.int64(-1)}

  def silence(self, row: Row) -> Row:
    # The trainer weights losses by `valid`; zeroed targets also keep a copy from
    # pulling the answer scores of its original towards its duplicate.
    return {**row, "targets": np.zeros_like(row["targets"])}


@dataclasses.dataclass(frozen=True)
class Nlvr2Task(Task):
  """NLVR2: two images (one bucket that fits both) and a true/false statement."""

  images_per_example = 2

  def example(self, record, images: list[np.ndarray], bucket: Bucket,
              rng: np.random.Generator) -> Row:
    del rng
    label = -1 if record.label is None else int(record.label)
    return {**self.resized_images(images, bucket), **self.text(record.sentence),
            "label": np.int32(label)}

  def blank(self, bucket: Bucket) -> Row:
    return {**self.blank_images(bucket), **self.text(""),
            "label": np.int32(-1)}


@dataclasses.dataclass(frozen=True)
class RetrievalTrainTask(Task):
  """Ranking: each image with its caption and `num_negatives` captions of other images.

  `token_ids` / `text_mask` are (1 + N, T) per example, the positive first; the
  trainer scores every pair and takes the softmax cross-entropy through the hardest
  negatives. `caption_pool` holds (text, image id number) of every training caption.
  """

  caption_pool: tuple[tuple[str, int], ...] = ()
  num_negatives: int = 20

  def example(self, record, images: list[np.ndarray], bucket: Bucket,
              rng: np.random.Generator) -> Row:
    image_id = image_id_number(record.image_path)
    texts = [record.text, *self._negatives(image_id, rng)]
    encoded = [self.text(text) for text in texts]
    return {**self.resized_images(images, bucket),
            "token_ids": np.stack([e["token_ids"] for e in encoded]),
            "text_mask": np.stack([e["text_mask"] for e in encoded]),
            "image_ids": image_id}

  def _negatives(self, image_id: int, rng: np.random.Generator) -> list[str]:
    """Captions drawn uniformly from the pool, redrawn where they describe this image."""
    chosen = []
    while len(chosen) < self.num_negatives:
      text, owner = self.caption_pool[int(rng.integers(len(self.caption_pool)))]
      if owner != image_id:
        chosen.append(text)
    return chosen

  def blank(self, bucket: Bucket) -> Row:
    encoded = self.text("")
    count = 1 + self.num_negatives
    return {**self.blank_images(bucket),
            "token_ids": np.tile(encoded["token_ids"], (count, 1)),
            "text_mask": np.tile(encoded["text_mask"], (count, 1)),
            "image_ids": np.int32(-1)}


@dataclasses.dataclass(frozen=True)
class ImageOnlyTask(Task):
  """Just the images (retrieval evaluation runs the CNN once per image)."""

  def example(self, record, images: list[np.ndarray], bucket: Bucket,
              rng: np.random.Generator) -> Row:
    del rng
    return {**self.resized_images(images, bucket),
            "image_ids": image_id_number(record.image_path)}

  def blank(self, bucket: Bucket) -> Row:
    return {**self.blank_images(bucket), "image_ids": np.int32(-1)}


def assemble_batch(task: Task, rows: list[Row | None], bucket: Bucket,
                   skip_reasons: Sequence[int], example_indices: np.ndarray
                   ) -> dict[str, np.ndarray]:
  """Stacks rows into a batch; empty slots (None) become silenced copies.

  Args:
    task: the task that made the rows (it knows how to silence and blank one).
    rows: per slot, a row or None for a skipped example or evaluation padding.
    bucket: the batch's (H, W).
    skip_reasons: per slot, 0 or the `reason_code` of a skipped example.
    example_indices: per slot, the example's index in the source (-1 = padding).
  """
  valid = np.array([row is not None for row in rows], bool)
  filler = next((row for row in rows if row is not None), None)
  filler = task.silence(filler) if filler is not None else task.blank(bucket)
  filled = [row if row is not None else filler for row in rows]
  batch = {key: np.stack([row[key] for row in filled])
           for key in filled[0] if key != IMAGES_KEY}
  batch[IMAGES_KEY], batch["image_sizes"] = _pad_images(
      [row[IMAGES_KEY] for row in filled], bucket, task.images_per_example)
  batch["valid"] = valid
  reasons = np.asarray(skip_reasons, np.int32)
  batch["num_skipped"] = np.int32(np.count_nonzero(reasons))
  batch[SKIP_REASON_KEY] = reasons
  batch[EXAMPLE_INDEX_KEY] = np.asarray(example_indices, np.int32)
  return batch


def _pad_images(images: list[tuple[np.ndarray, ...]], bucket: Bucket, per_example: int
                ) -> tuple[np.ndarray, np.ndarray]:
  """Rows' images → zero-padded uint8 (B, [2,] H, W, 3) and int32 (B, [2,] 2) true sizes.

  Each image is copied once, straight into a zeroed batch array; one image per example
  drops the pair axis that NLVR2 keeps.
  """
  padded = np.zeros((len(images), per_example, *bucket, 3), np.uint8)
  sizes = np.zeros((len(images), per_example, 2), np.int32)
  for slot, row_images in enumerate(images):
    for pair, image in enumerate(row_images):
      height, width = image.shape[:2]
      if height > bucket[0] or width > bucket[1]:
        raise ValueError(f"image {height}x{width} does not fit bucket {bucket}")
      padded[slot, pair, :height, :width] = image
      sizes[slot, pair] = height, width
  if per_example == 1:
    return padded[:, 0], sizes[:, 0]
  return padded, sizes
