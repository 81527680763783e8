"""Validates a dataset on disk before training, the way the input pipeline reads it.

Runs the format's reader and opens every image it names with
`pixelbert_jax.data.images.load_image`, then prints how many examples are
usable and, per reason, how many would be skipped (with a few example ids).
Exits with status 1 when the skipped share passes `--max_skip_fraction` or a file
cannot be parsed at all (the message names the file and the position).

Usage (paths default to the official layout under --root):
  python -m pixelbert_jax.data.check --format coco --root COCO \
      [--annotations COCO/annotations/captions_train2014.json] [--image_dir COCO/train2014]
  python -m pixelbert_jax.data.check --format karpathy --root COCO [--splits train,restval]
  python -m pixelbert_jax.data.check --format flickr30k --root F30K [--splits test]
  python -m pixelbert_jax.data.check --format vg --root VG
  python -m pixelbert_jax.data.check --format vqa --root VQA --image_dir COCO/val2014 \
      [--questions Q.json] [--annotations A.json | --no_annotations]
  python -m pixelbert_jax.data.check --format nlvr2 --root NLVR2 [--jsonl dev.json]
  python -m pixelbert_jax.data.check --format cc3m --root CC3M \
      [--tsv CC3M/Train_GCC-training.tsv] [--image_dir CC3M/images] \
      [--image_pattern '{shard:05d}/{index:09d}.jpg'] --max_skip_fraction 0.2
  python -m pixelbert_jax.data.check --format cc12m --root CC12M [--tsv CC12M/cc12m.tsv]
  python -m pixelbert_jax.data.check --format sbu --root SBU [--urls U.txt] \
      [--captions C.txt] [--image_dir SBU/images] [--image_pattern '{url_name}']
  python -m pixelbert_jax.data.check --format img2dataset --root OUTPUT_FOLDER
  python -m pixelbert_jax.data.check --format packed --root PACKED_FOLDER
      (`data.pack`'s or `data.beam_pack`'s output: every image from its shard)

Web corpora lose images to dead urls (about 15 % of CC3M's), hence their larger bound.
"""

from __future__ import annotations

import argparse
import sys
from typing import Iterator

from etils import epath

from pixelbert_jax.data import images
from pixelbert_jax.data import pack
from pixelbert_jax.data import records
from pixelbert_jax.data import skips as skips_lib
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
           "img2dataset", "packed")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      description="Validate a dataset and report what would be skipped.")
  parser.add_argument("--format", required=True, choices=FORMATS)
  parser.add_argument("--root", required=True, help="The data set's folder.")
  parser.add_argument("--annotations", help="coco: captions JSON; vqa: annotations JSON.")
  parser.add_argument("--no_annotations", action="store_true",
                      help="vqa: a test split, questions only.")
  parser.add_argument("--questions", help="vqa: questions JSON.")
  parser.add_argument("--dataset_json", help="karpathy / flickr30k: the split file.")
  parser.add_argument("--splits", help="karpathy / flickr30k: comma-separated splits.")
  parser.add_argument("--image_dir", help="Where the images are.")
  parser.add_argument("--region_descriptions", help="vg: region_descriptions.json.")
  parser.add_argument("--image_data", help="vg: image_data.json.")
  parser.add_argument("--jsonl", help="nlvr2: the JSON-lines file.")
  parser.add_argument("--tsv", help="cc3m / cc12m: the official TSV file.")
  parser.add_argument("--urls", help="sbu: SBU_captioned_photo_dataset_urls.txt.")
  parser.add_argument("--captions", help="sbu: SBU_captioned_photo_dataset_captions.txt.")
  parser.add_argument("--image_pattern", help="cc3m / cc12m / sbu: row i's image file "
                      "under the image folder, from {index}, {shard} (index // 10000) "
                      "and {url_name}; default '{shard:05d}/{index:09d}.jpg' (cc), "
                      "'{url_name}' (sbu).")
  parser.add_argument("--max_skip_fraction", type=float, default=0.01)
  parser.add_argument("--max_pixels", type=int, default=images.DEFAULT_MAX_PIXELS)
  return parser.parse_args(argv)


def _splits(args, default: str) -> tuple[str, ...]:
  return tuple(s.strip() for s in (args.splits or default).split(",") if s.strip())


def _coco(args, root, skips):
  return coco.read_coco_captions(
      args.annotations or root / "annotations" / "captions_train2014.json",
      args.image_dir or root / "train2014", skips=skips)


def _karpathy(args, root, skips):
  return coco.read_karpathy(args.dataset_json or root / "dataset_coco.json",
                            args.image_dir or root, _splits(args, "train,restval"),
                            skips=skips)


def _flickr30k(args, root, skips):
  return flickr30k.read_flickr30k(
      args.dataset_json or root / "dataset_flickr30k.json",
      args.image_dir or root / "flickr30k-images", _splits(args, "train"), skips=skips)


def _vg(args, root, skips):
  return visual_genome.read_visual_genome(
      args.region_descriptions or root / "region_descriptions.json",
      args.image_data or root / "image_data.json", args.image_dir or root, skips=skips)


def _vqa(args, root, skips):
  annotations = None if args.no_annotations else (
      args.annotations or root / "v2_mscoco_train2014_annotations.json")
  return vqa.read_vqa(
      args.questions or root / "v2_OpenEnded_mscoco_train2014_questions.json",
      annotations, args.image_dir or root / "train2014", skips=skips)


def _nlvr2(args, root, skips):
  return nlvr2.read_nlvr2(args.jsonl or root / "train.json",
                          args.image_dir or root / "images", skips=skips)


def _cc3m(args, root, skips):
  return conceptual_captions.read_cc3m(
      args.tsv or root / conceptual_captions.CC3M_TRAIN_TSV,
      args.image_dir or root / "images",
      image_pattern=args.image_pattern or common.INDEX_PATTERN, skips=skips)


def _cc12m(args, root, skips):
  return conceptual_captions.read_cc12m(
      args.tsv or root / conceptual_captions.CC12M_TSV,
      args.image_dir or root / "images",
      image_pattern=args.image_pattern or common.INDEX_PATTERN, skips=skips)


def _sbu(args, root, skips):
  return sbu.read_sbu(args.urls or root / sbu.URLS_FILE,
                      args.captions or root / sbu.CAPTIONS_FILE,
                      args.image_dir or root / "images",
                      image_pattern=args.image_pattern or common.URL_NAME_PATTERN,
                      skips=skips)


def _img2dataset(args, root, skips):
  return img2dataset.read_img2dataset(root, skips=skips)


_READERS = {"coco": _coco, "karpathy": _karpathy, "flickr30k": _flickr30k,
            "vg": _vg, "vqa": _vqa, "nlvr2": _nlvr2, "cc3m": _cc3m, "cc12m": _cc12m,
            "sbu": _sbu, "img2dataset": _img2dataset}


def example_id(record) -> str:
  """How a skip report names an example."""
  if isinstance(record, records.Nlvr2Example):
    return record.identifier
  if isinstance(record, records.VqaExample):
    return str(record.question_id)
  return f"{record.image_id}: {record.text[:40]!r}"


def _packed_problems(args) -> Iterator[tuple[str, str | None, str | None]]:
  """(example id, image name, problem) per example of a packed folder, decoding each
  image from its shard once (problem None: usable)."""
  source, cache = pack.PackedSource(args.root), {}
  for index in range(len(source)):
    names = source.image_names(index)
    if not all(name in cache for name in names):
      try:
        data = source.image_bytes(index)
      except images.ImageError as error:  # missing when it was packed
        cache.update((name, error.reason) for name in names)
        data = []
      for name, image in zip(names, data):
        try:
          images.decode_image(image, max_pixels=args.max_pixels, name=name)
          cache[name] = None
        except images.ImageError as error:
          cache[name] = error.reason
    problem = next((name for name in names if cache[name]), None)
    yield (example_id(source.record(index)), problem,
           cache[problem] if problem else None)


def _examples(args, skips: skips_lib.SkipCounter) -> Iterator[tuple[str, list[str]]]:
  """(example id, image paths) for every record the format's reader yields."""
  for record in _READERS[args.format](args, epath.Path(args.root), skips):
    if isinstance(record, records.Nlvr2Example):
      yield example_id(record), [record.left_path, record.right_path]
    else:
      yield example_id(record), [record.image_path]


def _image_problem(path: str, cache: dict[str, str | None], max_pixels: int) -> str | None:
  """Why the image cannot be used (an `ImageError` reason), or None; cached by path."""
  if path not in cache:
    try:
      images.load_image(path, max_pixels=max_pixels)
      cache[path] = None
    except images.ImageError as error:
      cache[path] = error.reason
  return cache[path]


def check_dataset(args: argparse.Namespace) -> tuple[int, skips_lib.SkipCounter]:
  """Reads everything; returns the usable count and the counter of skips."""
  skips = skips_lib.SkipCounter(args.format, max_skip_fraction=args.max_skip_fraction)
  usable, cache = 0, {}
  if args.format == "packed":
    for example_id, path, problem in _packed_problems(args):
      if problem:
        skips.skip(f"image_{problem}", path, example_id)
      else:
        usable += 1
    return usable, skips
  for example_id, paths in _examples(args, skips):
    problems = [(path, problem) for path in paths
                if (problem := _image_problem(path, cache, args.max_pixels))]
    if problems:  # named by the image file, the thing to fix
      path, problem = problems[0]
      skips.skip(f"image_{problem}", path, str(example_id))
    else:
      usable += 1
  return usable, skips


def main(argv: list[str] | None = None) -> int:
  args = parse_args(argv)
  try:
    usable, skips = check_dataset(args)
  except common.DataFileError as error:
    print(f"FAILED: {error}", file=sys.stderr)
    return 1
  seen = usable + skips.total
  print(f"{args.format} at {args.root}: {usable} of {seen} examples usable")
  print(skips.summary(seen))
  try:
    skips.check(seen, final=True)
  except skips_lib.TooManySkipped as error:
    print(f"FAILED: {error}", file=sys.stderr)
    return 1
  print(f"OK: skipped share within max_skip_fraction={args.max_skip_fraction:g}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
