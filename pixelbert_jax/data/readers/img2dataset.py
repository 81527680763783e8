"""img2dataset output: webdataset tar shards, `files` folders or parquet with image bytes.

Written to img2dataset's writers and downloader at commit
95523bc7579745a1749b8132d408b9fea89a338e (github.com/rom1504/img2dataset, 2025-08-16).
Per shard `SSSSS` (5 digits), each sample named by its `key` (the shard id followed by
its position in the shard, e.g. "000010005"), img2dataset writes one of:

  output_format="webdataset"  SSSSS.tar holding {key}.jpg, {key}.txt, {key}.json
  output_format="files"       SSSSS/{key}.jpg, SSSSS/{key}.txt, SSSSS/{key}.json
  output_format="parquet"     SSSSS.parquet with the image bytes in a `jpg` column

and beside it SSSSS.parquet (the metadata of every sample: url, caption, key, status,
error_message, width, height, original_width, original_height, sha256) and
SSSSS_stats.json (counts per status). Failed downloads are left out of the tars and
folders and listed only in the parquet file, with `status` "failed_to_download" or
"failed_to_resize": they are counted as `download_failed` by key. Without a parquet
file, a tar's or folder's `.json` members are the metadata (no failures then).
Images are `png` or `webp` instead of `jpg` with `encode_format`.

A record's image path is the image's file, or its place in a container
(`images.member_path`): "SSSSS.tar#{key}.jpg" for a tar member, "SSSSS.parquet#{key}"
for parquet bytes; `images.read_image_bytes` reads both. The caption is the `.txt`
member (img2dataset's caption file), else the metadata's `caption`.

Skips, named by key: a failed download, a sample whose image is not in its shard
(`missing_image`), an unusable caption. A tar cut short or a parquet file that cannot
be read raises `common.DataFileError` naming the file.
"""

from __future__ import annotations

import json
import re
import tarfile
from typing import Iterator

from etils import epath

from pixelbert_jax.data import images
from pixelbert_jax.data import records
from pixelbert_jax.data import skips as skips_lib
from pixelbert_jax.data.readers import common

IMAGE_EXTENSIONS = ("jpg", "png", "webp")
_SHARD = re.compile(r"^\d+$")
_TAR_BLOCK = 512


def _samples(names_and_data, want_json: bool) -> dict[str, dict]:
  """key -> {"image": member name, "txt" / "json": text} from (member name, function
  reading its text) pairs; `.json` members are read only if `want_json` (without a
  parquet file, they are the metadata)."""
  samples: dict[str, dict] = {}
  for name, read in names_and_data:
    key, dot, extension = epath.Path(name).name.partition(".")
    if not dot:
      continue
    if extension in IMAGE_EXTENSIONS:
      samples.setdefault(key, {})["image"] = name
    elif extension == "txt" or (extension == "json" and want_json):
      samples.setdefault(key, {})[extension] = read()
  return samples


def _decode(data: bytes) -> str:
  return data.decode("utf-8", errors="surrogateescape")


def _tar_samples(tar_path: epath.Path, want_json: bool) -> dict[str, dict]:
  """The samples of a webdataset shard; a tar cut short raises `DataFileError`."""
  with tar_path.open("rb") as f:
    try:
      with tarfile.open(fileobj=f, mode="r:") as tar:
        members = ((info.name, lambda info=info: _decode(tar.extractfile(info).read()))
                   for info in tar if info.isfile())
        samples = _samples(members, want_json)
        end = tar.offset  # after the last member's padded data
    except tarfile.TarError as error:
      raise common.DataFileError(f"{tar_path}: not a readable tar file ({error}); is "
                                 "it cut short?") from error
    size = f.seek(0, 2)
  # A tar ends with two zero blocks; Python's tarfile stops quietly at a cut instead.
  if size < end + 2 * _TAR_BLOCK:
    raise common.DataFileError(f"{tar_path}: the tar file is cut short after "
                               f"{size} bytes (no end-of-archive blocks)")
  return samples


def _folder_samples(folder: epath.Path, want_json: bool) -> dict[str, dict]:
  """The samples of a `files` shard folder; image members are file names."""
  return _samples(((child.name, lambda child=child: _decode(child.read_bytes()))
                   for child in sorted(folder.iterdir())), want_json)


def _parquet_rows(path: epath.Path) -> list[dict]:
  """Every sample's metadata (not the image bytes) from a shard's parquet file."""
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
  try:
    with path.open("rb") as f:
      parquet = pq.ParquetFile(f)
      columns = [name for name in parquet.schema_arrow.names
                 if name not in IMAGE_EXTENSIONS]
      return parquet.read(columns=columns).to_pylist()
  except (OSError, ValueError) as error:  # pyarrow's ArrowIOError / ArrowInvalid
    raise common.DataFileError(f"{path}: not a readable parquet file ({error}); is "
                               "it cut short?") from error


def _json_rows(container: str, samples: dict[str, dict],
               skips: skips_lib.SkipCounter) -> Iterator[dict]:
  """The metadata of a tar's or folder's samples from their `.json` members."""
  for key, sample in sorted(samples.items()):
    try:
      row = json.loads(sample.get("json") or "null")
    except json.JSONDecodeError as error:
      skips.skip(common.BAD_JSON, images.member_path(container, f"{key}.json"),
                 str(error))
      continue
    if not isinstance(row, dict):
      skips.skip(common.BAD_JSON, images.member_path(container, f"{key}.json"),
                 "no JSON object")
      continue
    yield {"key": key, **row}


def _shard_records(metadata: Iterator[dict], image_path, samples: dict[str, dict],
                   where: str, skips: skips_lib.SkipCounter, source: str
                   ) -> Iterator[records.ImageText]:
  """Records of one shard from its metadata rows and its samples (key -> members)."""
  for index, row in enumerate(metadata):
    key = row.get("key")
    if not isinstance(key, str) or not key:
      skips.skip(common.MISSING_FIELD, f"{where}[{index}]", "no key")
      continue
    if row.get("status") != "success":
      skips.skip(common.DOWNLOAD_FAILED, key,
                 f"{row.get('status')}: {row.get('error_message')!s:.80}")
      continue
    sample = samples.get(key, {})
    path = image_path(key, sample)
    if path is None:
      skips.skip(common.MISSING_IMAGE, key, f"no image of {key} in {where}")
      continue
    caption = sample["txt"] if sample.get("txt") is not None else row.get("caption")
    text = common.checked_text(caption, key, skips)
    if text is not None:
      yield records.ImageText(key, path, text, source)


def _shards(folder: epath.Path) -> tuple[str, list[str]]:
  """(output format, shard names in order) of an img2dataset output folder."""
  names = {child.name for child in folder.iterdir()}
  tars = sorted(name[:-4] for name in names if name.endswith(".tar"))
  if tars:
    return "webdataset", tars
  folders = sorted(name for name in names
                   if _SHARD.match(name) and (folder / name).is_dir())
  if folders:
    return "files", folders
  parquets = sorted(name[:-8] for name in names if name.endswith(".parquet"))
  if parquets:
    return "parquet", parquets
  raise common.DataFileError(f"{folder}: no img2dataset output (SSSSS.tar, SSSSS/ or "
                             "SSSSS.parquet shards)")


def read_img2dataset(folder: epath.PathLike, *,
                     skips: skips_lib.SkipCounter | None = None,
                     source: str = "img2dataset") -> Iterator[records.ImageText]:
  """Yields one `ImageText` per downloaded sample of an img2dataset output folder.

  The output format (webdataset, files or parquet) is found from the shards there.

  Args:
    folder: img2dataset's `output_folder`.
    skips: where skipped samples are counted (a new counter if None).
    source: the `source` field of the records (e.g. "cc3m" for CC3M downloaded so).
  """
  skips = common.counter_or_new(skips, source)
  folder = epath.Path(folder)
  output_format, shards = _shards(folder)
  for shard in shards:
    parquet = folder / f"{shard}.parquet"
    if output_format == "parquet":
      # Failed downloads are rows without bytes; a success's bytes are taken on trust
      # here (reading them all is the packing's work), a null one is a missing image.
      yield from _shard_records(
          _parquet_rows(parquet), lambda key, _: images.member_path(parquet, key), {},
          parquet.name, skips, source)
      continue
    has_parquet = parquet.exists()
    if output_format == "webdataset":
      container = folder / f"{shard}.tar"
      samples = _tar_samples(container, want_json=not has_parquet)
      image_path = lambda key, sample, c=container: (
          images.member_path(c, sample["image"]) if "image" in sample else None)
    else:
      container = folder / shard
      samples = _folder_samples(container, want_json=not has_parquet)
      image_path = lambda key, sample, c=container: (
          str(c / sample["image"]) if "image" in sample else None)
    metadata = (_parquet_rows(parquet) if has_parquet
                else _json_rows(str(container), samples, skips))
    yield from _shard_records(metadata, image_path, samples, container.name, skips,
                              source)
