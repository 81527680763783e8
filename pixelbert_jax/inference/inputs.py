"""Plain inputs (paths, PIL images, uint8 arrays, strings) -> what the model reads.

Everything goes through the training pipeline's own functions, so a checkpoint sees
at inference exactly what its evaluation saw: `images.load_image` / the same RGB
conversion, the bucket of `batch_plan.assign_buckets`, the resize of
`preprocess.ImageTransform`, zero padding into the bucket, and `[CLS] text [SEP]` ids
from `preprocess.Task.text`. Images stay uint8; the model normalises them.
"""

import dataclasses
import hashlib
import os

import numpy as np
from etils import epath
from PIL import Image, ImageOps

from pixelbert_jax.data import batch_plan, pipeline, preprocess
from pixelbert_jax.data import images as images_lib
from pixelbert_jax.data import tokenizer as tokenizer_lib

ImageInput = str | os.PathLike | Image.Image | np.ndarray


@dataclasses.dataclass(frozen=True)
class PreparedImage:
  """One image, resized for its bucket but not padded."""
  key: str  # identifies the content: equal keys, equal pixels
  name: str  # for messages: the path, or what kind of object it was
  original: np.ndarray  # uint8 (H0, W0, 3), as given (after EXIF rotation)
  pixels: np.ndarray  # uint8 (h, w, 3), what the CNN sees before padding
  bucket: tuple[int, int]


def _digest(*parts: bytes) -> str:
  digest = hashlib.sha1()
  for part in parts:
    digest.update(part)
  return digest.hexdigest()


def _array_image(array: np.ndarray) -> np.ndarray:
  """A uint8 (H, W, 3) RGB array, or (H, W) grey repeated into 3 channels."""
  if array.dtype != np.uint8:
    raise ValueError(f"image arrays must be uint8 (H, W, 3), got {array.dtype}")
  if array.ndim == 2:
    array = np.repeat(array[:, :, None], 3, axis=2)
  if array.ndim != 3 or array.shape[2] != 3 or min(array.shape[:2]) < 1:
    raise ValueError(f"image arrays must be uint8 (H, W, 3), got shape {array.shape}")
  return np.ascontiguousarray(array)


def read_image(image: ImageInput) -> tuple[np.ndarray, str, str]:
  """(uint8 (H, W, 3) RGB, cache key, name) of a path, a PIL image or an array.

  Raises:
    images.ImageError: a file that is missing or cannot be decoded (it names the file).
    ValueError: an array of the wrong type or shape.
  """
  if isinstance(image, np.ndarray):
    pixels = _array_image(image)
    return pixels, _digest(str(pixels.shape).encode(), pixels.tobytes()), "array"
  if isinstance(image, Image.Image):
    # The same conversion a decoded file gets (EXIF rotation, alpha on a neutral
    # background), so a PIL image gives the answer its file would.
    pixels = images_lib._to_rgb_array(ImageOps.exif_transpose(image))  # pylint: disable=protected-access
    return pixels, _digest(str(pixels.shape).encode(), pixels.tobytes()), "PIL image"
  path = epath.Path(image)
  try:
    data = path.read_bytes()
  except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
    raise images_lib.ImageError(str(path), "missing", type(e).__name__) from e
  return images_lib.decode_image(data, name=str(path)), _digest(data), str(path)


class ImagePreparer:
  """Resizes images into the run's buckets with its evaluation preprocessing."""

  def __init__(self, data_cfg):
    self.short_side = data_cfg.image_short_side
    self.long_side = data_cfg.image_long_side
    self.buckets = tuple(pipeline.buckets_from_config(data_cfg))
    self.transform = preprocess.ImageTransform(self.short_side, self.long_side)

  def bucket(self, height: int, width: int) -> tuple[int, int]:
    """The bucket the evaluation pipeline plans for an image of this size."""
    index = batch_plan.assign_buckets(np.array([[[height, width]]]), self.short_side,
                                      self.long_side, self.buckets)[0]
    return self.buckets[index]

  def __call__(self, image: ImageInput) -> PreparedImage:
    original, key, name = read_image(image)
    bucket = self.bucket(*original.shape[:2])
    return PreparedImage(key, name, original, self.transform(original, bucket), bucket)


def padded_count(count: int, cap: int) -> int:
  """`count` rounded up to a power of two, at most `cap`: a handful of batch shapes,
  each compiled once, without making a single query pay for a full batch."""
  return min(cap, 1 << max(count - 1, 0).bit_length())


def image_batch(prepared: list[PreparedImage], size: int) -> tuple[np.ndarray, np.ndarray]:
  """Images of one bucket -> zero-padded uint8 (size, H, W, 3) and int32 (size, 2) true
  sizes; missing rows repeat the first image (their outputs are dropped)."""
  bucket = prepared[0].bucket
  rows = [images_lib.pad_to_bucket(p.pixels, bucket) for p in prepared]
  rows += [rows[0]] * (size - len(rows))
  return (np.stack([padded for padded, _ in rows]),
          np.asarray([true_size for _, true_size in rows], np.int32))


class TextEncoder:
  """`[CLS] text [SEP]` ids and mask, padded to the run's `max_text_len`."""

  def __init__(self, tokenizer: tokenizer_lib.Tokenizer, max_text_len: int):
    self.tokenizer = tokenizer
    self._task = preprocess.Task(None, tokenizer, max_text_len)

  def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """int32 (N, T) ids and bool (N, T) mask."""
    for text in texts:
      if not isinstance(text, str):
        raise ValueError(f"texts must be strings, got {type(text).__name__}")
    rows = [self._task.text(text) for text in texts]
    for index, row in enumerate(rows):
      if row["text_mask"].sum() <= 2:  # [CLS] [SEP] only: nothing to read
        raise ValueError(f"text {index} ({texts[index]!r}) is empty after tokenisation; "
                         "the model would answer it from the image alone")
    return (np.stack([r["token_ids"] for r in rows]),
            np.stack([r["text_mask"] for r in rows]))

  def token_names(self, token_ids: np.ndarray, text_mask: np.ndarray) -> list[str]:
    """A readable name per real token: [CLS], the word pieces, [SEP]."""
    special = {self.tokenizer.cls_id: tokenizer_lib.CLS,
               self.tokenizer.sep_id: tokenizer_lib.SEP}
    return [special.get(int(i)) or self.tokenizer.ids_to_text([int(i)]).strip()
            for i in token_ids[text_mask]]
