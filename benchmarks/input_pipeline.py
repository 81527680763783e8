r"""Input-pipeline speed at the paper's resolution against a bare decode-and-resize loop.

  python benchmarks/input_pipeline.py [--settings=1x0,2x0,1x1,1x2] [--num_batches=25]

Writes synthetic-world scenes upscaled to COCO-like JPEGs (long side 640, quality 90)
into a temporary folder, then measures, in one run and on the same files:

* "bare loop": Pillow decode + resize to short side 800 / long side ≤ 1333, nothing else
  (what any pipeline must pay), on 1 thread and on a pool of N threads;
* the pre-training pipeline (`pixelbert_jax.data.pipeline.pretrain_pipeline`), which
  also pads into the bucket, tokenises, masks and stacks, for each setting
  "THREADSxWORKERS" (read threads per process × worker processes, 0 = in-process).

Rows are measured in interleaved rounds (`--rounds`) and each reports its median, so
slow phases of a noisy machine hit every row alike. Examples/s exclude start-up (worker processes, the first batch). The overhead ratio is
the bare loop's examples/s over the pipeline's at the same parallelism (threads ×
max(workers, 1), capped at the bare loops measured), so 1.0 means the pipeline costs
nothing beyond decoding and resizing.
"""

import argparse
import collections
from concurrent import futures
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time

from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pixelbert_jax.data import images as images_lib  # noqa: E402
from pixelbert_jax.data import pipeline  # noqa: E402
from pixelbert_jax.data import records  # noqa: E402
from pixelbert_jax.data import synthetic  # noqa: E402
from pixelbert_jax.data import tokenizer as tokenizer_lib  # noqa: E402
from pixelbert_jax.data.readers import coco  # noqa: E402
import report  # noqa: E402  (benchmarks/report.py)

SHORT_SIDE, LONG_SIDE = 800, 1333  # Pixel-BERT-R50's resolution.
COCO_LONG_SIDE = 640  # COCO images are about 640 x 480.


def make_examples(folder: str, num_images: int) -> list[records.ImageText]:
  """One caption per synthetic scene, its image upscaled to COCO size as JPEG."""
  world = synthetic.generate(os.path.join(folder, "world"), seed=0,
                             num_images=num_images)
  examples, seen = [], set()
  for caption in coco.read_karpathy(world["karpathy_coco"], world["coco_root"],
                                    ("train", "restval", "val", "test")):
    if caption.image_path in seen:
      continue
    seen.add(caption.image_path)
    image = Image.open(caption.image_path).convert("RGB")
    scale = COCO_LONG_SIDE / max(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)),
                         Image.Resampling.BICUBIC)
    path = os.path.join(folder, f"{len(examples)}.jpg")
    image.save(path, quality=90)
    examples.append(records.ImageText(caption.image_id, path, caption.text, "bench"))
  return examples


def bare_loop(examples: list[records.ImageText], count: int, threads: int) -> float:
  """Examples/s of decode + resize only, over `count` examples on `threads` threads."""
  def decode_and_resize(index: int) -> None:
    image = images_lib.load_image(examples[index % len(examples)].image_path)
    images_lib.resize_short_side(image, SHORT_SIDE, LONG_SIDE)

  start = time.perf_counter()
  with futures.ThreadPoolExecutor(threads) as pool:
    list(pool.map(decode_and_resize, range(count)))
  return count / (time.perf_counter() - start)


def pipeline_rate(examples, tokenizer, batch_size: int, num_batches: int,
                  threads: int, num_workers: int) -> float:
  """Examples/s of the pre-training pipeline after its first batch."""
  cfg = {"global_batch_size": batch_size, "image_short_side": SHORT_SIDE,
         "image_long_side": LONG_SIDE, "max_text_len": 40, "num_workers": num_workers,
         "read_threads": threads}
  iterator = pipeline.pretrain_pipeline(examples, tokenizer, cfg, seed=0)
  next(iterator)  # Start-up: worker processes, first reads.
  start = time.perf_counter()
  count = sum(len(next(iterator)["valid"]) for _ in range(num_batches))
  rate = count / (time.perf_counter() - start)
  iterator.close()
  return rate


def cpu_name() -> str:
  """The CPU model from /proc/cpuinfo (Linux), else what `platform` knows."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def table(bare: dict[int, float], rates: dict[tuple[int, int], float]) -> str:
  lines = ["| loader | threads | workers | examples/s | overhead vs bare loop |",
           "| --- | --- | --- | --- | --- |"]
  for threads, rate in bare.items():
    lines.append(f"| bare loop (Pillow decode + resize) | {threads} | - | {rate:.1f} "
                 "| 1.00x |")
  for (threads, workers), rate in rates.items():
    parallel = min(threads * max(workers, 1), max(bare))
    lines.append(f"| pretrain_pipeline | {threads} | {workers} | {rate:.1f} | "
                 f"{bare[parallel] / rate:.2f}x |")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--settings", default="1x0,2x0,1x1,1x2",
                      help="comma-separated THREADSxWORKERS pipeline settings")
  parser.add_argument("--num_images", type=int, default=64)
  parser.add_argument("--batch_size", type=int, default=4)
  parser.add_argument("--num_batches", type=int, default=25)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                    "input_pipeline.md"))
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as folder:
    examples = make_examples(folder, args.num_images)
    tokenizer = tokenizer_lib.WordPieceTokenizer.from_vocab_file(
        os.path.join(folder, "world", "vocab.txt"))
    count = args.batch_size * args.num_batches
    settings = [tuple(int(n) for n in s.split("x")) for s in args.settings.split(",")]
    max_parallel = min(os.cpu_count(), max(t * max(w, 1) for t, w in settings))
    bare_runs, pipeline_runs = collections.defaultdict(list), collections.defaultdict(list)
    for _ in range(args.rounds):
      for threads in range(1, max_parallel + 1):
        bare_runs[threads].append(bare_loop(examples, count, threads))
      for t, w in settings:
        pipeline_runs[(t, w)].append(pipeline_rate(examples, tokenizer, args.batch_size,
                                                   args.num_batches, t, w))
    bare = {k: statistics.median(v) for k, v in bare_runs.items()}
    rates = {k: statistics.median(v) for k, v in pipeline_runs.items()}
  header = (f"{datetime.date.today()} · {platform.node()} · {cpu_name()} · "
            f"{os.cpu_count()} CPUs · {SHORT_SIDE} / ≤ {LONG_SIDE} · "
            f"{len(examples)} JPEGs of long side {COCO_LONG_SIDE} · batch "
            f"{args.batch_size} · {count} timed examples per row and round · median "
            f"of {args.rounds} rounds")
  text = f"{header}\n\n{table(bare, rates)}\n"
  report.publish(text, args.out)


if __name__ == "__main__":
  main()
