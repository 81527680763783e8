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
from pixelbert_jax.data import tokenizer as tokenizer_lib

Bucket = tuple[int, int]
Row = dict[str, np.ndarray]

# Per slot, the reason an example was skipped (0 = not skipped, k = images.REASONS[k - 1]);
# the pipeline's last stage reads and removes it.
SKIP_REASON_KEY = "_skip_reason"
# Per slot, the example's index in the source (-1 = padding); kept in the batch, where
# the trainer folds it into per-example random keys (e.g. random pixel sampling).
EXAMPLE_INDEX_KEY = "example_index"


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
  """Resize (short side S, long side ≤ L), shrink to fit the bucket, normalise, pad."""

  short_side: int
  long_side_max: int
  mean: Sequence[float] = images_lib.IMAGENET_MEAN
  std: Sequence[float] = images_lib.IMAGENET_STD

  def __call__(self, image: np.ndarray, bucket: Bucket
               ) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (h0, w0, 3) → (float32 (H, W, 3) padded, int32 (2,) true size)."""
    size = images_lib.resized_size(*image.shape[:2], self.short_side, self.long_side_max)
    # The plan chose the bucket from the header; fit_size is a no-op unless the
    # decoded image disagrees with it (or NLVR2's partner image set the bucket).
    size = images_lib.fit_size(*size, bucket)
    resized = images_lib.resize_to(image, size)
    padded, true_size = images_lib.pad_to_bucket(
        images_lib.normalize(resized, self.mean, self.std), bucket)
    return padded, np.asarray(true_size, np.int32)


@dataclasses.dataclass(frozen=True)
class Task:
  """What every task shares: the image transform and the tokenizer."""

  transform: ImageTransform
  tokenizer: tokenizer_lib.Tokenizer
  max_text_len: int

  def text(self, text: str) -> Row:
    ids, mask = self.tokenizer.encode(text, self.max_text_len)
    return {"token_ids": ids, "text_mask": mask.astype(bool)}

  def one_image(self, images: list[np.ndarray], bucket: Bucket) -> Row:
    pixels, size = self.transform(images[0], bucket)
    return {"images": pixels, "image_sizes": size}

  def blank_images(self, bucket: Bucket, count: int = 1) -> Row:
    """Mean-coloured full-bucket images: only used when a slice has no valid row."""
    images = np.zeros((count, *bucket, 3), np.float32)
    sizes = np.tile(np.asarray(bucket, np.int32), (count, 1))
    # One image per example drops the leading axis; NLVR2's pair keeps it.
    return ({"images": images[0], "image_sizes": sizes[0]} if count == 1
            else {"images": images, "image_sizes": sizes})

  def silence(self, row: Row) -> Row:
    """A copy of `row` that contributes no loss (the task's weights set to zero)."""
    return dict(row)


@dataclasses.dataclass(frozen=True)
class PretrainTask(Task):
  """MLM (+ ITM in the trainer) on image-text pairs."""

  masker: masking.MlmMasker | None = None

  def example(self, record, images: list[np.ndarray], bucket: Bucket,
              rng: np.random.Generator) -> Row:
    row = {**self.one_image(images, bucket), **self.text(record.text),
           "image_ids": image_id_number(record.image_path)}
    return self._with_mlm(row, rng)

  def _with_mlm(self, row: Row, rng: np.random.Generator) -> Row:
    masker = self.masker or masking.MlmMasker.from_tokenizer(self.tokenizer)
    mlm_ids, labels, weights = masker(row["token_ids"], rng)
    return {**row, "mlm_ids": mlm_ids.astype(np.int32), "mlm_labels": labels,
            "mlm_weights": weights}

  def blank(self, bucket: Bucket) -> Row:
    row = {**self.blank_images(bucket), **self.text("")}
    return {**row, "image_ids": np.int32(-1), "mlm_ids": row["token_ids"].copy(),
            "mlm_labels": np.zeros(self.max_text_len, np.int32),
            "mlm_weights": np.zeros(self.max_text_len, np.float32)}

  def silence(self, row: Row) -> Row:
    return {**row, "mlm_weights": np.zeros_like(row["mlm_weights"])}


@dataclasses.dataclass(frozen=True)
class VqaTask(Task):
  """VQA as classification over an answer vocabulary with soft-score targets."""

  answer_vocab: answers_lib.AnswerVocab | None = None

  def example(self, record, images: list[np.ndarray], bucket: Bucket,
              rng: np.random.Generator) -> Row:
    del rng  # VQA preprocessing draws nothing at random.
    return {**self.one_image(images, bucket), **self.text(record.question),
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

  def example(self, record, images: list[np.ndarray], bucket: Bucket,
              rng: np.random.Generator) -> Row:
    del rng
    pairs = [self.transform(image, bucket) for image in images]
    label = -1 if record.label is None else int(record.label)
    return {"images": np.stack([p for p, _ in pairs]),
            "image_sizes": np.stack([s for _, s in pairs]),
            **self.text(record.sentence), "label": np.int32(label)}

  def blank(self, bucket: Bucket) -> Row:
    return {**self.blank_images(bucket, count=2), **self.text(""),
            "label": np.int32(-1)}


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
  batch = {key: np.stack([row[key] for row in filled]) for key in filled[0]}
  batch["valid"] = valid
  reasons = np.asarray(skip_reasons, np.int32)
  batch["num_skipped"] = np.int32(np.count_nonzero(reasons))
  batch[SKIP_REASON_KEY] = reasons
  batch[EXAMPLE_INDEX_KEY] = np.asarray(example_indices, np.int32)
  return batch
