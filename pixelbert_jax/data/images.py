"""Image decoding and geometry: bytes → RGB → resized → bucketed.

Pillow does all decoding and resampling; this module only decides *what* to ask of it and
turns every way a file can be bad into one `ImageError` with a short, countable `reason`,
so the input pipeline can skip and count bad images instead of crashing
(docs/ARCHITECTURE.md, "Bad input").

The usual order for one image is::

    image = load_image(path)                                   # uint8 (H, W, 3)
    image, bucket = fit_to_buckets(image, 800, 1333, buckets)  # resize, pick a bucket
    padded, true_size = pad_to_bucket(image, bucket)           # still uint8

An image path is a file, or a member of a container file that web corpora ship in
(`member_path`): "shard.tar#key.jpg" is a tar member (img2dataset's webdataset
shards), "shard.parquet#key" the image bytes of the row with that key (img2dataset's
parquet output). `read_image_bytes` reads all three, so the pipelines, `pack` and
`check` need not know where an image sits.

Images stay uint8 on the host. The model normalises them on the device
(`pixel_encoder.normalize_images`) and sets the padding to 0.0 after normalising,
i.e. the mean colour, so the CNN sees no artificial black border.
"""

from collections.abc import Sequence
import functools
import io
import math
import os
import tarfile
import warnings

from etils import epath
import numpy as np
from PIL import Image
from PIL import ImageOps

# ImageNet statistics in [0, 1] units, what torchvision-style ResNet weights expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Transparent pixels are composited on the ImageNet mean colour: it normalises to about
# zero, like the padding, instead of to the extreme value black or white would give.
NEUTRAL_BACKGROUND = tuple(round(255 * m) for m in IMAGENET_MEAN)
# Portrait 9:16, portrait 3:4, square, landscape 4:3 and wide 16:9, as width / height.
DEFAULT_ASPECT_RATIOS = (9 / 16, 3 / 4, 1.0, 4 / 3, 16 / 9)
DEFAULT_MAX_PIXELS = 64_000_000

REASONS = ("missing", "empty", "undecodable", "truncated", "too_large", "too_small")


class ImageError(ValueError):
  """An image that cannot be used; `reason` is one of `REASONS`, for counting skips."""

  def __init__(self, name: str, reason: str, detail: str = ""):
    if reason not in REASONS:
      raise ValueError(f"unknown image error reason {reason!r}")
    message = f"{name}: {reason}" + (f" ({detail})" if detail else "")
    super().__init__(message)
    self.name = name
    self.reason = reason


# Separates a container file from the member inside it in an image path.
MEMBER_SEPARATOR = "#"
_CONTAINER_SUFFIXES = (".tar", ".parquet")
# The column img2dataset's parquet output keeps image bytes in: its `encode_format`.
_PARQUET_IMAGE_COLUMNS = ("jpg", "png", "webp")
# What reading an image that is not there raises (KeyError: no such member or row).
_NOT_THERE = (FileNotFoundError, IsADirectoryError, NotADirectoryError, KeyError)


def member_path(container: str | os.PathLike, member: str) -> str:
  """The image path of `member` inside a .tar file (a member name) or a .parquet file
  (a row's `key`), e.g. "web/00000.tar#000000012.jpg"."""
  return f"{container}{MEMBER_SEPARATOR}{member}"


def split_member_path(path: str | os.PathLike) -> tuple[str, str | None]:
  """(container, member) of a member path; (path, None) for a plain file."""
  path = str(path)
  for suffix in _CONTAINER_SUFFIXES:
    container, found, member = path.partition(suffix + MEMBER_SEPARATOR)
    if found and member:
      return container + suffix, member
  return path, None


def read_image_bytes(path: str | os.PathLike, max_bytes: int | None = None) -> bytes:
  """The encoded bytes of an image file or container member (`member_path`), or
  their first `max_bytes`; an image that is not there raises `ImageError('missing')`,
  one in a container that cannot be parsed `ImageError('undecodable')`."""
  container, member = split_member_path(path)
  try:
    if member is None:
      with epath.Path(container).open("rb") as f:
        return f.read() if max_bytes is None else f.read(max_bytes)
    try:
      if container.endswith(".tar"):
        return _read_tar_member(container, member, max_bytes)
      return _read_parquet_image(container, member)[:max_bytes]
    except _NOT_THERE:
      raise
    except (tarfile.TarError, OSError, ValueError) as e:  # pyarrow's errors are these
      raise ImageError(str(path), "undecodable", f"{container}: {e}") from e
  except _NOT_THERE as e:
    raise ImageError(str(path), "missing", type(e).__name__) from e


@functools.lru_cache(maxsize=256)
def _tar_index(tar_path: str) -> dict[str, tuple[int, int]]:
  """member name -> (data offset, size) of a tar file, read once per process: a
  shard holds thousands of images, and a scan of its headers per image would be
  quadratic."""
  with epath.Path(tar_path).open("rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
    return {info.name: (info.offset_data, info.size) for info in tar if info.isfile()}


def _read_tar_member(tar_path: str, member: str, max_bytes: int | None) -> bytes:
  offset, size = _tar_index(tar_path)[member]
  with epath.Path(tar_path).open("rb") as f:
    f.seek(offset)
    return f.read(size if max_bytes is None else min(size, max_bytes))


@functools.lru_cache(maxsize=64)
def _parquet_index(path: str) -> tuple[dict[str, tuple[int, int]], str]:
  """(key -> (row group, row in it), image column) of an img2dataset parquet file."""
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top  # only for parquet
  with epath.Path(path).open("rb") as f:
    parquet = pq.ParquetFile(f)
    names = parquet.schema_arrow.names
    column = next((name for name in _PARQUET_IMAGE_COLUMNS if name in names), None)
    if column is None or "key" not in names:
      raise KeyError(f"no key and image column in {path}")
    index = {}
    for group in range(parquet.num_row_groups):
      keys = parquet.read_row_group(group, columns=["key"]).column("key").to_pylist()
      index.update((key, (group, row)) for row, key in enumerate(keys))
  return index, column


@functools.lru_cache(maxsize=4)
def _parquet_row_group(path: str, group: int, column: str) -> list[bytes | None]:
  """One row group's image bytes: img2dataset writes groups of 100 rows, and `pack`
  reads them in order, so the last few groups are kept."""
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
  with epath.Path(path).open("rb") as f:
    return pq.ParquetFile(f).read_row_group(group, columns=[column]).column(
        column).to_pylist()


def _read_parquet_image(path: str, key: str) -> bytes:
  index, column = _parquet_index(path)
  group, row = index[key]
  data = _parquet_row_group(path, group, column)[row]
  if data is None:  # A failed download: its row has no image.
    raise KeyError(key)
  return data


def load_image(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               min_side: int = 1) -> np.ndarray:
  """Reads a local or `gs://` image file, or a member of a tar or parquet file
  (`member_path`), into an upright uint8 (H, W, 3) RGB array."""
  data = read_image_bytes(path)
  return decode_image(data, max_pixels=max_pixels, min_side=min_side, name=str(path))


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                 name: str = "<bytes>", min_side: int = 1) -> np.ndarray:
  """Decodes encoded image bytes into an upright uint8 (H, W, 3) RGB array.

  The size in the header is checked against `max_pixels` and `min_side` before any
  pixel is decoded, so a decompression bomb costs nothing. Pillow's own bomb guard
  (`Image.MAX_IMAGE_PIXELS`) is silenced as a warning, since `max_pixels` replaces it,
  but its hard error (twice that limit) still counts as 'too_large'. Truncated files
  are errors as long as nobody sets Pillow's global `ImageFile.LOAD_TRUNCATED_IMAGES`.

  Args:
    data: the encoded file contents (JPEG, PNG, GIF, WebP, TIFF, BMP, ...).
    max_pixels: images with more pixels than this are rejected as 'too_large'.
    name: names the file in error messages.
    min_side: images with a side shorter than this are rejected as 'too_small'.

  Returns:
    The image after EXIF rotation, in RGB, one byte per channel.

  Raises:
    ImageError: with reason 'empty', 'undecodable', 'truncated', 'too_large' or
      'too_small'.
  """
  if not data:
    raise ImageError(name, "empty")
  image = _open_checked(data, name, max_pixels, min_side)
  try:
    image.load()
  except (OSError, ValueError, SyntaxError, EOFError) as e:
    raise ImageError(name, _damage_reason(e), str(e)) from e
  try:
    return _to_rgb_array(ImageOps.exif_transpose(image))
  except (OSError, ValueError, SyntaxError) as e:
    raise ImageError(name, "undecodable", str(e)) from e


def _open_checked(data: bytes, name: str, max_pixels: int,
                  min_side: int) -> Image.Image:
  """Opens `data` lazily (header only) and rejects absurd sizes before decoding."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    try:
      image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
      raise ImageError(name, "too_large", str(e)) from e
    except (OSError, ValueError, SyntaxError, EOFError) as e:
      # OSError covers Pillow's UnidentifiedImageError and short, broken headers.
      raise ImageError(name, _damage_reason(e), str(e)) from e
  width, height = image.size
  if width * height > max_pixels:
    raise ImageError(name, "too_large", f"{width}x{height} > {max_pixels} pixels")
  if min(width, height) < min_side:
    raise ImageError(name, "too_small", f"{width}x{height}, min side {min_side}")
  return image


def _damage_reason(error: Exception) -> str:
  """'truncated' or 'undecodable' for an exception Pillow raised while reading."""
  # Pillow refuses to return half an image (unless ImageFile.LOAD_TRUNCATED_IMAGES is
  # set); its message is the only thing that tells truncation from other damage.
  return "truncated" if "truncated" in str(error).lower() else "undecodable"


def _to_rgb_array(image: Image.Image) -> np.ndarray:
  """Converts any Pillow mode to uint8 RGB, scaling deep images and flattening alpha."""
  if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
    # Pillow's convert("RGB") clips these at 255 instead of scaling; scale ourselves.
    # Mode "I" is how some Pillow versions and formats hold 16-bit greyscale.
    grey = np.asarray(image).astype(np.float32)
    grey = np.clip(np.rint(grey / 257.0), 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)
  if image.mode == "P" and "transparency" in image.info:
    image = image.convert("RGBA")
  if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
    image = image.convert("RGBA")
    background = Image.new("RGBA", image.size, NEUTRAL_BACKGROUND + (255,))
    image = Image.alpha_composite(background, image)
  if image.mode != "RGB":
    image = image.convert("RGB")
  return np.asarray(image, dtype=np.uint8)


def resized_size(height: int, width: int, short_side: int,
                 long_side_max: int) -> tuple[int, int]:
  """The (height, width) after an aspect-preserving resize.

  The short side becomes `short_side` unless the long side would then exceed
  `long_side_max`, in which case the long side becomes `long_side_max` (the rule of
  Detectron's ResizeShortestEdge). Sides are rounded half up and never drop below 1.
  """
  if min(height, width) < 1:
    raise ValueError(f"image size must be positive, got {height}x{width}")
  scale = short_side / min(height, width)
  if max(height, width) * scale > long_side_max:
    scale = long_side_max / max(height, width)
  return _scaled(height, scale), _scaled(width, scale)


def _scaled(side: int, scale: float) -> int:
  return max(1, int(side * scale + 0.5))


def resize_short_side(image: np.ndarray, short_side: int, long_side_max: int, *,
                      resample: Image.Resampling = Image.Resampling.BILINEAR
                      ) -> np.ndarray:
  """Resizes a uint8 (H, W, 3) image with `resized_size`'s rule; see `resize_to`."""
  height, width = image.shape[:2]
  return resize_to(image, resized_size(height, width, short_side, long_side_max),
                   resample=resample)


def resize_to(image: np.ndarray, size: tuple[int, int], *,
              resample: Image.Resampling = Image.Resampling.BILINEAR) -> np.ndarray:
  """Resizes a uint8 image to `size` = (height, width) with Pillow.

  Pillow's resize filters widen with the scale factor when shrinking, so downscaling is
  antialiased (like torchvision's `antialias=True`), not a sampling of every n-th pixel.
  """
  if image.dtype != np.uint8:
    raise TypeError(f"expected a uint8 image, got {image.dtype}")
  height, width = size
  if image.shape[:2] == (height, width):
    return image
  resized = Image.fromarray(image).resize((width, height), resample=resample)
  return np.asarray(resized)


def make_buckets(short_side: int, long_side_max: int,
                 aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS,
                 multiple: int = 64) -> list[tuple[int, int]]:
  """A small set of padded (height, width) shapes, one per aspect ratio (width / height).

  Each bucket holds images of its aspect ratio resized with `resized_size`, rounded up
  to a multiple of `multiple` (the CNN's total stride, so the feature grid is exact).
  The two extreme buckets, short_side × long_side_max and its transpose, are always
  included: every image resized with the same sides fits one of the buckets.

  Returns:
    Distinct (height, width) pairs, sorted by area and then height.
  """
  if not 0 < short_side <= long_side_max:
    raise ValueError(f"need 0 < short_side <= long_side_max, got {short_side}, "
                     f"{long_side_max}")
  max_ratio = long_side_max / short_side
  ratios = [min(max(r, 1 / max_ratio), max_ratio) for r in aspect_ratios]
  buckets = set()
  for ratio in ratios + [1 / max_ratio, max_ratio]:
    long_side = min(short_side * max(ratio, 1 / ratio), long_side_max)
    height, width = ((long_side, short_side) if ratio < 1 else (short_side, long_side))
    buckets.add((_round_up(height, multiple), _round_up(width, multiple)))
  return sorted(buckets, key=lambda hw: (hw[0] * hw[1], hw[0]))


def _round_up(value: float, multiple: int) -> int:
  # The small tolerance keeps float noise (e.g. 800 * 16 / 9) from adding a whole step.
  return multiple * math.ceil(value / multiple - 1e-9)


def choose_bucket(height: int, width: int,
                  buckets: Sequence[tuple[int, int]]) -> tuple[int, int]:
  """The smallest-area bucket that an already resized height × width image fits in.

  If none fits (the image was resized with larger sides than the buckets were made
  for), this returns the bucket that lets the image keep the most of its size: the one
  maximising min(H / height, W / width). The caller then shrinks the image with
  `fit_size` (aspect preserved, sides rounded down) so it fits; `fit_to_buckets` does
  both steps.
  """
  if not buckets:
    raise ValueError("no buckets")
  fitting = [b for b in buckets if height <= b[0] and width <= b[1]]
  if fitting:
    return min(fitting, key=lambda hw: (hw[0] * hw[1], hw[0]))
  return max(buckets, key=lambda hw: (min(hw[0] / height, hw[1] / width),
                                      -hw[0] * hw[1]))


def fit_size(height: int, width: int, bucket: tuple[int, int]) -> tuple[int, int]:
  """The largest aspect-preserving size, not above the image's own, inside `bucket`."""
  scale = min(1.0, bucket[0] / height, bucket[1] / width)
  if scale == 1.0:
    return height, width
  fitted = (max(1, math.floor(height * scale + 1e-9)),
            max(1, math.floor(width * scale + 1e-9)))
  return min(fitted[0], bucket[0]), min(fitted[1], bucket[1])


def fit_to_buckets(image: np.ndarray, short_side: int, long_side_max: int,
                   buckets: Sequence[tuple[int, int]], *,
                   resample: Image.Resampling = Image.Resampling.BILINEAR
                   ) -> tuple[np.ndarray, tuple[int, int]]:
  """Resizes a uint8 image (short side rule, then shrink-to-fit) and picks its bucket."""
  height, width = image.shape[:2]
  size = resized_size(height, width, short_side, long_side_max)
  bucket = choose_bucket(*size, buckets)
  size = fit_size(*size, bucket)
  return resize_to(image, size, resample=resample), bucket


def pad_to_bucket(image: np.ndarray, bucket: tuple[int, int], *,
                  fill: float = 0) -> tuple[np.ndarray, tuple[int, int]]:
  """Pads an (h, w, C) image at the bottom and right to `bucket` = (H, W).

  Call it on the *normalised* float image so that the default fill, 0, is the mean
  colour. `fill` serves callers who pad uint8 and normalise later on the device.

  Returns:
    The padded image (same dtype) and the true size (h, w), from which the model
    derives its feature-grid mask.
  """
  height, width = image.shape[:2]
  if height > bucket[0] or width > bucket[1]:
    raise ValueError(f"image {height}x{width} does not fit bucket {bucket}")
  padded = np.full((bucket[0], bucket[1]) + image.shape[2:], fill, dtype=image.dtype)
  padded[:height, :width] = image
  return padded, (height, width)
