r"""Memory per device of the paper's training step, projected without a device (issue 17).

  python benchmarks/memory_projection.py                        # every row, in priority order
  python benchmarks/memory_projection.py --rows=R50/b8/fsdp1/none,X152/b8/fsdp1/none
  python benchmarks/memory_projection.py --tiny --out=DIR       # demo size, under a minute

Each row ahead-of-time compiles the real pre-training step (`train.build_step`: MLM + ITM,
100 sampled pixels, bfloat16 compute, the paper's SGD + AdamW, donated state) for the
row's largest image bucket, without allocating anything: the state is the abstract one of
`build_step(materialise=False)` and the batch is `jax.ShapeDtypeStruct`s, both carrying
their shardings. `compiled.memory_analysis()` then gives XLA's buffer assignment for ONE
device (the SPMD program every device runs):

  peak per device = arguments + outputs + temporaries - aliased

Arguments are the state and batch shards the device holds; outputs the new state and the
measurements; temporaries everything live inside the step (activations kept for the
backward pass, gradients, optimiser updates) at the buffer assignment's high-water mark;
aliased bytes are outputs written into donated arguments (the new state reuses the old
state's buffers), which are otherwise counted twice. Generated code is reported apart
(zero on the CPU). This is the bound that XLA's own memory check uses for an executable,
not a measured peak: the CPU's buffer assignment and scheduling differ from a GPU's or
TPU's (XLA:CPU may keep bfloat16 products in float32, fuses differently and does not
lower its peak with rematerialisation), so every row is labelled a CPU-compiled projection.

Meshes: "fsdp 1" is one device; "fsdp F" is F simulated CPU devices
(`--xla_force_host_platform_device_count`) on a (data=1, fsdp=F, tensor=1) mesh. The
config's rules shard the batch over ("data", "fsdp"), so a per-device batch b is a global
batch F x b, each device holding b examples; the Transformer's matrices and their AdamW
moments are split along "embed" over fsdp; the CNN and its SGD momentum stay replicated
(its conv rules map to no mesh axis).

Each row runs in a fresh process (a compile of this size takes minutes and gigabytes;
a fresh process keeps one row's memory from the next) with a time limit; rows start only
while `--budget_s` lasts, and the report lists those not run. Writes
OUT/memory_projection.json and OUT/memory_projection.md.
"""

import argparse
import dataclasses
import datetime
import json
import os
import platform
import subprocess
import sys
import time

BENCHMARKS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCHMARKS)
sys.path.insert(0, REPO)
sys.path.insert(0, BENCHMARKS)
import report  # noqa: E402  (benchmarks/report.py)

LABEL = "CPU-compiled projection (XLA:CPU buffer assignment; a GPU/TPU compile differs)"
GIB = 2**30
# Device memories the verdict compares against, and the share a row may fill: the rest
# is left to the runtime, the allocator's fragmentation and what the CPU compile misses.
CAPACITIES = (("80 GB", 80 * GIB), ("16 GB", 16 * GIB))
HEADROOM = 0.10
RESULT_PREFIX = "RESULT "


@dataclasses.dataclass(frozen=True)
class Model:
  config_arg: str  # the variant after the colon in configs/pretrain.py
  bucket: tuple[int, int]  # the largest padded (height, width) bucket: the peak's shape
  image_size: tuple[int, int]  # the true image size inside it
  overrides: tuple[tuple[str, object], ...] = ()  # config.model fields changed


MODELS = {
    # 800 x 1333 and 600 x 1000 rounded up to the CNN's stride of 64 (`images.make_buckets`).
    "R50": Model("", (832, 1344), (800, 1333)),
    "X152": Model("X152", (640, 1024), (600, 1000)),
    # The demo model with one Transformer layer: both tiny rows compile within a minute.
    "tiny": Model("demo", (128, 192), (128, 171), (("transformer_num_layers", 1),)),
}


def row_name(model: str, batch: int, fsdp: int, remat: str) -> str:
  return f"{model}/b{batch}/fsdp{fsdp}/{remat}"


def parse_row(name: str) -> dict:
  model, batch, fsdp, remat = name.split("/")
  if model not in MODELS or not batch.startswith("b") or not fsdp.startswith("fsdp"):
    raise ValueError(f"row {name!r} is not MODEL/bBATCH/fsdpF/REMAT, e.g. R50/b8/fsdp1/none")
  return dict(model=model, batch=int(batch[1:]), fsdp=int(fsdp[4:]), remat=remat)


def _full_rows() -> list[str]:
  """Every full-size row, most wanted first (the issue's priorities), then the rest."""
  first = ["R50/b8/fsdp1/none", "R50/b8/fsdp8/none", "R50/b32/fsdp1/none",
           "X152/b8/fsdp1/none", "R50/b64/fsdp1/none", "X152/b32/fsdp1/none",
           "R50/b16/fsdp1/none", "X152/b16/fsdp1/none", "X152/b64/fsdp1/none",
           "X152/b8/fsdp8/none", "R50/b32/fsdp8/none", "R50/b32/fsdp1/full"]
  rest = [row_name(m, b, f, r) for r in ("none", "full") for f in (1, 8)
          for m in ("R50", "X152") for b in (8, 16, 32, 64)]
  return first + [r for r in rest if r not in first]


FULL_ROWS = _full_rows()
TINY_ROWS = ["tiny/b4/fsdp1/none", "tiny/b4/fsdp8/none"]


# --------------------------------------------------------------------------- the worker


def abstract_batch(config, model: Model, global_batch: int, vocab: int, sharding):
  """The training batch as ShapeDtypeStructs (`train_step.random_batch`'s keys, dtypes
  and trailing shapes), sharded along the batch axis as `train.make_global` places it."""
  import jax  # pylint: disable=g-import-not-at-top
  import train_step as step_bench  # pylint: disable=g-import-not-at-top

  setting = step_bench.Setting(model.config_arg, 1, model.bucket, model.image_size, True)
  example = step_bench.random_batch(config, setting, 1, vocab)  # one example: cheap
  return {k: jax.ShapeDtypeStruct((global_batch,) + v.shape[1:], v.dtype,
                                  sharding=sharding) for k, v in example.items()}


def project_job(job: dict) -> dict:
  """Builds the row's step abstractly, compiles it and reads its memory analysis."""
  import jax  # pylint: disable=g-import-not-at-top
  import train_step as step_bench  # pylint: disable=g-import-not-at-top
  from pixelbert_jax import sharding, train  # pylint: disable=g-import-not-at-top
  from pixelbert_jax.tasks import base as tasks  # pylint: disable=g-import-not-at-top

  model = MODELS[job["model"]]
  if jax.device_count() != job["fsdp"]:
    raise RuntimeError(f"{jax.device_count()} devices for fsdp {job['fsdp']}")
  setting = step_bench.Setting(model.config_arg, 1, model.bucket, model.image_size, True)
  global_batch = job["batch"] * job["fsdp"]
  config = step_bench.make_config(setting, global_batch, "sampled")
  config.model.remat = job["remat"]
  config.model.update(dict(model.overrides))
  config.mesh.shape = (1, job["fsdp"], 1)
  vocab = step_bench.vocab_size(config)
  start = time.perf_counter()
  # The task's own objective, as the trainer builds it; nothing is allocated.
  step = train.build_step(config, tasks.get(config), {}, vocab, steps=10_000,
                          materialise=False)
  batch = abstract_batch(config, model, global_batch, vocab,
                         sharding.batch_sharding(step.mesh, step.rules))
  lowered = step.step_fn.lower(step.state, batch)
  lower_s = time.perf_counter() - start
  start = time.perf_counter()
  compiled = lowered.compile()
  compile_s = time.perf_counter() - start
  stats = compiled.memory_analysis()
  fields = {name: int(getattr(stats, name + "_size_in_bytes"))
            for name in ("argument", "output", "temp", "alias", "generated_code")}
  params = sum(x.size for x in jax.tree.leaves(step.state.params))
  return dict(fields, peak=(fields["argument"] + fields["output"] + fields["temp"]
                            - fields["alias"]),
              xla_peak=int(getattr(stats, "peak_memory_in_bytes", 0) or 0),
              lower_s=lower_s, compile_s=compile_s, parameters=int(params),
              global_batch=global_batch, bucket=list(model.bucket),
              dtype=config.model.dtype, platform=jax.devices()[0].platform,
              device_count=jax.device_count(), label=LABEL)


# --------------------------------------------------------------------------- the driver


def spawn(job: dict, timeout_s: float) -> dict:
  """Runs one row in a fresh process with `fsdp` simulated CPU devices."""
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  env = dict(os.environ, JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="",
             XLA_FLAGS=" ".join(flags + [
                 f"--xla_force_host_platform_device_count={job['fsdp']}"]),
             PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
  command = [sys.executable, os.path.abspath(__file__), "--job=" + json.dumps(job)]
  start = time.perf_counter()
  try:
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True,
                          timeout=timeout_s, check=False)
  except subprocess.TimeoutExpired:
    return dict(job, error=f"no result within the {timeout_s:.0f} s row limit")
  results = [line[len(RESULT_PREFIX):] for line in done.stdout.splitlines()
             if line.startswith(RESULT_PREFIX)]
  if done.returncode or not results:
    return dict(job, error=f"exit {done.returncode} (see stderr above)")
  return dict(job, wall_s=time.perf_counter() - start, **json.loads(results[-1]))


def verdict(peak: int) -> dict:
  """For each capacity: fits (within 1 - HEADROOM of it), tight (within it) or no."""
  out = {}
  for name, capacity in CAPACITIES:
    out[name] = ("fits" if peak <= (1 - HEADROOM) * capacity else
                 "tight" if peak <= capacity else "no")
  return out


def measure(rows: list[str], budget_s: float, timeout_s: float) -> tuple[list, list]:
  """(results, names of rows not run) within the budget."""
  start, results, skipped = time.perf_counter(), [], []
  for name in rows:
    if time.perf_counter() - start >= budget_s:
      skipped.append(name)
      continue
    print(f"compiling {name} ...", flush=True)
    row = dict(spawn(dict(parse_row(name), row=name), timeout_s), row=name)
    if "peak" in row:
      row["verdict"] = verdict(row["peak"])
    print(json.dumps(row), flush=True)
    results.append(row)
  return results, skipped


def _gib(n: int) -> str:
  return f"{n / GIB:.2f}"


def _line(row: dict) -> str:
  lead = (f"| {row['model']} | {row['batch']} | {row['fsdp']} | {row['remat']} |")
  if "error" in row:
    return lead + f" did not run: {row['error']} |" + " |" * 9
  bucket = "x".join(map(str, row["bucket"]))
  return (lead + f" {bucket} | {row['global_batch']} | {_gib(row['argument'])} | "
          f"{_gib(row['output'])} | {_gib(row['temp'])} | {_gib(row['alias'])} | "
          f"**{_gib(row['peak'])}** | {row['verdict']['80 GB']} | "
          f"{row['verdict']['16 GB']} | {row['compile_s']:.0f} (+{row['lower_s']:.0f}) |")


def markdown(rows: list[dict], skipped: list[str], header: str) -> str:
  lines = ["| model | batch / device | fsdp | remat | bucket | global batch | arguments "
           "GiB | outputs GiB | temporaries GiB | aliased GiB | peak / device GiB | "
           "80 GB | 16 GB | compile s (+ trace s) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  lines += [_line(row) for row in rows]
  notes = [f"Every row: {LABEL}.",
           "Peak / device = arguments + outputs + temporaries - aliased (the donated "
           "state's buffers reused by the new state), from `compiled.memory_analysis()` "
           "of the SPMD program one device runs.",
           f"Verdict: 'fits' when the peak is at most {100 * (1 - HEADROOM):.0f} % of the "
           "device's memory (GiB), 'tight' when within it, 'no' above it."]
  if skipped:
    notes.append("Not run (budget spent): " + ", ".join(skipped) + ".")
  return "\n\n".join([header, "\n".join(lines), "\n".join(f"* {n}" for n in notes)]) + "\n"


def parse_args():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--tiny", action="store_true", help="demo size, two rows")
  parser.add_argument("--rows", default="",
                      help="comma-separated MODEL/bBATCH/fsdpF/REMAT rows (default: all "
                      "of the size, in priority order)")
  parser.add_argument("--budget_s", type=float, default=3000.0,
                      help="no row starts after this many seconds")
  parser.add_argument("--timeout_s", type=float, default=900.0, help="limit per row")
  parser.add_argument("--out", default=os.path.join(BENCHMARKS, "results"))
  parser.add_argument("--job", default="", help=argparse.SUPPRESS)  # worker mode
  return parser.parse_args()


def main():
  args = parse_args()
  if args.job:
    print(RESULT_PREFIX + json.dumps(project_job(json.loads(args.job))), flush=True)
    return
  rows = (args.rows.split(",") if args.rows else TINY_ROWS if args.tiny else FULL_ROWS)
  for name in rows:
    parse_row(name)  # a misspelt row fails before the first compile
  results, skipped = measure(rows, args.budget_s, args.timeout_s)
  import jax  # pylint: disable=g-import-not-at-top  (the driver never compiles)
  header = (f"{datetime.date.today()} · {platform.node()} · {os.cpu_count()} CPUs · "
            f"jax {jax.__version__} · {LABEL}")
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "memory_projection.json"), "w", encoding="utf-8") as f:
    json.dump(dict(label=LABEL, headroom=HEADROOM, rows=results, not_run=skipped), f,
              indent=2)
  report.publish(markdown(results, skipped, header),
                 os.path.join(args.out, "memory_projection.md"))


if __name__ == "__main__":
  main()
