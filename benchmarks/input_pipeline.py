r"""Input-pipeline speed at the paper's resolution against a bare decode-and-resize loop.

  python benchmarks/input_pipeline.py [--workers=0,1,2] [--num_batches=25]

Writes synthetic-world scenes upscaled to COCO-like JPEGs (long side 640, quality 90)
into a temporary folder, then measures, in one run and on the same files:

* "bare loop": Pillow decode + resize to short side 800 / long side ≤ 1333, nothing else
  (what any pipeline must pay);
* the pre-training pipeline (`pixelbert_jax.data.pipeline.pretrain_pipeline`), which
  also normalises to float32, pads into the bucket, tokenises, masks and stacks, for
  each worker count.

Examples/s exclude start-up (worker processes, the first batch); the overhead ratio is
the bare loop's examples/s over the pipeline's, so 1.0 means the pipeline costs nothing
beyond decoding and resizing.
"""

import argparse
import datetime
import os
import platform
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


def bare_loop(examples: list[records.ImageText], count: int) -> float:
  """Examples/s of decode + resize only, over `count` examples."""
  start = time.perf_counter()
  for index in range(count):
    image = images_lib.load_image(examples[index % len(examples)].image_path)
    images_lib.resize_short_side(image, SHORT_SIDE, LONG_SIDE)
  return count / (time.perf_counter() - start)


def pipeline_rate(examples, tokenizer, batch_size: int, num_batches: int,
                  num_workers: int) -> float:
  """Examples/s of the pre-training pipeline after its first batch."""
  cfg = {"global_batch_size": batch_size, "image_short_side": SHORT_SIDE,
         "image_long_side": LONG_SIDE, "max_text_len": 40, "num_workers": num_workers}
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


def table(bare: float, rates: dict[int, float]) -> str:
  lines = ["| loader | workers | examples/s | overhead vs bare loop |",
           "| --- | --- | --- | --- |",
           f"| bare loop (Pillow decode + resize) | - | {bare:.1f} | 1.00x |"]
  for workers, rate in rates.items():
    lines.append(f"| pretrain_pipeline | {workers} | {rate:.1f} | {bare / rate:.2f}x |")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workers", default="0,1,2")
  parser.add_argument("--num_images", type=int, default=64)
  parser.add_argument("--batch_size", type=int, default=4)
  parser.add_argument("--num_batches", type=int, default=25)
  parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                    "input_pipeline.md"))
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as folder:
    examples = make_examples(folder, args.num_images)
    tokenizer = tokenizer_lib.WordPieceTokenizer.from_vocab_file(
        os.path.join(folder, "world", "vocab.txt"))
    count = args.batch_size * args.num_batches
    bare = bare_loop(examples, count)
    rates = {int(w): pipeline_rate(examples, tokenizer, args.batch_size,
                                   args.num_batches, int(w))
             for w in args.workers.split(",")}
  header = (f"{datetime.date.today()} · {platform.node()} · {cpu_name()} · "
            f"{os.cpu_count()} CPUs · {SHORT_SIDE} / ≤ {LONG_SIDE} · "
            f"{len(examples)} JPEGs of long side {COCO_LONG_SIDE} · batch "
            f"{args.batch_size} · {count} timed examples per row")
  text = f"{header}\n\n{table(bare, rates)}\n"
  print(text)
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "w", encoding="utf-8") as f:
    f.write(text)


if __name__ == "__main__":
  main()
