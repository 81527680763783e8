r"""Grain reading a packed mixture against one packed source holding the same examples.

  python benchmarks/mixture_pipeline.py [--num_images=400] [--num_batches=40]

Writes a synthetic world into a temporary folder, reads its COCO-style captions
(Karpathy train + restval) and its CC3M-style web corpus, and packs them
(`data.pack`) three ways: both in one folder (the single source), and each in a
folder of its own (the mixture's sources). Then measures, on one read thread in the
main process, the pre-training pipeline's examples/s over:

* "single": the one folder, planned by `batch_plan.BatchPlan`;
* "mixture, sizes": the two folders with weights equal to their sizes, so the same
  examples at the same rates, planned by `mixture.MixturePlan`;
* "mixture, 50 / 50": the web corpus drawn at half of each epoch (repeated about
  eight times per epoch), for the cost of a skewed mixture.

The goal (issue 19) is a mixture at >= 0.9x the single source's rate per thread: the
mixture adds a per-example lookup of its source and a per-epoch plan of its draws.
Images are at the demo's resolution (short side 128, long side <= 224), where the
decode is cheapest and any per-example overhead of the mixture shows most. Rows are
measured in interleaved rounds (`--rounds`), each reporting its median; rates exclude
start-up (the plan, the first batch). Examples per CPU second (the process's CPU time,
every thread) are the figure to compare on a shared machine: other processes' load
moves the wall-clock rates by more than the mixture costs.
"""

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pixelbert_jax.data import mixture  # noqa: E402
from pixelbert_jax.data import pack  # noqa: E402
from pixelbert_jax.data import pipeline  # noqa: E402
from pixelbert_jax.data import synthetic  # noqa: E402
from pixelbert_jax.data import tokenizer as tokenizer_lib  # noqa: E402
from pixelbert_jax.data.readers import coco  # noqa: E402
from pixelbert_jax.data.readers import conceptual_captions  # noqa: E402
import input_pipeline  # noqa: E402  (benchmarks/input_pipeline.py: cpu_name)
import report  # noqa: E402  (benchmarks/report.py)

SHORT_SIDE, LONG_SIDE = 128, 224  # the demo's resolution


def packed_sources(folder: str, num_images: int) -> dict:
  """{name: packed folder} of the single source and the mixture's two; the vocab."""
  world = synthetic.generate(os.path.join(folder, "world"), seed=0,
                             num_images=num_images)
  parts = {"coco": list(coco.read_karpathy(world["karpathy_coco"], world["coco_root"])),
           "web": list(conceptual_captions.read_cc3m(world["cc3m_tsv"],
                                                      world["cc3m_images"]))}
  parts["single"] = parts["coco"] + parts["web"]
  out = {}
  for name, examples in parts.items():
    out[name] = os.path.join(folder, "packed", name)
    pack.pack(examples, out[name], num_shards=2)
  return {"packed": out, "vocab": world["vocab"]}


def mixture_source(packed: dict, weights: dict) -> mixture.MixtureSource:
  """The two packed folders as a mixture at `weights`."""
  specs = [mixture.SourceSpec(name, "packed", (packed[name],), weights[name], 0.01)
           for name in ("coco", "web")]
  return mixture.MixtureSource(specs, [pack.PackedSource(packed[s.name]) for s in specs])


def rate(source, tokenizer, batch_size: int, num_batches: int) -> tuple[float, float]:
  """(examples per second, per CPU second) of the pre-training pipeline on one read
  thread, after its first batch."""
  cfg = {"global_batch_size": batch_size, "image_short_side": SHORT_SIDE,
         "image_long_side": LONG_SIDE, "max_text_len": 24, "read_threads": 1,
         "prefetch_batches": 1, "num_workers": 0}
  iterator = pipeline.pretrain_pipeline(source, tokenizer, cfg, seed=0)
  next(iterator)
  start, cpu_start = time.perf_counter(), time.process_time()
  count = sum(len(next(iterator)["valid"]) for _ in range(num_batches))
  result = (count / (time.perf_counter() - start),
            count / (time.process_time() - cpu_start))
  iterator.close()
  return result


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--num_images", type=int, default=400)
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--num_batches", type=int, default=40)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                    "mixture_pipeline.md"))
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as folder:
    found = packed_sources(folder, args.num_images)
    packed = found["packed"]
    tokenizer = tokenizer_lib.WordPieceTokenizer.from_vocab_file(found["vocab"])
    single = pack.PackedSource(packed["single"])
    sizes = {name: len(pack.PackedSource(packed[name])) for name in ("coco", "web")}
    rows = {"single": single,
            "mixture, sizes": mixture_source(packed, sizes),
            "mixture, 50 / 50": mixture_source(packed, {"coco": 0.5, "web": 0.5})}
    runs = {name: [] for name in rows}
    for _ in range(args.rounds):
      for name, source in rows.items():
        runs[name].append(rate(source, tokenizer, args.batch_size, args.num_batches))
  wall = {name: statistics.median(v for v, _ in values) for name, values in runs.items()}
  cpu = {name: statistics.median(c for _, c in values) for name, values in runs.items()}
  lines = ["| reader (packed, 1 read thread) | examples/s | vs single | examples per "
           "CPU s | vs single |", "| --- | --- | --- | --- | --- |"]
  lines += [f"| {name} | {wall[name]:.1f} | {wall[name] / wall['single']:.2f}x | "
            f"{cpu[name]:.1f} | {cpu[name] / cpu['single']:.2f}x |" for name in runs]
  header = (f"{datetime.date.today()} · {platform.node()} · {input_pipeline.cpu_name()}"
            f" · {os.cpu_count()} CPUs · {SHORT_SIDE} / ≤ {LONG_SIDE} · "
            f"{sizes['coco']} COCO-style captions + {sizes['web']} web pairs · batch "
            f"{args.batch_size} · {args.batch_size * args.num_batches} timed examples "
            f"per row and round · median of {args.rounds} rounds")
  report.publish(f"{header}\n\n" + "\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
  main()
