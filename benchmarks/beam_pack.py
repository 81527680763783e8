r"""Beam packing throughput on the DirectRunner against `data.pack`, and a CC3M projection.

  python benchmarks/beam_pack.py [--num_images=640] [--rounds=3] [--workers=2]

Writes a CC3M-style corpus (TSV + image folder, `data/readers/conceptual_captions.py`)
of synthetic-world scenes upscaled to COCO-like JPEGs (long side 640, quality 90, all
distinct), then packs it, in interleaved rounds on the same files:

* `data.pack` (one process): reads each file and its header; decodes nothing;
* `data.check` + `data.pack` (one process): what one machine does to validate every
  image (decode) and pack, the same work as the Beam packer without its hashing;
* `data.beam_pack` on the DirectRunner with N worker processes (multi_processing):
  decode, validate, XXH3-128 of the pixels, de-duplicate, write shards;
* the Beam workers' per-image work alone, in a loop in one process: the packer's rate
  if its runner cost nothing.

Each packer runs on all of the corpus and on a quarter of it (the same images); times
are medians of the rounds, wall time from the command's start to its end. The
DirectRunner's worker processes and pipeline set-up are a fixed cost of seconds that a
corpus this small does not hide, so the rate compared is the marginal one: the extra
images over the extra time. Per core = that rate / processes doing the work (1, or N
Beam workers). The projection scales the Beam per-core rate to CC3M on a
32-worker job; its arithmetic is printed with it.
"""

import argparse
import collections
import datetime
import io
import os
import platform
import statistics
import sys
import tempfile
import time

from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pixelbert_jax.data import beam_pack  # noqa: E402
from pixelbert_jax.data import check  # noqa: E402
from pixelbert_jax.data import images as images_lib  # noqa: E402
from pixelbert_jax.data import pack  # noqa: E402
from pixelbert_jax.data import synthetic  # noqa: E402
from pixelbert_jax.data.readers import coco  # noqa: E402
import input_pipeline  # noqa: E402  (benchmarks/input_pipeline.py: cpu_name)
import report  # noqa: E402  (benchmarks/report.py)

LONG_SIDE = 640  # COCO-like
CC3M_IMAGES = 3_318_333  # rows of Train_GCC-training.tsv
CC3M_LIVE = 0.85  # the share of urls that still download (about 15 % are dead)


def make_corpus(folder: str, num_images: int) -> str:
  """A CC3M TSV and its images folder of `num_images` distinct JPEGs; the TSV path."""
  world = synthetic.generate(os.path.join(folder, "world"), seed=0, num_images=num_images)
  rows, seen = [], set()
  for caption in coco.read_karpathy(world["karpathy_coco"], world["coco_root"],
                                    ("train", "restval", "val", "test")):
    if caption.image_path in seen:
      continue
    index = len(seen)
    seen.add(caption.image_path)
    image = Image.open(caption.image_path).convert("RGB")
    scale = LONG_SIDE / max(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)),
                         Image.Resampling.BICUBIC)
    path = os.path.join(folder, "cc3m", "images", f"{index // 10_000:05d}",
                        f"{index:09d}.jpg")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    with open(path, "wb") as f:
      f.write(buffer.getvalue())
    rows.append(f"{caption.text}\thttp://example.com/{index}.jpg")
  tsv = os.path.join(folder, "cc3m", "Train_GCC-training.tsv")
  with open(tsv, "w", encoding="utf-8") as f:
    f.write("\n".join(rows) + "\n")
  return tsv


def per_image_work(annotations: str, images: str) -> None:
  """What a Beam worker does per image (read, decode, validate, hash), in a loop: the
  rate the packer would reach with a runner that cost nothing."""
  with open(annotations, encoding="utf-8") as f:
    count = sum(1 for _ in f)
  for index in range(count):
    path = os.path.join(images, f"{index // 10_000:05d}", f"{index:09d}.jpg")
    beam_pack.process_image((index, path), 0, images_lib.DEFAULT_MAX_PIXELS, 95, "")


def timed(run) -> float:
  start = time.perf_counter()
  run()
  return time.perf_counter() - start


def projection(per_core: float, workers: int = 32, vcpus: int = 4) -> str:
  """CC3M on `workers` machines of `vcpus` cores at the measured Beam per-core rate."""
  live = round(CC3M_IMAGES * CC3M_LIVE)
  cores = workers * vcpus
  seconds = live / (per_core * cores)
  return (f"CC3M: {CC3M_IMAGES:,} rows x {CC3M_LIVE:.0%} live = {live:,} images; "
          f"{workers} workers x {vcpus} vCPUs = {cores} cores x {per_core:.1f} "
          f"images/s/core = {per_core * cores:,.0f} images/s; {live:,} / "
          f"{per_core * cores:,.0f} = {seconds:,.0f} s = {seconds / 60:.1f} min of "
          "processing (worker start-up, about 3-5 min on Dataflow, and GCS reads "
          "not included)")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--num_images", type=int, default=640)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--workers", type=int, default=2)
  parser.add_argument("--num_shards", type=int, default=4)
  parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                    "beam_pack.md"))
  args = parser.parse_args()
  runs = collections.defaultdict(list)
  with tempfile.TemporaryDirectory() as folder:
    tsv = make_corpus(folder, args.num_images)
    with open(tsv, encoding="utf-8") as f:
      lines = f.readlines()
    # The same images, a quarter of the rows: the difference of the two sizes' times
    # is the marginal cost of images, without the fixed start-up.
    quarter = os.path.join(os.path.dirname(tsv), "quarter.tsv")
    with open(quarter, "w", encoding="utf-8") as f:
      f.writelines(lines[:len(lines) // 4])
    sizes = {len(lines) // 4: quarter, len(lines): tsv}
    images = os.path.join(os.path.dirname(tsv), "images")

    def corpus(annotations):
      return ["--format", "cc3m", "--annotations", annotations, "--images", images,
              "--num_shards", str(args.num_shards)]

    rows = {
        ("data.pack", 1): lambda a, out: pack.main(corpus(a) + ["--out", out]),
        ("data.check + data.pack", 1): lambda a, out: (
            check.main(["--format", "cc3m", "--root", os.path.dirname(a), "--tsv", a]),
            pack.main(corpus(a) + ["--out", out])),
        (f"data.beam_pack, DirectRunner x {args.workers}", args.workers):
            lambda a, out: beam_pack.main(corpus(a) + [
                "--out", out, "--direct_num_workers", str(args.workers),
                "--direct_running_mode", "multi_processing"]),
        ("beam_pack's per-image work alone, no runner", 1):
            lambda a, out: per_image_work(a, images),
    }
    for round_ in range(args.rounds):
      for number, (row, run) in enumerate(rows.items()):
        for count, annotations in sizes.items():
          out = os.path.join(folder, f"out{round_}_{number}_{count}")
          runs[row, count].append(timed(lambda: run(annotations, out)))
  small, large = sorted(sizes)
  median = {key: statistics.median(times) for key, times in runs.items()}
  marginal = {row: (large - small) / (median[row, large] - median[row, small])
              for row in rows}
  lines = [f"| packer | processes | s for {small} | s for {large} | marginal images/s "
           "| per core | per core vs data.pack | per core vs check + pack |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
  per_core = {row: rate / row[1] for row, rate in marginal.items()}
  pack_core, both_core = list(per_core.values())[:2]
  for row, core in per_core.items():
    lines.append(f"| {row[0]} | {row[1]} | {median[row, small]:.2f} | "
                 f"{median[row, large]:.2f} | {marginal[row]:.1f} | {core:.1f} | "
                 f"{core / pack_core:.2f}x | {core / both_core:.2f}x |")
  header = (f"{datetime.date.today()} · {platform.node()} · {input_pipeline.cpu_name()} · "
            f"{os.cpu_count()} CPUs · distinct JPEGs of long side {LONG_SIDE} "
            f"(CC3M layout) · {args.num_shards} shards · wall time, start-up included; "
            f"marginal = ({large} - {small}) / (t{large} - t{small}) · median of "
            f"{args.rounds} rounds")
  beam_row = [row for row in rows if row[0].startswith("data.beam_pack")][0]
  text = (f"{header}\n\n" + "\n".join(lines) + "\n\n"
          f"{projection(per_core[beam_row])}\n")
  report.publish(text, args.out)


if __name__ == "__main__":
  main()
