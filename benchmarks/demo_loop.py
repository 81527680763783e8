r"""The demo's whole training loop against its bare jitted step (issue 16).

  python benchmarks/demo_loop.py [--config=configs/pretrain.py:demo] [--steps=60] [--rounds=3]

Builds the run as the trainer does (`train.build`: the synthetic world from the cache,
the shipped backbone, the pipeline, the jitted step) in a temporary workdir, then times,
in interleaved rounds on the same machine:

* "bare step": the jitted step on one batch already on the devices, nothing else;
* "loop, prefetch N": batches from the real pipeline through `prefetch.Prefetcher`
  (read and placed on a thread, N ahead), as `train._loop` consumes them;
* "loop, no overlap": the pipeline read on the main thread, then placed, then the step
  (with a sync per step, so reading cannot hide behind dispatch).

Each row reports its median steps/s over the rounds and its ratio to the bare step.
"""

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time

import jax

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from pixelbert_jax import prefetch, train  # noqa: E402
import report  # noqa: E402  (benchmarks/report.py)


def load_config(arg: str):
  """`configs/x.py:variant` as the entry point reads it."""
  path, _, variant = arg.partition(":")
  module = os.path.splitext(os.path.basename(path))[0]
  config = __import__(f"configs.{module}", fromlist=["get_config"])
  return config.get_config(variant) if variant else config.get_config()


def time_loop(run, next_batch, steps: int, sync_each_step: bool = False) -> float:
  """Steps/s of `steps` steps on the batches `next_batch()` gives (global arrays)."""
  state = run.step.state
  start = time.perf_counter()
  for _ in range(steps):
    state, measurements = run.step.step_fn(state, next_batch())
    if sync_each_step:
      jax.block_until_ready(measurements)
  jax.block_until_ready(measurements)
  run.step.state = state
  return steps / (time.perf_counter() - start)


def measure(config, steps: int, rounds: int, depth: int) -> dict[str, list[float]]:
  with tempfile.TemporaryDirectory() as workdir:
    run = train.build(config, workdir)
    iterator = run.data.train_iterator
    batch = run.to_global(next(iterator))
    batches = prefetch.Prefetcher(iterator, run.to_global, depth)
    prefetched = lambda: next(batches)[1]
    time_loop(run, prefetched, len(iterator.buckets) * 4)  # compiles every bucket
    rows = {"bare step": [], f"loop, prefetch {depth}": [], "loop, no overlap": []}
    for _ in range(rounds):
      rows["bare step"].append(time_loop(run, lambda: batch, steps))
      rows[f"loop, prefetch {depth}"].append(time_loop(run, prefetched, steps))
    batches.close()
    serial = run.task.make_data(workdir).train_iterator
    for _ in range(rounds):
      rows["loop, no overlap"].append(
          time_loop(run, lambda: run.to_global(next(serial)), steps, sync_each_step=True))
    return rows


def table(rows: dict[str, list[float]]) -> str:
  bare = statistics.median(rows["bare step"])
  lines = ["| row | steps/s (median) | range | vs bare step |", "|---|---|---|---|"]
  for name, rates in rows.items():
    median = statistics.median(rates)
    lines.append(f"| {name} | {median:.2f} | {min(rates):.2f}–{max(rates):.2f} | "
                 f"{median / bare:.2f}x |")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="configs/pretrain.py:demo")
  parser.add_argument("--steps", type=int, default=60)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--depth", type=int, default=2)
  parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results",
                                                    "demo_loop.md"))
  args = parser.parse_args()
  rows = measure(load_config(args.config), args.steps, args.rounds, args.depth)
  head = (f"{datetime.date.today()} · {platform.node()} · {os.cpu_count()} CPUs · "
          f"jax {jax.__version__} · {args.config}, {args.steps} steps a row, "
          f"{args.rounds} rounds")
  report.publish(head + "\n\n" + table(rows) + "\n", args.out)


if __name__ == "__main__":
  main()
