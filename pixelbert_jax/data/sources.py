"""Example sources the pipelines read: reader records over raw files, or packed shards.

A source is random access and answers four questions about example i: its record
(`records.ImageText`, `VqaExample`, `Nlvr2Example`, ...), the encoded bytes of its
image(s), a name for each image (for skip reports), and, for all examples at once, the
image sizes the batch plan needs before anything is decoded. `RawSource` reads image
files next to a list of records; `pack.PackedSource` reads ArrayRecord shards written
by `pack.py`. Both give the same answers for the same examples, so the pipelines give
the same batches from either.
"""

from collections.abc import Mapping, Sequence
import functools
import io
import warnings

from etils import epath
import numpy as np
from PIL import Image

from pixelbert_jax.data import images as images_lib
from pixelbert_jax.data import records
from pixelbert_jax.data.readers import common

# EXIF orientations 5-8 turn the image by 90 degrees: `load_image` swaps its sides.
_TRANSPOSING_ORIENTATIONS = frozenset((5, 6, 7, 8))
_EXIF_ORIENTATION_TAG = 0x0112


def image_paths(record) -> tuple[str, ...]:
  """The image file(s) of a record: one, or (left, right) for NLVR2."""
  if isinstance(record, records.Nlvr2Example):
    return (record.left_path, record.right_path)
  return (record.image_path,)


def read_image_bytes(path: str) -> bytes:
  """An image's bytes (a file, or a tar or parquet member: `images.member_path`); an
  image that is not there raises `ImageError('missing')`."""
  return images_lib.read_image_bytes(path)


def header_size(data: bytes) -> tuple[int, int]:
  """(height, width) of the upright image, read from the header without decoding.

  (0, 0) if the header cannot be read: the image will be skipped when it is loaded,
  so its planned bucket does not matter.
  """
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    try:
      with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        orientation = image.getexif().get(_EXIF_ORIENTATION_TAG)
    except Exception:  # pylint: disable=broad-except  # Any damage means "unknown".
      return 0, 0
  if orientation in _TRANSPOSING_ORIENTATIONS:
    width, height = height, width
  return height, width


@functools.lru_cache(maxsize=1_000_000)
def file_header_size(path: str) -> tuple[int, int]:
  """`header_size` of a file, cached: COCO pairs each image with five captions."""
  try:
    # A JPEG's size and EXIF sit in its first few KiB; 256 KiB covers large EXIF.
    return header_size(images_lib.read_image_bytes(path, max_bytes=1 << 18))
  except (OSError, images_lib.ImageError):
    return 0, 0


class RawSource:
  """Reader records over image files on disk (local or `gs://`)."""

  def __init__(self, examples: Sequence, *,
               known_sizes: Mapping[str, tuple[int, int]] | None = None):
    """Wraps records.

    Args:
      examples: records of one kind, e.g. the list a reader yields.
      known_sizes: optional image path -> (height, width), e.g. from the
        width/height of a COCO captions file or VG's image_data.json (see
        `coco_image_sizes`), to spare reading image headers.
    """
    self._examples = list(examples)
    self._known_sizes = dict(known_sizes or {})

  def __len__(self) -> int:
    return len(self._examples)

  def record(self, index: int):
    return self._examples[index]

  def image_names(self, index: int) -> tuple[str, ...]:
    return image_paths(self._examples[index])

  def image_bytes(self, index: int) -> list[bytes]:
    """Encoded bytes per image; raises `ImageError('missing')` for absent files."""
    return [read_image_bytes(path) for path in self.image_names(index)]

  def image_sizes(self) -> np.ndarray:
    """int32 (N, K, 2): (height, width) of each example's K images; 0 = unknown."""
    sizes = [[self._known_sizes.get(path) or file_header_size(path)
              for path in image_paths(example)] for example in self._examples]
    return np.asarray(sizes, np.int32).reshape(len(self._examples), -1, 2)


def coco_image_sizes(annotation_file: epath.PathLike,
                     image_dir: epath.PathLike) -> dict[str, tuple[int, int]]:
  """path -> (height, width) from a COCO captions file, paths as `read_coco_captions`."""
  data = common.load_json(annotation_file)
  return {str(epath.Path(image_dir) / image["file_name"]):
          (int(image["height"]), int(image["width"]))
          for image in data.get("images") or () if _has_size(image)}


def _has_size(image) -> bool:
  return (isinstance(image, dict) and "file_name" in image
          and isinstance(image.get("height"), int) and isinstance(image.get("width"), int))
