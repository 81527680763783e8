"""COCO captions from a prepared TFDS dataset (`coco_captions`, ArrayRecord format).

TFDS's `coco_captions` (config 2014, Karpathy splits train / val / test / restval)
stores one record per image: the encoded `image`, `image/filename`, `image/id`,
`captions` (a sequence of {`id`, `text`}) and `objects`. Our examples are
(image, caption) pairs, so `TfdsCaptionsSource` maps example i to a (record,
caption) pair and answers the source questions of `sources.RawSource`:

    source = TfdsCaptionsSource(("train", "restval"), data_dir="gs://bucket/tfds")
    source = TfdsCaptionsSource("test", builder_dir=".../coco_captions/2014/1.1.0")
    batches = pipeline.pretrain_pipeline(source, tokenizer, cfg, seed=0)

The batch plan needs every image's size before anything is decoded, and every
example needs its record's caption count, so construction reads each record once
(in threads) and keeps the small results in memory: captions and file names as
packed UTF-8, image ids and header sizes as arrays. Afterwards `record` and
`image_names` touch no file, and `image_bytes` reads one record, without decoding
the image (`tfds.decode.SkipDecoding`). That pass reads every image's bytes, about
18 GB for train + restval; it is logged with its duration.
"""

from collections.abc import Sequence
import concurrent.futures
import dataclasses
import time
from typing import Any

from absl import logging
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from pixelbert_jax.data import records
from pixelbert_jax.data import skips as skips_lib
from pixelbert_jax.data import sources
from pixelbert_jax.data.readers import common
from pixelbert_jax.data.readers import coco

# Records read per task of the construction pass: large enough that ArrayRecord
# reads them in one parallel call, small enough to spread over the threads.
_BLOCK = 64


@dataclasses.dataclass(frozen=True)
class _Strings:
  """Many strings as one UTF-8 buffer and offsets: compact in memory and in pickles."""
  data: bytes
  offsets: np.ndarray

  @classmethod
  def pack(cls, strings: Sequence[str]) -> "_Strings":
    encoded = [s.encode("utf-8", "surrogateescape") for s in strings]
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return cls(b"".join(encoded), offsets)

  def __getitem__(self, index: int) -> str:
    start, end = self.offsets[index], self.offsets[index + 1]
    return self.data[start:end].decode("utf-8", "surrogateescape")


@dataclasses.dataclass(frozen=True)
class _RecordInfo:
  """What the construction pass keeps of one TFDS record."""
  image_id: int
  filename: str
  captions: list[str]
  size: tuple[int, int]


def _text(value: Any) -> str:
  """A TFDS text feature (bytes in NumPy mode) as `str`; bad UTF-8 survives."""
  if isinstance(value, bytes):
    return value.decode("utf-8", "surrogateescape")
  return str(value)


def _record_info(example: dict) -> _RecordInfo:
  return _RecordInfo(int(example["image/id"]), _text(example["image/filename"]),
                     [_text(t) for t in example["captions"]["text"]],
                     sources.header_size(bytes(example["image"])))


class TfdsCaptionsSource:
  """(image, caption) examples of a prepared TFDS `coco_captions` dataset.

  Example i is caption k of record r, in the order of the TFDS split(s) and of the
  captions within each record. Captions that are not usable text (empty, bad UTF-8)
  are skipped when indexed, with the readers' reasons. Images are checked when the
  pipeline decodes them: a damaged one raises `images.ImageError` there and is
  counted as a skip.

  Pickling (grain worker processes) sends the in-memory index and the path of the
  prepared dataset; the receiving process reopens it with
  `tfds.builder_from_directory`, which needs neither the registered builder code nor
  TensorFlow, and repeats no indexing. The dataset must therefore sit where every
  process can read it (a shared disk or `gs://`).
  """

  def __init__(self, splits: str | Sequence[str] = coco.PRETRAIN_SPLITS, *,
               name: str = "coco_captions", data_dir: epath.PathLike | None = None,
               builder_dir: epath.PathLike | None = None, num_threads: int = 16,
               source: str = "karpathy_coco", max_skip_fraction: float = 0.01):
    """Opens the dataset and indexes its captions and image sizes.

    Args:
      splits: one TFDS split expression ("train", "test[:100]") or several, which
        are concatenated in order (pre-training uses train + restval).
      name: the registered TFDS name, optionally with config and version
        ("coco_captions/2014:1.1.0"); used with `data_dir` when `builder_dir` is
        None. The dataset must already be prepared: nothing is downloaded.
      data_dir: the TFDS data folder holding `name` (None: TFDS's default).
      builder_dir: instead of `name` and `data_dir`, the prepared dataset's own
        folder, e.g. `.../coco_captions/2014/1.1.0`.
      num_threads: threads for the indexing pass (it is I/O-bound on `gs://`).
      source: the `source` field of the records; the default matches
        `readers.coco.read_karpathy`.
      max_skip_fraction: the largest share of unusable captions tolerated
        (`skips.TooManySkipped` past it), as a task's reading bounds it.
    """
    self._split = splits if isinstance(splits, str) else "+".join(splits)
    self._source = source
    if builder_dir is not None:
      self._records = _open_directory(builder_dir, self._split)
    else:
      self._records = _open_registered(name, data_dir, self._split)
    # Workers reopen the folder, which spares them the registered builder's imports.
    self._builder_dir = str(self._records.dataset_info.data_dir)
    self._index(num_threads, max_skip_fraction)

  def _index(self, num_threads: int, max_skip_fraction: float) -> None:
    """Reads every record once: caption → example map, texts, names and sizes."""
    start = time.perf_counter()
    infos = _read_all(self._records, num_threads)
    skips = skips_lib.SkipCounter(f"tfds:{self._builder_dir}",
                                  max_skip_fraction=max_skip_fraction)
    example_records, texts = [], []
    for index, info in enumerate(infos):
      for number, caption in enumerate(info.captions):
        text = common.checked_text(caption, f"{info.filename} captions[{number}]", skips)
        if text is not None:
          example_records.append(index)
          texts.append(text)
    skips.check(len(texts) + skips.total, final=True)
    self._example_records = np.asarray(example_records, np.int64)
    self._texts = _Strings.pack(texts)
    self._filenames = _Strings.pack([info.filename for info in infos])
    self._image_ids = np.asarray([info.image_id for info in infos], np.int64)
    self._sizes = np.asarray([info.size for info in infos], np.int32).reshape(-1, 2)
    logging.info("%s [%s]: indexed %d records, %d captions (%d skipped) in %.1f s",
                 self._builder_dir, self._split, len(infos), len(texts),
                 skips.total, time.perf_counter() - start)

  def __len__(self) -> int:
    return len(self._example_records)

  def record(self, index: int) -> records.ImageText:
    """The caption and its image's id and file name (`image/filename`)."""
    row = int(self._example_records[index])
    return records.ImageText(str(self._image_ids[row]), self._filenames[row],
                             self._texts[index], self._source)

  def image_names(self, index: int) -> tuple[str, ...]:
    return (self._filenames[int(self._example_records[index])],)

  def image_bytes(self, index: int) -> list[bytes]:
    """The encoded image, as stored; `images.decode_image` judges its damage."""
    return [bytes(self._records[int(self._example_records[index])]["image"])]

  def image_sizes(self) -> np.ndarray:
    """int32 (N, 1, 2): (height, width) from each image's header; 0 = unreadable."""
    return self._sizes[self._example_records][:, None, :]

  def __getstate__(self) -> dict[str, Any]:
    state = self.__dict__.copy()
    del state["_records"]  # Reopened from `_builder_dir` on the other side.
    return state

  def __setstate__(self, state: dict[str, Any]) -> None:
    self.__dict__.update(state)
    self._records = _open_directory(self._builder_dir, self._split)


def _decoders() -> dict[str, Any]:
  # The encoded bytes are all we want: `images.decode_image` decodes them later,
  # with its own checks, and the construction pass reads only their headers.
  return {"image": tfds.decode.SkipDecoding()}


def _open_registered(name: str, data_dir: epath.PathLike | None, split: str):
  """What `tfds.data_source(..., download=False)` does, with a clear error if absent.

  (For an unprepared dataset, TFDS complains about its file format instead.)
  """
  builder = tfds.builder(name, data_dir=data_dir)
  if not builder.is_prepared():
    raise FileNotFoundError(
        f"TFDS dataset {name!r} is not prepared under {builder.data_dir}; prepare "
        "it with file_format='array_record' (e.g. `tfds build coco_captions "
        "--file_format=array_record`) or pass builder_dir.")
  return builder.as_data_source(split, decoders=_decoders())


def _open_directory(builder_dir: epath.PathLike, split: str):
  builder = tfds.builder_from_directory(builder_dir)
  return builder.as_data_source(split, decoders=_decoders())


def _read_all(data_source, num_threads: int) -> list[_RecordInfo]:
  """`_record_info` of every record, in order, read in blocks on a thread pool."""
  blocks = [list(range(start, min(start + _BLOCK, len(data_source))))
            for start in range(0, len(data_source), _BLOCK)]

  def read_block(keys: list[int]) -> list[_RecordInfo]:
    return [_record_info(example) for example in data_source.__getitems__(keys)]

  with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as executor:
    return [info for block in executor.map(read_block, blocks) for info in block]
