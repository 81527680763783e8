"""Packs reader records and their image bytes into ArrayRecord shards, and reads them back.

Reading millions of small image files from a network file system or GCS is slow;
packed shards are a few large files with random access by index. A packed folder holds:

  images-SSSSS-of-NNNNN.array_record     each distinct image's encoded bytes, once
                                         (COCO has 5 captions and VG ~50 phrases per
                                         image, so images are not copied per example)
  examples-SSSSS-of-NNNNN.array_record   one JSON record per example: its record type,
                                         fields, and the indices of its images
  index.npz                              image (height, width) from the header, whether
                                         the file was missing, example → image indices:
                                         all the batch plan needs, without reading shards
  meta.json                              format, counts, shard count

Bad images are packed as they are (a missing file is marked missing), so the pipeline
skips and counts the same examples, for the same reasons, as it does on raw files.
Malformed annotations are left out, counted, and bounded by `--max_skip_fraction`
as a task's reading is.

Usage:
  python -m pixelbert_jax.data.pack --format karpathy \
      --annotations coco/dataset_coco.json --images coco --splits train,restval \
      --out packed/coco_pretrain --num_shards 16
  python -m pixelbert_jax.data.pack --format img2dataset --images cc3m_webdataset \
      --out packed/cc3m --num_shards 64 --max_skip_fraction 0.2
  (cc3m / cc12m: --annotations the TSV, --images the image folder, --image_pattern;
   sbu: --urls, --annotations the captions file, --images, --image_pattern)
"""

import argparse
from collections.abc import Iterable, Sequence
import dataclasses
import json

from array_record.python import array_record_module
from etils import epath
import grain
import numpy as np

from pixelbert_jax.data import images as images_lib
from pixelbert_jax.data import records
from pixelbert_jax.data import skips as skips_lib
from pixelbert_jax.data import sources
from pixelbert_jax.data.readers import coco
from pixelbert_jax.data.readers import common
from pixelbert_jax.data.readers import conceptual_captions
from pixelbert_jax.data.readers import flickr30k
from pixelbert_jax.data.readers import img2dataset
from pixelbert_jax.data.readers import nlvr2
from pixelbert_jax.data.readers import sbu
from pixelbert_jax.data.readers import visual_genome
from pixelbert_jax.data.readers import vqa

FORMATS = ("coco", "karpathy", "flickr30k", "vg", "vqa", "nlvr2", "cc3m", "cc12m", "sbu",
           "img2dataset")
_RECORD_TYPES = {cls.__name__: cls for cls in (
    records.ImageText, records.RetrievalItem, records.VqaExample, records.Nlvr2Example)}
# Record fields that are tuples in the dataclass and lists in JSON.
_TUPLE_FIELDS = ("answers", "texts")


def shard_paths(directory: epath.PathLike, prefix: str, num_shards: int) -> list[str]:
  return [str(epath.Path(directory) / f"{prefix}-{s:05d}-of-{num_shards:05d}.array_record")
          for s in range(num_shards)]


def write_shards(paths: Sequence[str], items: Iterable[bytes], count: int) -> None:
  """Writes `count` items into contiguous runs, one run per shard, in order."""
  per_shard = -(-count // len(paths))
  writer, shard = None, -1
  for position, item in enumerate(items):
    if position // per_shard != shard:
      if writer is not None:
        writer.close()
      shard = position // per_shard
      # group_size:1 keeps every record separately addressable for random access.
      writer = array_record_module.ArrayRecordWriter(paths[shard], "group_size:1")
    writer.write(item)
  if writer is not None:
    writer.close()
  for path in paths[shard + 1:]:  # More shards than items: leave valid empty files.
    array_record_module.ArrayRecordWriter(path, "group_size:1").close()


def distinct_images(examples: Sequence) -> tuple[list[str], np.ndarray]:
  """(distinct image paths in first-seen order, example → image indices (N, K))."""
  position: dict[str, int] = {}
  links = [[position.setdefault(path, len(position)) for path in sources.image_paths(ex)]
           for ex in examples]
  return list(position), np.asarray(links, np.int64).reshape(len(examples), -1)


def _image_records(paths: Sequence[str], sizes: np.ndarray, missing: np.ndarray):
  """Yields each image's bytes (b"" if missing), filling in its size and status."""
  for index, path in enumerate(paths):
    try:
      data = sources.read_image_bytes(path)
    except images_lib.ImageError:
      missing[index] = True
      data = b""
    sizes[index] = sources.header_size(data) if data else (0, 0)
    yield data


def example_record(example, image_indices: np.ndarray) -> bytes:
  return json.dumps({"type": type(example).__name__,
                     "record": dataclasses.asdict(example),
                     "images": image_indices.tolist()}).encode("utf-8")


def pack(examples: Iterable, out_dir: epath.PathLike, num_shards: int, *,
         format_name: str = "records") -> dict:
  """Writes records and their images under `out_dir`; returns the meta dict."""
  examples = list(examples)
  if not examples:
    raise ValueError("nothing to pack")
  out_dir = epath.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  image_files, links = distinct_images(examples)
  sizes = np.zeros((len(image_files), 2), np.int32)
  missing = np.zeros(len(image_files), bool)
  write_shards(shard_paths(out_dir, "images", num_shards),
                _image_records(image_files, sizes, missing), len(image_files))
  write_shards(shard_paths(out_dir, "examples", num_shards),
                (example_record(ex, row) for ex, row in zip(examples, links)),
                len(examples))
  return write_index(out_dir, sizes, missing, links, num_shards, format_name)


def write_index(out_dir: epath.Path, sizes: np.ndarray, missing: np.ndarray,
                links: np.ndarray, num_shards: int, format_name: str) -> dict:
  """Writes index.npz and meta.json next to the shards; returns the meta dict."""
  with (out_dir / "index.npz").open("wb") as f:
    np.savez(f, image_sizes=sizes, image_missing=missing, example_images=links)
  meta = {"format": format_name, "num_examples": len(links),
          "num_images": len(sizes), "num_missing_images": int(missing.sum()),
          "num_shards": num_shards}
  (out_dir / "meta.json").write_text(json.dumps(meta, indent=2))
  return meta


class PackedSource:
  """Random access to a packed folder, with the interface of `sources.RawSource`."""

  def __init__(self, directory: epath.PathLike):
    directory = epath.Path(directory)
    self.meta = common.load_json(directory / "meta.json")
    with (directory / "index.npz").open("rb") as f:
      index = np.load(f)
      self._image_sizes = index["image_sizes"]
      self._image_missing = index["image_missing"]
      self._example_images = index["example_images"]
    shards = self.meta["num_shards"]
    self._images = grain.sources.ArrayRecordDataSource(
        shard_paths(directory, "images", shards))
    self._examples = grain.sources.ArrayRecordDataSource(
        shard_paths(directory, "examples", shards))

  def __len__(self) -> int:
    return len(self._example_images)

  def record(self, index: int):
    data = json.loads(self._examples[index])
    fields = {key: tuple(value) if key in _TUPLE_FIELDS else value
              for key, value in data["record"].items()}
    return _RECORD_TYPES[data["type"]](**fields)

  def image_names(self, index: int) -> tuple[str, ...]:
    return sources.image_paths(self.record(index))

  def image_bytes(self, index: int) -> list[bytes]:
    """Encoded bytes per image; an image missing when packed raises ImageError."""
    names = self.image_names(index)
    result = []
    for name, image in zip(names, self._example_images[index]):
      if self._image_missing[image]:
        raise images_lib.ImageError(name, "missing", "missing when packed")
      result.append(self._images[int(image)])
    return result

  def image_sizes(self) -> np.ndarray:
    """int32 (N, K, 2): (height, width) of each example's images; 0 = unknown."""
    return self._image_sizes[self._example_images]


def _read_records(args: argparse.Namespace) -> list:
  """The chosen reader's records; malformed annotations are skipped, counted and
  bounded (`skips.TooManySkipped`)."""
  examples, skips = read_records(args)
  skips.check(len(examples) + skips.total, final=True)
  return examples


def read_records(args: argparse.Namespace
                 ) -> tuple[list, skips_lib.SkipCounter]:
  """The chosen reader's records (arguments of `add_reader_arguments`) and the
  counter of the malformed annotations it skipped; the caller bounds them."""
  splits = tuple(args.splits.split(",")) if args.splits else None
  skips = skips_lib.SkipCounter(args.format, max_skip_fraction=args.max_skip_fraction)
  readers = {
      "coco": lambda: coco.read_coco_captions(args.annotations, args.images,
                                              skips=skips),
      "karpathy": lambda: coco.read_karpathy(
          args.annotations, args.images, splits or coco.PRETRAIN_SPLITS, skips=skips),
      "flickr30k": lambda: flickr30k.read_flickr30k(
          args.annotations, args.images, splits or ("train",), skips=skips),
      "vg": lambda: visual_genome.read_visual_genome(
          args.annotations, args.image_data, args.images, skips=skips),
      "vqa": lambda: vqa.read_vqa(args.questions, args.annotations, args.images,
                                  skips=skips),
      "nlvr2": lambda: nlvr2.read_nlvr2(args.annotations, args.images, skips=skips),
      "cc3m": lambda: conceptual_captions.read_cc3m(
          args.annotations, args.images,
          image_pattern=args.image_pattern or common.INDEX_PATTERN, skips=skips),
      "cc12m": lambda: conceptual_captions.read_cc12m(
          args.annotations, args.images,
          image_pattern=args.image_pattern or common.INDEX_PATTERN, skips=skips),
      "sbu": lambda: sbu.read_sbu(
          args.urls, args.annotations, args.images,
          image_pattern=args.image_pattern or common.URL_NAME_PATTERN, skips=skips),
      "img2dataset": lambda: img2dataset.read_img2dataset(args.images, skips=skips),
  }
  return list(readers[args.format]()), skips


def add_reader_arguments(parser: argparse.ArgumentParser) -> None:
  """The arguments naming a corpus and its reader (shared with `beam_pack`)."""
  parser.add_argument("--format", required=True, choices=FORMATS)
  parser.add_argument("--annotations", help="Captions / Karpathy / region / "
                      "VQA annotation / NLVR2 JSON file (omit for VQA test splits); the "
                      "CC TSV; SBU's captions file.")
  parser.add_argument("--urls", help="SBU_captioned_photo_dataset_urls.txt.")
  parser.add_argument("--image_pattern", help="cc3m / cc12m / sbu: row i's image file "
                      "under --images (see data/readers/common.py).")
  parser.add_argument("--questions", help="VQA questions file.")
  parser.add_argument("--image_data", help="Visual Genome image_data.json.")
  parser.add_argument("--images", required=True, help="The image folder or root; "
                      "img2dataset's output folder.")
  parser.add_argument("--splits", default="", help="Karpathy splits, comma-separated.")
  parser.add_argument("--out", required=True, help="Folder to write shards into.")
  parser.add_argument("--num_shards", type=int, default=1)
  parser.add_argument("--max_skip_fraction", type=float, default=0.01)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  add_reader_arguments(parser)
  args = parser.parse_args(argv)
  try:
    examples = _read_records(args)
  except (skips_lib.TooManySkipped, common.DataFileError) as error:
    raise SystemExit(f"FAILED: {error}") from error
  meta = pack(examples, args.out, args.num_shards, format_name=args.format)
  print(f"Packed {meta['num_examples']} examples and {meta['num_images']} images "
        f"({meta['num_missing_images']} missing) into {args.num_shards} shards "
        f"under {args.out}.")


if __name__ == "__main__":
  main()
