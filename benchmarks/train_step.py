r"""Speed of the real pre-training step (MLM + ITM, in-graph pixel sampling), issue 4.

  python benchmarks/train_step.py [--settings=tiny,paper] [--repeats=5] [--steps=5]
  python benchmarks/train_step.py --settings=paper --steps=20   # on an accelerator

"tiny" is `configs/pretrain.py:demo` (the tiny model, float32, batch 32, 128 x 192
bucket) and always runs on the CPU, next to a PyTorch eager twin of the same step
(torchvision-style ResNet + Hugging Face BERT at the same size, SGD for the CNN and AdamW
for the rest). "paper" is the R50 recipe (`configs/pretrain.py`, bfloat16, 832 x 1344
bucket holding 800 x 1333 images, 100 sampled pixels); it runs only where an accelerator
is present, unless `--force`.

The JAX rows time `train_step.make_train_step`, jitted as `train.py` jits it (state
shardings, donated state), on a fixed random batch with the pipeline's keys and dtypes,
so the step is measured without the input pipeline. Each setting has three JAX rows,
variants of the same step: the config's pixel sampling ("sampled"), the first k pixels
taken without a draw ("first-k": same token count, so the difference is what the
sampling op costs) and sampling off ("all": every pixel reaches the Transformer). Each
row runs in a fresh process, so peak memory and time to the first step are its own.

MFU = analytic training FLOPs (3 x forward, `pixelbert_jax/flops.py`; the CNN once and
the Transformer twice per example, MLM decoder included) / step time / the chip's bf16
peak (docs/ARCHITECTURE.md, "Measuring performance"). Step times are medians over
`--repeats` runs of `--steps` steps each, dispatched without a host sync in between.
"""

import argparse
import dataclasses
import datetime
import importlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import jax
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from configs import pretrain as pretrain_config  # noqa: E402
from pixelbert_jax import flops, sharding, train  # noqa: E402
from pixelbert_jax.data import synthetic  # noqa: E402
from pixelbert_jax.models.pixel_encoder import grid_size  # noqa: E402
from pixelbert_jax.tasks import base as tasks  # noqa: E402
from pixelbert_jax.tasks import pretrain  # noqa: E402
import report  # noqa: E402  (benchmarks/report.py)

# Dense bf16 peaks in TFLOP/s, matched against `device_kind` in this order
# (docs/ARCHITECTURE.md; H100 PCIe from NVIDIA's datasheet). CPUs have no peak here.
PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("v5 lite", 197.0),
               ("v5e", 197.0), ("v5p", 459.0), ("v4", 275.0))
VARIANTS = ("sampled", "first-k", "all")
RESULT_PREFIX = "RESULT "


@dataclasses.dataclass(frozen=True)
class Setting:
  config_arg: str  # the variant after the colon in configs/pretrain.py
  batch: int
  bucket: tuple[int, int]  # padded (height, width) the CNN sees
  image_size: tuple[int, int]  # true (height, width) inside the bucket
  on_cpu: bool  # run on the host even where an accelerator is present


SETTINGS = {
    "tiny": Setting("demo", 32, (128, 192), (128, 171), on_cpu=True),
    "paper": Setting("", 16, (832, 1344), (800, 1333), on_cpu=False),
}


def peak_tflops(device_kind: str) -> float | None:
  for name, peak in PEAK_TFLOPS:
    if name.lower() in device_kind.lower():
      return peak
  return None


# --------------------------------------------------------------------------- the job's set-up


def make_config(setting: Setting, batch: int, variant: str, cnn: str = "config"):
  """The task config with this row's batch, pixel-sampling switch and CNN ("config":
  as configured, frozen for the demo; "trained": the paper's SGD group)."""
  config = pretrain_config.get_config(setting.config_arg)
  config.global_batch_size = batch
  if variant == "all":
    config.num_sampled_pixels = None
  if cnn == "trained":
    config.optimizer.groups.frozen.pattern = "^$"  # matches no parameter
  return config


def cnn_frozen(config) -> bool:
  """Whether the config's `frozen` group holds the CNN (the demo's does)."""
  return config.optimizer.groups.frozen.pattern != "^$"


BERT_VOCAB_SIZE = 30522  # bert-base-uncased


def vocab_size(config) -> int:
  # What the task would take from the tokenizer: the synthetic world's closed
  # vocabulary for the demo, BERT's uncased one for real data.
  if config.data.kind == "synthetic":
    return len(synthetic.vocabulary())
  return BERT_VOCAB_SIZE


def num_pixel_tokens(config, model_config, setting: Setting) -> int:
  """Pixel tokens per example that reach the Transformer."""
  if config.num_sampled_pixels:
    return config.num_sampled_pixels
  gh, gw = grid_size(*setting.bucket, model_config.pixel_stride)
  return gh * gw


def train_flops(config, model_config, setting: Setting, batch: int) -> float:
  """Analytic FLOPs of one training step: 3 x (CNN once, Transformer twice) per example."""
  text_len = config.data.max_text_len
  pixels = num_pixel_tokens(config, model_config, setting)
  mlm_pass = flops.pair_flops(model_config, *setting.bucket, text_len, pixels,
                              mlm_tokens=text_len)
  itm_pass = flops.transformer_flops(model_config.transformer, text_len + pixels)
  return 3 * batch * (mlm_pass.total + itm_pass)


def first_pixels_loss_fn(num_pixels: int, use_mlm: bool, use_itm: bool):
  """`pretrain.make_loss_fn` with the first k pixels instead of k random ones.

  Same token count as the sampled step, no draw: the difference between the two steps is
  the cost of sampling itself.
  """

  def loss_fn(model, batch, key):
    tokens, mask = model.pixelbert.encode_pixels(batch["images"], batch["image_sizes"])
    if tokens.shape[1] < num_pixels:
      raise ValueError(f"first-k needs {num_pixels} pixels, the grid has {tokens.shape[1]}")
    tokens, mask = tokens[:, :num_pixels], mask[:, :num_pixels]
    sums = {}
    if use_mlm:
      sums.update(pretrain.mlm_sums(model, batch, tokens, mask))
    if use_itm:
      sums.update(pretrain.itm_sums(model, batch, tokens, mask, key))
    return sums

  return loss_fn


def random_batch(config, setting: Setting, batch: int, vocab: int, seed: int = 0) -> dict:
  """A batch with `pretrain_pipeline`'s keys, dtypes and shapes, and 15 % masked tokens."""
  rng = np.random.default_rng(seed)
  (height, width), (h, w) = setting.bucket, setting.image_size
  text_len = config.data.max_text_len
  images = np.zeros((batch, height, width, 3), np.uint8)
  images[:, :h, :w] = rng.integers(0, 256, (batch, h, w, 3), np.uint8)
  token_ids = rng.integers(5, vocab, (batch, text_len)).astype(np.int32)
  masked = rng.random((batch, text_len)) < config.data.mlm_probability
  masked[:, 0] = False
  # The ids themselves do not matter for speed; only shapes and dtypes do.
  return dict(
      images=images, image_sizes=np.tile(np.int32([h, w]), (batch, 1)),
      token_ids=token_ids, text_mask=np.ones((batch, text_len), bool),
      mlm_ids=np.where(masked, 4, token_ids).astype(np.int32), mlm_labels=token_ids,
      mlm_weights=masked.astype(np.float32), image_ids=np.arange(batch, dtype=np.int32),
      example_index=np.arange(batch, dtype=np.int32), valid=np.ones(batch, bool))


# --------------------------------------------------------------------------- timing


def time_steps(run_steps, repeats: int, steps: int) -> dict:
  """Times `run_steps(n)` (n steps, then one sync): first call, then medians per step."""
  start = time.perf_counter()
  run_steps(1)
  first = time.perf_counter() - start
  run_steps(1)  # a second warm-up: some runtimes finish their set-up on the next call
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    run_steps(steps)
    times.append((time.perf_counter() - start) / steps)
  return dict(first_step_s=first, step_s=statistics.median(times),
              spread=(max(times) - min(times)) / statistics.median(times))


def host_peak_bytes() -> int:
  """This process's peak resident memory (ru_maxrss is KiB on Linux, bytes on macOS)."""
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return peak if sys.platform == "darwin" else peak * 1024


def jax_peak_memory() -> tuple[int, str]:
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return stats["peak_bytes_in_use"], "device"
  return host_peak_bytes(), "RSS"


# --------------------------------------------------------------------------- JAX job


def build_jax_step(config, loss_fn, vocab: int):
  """The trainer's own model, optimiser, state and jitted step (`train.build_step`),
  with this row's loss; the schedule's length does not change the step's cost."""
  task = tasks.get(config)
  use = config.objectives
  objective = tasks.Objective(loss_fn, pretrain.counts_fn, pretrain.loss_weights(use.mlm,
                                                                                  use.itm))
  step = train.build_step(config, task, {}, vocab, steps=10_000, objective=objective)
  return step.state, step.step_fn, sharding.batch_sharding(step.mesh, step.rules)


def make_loss(config, variant: str):
  use = config.objectives
  if variant == "first-k":
    return first_pixels_loss_fn(config.num_sampled_pixels, use.mlm, use.itm)
  return pretrain.make_loss_fn(config.num_sampled_pixels, use.mlm, use.itm)


def jax_job(job: dict) -> dict:
  """Builds and times one variant of the real step; returns the row's measurements."""
  setting = SETTINGS[job["setting"]]
  config = make_config(setting, job["batch"], job["variant"], job["cnn"])
  config.model.remat = job.get("remat", config.model.remat)  # benchmarks/accelerator.py
  vocab = vocab_size(config)
  start = time.perf_counter()
  state, step_fn, batch_sharding = build_jax_step(config, make_loss(config, job["variant"]),
                                                  vocab)
  jax.block_until_ready(state)
  setup_s = time.perf_counter() - start
  # Placed once, as `train.make_global` would (one process): the step alone is timed.
  batch = jax.device_put(random_batch(config, setting, job["batch"], vocab), batch_sharding)
  holder = {"state": state}

  def run_steps(n):
    for _ in range(n):
      holder["state"], holder["measurements"] = step_fn(holder["state"], batch)
    jax.block_until_ready(holder)

  result = time_steps(run_steps, job["repeats"], job["steps"])
  memory, memory_kind = jax_peak_memory()
  model_config = tasks.get(config).model_config(vocab)
  return dict(result, setup_s=setup_s, memory=memory, memory_kind=memory_kind,
              loss=float(holder["measurements"]["training_loss"]),
              flops=train_flops(config, model_config, setting, job["batch"]),
              pixels=num_pixel_tokens(config, model_config, setting),
              device_kind=jax.devices()[0].device_kind)


# --------------------------------------------------------------------------- PyTorch job


def torch_twin(model_config, text_len: int, num_pixels: int):
  """PyTorch eager twin: the ResNet of `model_forward`, BertForPreTraining, pixel tokens."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  import model_forward  # pylint: disable=g-import-not-at-top

  spec = model_config.transformer
  bert = transformers.BertForPreTraining(transformers.BertConfig(
      vocab_size=spec.vocab_size, hidden_size=spec.hidden, num_hidden_layers=spec.num_layers,
      num_attention_heads=spec.heads, intermediate_size=spec.mlp,
      # Pixels get BERT's position embeddings here (not in Pixel-BERT): an element-wise add
      # that needs rows for every token.
      max_position_embeddings=max(spec.max_positions, text_len + num_pixels),
      hidden_dropout_prob=model_config.dropout,
      attention_probs_dropout_prob=model_config.dropout))
  return torch.nn.ModuleDict(dict(
      cnn=model_forward._torch_backbone(model_config.backbone),  # pylint: disable=protected-access
      projection=torch.nn.Linear(model_config.backbone.out_channels, spec.hidden),
      norm=torch.nn.LayerNorm(spec.hidden, eps=spec.layer_norm_eps), bert=bert))


def torch_pixels(twin, images, model_config, num_samples):
  """CNN once per image, optional 2x2 pool, projection + LayerNorm, k random pixels."""
  import torch  # pylint: disable=g-import-not-at-top

  features = twin["cnn"](images)
  if model_config.pixel_pool:
    features = torch.nn.functional.max_pool2d(features, 2, ceil_mode=True)
  pixels = twin["norm"](twin["projection"](features.flatten(2).transpose(1, 2)))
  if num_samples:
    keep = torch.rand(pixels.shape[:2]).topk(num_samples, dim=1).indices
    pixels = torch.gather(pixels, 1, keep[..., None].expand(-1, -1, pixels.shape[-1]))
  return pixels


def torch_loss(twin, batch: dict, model_config, num_samples):
  """MLM on masked text and ITM with half the captions re-paired, like `pretrain`."""
  import torch  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top

  bert = twin["bert"]
  pixels = torch_pixels(twin, batch["images"], model_config, num_samples)

  def encode(ids):
    embeds = torch.cat([bert.bert.embeddings.word_embeddings(ids), pixels], dim=1)
    return bert.bert(inputs_embeds=embeds)

  text_len = batch["mlm_ids"].shape[1]
  logits = bert.cls.predictions(encode(batch["mlm_ids"]).last_hidden_state[:, :text_len])
  per_token = F.cross_entropy(logits.flatten(0, 1), batch["mlm_labels"].flatten(),
                              reduction="none")
  mlm = (per_token * batch["mlm_weights"].flatten()).sum() / batch["mlm_weights"].sum()
  size = pixels.shape[0]
  partner = torch.where(torch.rand(size) < 0.5, torch.randperm(size), torch.arange(size))
  itm_logits = bert.cls.seq_relationship(encode(batch["token_ids"][partner]).pooler_output)
  return mlm + F.cross_entropy(itm_logits, (partner == torch.arange(size)).long())


def torch_optimizers(twin, config):
  """The paper's pair, from the config's groups: SGD for the CNN, AdamW for the rest; a
  frozen CNN takes no gradient and no optimiser (`requires_grad` off)."""
  import torch  # pylint: disable=g-import-not-at-top

  cnn, rest = config.optimizer.groups.cnn, config.optimizer.groups.transformer
  others = [p for name, p in twin.named_parameters() if not name.startswith("cnn.")]
  adamw = torch.optim.AdamW(others, lr=rest.lr, betas=(rest.b1, rest.b2), eps=rest.eps,
                            weight_decay=rest.weight_decay)
  if cnn_frozen(config):
    twin["cnn"].requires_grad_(False)
    return (adamw,)
  return (torch.optim.SGD(twin["cnn"].parameters(), lr=cnn.lr, momentum=cnn.momentum,
                          weight_decay=cnn.weight_decay), adamw)


def torch_batch(batch: dict, model_config) -> dict:
  """The numpy batch as tensors, images normalised on the fly (as the JAX model does)."""
  import torch  # pylint: disable=g-import-not-at-top

  mean = torch.tensor(model_config.image_mean).view(1, 3, 1, 1)
  std = torch.tensor(model_config.image_std).view(1, 3, 1, 1)
  tensors = {k: torch.from_numpy(v) for k, v in batch.items()}
  tensors["images"] = tensors["images"].permute(0, 3, 1, 2).float()
  tensors["images"] = (tensors["images"] / 255.0 - mean) / std
  for key in ("token_ids", "mlm_ids", "mlm_labels"):
    tensors[key] = tensors[key].long()
  return tensors


def torch_step_fn(twin, optimizers, batch: dict, model_config, config):
  """`run_steps(n)` for the twin: forward, backward, clipping, both optimisers."""
  import torch  # pylint: disable=g-import-not-at-top

  holder = {}

  def run_steps(n):
    for _ in range(n):
      for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
      loss = torch_loss(twin, batch, model_config, config.num_sampled_pixels)
      loss.backward()
      torch.nn.utils.clip_grad_norm_([p for p in twin.parameters() if p.requires_grad],
                                     config.optimizer.clip_grad_norm)
      for optimizer in optimizers:
        optimizer.step()
    holder["loss"] = float(loss.detach())

  return run_steps, holder


def torch_job(job: dict) -> dict:
  """Builds and times the twin's training step on the CPU."""
  import torch  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(os.cpu_count())
  setting = SETTINGS[job["setting"]]
  config = make_config(setting, job["batch"], job["variant"], job["cnn"])
  vocab = vocab_size(config)
  model_config = tasks.get(config).model_config(vocab)
  pixels = num_pixel_tokens(config, model_config, setting)
  importlib.import_module("transformers")  # imported before the clock, as JAX is
  start = time.perf_counter()
  twin = torch_twin(model_config, config.data.max_text_len, pixels)
  twin.train()
  twin["cnn"].eval()  # frozen batch norm, as `train_bn_stats=False`
  optimizers = torch_optimizers(twin, config)
  setup_s = time.perf_counter() - start
  batch = torch_batch(random_batch(config, setting, job["batch"], vocab), model_config)
  run_steps, holder = torch_step_fn(twin, optimizers, batch, model_config, config)
  result = time_steps(run_steps, job["repeats"], job["steps"])
  return dict(result, setup_s=setup_s, memory=host_peak_bytes(), memory_kind="RSS",
              loss=holder["loss"],
              flops=train_flops(config, model_config, setting, job["batch"]),
              pixels=pixels, device_kind="cpu (torch " + torch.__version__ + ")")


# --------------------------------------------------------------------------- the driver


def probe_job(job: dict) -> dict:
  del job
  device = jax.devices()[0]
  return dict(platform=device.platform, device_kind=device.device_kind,
              device_count=jax.device_count())


JOBS = {"jax": jax_job, "torch": torch_job, "probe": probe_job}


def answer(job_json: str, jobs: dict, key: str) -> None:
  """The worker side of `spawn`: runs `jobs[job[key]]` and prints its RESULT line."""
  job = json.loads(job_json)
  print(RESULT_PREFIX + json.dumps(jobs[job[key]](job)), flush=True)


def spawn(job: dict, on_cpu: bool, script: str = __file__) -> dict:
  """Runs one job of `script` (`--job=JSON`, a RESULT line back) in a fresh process
  (clean peak memory, cold compile) and returns it."""
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      filter(None, [REPO, os.environ.get("PYTHONPATH")])))
  if on_cpu:
    env.update(JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
  command = [sys.executable, os.path.abspath(script), "--job=" + json.dumps(job)]
  done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=False)
  results = [line[len(RESULT_PREFIX):] for line in done.stdout.splitlines()
             if line.startswith(RESULT_PREFIX)]
  if done.returncode or not results:
    return dict(job, error=f"exit {done.returncode} (see stderr above)")
  return dict(job, **json.loads(results[-1]))


def plan(args, accelerator: bool) -> tuple[list[tuple[dict, bool]], list[str]]:
  """(job, on_cpu) for every row, and notes on settings that were skipped."""
  jobs, notes = [], []
  common = dict(repeats=args.repeats, steps=args.steps)
  for name in args.settings.split(","):
    setting = SETTINGS[name]
    if not setting.on_cpu and not accelerator and not args.force:
      notes.append(f"{name}: skipped, no accelerator here (--force runs it on the CPU).")
      continue
    batch = setting.batch if setting.on_cpu else (args.paper_batch or
                                                  (setting.batch if accelerator else 1))
    for cnn in args.cnn.split(","):
      # The pixel-sampling variants with the configured CNN; one row for the other.
      for variant in args.variants.split(",") if cnn == "config" else ["sampled"]:
        jobs.append((dict(common, framework="jax", setting=name, variant=variant,
                          batch=batch, cnn=cnn), setting.on_cpu))
      if setting.on_cpu or not accelerator:  # PyTorch runs side by side on the CPU only
        jobs.append((dict(common, framework="torch", setting=name, variant="sampled",
                          batch=batch, cnn=cnn), True))
  return jobs, notes


def _fmt_row(r: dict, jax_ms: dict) -> str:
  lead = (f"| {r['setting']} | {r['framework']} | {r['variant']} | {r['cnn']} | "
          f"{r['batch']} | {'x'.join(map(str, SETTINGS[r['setting']].bucket))} |")
  if "error" in r:
    return lead + f" failed: {r['error']} |" + " |" * 8
  ms = 1000 * r["step_s"]
  tflops = r["flops"] / r["step_s"] / 1e12
  peak = peak_tflops(r["device_kind"]) if r["framework"] == "jax" else None
  mfu = f"{100 * tflops / peak:.1f} %" if peak else ""
  base = jax_ms.get((r["setting"], "sampled", r["cnn"]))
  ratio = f"{ms / base:.2f}x" if base and r["framework"] == "torch" else "-"
  return (lead + f" {r['pixels']} | {ms:.1f} (±{50 * r['spread']:.0f} %) | "
          f"{r['batch'] / r['step_s']:.1f} | {tflops:.3g} | "
          f"{peak if peak else 'n/a'} | {mfu} | {r['memory'] / 2**30:.2f} GiB "
          f"({r['memory_kind']}) | {r['first_step_s']:.1f} (+{r['setup_s']:.1f}) | {ratio} |")


def table(rows: list[dict]) -> str:
  jax_ms = {(r["setting"], r["variant"], r["cnn"]): 1000 * r["step_s"] for r in rows
            if r["framework"] == "jax" and "error" not in r}
  lines = ["| setting | framework | variant | CNN | batch | bucket | pixel tokens | "
           "step ms (median, ±half-range) | examples/s | TFLOP/s | peak TFLOP/s | MFU | "
           "peak memory | first step s (+ set-up s) | JAX speed-up |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  lines += [_fmt_row(r, jax_ms) for r in rows]
  return "\n".join(lines)


def sampling_notes(rows: list[dict]) -> list[str]:
  """The sampling op's cost (sampled vs first-k) and what sampling saves (vs all)."""
  notes = []
  for name in SETTINGS:
    ms = {r["variant"]: r["step_s"] for r in rows if r["setting"] == name
          and r["framework"] == "jax" and r["cnn"] == "config" and "error" not in r}
    if "sampled" not in ms:
      continue
    parts = []
    if "first-k" in ms:
      cost = 100 * (ms["sampled"] - ms["first-k"]) / ms["sampled"]
      parts.append(f"drawing the pixels costs {cost:+.1f} % of the sampled step "
                   "(sampled vs first-k, same token count; goal < 1 %)")
    if "all" in ms:
      parts.append(f"the step with every pixel takes {ms['all'] / ms['sampled']:.2f}x "
                   "the sampled step (more tokens in both Transformer passes)")
    if parts:
      notes.append(f"{name}: " + "; ".join(parts) + ".")
  return notes


def header(probe: dict) -> str:
  # OpenMP's wait policy can change PyTorch's CPU times tenfold on a shared machine.
  omp = os.environ.get("OMP_WAIT_POLICY")
  return (f"{datetime.date.today()} · {platform.node()} · "
          f"{probe.get('device_kind', '?')} x{probe.get('device_count', '?')} · "
          f"jax {jax.__version__} · {os.cpu_count()} CPUs"
          + (f" · OMP_WAIT_POLICY={omp}" if omp else ""))


def parse_args():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--settings", default="tiny,paper")
  parser.add_argument("--variants", default=",".join(VARIANTS),
                      help="JAX step variants to time: " + ", ".join(VARIANTS))
  parser.add_argument("--cnn", default="config,trained",
                      help="config: the CNN as configured (frozen in the demo); "
                      "trained: the CNN in the SGD group")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--steps", type=int, default=5, help="steps per timed repeat")
  parser.add_argument("--paper_batch", type=int, default=0,
                      help="0: 16 on an accelerator, 1 on the CPU")
  parser.add_argument("--force", action="store_true",
                      help="run the paper setting without an accelerator")
  parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results",
                                                    "train_step.md"))
  parser.add_argument("--job", default="", help=argparse.SUPPRESS)  # worker mode
  return parser.parse_args()


def main():
  args = parse_args()
  if args.job:
    answer(args.job, JOBS, "framework")
    return
  probe = spawn(dict(framework="probe"), on_cpu=False)
  jobs, notes = plan(args, probe.get("platform", "cpu") != "cpu")
  rows = []
  for job, on_cpu in jobs:
    print(f"running {job['setting']} {job['framework']} {job['variant']} "
          f"CNN {job['cnn']} ...", flush=True)
    rows.append(spawn(job, on_cpu))
  notes = sampling_notes(rows) + notes + [
      "JAX speed-up: the PyTorch step's time / the JAX sampled step's with the same CNN "
      "(> 1: JAX faster). CNN 'config' is the config's own (frozen in the demo: no "
      "gradient on either side); 'trained' puts it in the SGD group.",
      "Peak memory: the device's peak_bytes_in_use on an accelerator; on the CPU the "
      "worker's peak RSS, which includes the libraries and, for JAX, the compiler."]
  text = "\n\n".join([header(probe), table(rows),
                      "\n".join(f"* {n}" for n in notes)]) + "\n"
  report.publish(text, args.out)


if __name__ == "__main__":
  main()
