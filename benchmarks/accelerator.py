r"""One command that measures the paper's configuration on an accelerator (issue 17).

  python benchmarks/accelerator.py --out=DIR           # on a GPU or TPU
  python benchmarks/accelerator.py --tiny --out=DIR    # the same path at demo size, on a CPU

Rows, each in a fresh process (its own peak memory, a cold compile):
  train    the R50 pre-training step (`benchmarks/train_step.py`'s "paper" setting: MLM +
           ITM, 100 sampled pixels, 832 x 1344 bucket, bfloat16, the paper's two
           optimisers) at the largest per-device batch of 64 / 32 / 16 / 8 that runs, with
           remat none and full: time to the first step, step time, examples/s, MFU
           (`flops.py` over the device's bf16 peak), peak device memory;
  score    retrieval scoring: the cross-encoder over cached pixel tokens (all pixels of
           an 800 x 1333 image, no CNN), pairs/s;
  forward  a full forward pass (CNN and Transformer, all pixels) at 800 x 1333, images/s;
  input    the pre-training pipeline at 800 x 1333 on this machine's cores, examples/s.
Rows start only while `--budget_s` lasts; what was skipped is said. Nothing here imports
TensorFlow (`tests/test_accelerator_benchmark.py` runs `--tiny` with it unimportable).
Writes DIR/accelerator.json and DIR/accelerator.md.
"""

import argparse
import dataclasses
import datetime
import json
import os
import platform
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

BENCHMARKS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(BENCHMARKS))
sys.path.insert(0, BENCHMARKS)
import input_pipeline  # noqa: E402  (benchmarks/input_pipeline.py)
import report  # noqa: E402
import train_step as step_bench  # noqa: E402
from configs import pretrain as pretrain_config  # noqa: E402
from pixelbert_jax.data import tokenizer as tokenizer_lib  # noqa: E402
from pixelbert_jax.models.pixel_encoder import grid_size  # noqa: E402
from pixelbert_jax.tasks import base as tasks  # noqa: E402
from pixelbert_jax.tasks import pretrain  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Size:
  setting: str  # a `train_step.SETTINGS` name: config, bucket and true image size
  batches: tuple[int, ...]  # per-device training batches to try, largest first
  score_pairs: int
  forward_batch: int
  input_images: int
  input_batches: int
  repeats: int
  steps: int


SIZES = {
    "paper": Size("paper", (64, 32, 16, 8), score_pairs=256, forward_batch=16,
                  input_images=64, input_batches=10, repeats=3, steps=5),
    "tiny": Size("tiny", (4,), score_pairs=8, forward_batch=2, input_images=16,
                 input_batches=2, repeats=1, steps=1),
}
REMATS = ("none", "full")


# --------------------------------------------------------------------------- jobs


def _model(size: Size):
  """The pre-training model of the size's config (random weights), split for jit."""
  setting = step_bench.SETTINGS[size.setting]
  config = pretrain_config.get_config(setting.config_arg)
  model_config = tasks.get(config).model_config(step_bench.vocab_size(config))
  graphdef, state = nnx.split(pretrain.PretrainModel(model_config, rngs=nnx.Rngs(0)))
  return setting, config, model_config, graphdef, state


def _eval_model(graphdef, state):
  model = nnx.merge(graphdef, state)
  model.eval()
  return model


def _timed(fn, args, size: Size) -> dict:
  """`train_step.time_steps` over a jitted function of fixed arguments."""
  def run_steps(n):
    for _ in range(n):
      out = fn(*args)
    jax.block_until_ready(out)
  return step_bench.time_steps(run_steps, size.repeats, size.steps)


def score_job(job: dict) -> dict:
  """Pairs/s of the ITM cross-encoder over cached pixel tokens (no CNN)."""
  size = SIZES[job["size"]]
  setting, config, model_config, graphdef, state = _model(size)
  pairs, text_len = size.score_pairs, config.data.max_text_len
  pixels = int(np.prod(grid_size(*setting.image_size, model_config.pixel_stride)))
  rng = np.random.default_rng(0)
  tokens = jnp.asarray(rng.normal(size=(pairs, pixels, model_config.transformer.hidden)),
                       jnp.bfloat16 if model_config.dtype == "bfloat16" else jnp.float32)
  ids = jnp.asarray(rng.integers(5, 100, (pairs, text_len)), jnp.int32)
  masks = jnp.ones((pairs, text_len), bool), jnp.ones((pairs, pixels), bool)

  @jax.jit
  def score(state, ids, text_mask, tokens, pixel_mask):
    model = _eval_model(graphdef, state)
    return model.itm_head(model.pixelbert(ids, text_mask, tokens, pixel_mask)[1]["pooled"])

  timed = _timed(score, (state, ids, masks[0], tokens, masks[1]), size)
  return dict(timed, rate=pairs / timed["step_s"], unit="pairs/s",
              detail=f"{pairs} pairs x ({text_len} text + {pixels} pixel tokens)")


def forward_job(job: dict) -> dict:
  """Images/s of a full forward pass (CNN, all pixels, Transformer) at full size."""
  size = SIZES[job["size"]]
  setting, config, _, graphdef, state = _model(size)
  batch = step_bench.random_batch(config, setting, size.forward_batch,
                                  step_bench.vocab_size(config))

  @jax.jit
  def forward(state, batch):
    model = _eval_model(graphdef, state)
    tokens, mask = model.pixelbert.encode_pixels(batch["images"], batch["image_sizes"])
    return model.pixelbert(batch["token_ids"], batch["text_mask"], tokens, mask)[1]["pooled"]

  timed = _timed(forward, (state, jax.device_put(batch)), size)
  return dict(timed, rate=size.forward_batch / timed["step_s"], unit="images/s",
              detail=f"batch {size.forward_batch}, bucket {setting.bucket}")


def input_job(job: dict) -> dict:
  """Examples/s of the pre-training pipeline at 800 x 1333 on this host's cores."""
  size = SIZES[job["size"]]
  cpus = os.cpu_count() or 1
  with tempfile.TemporaryDirectory() as folder:
    examples = input_pipeline.make_examples(folder, size.input_images)
    tokenizer = tokenizer_lib.WordPieceTokenizer.from_vocab_file(
        os.path.join(folder, "world", "vocab.txt"))
    rates = {f"{threads}x{workers}": input_pipeline.pipeline_rate(
        examples, tokenizer, 4, size.input_batches, threads, workers)
             for threads, workers in ((min(cpus, 8), 0), (2, max(1, cpus // 2)))}
  best = max(rates, key=rates.get)
  return dict(rate=rates[best], unit="examples/s",
              detail=f"best of threads x workers {rates} on {cpus} CPUs")


def train_job(job: dict) -> dict:
  return step_bench.jax_job(dict(job, setting=SIZES[job["size"]].setting,
                                 variant="sampled", cnn="config"))


JOBS = {"train": train_job, "score": score_job, "forward": forward_job,
        "input": input_job, "probe": step_bench.probe_job}


# --------------------------------------------------------------------------- plan


def _spawn(job: dict) -> dict:
  print(f"running {job}", flush=True)
  return step_bench.spawn(job, on_cpu=False, script=__file__)


def train_rows(size: Size, size_name: str, within_budget) -> list[dict]:
  """For each remat policy, the largest batch that runs (failed tries kept as rows)."""
  rows = []
  for remat in REMATS:
    for batch in size.batches:
      if not within_budget():
        return rows
      row = _spawn(dict(kind="train", size=size_name, batch=batch, remat=remat,
                        repeats=size.repeats, steps=size.steps))
      rows.append(row)
      if "error" not in row:
        break
  return rows


def measure(size_name: str, budget_s: float) -> tuple[dict, list[dict], list[str]]:
  """(probe, rows, notes) of every row the budget allows."""
  size, start = SIZES[size_name], time.perf_counter()
  within_budget = lambda: time.perf_counter() - start < budget_s
  probe = _spawn(dict(kind="probe"))
  rows = train_rows(size, size_name, within_budget)
  notes = []
  for kind in ("score", "forward", "input"):
    if within_budget():
      rows.append(_spawn(dict(kind=kind, size=size_name, repeats=size.repeats,
                              steps=size.steps)))
    else:
      notes.append(f"{kind}: skipped, the {budget_s:.0f} s budget was spent")
  return probe, rows, notes


# --------------------------------------------------------------------------- report


def _mfu(row: dict, device_kind: str) -> str:
  peak = step_bench.peak_tflops(device_kind)
  if peak is None or "step_s" not in row or "flops" not in row:
    return "-"
  return f"{100 * row['flops'] / row['step_s'] / (peak * 1e12):.1f} %"


def _row_line(row: dict, device_kind: str) -> str:
  if "error" in row:
    return f"| {row['kind']} | {_setting_of(row)} | did not run: {row['error']} | | | | |"
  first = f"{row['first_step_s']:.1f} s" if "first_step_s" in row else "-"
  timing = f"{1e3 * row['step_s']:.1f} ms" if "step_s" in row else "-"
  if row["kind"] == "train":
    rate = f"{row['batch'] / row['step_s']:.1f} examples/s"
    memory = f"{row['memory'] / 2**30:.2f} GiB ({row['memory_kind']})"
    return (f"| train | {_setting_of(row)} | {timing} | {rate} | {_mfu(row, device_kind)} "
            f"| {first} | {memory} |")
  return (f"| {row['kind']} | {row['detail']} | {timing} | {row['rate']:.1f} "
          f"{row['unit']} | - | {first} | - |")


def _setting_of(row: dict) -> str:
  if row["kind"] == "train":
    return f"batch {row['batch']}, remat {row['remat']}"
  return row.get("detail", "")


def markdown(probe: dict, rows: list[dict], notes: list[str], size_name: str) -> str:
  device_kind = probe.get("device_kind", "?")
  header = (f"{datetime.date.today()} · {platform.node()} · {device_kind} x "
            f"{probe.get('device_count', '?')} ({probe.get('platform', '?')}) · jax "
            f"{jax.__version__} · size {size_name}")
  lines = ["| row | setting | time per call | rate | MFU | first call | peak memory |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
  lines += [_row_line(row, device_kind) for row in rows]
  notes = notes + ["MFU: analytic training FLOPs (`flops.py`) / step time / the chip's "
                   "bf16 peak; '-' where the device's peak is not in the table."]
  return "\n\n".join([header, "\n".join(lines), "\n".join(f"* {n}" for n in notes)]) + "\n"


def parse_args():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--tiny", action="store_true", help="demo sizes (a CPU check)")
  parser.add_argument("--budget_s", type=float, default=420.0,
                      help="no row starts after this many seconds")
  parser.add_argument("--out", default=os.path.join(BENCHMARKS, "results"))
  parser.add_argument("--job", default="", help=argparse.SUPPRESS)  # worker mode
  return parser.parse_args()


def main():
  args = parse_args()
  if args.job:
    step_bench.answer(args.job, JOBS, "kind")
    return
  size_name = "tiny" if args.tiny else "paper"
  probe, rows, notes = measure(size_name, args.budget_s)
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "accelerator.json"), "w", encoding="utf-8") as f:
    json.dump(dict(probe=probe, rows=rows, notes=notes), f, indent=2)
  report.publish(markdown(probe, rows, notes, size_name),
                 os.path.join(args.out, "accelerator.md"))


if __name__ == "__main__":
  main()
