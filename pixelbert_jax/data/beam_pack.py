"""Packs a corpus with Apache Beam into the layout `data.pack` writes, on any runner.

At web scale (CC3M's 3 M images, CC12M's 12 M) the work of packing is per image: read
it, decode and validate it (the rules of `images.decode_image`, as the pipelines and
`data.check` apply them), optionally shrink it to a maximum side, and hash it. That
work runs on Beam workers; the driver keeps what is small and must be in order:

  driver   run the format's reader (`pack.read_records`: the same readers, skips and
           bound as `data.pack`), drop COCO images of Karpathy's val / test splits by
           id, list the distinct images in first-seen order (`pack.distinct_images`)
           and write that list in chunk files under OUT/.beam_work/
  Beam     chunks, spread over the workers -> per image: read, decode, validate,
              resize (into OUT/.beam_work/resized/), hash of the pixels
           -> group by hash: the first image (in first-seen order) of a group is kept,
              the others are duplicates; a group holding a Karpathy val / test image
              (`--karpathy_images`) is excluded whole
           -> the plan (per image: kept, duplicate of which, excluded or bad; the
              kept images' global positions and stored files)
           -> one work item per shard: its ArrayRecord writer reads the kept images
              again by name (checking their hash), so no image's bytes travel
              through the runner
  driver   the examples (an example with a bad or excluded image is dropped and
           counted; one whose image was a duplicate points at the kept copy), the
           example shards, index.npz, meta.json (`pack.write_index`) and report.json

The output is `data.pack`'s layout (images-*, examples-*, index.npz, meta.json), read
by `pack.PackedSource`, the grain pipelines and `data.check --format packed` unchanged.
Images and examples keep `data.pack`'s order, less what was dropped: with nothing
dropped the two outputs hold the same records, images and index. Every image in it
decodes, so `num_missing_images` is 0. The output is a function of the input alone
(same runner or not): the plan is built from ids, not from the order work finished in.

Hash: XXH3-128 of the decoded, upright RGB pixels and their shape, not of the file's
bytes: the same picture saved with other metadata (EXIF, a re-muxed PNG) is still a
duplicate, and the hash does not change with `--max_side`. Decoding is paid anyway for
validation. XXH3 rather than sha256 because sha256 of a 640 x 480 image's pixels took
0.50 ms (a fifth of the per-image work, with SHA-NI) and XXH3-128 takes 0.02 ms
(benchmarks/RESULTS.md, "Beam packing"). De-duplication needs resistance to chance
collisions only: 128 bits put the chance of one among CC12M's 12 M images near 1e-25.
A crafted collision could at worst make one image count as another's duplicate.

Usage (the reader's arguments are `data.pack`'s; any other argument is Beam's):
  python -m pixelbert_jax.data.beam_pack --format img2dataset --images cc3m_wds \
      --out packed/cc3m --num_shards 64 --max_side 800 --max_skip_fraction 0.2 \
      --direct_num_workers 2 --direct_running_mode multi_processing
  python -m pixelbert_jax.data.beam_pack --format karpathy --annotations \
      coco/dataset_coco.json --images coco --splits train,restval --out packed/coco \
      --exclude_karpathy coco/dataset_coco.json --karpathy_images coco \
      --runner DataflowRunner --project P --region R --temp_location gs://B/tmp \
      --setup_file ./setup.py        (see launch/beam_pack.sh)
"""

import argparse
import collections
import io
import json
import os
import sys
import tempfile
import time
from typing import NamedTuple

import apache_beam as beam
from apache_beam.options import pipeline_options
from etils import epath
import numpy as np
from PIL import Image
import xxhash

from pixelbert_jax.data import check
from pixelbert_jax.data import images as images_lib
from pixelbert_jax.data import pack
from pixelbert_jax.data import skips as skips_lib
from pixelbert_jax.data import sources
from pixelbert_jax.data.readers import coco
from pixelbert_jax.data.readers import common

# Images per work item: the chunk files, not the images, are spread over the workers
# (a reshuffle per image cost the DirectRunner a fifth of its time), so a chunk is
# small enough that a corpus makes many (3 M images: 47,000 chunks).
_CHUNK = 64
_WORK = ".beam_work"
# Plan codes per image.
KEPT, DUPLICATE, EXCLUDED, BAD = 0, 1, 2, 3
# Formats whose image ids are COCO ids, for the exclusion by id.
_COCO_ID_FORMATS = ("coco", "karpathy", "vqa")
# Skip reasons that are choices, not damage: not bounded by --max_skip_fraction.
DUPLICATE_PAIR, EXCLUDED_KARPATHY = "duplicate_pair", "karpathy_excluded"


class Outcome(NamedTuple):
  """What processing one image found; `image` < 0 is a Karpathy reference image.

  It names the file to store rather than carrying its bytes: the bytes would otherwise
  cross the runner's data plane twice more (held for the plan, then grouped by shard),
  which cost the DirectRunner most of its time (benchmarks/RESULTS.md, "Beam
  packing")."""
  image: int
  reason: str  # "" if usable, else "image_<ImageError.reason>"
  digest: bytes
  height: int
  width: int
  stored_path: str  # the file itself, or its resized JPEG under OUT/.beam_work/
  stored_digest: bytes  # hash of the stored file's bytes: the writer checks them
  stored_bytes: int
  source_bytes: int


def pixel_digest(pixels: np.ndarray) -> bytes:
  """XXH3-128 of an image's shape and pixels (see the module doc for why pixels)."""
  digest = xxhash.xxh3_128(np.asarray(pixels.shape, np.int64).tobytes())
  digest.update(memoryview(np.ascontiguousarray(pixels)).cast("B"))
  return digest.digest()


def bytes_digest(data: bytes) -> bytes:
  """XXH3-128 of a stored file's bytes: tells whether it changed since validation."""
  return xxhash.xxh3_128(data).digest()


def process_image(item: tuple[int, str], max_side: int, max_pixels: int,
                  jpeg_quality: int, resized_dir: str) -> Outcome:
  """Reads, validates, optionally shrinks (into `resized_dir`) and hashes one image."""
  index, path = item
  data = b""
  try:
    data = images_lib.read_image_bytes(path)
    pixels = images_lib.decode_image(data, max_pixels=max_pixels, name=path)
  except images_lib.ImageError as error:
    return Outcome(index, f"image_{error.reason}", b"", 0, 0, "", b"", 0, len(data))
  digest, stored, stored_path = pixel_digest(pixels), data, path
  height, width = pixels.shape[:2]
  if max_side and max(height, width) > max_side:
    # resized_size with both sides = max_side puts the long side at max_side.
    smaller = images_lib.resize_to(
        pixels, images_lib.resized_size(height, width, max_side, max_side))
    buffer = io.BytesIO()
    Image.fromarray(smaller).save(buffer, format="JPEG", quality=jpeg_quality)
    stored = buffer.getvalue()
    stored_path = str(epath.Path(resized_dir) / f"{index}.jpg")
    epath.Path(stored_path).write_bytes(stored)
  # The header's size, as data.pack records it (upright, after EXIF rotation).
  height, width = sources.header_size(stored)
  return Outcome(index, "", digest, height, width, stored_path,
                 bytes_digest(stored), len(stored), len(data))


def read_stored(path: str, expected_digest: bytes) -> bytes:
  """The bytes to store for one image (a file or a tar / parquet member), as
  `process_image` validated them."""
  data = images_lib.read_image_bytes(path)
  if bytes_digest(data) != expected_digest:
    raise ValueError(f"{path} changed while it was being packed; pack again")
  return data


def _read_chunk(path: str) -> list[tuple[int, str]]:
  return [tuple(item) for item in json.loads(epath.Path(path).read_text())]


def _by_hash(outcome: Outcome) -> tuple[bytes, Outcome]:
  """A usable image keyed by its pixels' hash; a bad one by a key of its own."""
  return outcome.digest if not outcome.reason else b"bad %d" % outcome.image, outcome


def _entries(group) -> list[tuple]:
  """One plan entry per corpus image of a hash's group (bad images are alone): its
  outcome's fields and the image kept for it, the group's first in first-seen order,
  or -1 if it is bad or has the pixels of a Karpathy val / test image (index < 0)."""
  _, outcomes = group
  outcomes = sorted(outcomes, key=lambda outcome: outcome.image)
  first = outcomes[0]
  kept = -1 if first.image < 0 or first.reason else first.image
  return [(o.image, o.reason, o.height, o.width, o.stored_bytes, o.source_bytes,
           o.stored_path, o.stored_digest, kept) for o in outcomes if o.image >= 0]


def make_plan(entries: list[tuple], num_images: int, num_shards: int) -> dict:
  """The per-image arrays the driver needs (see module doc), and under `writes` the
  kept images' (stored file, hash) in their global order, for the shard writers.

  `entries` (`_entries`) come in any order, one per image.
  """
  status = np.full(num_images, BAD, np.int8)
  canonical = np.full(num_images, -1, np.int64)
  sizes = np.zeros((num_images, 2), np.int32)
  stored = np.zeros(num_images, np.int64)
  source = np.zeros(num_images, np.int64)
  reasons = np.full(num_images, "", object)
  files = [("", b"")] * num_images
  for image, reason, height, width, stored_bytes, source_bytes, *file, kept in entries:
    reasons[image], sizes[image], files[image] = reason, (height, width), tuple(file)
    stored[image], source[image], canonical[image] = stored_bytes, source_bytes, kept
    status[image] = (BAD if reason else KEPT if kept == image
                     else DUPLICATE if kept >= 0 else EXCLUDED)
  if len(entries) != num_images or len(set(e[0] for e in entries)) != num_images:
    raise AssertionError(f"{len(entries)} plan entries for {num_images} images")
  kept = status == KEPT
  position = np.where(kept, np.cumsum(kept) - 1, -1)
  return {"status": status, "canonical": canonical, "position": position,
          "per_shard": np.int64(per_shard(int(kept.sum()), num_shards)),
          "sizes": sizes, "stored_bytes": stored, "source_bytes": source,
          "reasons": reasons.astype(str),
          "writes": [files[index] for index in np.flatnonzero(kept)]}


def _shard_writes(plan: dict):
  """(shard, its images' (stored file, hash) in order): one work item per shard."""
  run, writes = int(plan["per_shard"]), plan["writes"]
  for start in range(0, len(writes), run):
    yield start // run, writes[start:start + run]


def per_shard(count: int, num_shards: int) -> int:
  """`pack.write_shards`'s rule: contiguous runs of ceil(count / shards)."""
  return max(1, -(-count // num_shards))


def write_shard_file(path: str, items: list[bytes]) -> None:
  """One ArrayRecord file with `items` in order; through a local file if `path` is
  remote (ArrayRecord's writer takes local paths)."""
  if "://" not in path:
    pack.write_shards([path], items, len(items))
    return
  with tempfile.TemporaryDirectory() as local:
    temporary = os.path.join(local, "shard.array_record")
    pack.write_shards([temporary], items, len(items))
    epath.Path(temporary).copy(epath.Path(path), overwrite=True)


def _write_image_shard(item, out_dir: str, num_shards: int) -> int:
  shard, writes = item
  write_shard_file(pack.shard_paths(out_dir, "images", num_shards)[shard],
                   [read_stored(path, digest) for path, digest in writes])
  return shard


def _save_plan(plan: dict, path: str) -> None:
  with epath.Path(path).open("wb") as f:
    np.savez(f, **{name: value for name, value in plan.items() if name != "writes"})


def build_pipeline(root: beam.Pipeline, chunk_files: list[str], num_images: int,
                   args: argparse.Namespace, work: str) -> None:
  """Adds the image stages (module doc) to `root`."""
  outcomes = (
      root
      | "Chunks" >> beam.Create(chunk_files)
      | "Spread" >> beam.Reshuffle()  # the chunks must not all stay on one worker
      | "ReadChunks" >> beam.FlatMap(_read_chunk)
      | "Process" >> beam.Map(process_image, args.max_side, args.max_pixels,
                              args.jpeg_quality, str(epath.Path(work) / "resized")))
  plan = (outcomes
          | "ByHash" >> beam.Map(_by_hash)
          | "GroupByHash" >> beam.GroupByKey()
          | "Entries" >> beam.FlatMap(_entries)
          | "AllEntries" >> beam.combiners.ToList()
          | "Plan" >> beam.Map(make_plan, num_images, args.num_shards))
  _ = plan | "SavePlan" >> beam.Map(_save_plan, str(epath.Path(work) / "plan.npz"))
  # The writers' work comes from the plan, one item per shard: the images are read
  # again by name, not carried through the runner.
  _ = (plan
       | "ShardWrites" >> beam.FlatMap(_shard_writes)
       | "SpreadShards" >> beam.Reshuffle()
       | "WriteShard" >> beam.Map(_write_image_shard, args.out, args.num_shards))


def _karpathy_exclusions(args: argparse.Namespace) -> tuple[set[str], list[str]]:
  """(COCO ids, image files) of Karpathy's val and test splits, if asked for."""
  if not args.exclude_karpathy:
    return set(), []
  ids = {str(i) for i in coco.karpathy_coco_ids(args.exclude_karpathy, ("val", "test"))}
  files = []
  if args.karpathy_images:
    root = epath.Path(args.karpathy_images)
    files = [str(root / image.get("filepath", "") / image["filename"])
             for image in common.load_json(args.exclude_karpathy).get("images") or ()
             if isinstance(image, dict) and image.get("split") in ("val", "test")
             and "filename" in image]
  return ids, files


def _write_chunks(work: epath.Path, items: list[tuple[int, str]]) -> list[str]:
  work.mkdir(parents=True, exist_ok=True)
  paths = []
  for start in range(0, len(items), _CHUNK):
    path = work / f"chunk-{start // _CHUNK:06d}.json"
    path.write_text(json.dumps(items[start:start + _CHUNK]))
    paths.append(str(path))
  return paths


def _assemble(examples: list, links: np.ndarray, image_files: list[str], plan: dict,
              bad: skips_lib.SkipCounter, chosen: skips_lib.SkipCounter
              ) -> tuple[list, np.ndarray]:
  """The examples to keep and their images' global positions (module doc)."""
  status, canonical, position = plan["status"], plan["canonical"], plan["position"]
  kept, kept_links, pairs = [], [], set()
  for record, row in zip(examples, links):
    example_id = check.example_id(record)
    if (status[row] == BAD).any():
      image = row[status[row] == BAD][0]
      bad.skip(str(plan["reasons"][image]), image_files[image], example_id)
      continue
    if (status[row] == EXCLUDED).any():
      chosen.skip(EXCLUDED_KARPATHY, image_files[row[status[row] == EXCLUDED][0]],
                  f"{example_id}: the pixels of a Karpathy val / test image")
      continue
    images = tuple(int(i) for i in canonical[row])
    # Only a caption that came with a dropped copy can repeat one already kept.
    pair = (images, json.dumps(_text_fields(record)))
    if (status[row] == DUPLICATE).any() and pair in pairs:
      chosen.skip(DUPLICATE_PAIR, image_files[row[0]], example_id)
      continue
    pairs.add(pair)
    kept.append(record)
    kept_links.append(position[list(images)])
  return kept, np.asarray(kept_links, np.int64).reshape(len(kept), links.shape[1])


def _text_fields(record) -> dict:
  """A record without its image fields: what makes two examples of one image equal."""
  fields = dict(vars(record))
  for name in ("image_id", "image_path", "left_path", "right_path"):
    fields.pop(name, None)
  return {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}


def _image_report(plan: dict, image_files: list[str], examples_per_reason: int = 5
                  ) -> dict:
  """Skipped images by reason, each with a few paths."""
  names = {DUPLICATE: "duplicate_image", EXCLUDED: EXCLUDED_KARPATHY}
  found = collections.defaultdict(list)
  for index, code in enumerate(plan["status"]):
    if code == KEPT:
      continue
    reason = names.get(int(code)) or str(plan["reasons"][index])
    found[reason].append(image_files[index])
  return {reason: {"count": len(paths), "examples": paths[:examples_per_reason]}
          for reason, paths in sorted(found.items())}


def _counter_report(counter: skips_lib.SkipCounter) -> dict:
  return {reason: {"count": count, "examples": counter.examples(reason)}
          for reason, count in counter.counts.items()}


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
  """(this packer's arguments, Beam's: any argument not known here)."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  pack.add_reader_arguments(parser)
  parser.add_argument("--max_side", type=int, default=0,
                      help="Shrink images whose longer side passes this (re-encoded "
                      "as JPEG); 0 keeps every file as it is.")
  parser.add_argument("--jpeg_quality", type=int, default=95)
  parser.add_argument("--max_pixels", type=int, default=images_lib.DEFAULT_MAX_PIXELS)
  parser.add_argument("--exclude_karpathy", help="Karpathy's dataset_coco.json: drop "
                      "COCO images of its val and test splits (by COCO id).")
  parser.add_argument("--karpathy_images", help="The COCO folder of those images: "
                      "also drop any image with the same pixels as one of them.")
  return parser.parse_known_args(argv)


def run(args: argparse.Namespace, beam_args: list[str]) -> dict:
  """Packs; returns the report (also written to OUT/report.json)."""
  start = time.perf_counter()
  out = epath.Path(args.out)
  examples, bad = pack.read_records(args)
  read = len(examples) + bad.total
  bad.check(read, final=True)
  chosen = skips_lib.SkipCounter(f"{args.format} (chosen)", max_skip_fraction=1.0)
  excluded_ids, reference_files = _karpathy_exclusions(args)
  if excluded_ids and args.format in _COCO_ID_FORMATS:
    kept = []
    for record in examples:
      if record.image_id in excluded_ids:
        chosen.skip(EXCLUDED_KARPATHY, record.image_path, check.example_id(record))
      else:
        kept.append(record)
    examples = kept
  if not examples:
    raise ValueError("nothing to pack")
  image_files, links = pack.distinct_images(examples)
  work = out / _WORK
  items = list(enumerate(image_files))
  items += [(-1 - k, path) for k, path in enumerate(reference_files)]
  chunk_files = _write_chunks(work, items)
  (work / "resized").mkdir(exist_ok=True)
  options = pipeline_options.PipelineOptions(beam_args)
  with beam.Pipeline(options=options) as root:
    build_pipeline(root, chunk_files, len(image_files), args, str(work))
  with (work / "plan.npz").open("rb") as f:
    plan = dict(np.load(f, allow_pickle=False))
  kept, kept_links = _assemble(examples, links, image_files, plan, bad, chosen)
  report = {
      "format": args.format, "out": str(out), "runner": options.view_as(
          pipeline_options.StandardOptions).runner or "DirectRunner",
      "examples_read": read, "kept_examples": len(kept),
      "kept_images": int((plan["status"] == KEPT).sum()),
      "skipped_examples": _counter_report(bad),
      "dropped_examples": _counter_report(chosen),
      "skipped_images": _image_report(plan, image_files),
      "source_image_bytes": int(plan["source_bytes"].sum()),
      "stored_image_bytes": int(plan["stored_bytes"][plan["status"] == KEPT].sum()),
      "max_side": args.max_side, "num_shards": args.num_shards}
  try:
    bad.check(read, final=True)
    if not kept:
      raise skips_lib.TooManySkipped("no example left to pack")
  except skips_lib.TooManySkipped as error:
    report.update(failed=str(error), duration_s=time.perf_counter() - start)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    raise
  _finish(out, kept, kept_links, plan, args)
  work.rmtree(missing_ok=True)
  report["duration_s"] = round(time.perf_counter() - start, 3)
  (out / "report.json").write_text(json.dumps(report, indent=2))
  return report


def _finish(out: epath.Path, kept: list, links: np.ndarray, plan: dict,
            args: argparse.Namespace) -> dict:
  """The example shards, empty image shards, index.npz and meta.json."""
  run = per_shard(len(kept), args.num_shards)
  for shard, path in enumerate(pack.shard_paths(out, "examples", args.num_shards)):
    write_shard_file(path, [pack.example_record(ex, row) for ex, row in zip(
        kept[shard * run:(shard + 1) * run], links[shard * run:(shard + 1) * run])])
  for path in pack.shard_paths(out, "images", args.num_shards):
    if not epath.Path(path).exists():  # shards past the last image: valid, empty
      write_shard_file(path, [])
  chosen = plan["status"] == KEPT
  return pack.write_index(out, plan["sizes"][chosen], np.zeros(chosen.sum(), bool),
                          links, args.num_shards, args.format)


def main(argv: list[str] | None = None) -> None:
  args, beam_args = parse_args(argv)
  try:
    report = run(args, beam_args)
  except (skips_lib.TooManySkipped, common.DataFileError) as error:
    raise SystemExit(f"FAILED: {error}") from error
  print(json.dumps(report, indent=2))
  print(f"Packed {report['kept_examples']} examples and {report['kept_images']} images "
        f"into {args.num_shards} shards under {args.out}.", file=sys.stderr)


if __name__ == "__main__":
  main()
