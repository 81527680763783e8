r"""Pixel-BERT forward and forward+backward speed: JAX vs PyTorch eager, side by side.

  python benchmarks/model_forward.py [--settings=tiny,paper] [--repeats=5]

"paper" is Pixel-BERT-R50 at 800 x 1333 with 100 sampled pixels and 40 text tokens;
"tiny" is the test / demo model at 128 x 160. The PyTorch side is torchvision's
ResNet-50 plus Hugging Face's BertModel wired the same way, in eager mode. Both run in
float32 with frozen batch norm and no dropout; the table reports medians over
`--repeats` timed calls after one warm-up, and the analytic forward FLOPs per pair.
"""

import argparse
import dataclasses
import datetime
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pixelbert_jax import flops  # noqa: E402
from pixelbert_jax.models import variants  # noqa: E402
from pixelbert_jax.models.pixel_sampling import sample_pixels  # noqa: E402
from pixelbert_jax.models.pixelbert import PixelBert  # noqa: E402
import report  # noqa: E402  (benchmarks/report.py)


@dataclasses.dataclass(frozen=True)
class Setting:
  preset: str
  batch: int
  height: int
  width: int
  text_len: int
  num_pixels: int | None


SETTINGS = {
    "tiny": Setting("tiny", 8, 128, 160, 16, None),
    "paper": Setting("R50", 1, 800, 1333, 40, 100),
}


def _inputs(s: Setting, vocab: int):
  rng = np.random.default_rng(0)
  images = rng.normal(size=(s.batch, s.height, s.width, 3)).astype(np.float32)
  ids = rng.integers(5, vocab, size=(s.batch, s.text_len)).astype(np.int32)
  return images, ids


def _time(fn, repeats: int) -> float:
  fn()  # warm-up (and compilation for JAX)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def jax_steps(s: Setting):
  """Jitted forward and forward+backward (gradients of every parameter) for JAX."""
  config = variants.model_config(s.preset, dropout=0.0)
  model = PixelBert(config, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  images, ids = _inputs(s, config.transformer.vocab_size)
  sizes = jnp.tile(jnp.array([[s.height, s.width]]), (s.batch, 1))
  text_mask = jnp.ones(ids.shape, bool)

  def loss(params, key):
    m = nnx.merge(graphdef, params, rest)
    tokens, mask = m.encode_pixels(images, sizes)
    tokens, mask, _ = sample_pixels(key, tokens, mask, s.num_pixels)
    hidden, aux = m(ids, text_mask, tokens, mask)
    return jnp.mean(hidden.astype(jnp.float32) ** 2) + jnp.mean(aux["pooled"])

  forward = jax.jit(loss)
  backward = jax.jit(jax.grad(loss))
  key = jax.random.key(0)
  return (lambda: forward(params, key).block_until_ready(),
          lambda: jax.block_until_ready(backward(params, key)))


def _torch_backbone(spec: variants.BackboneSpec):
  """torchvision's ResNet body for `spec` (its own class where sizes are standard)."""
  import torch  # pylint: disable=g-import-not-at-top
  from torchvision.models import resnet  # pylint: disable=g-import-not-at-top

  if spec == variants.BACKBONES["resnet50"]:
    return torch.nn.Sequential(*list(resnet.resnet50().children())[:-2])
  if spec.block != "basic" or spec.groups != 1:
    raise ValueError(f"No PyTorch twin for {spec}")
  layers = [torch.nn.Conv2d(3, spec.stem_width, 7, 2, 3, bias=False),
            torch.nn.BatchNorm2d(spec.stem_width), torch.nn.ReLU(),
            torch.nn.MaxPool2d(3, 2, 1)]
  in_ch = spec.stem_width
  for index, (size, planes) in enumerate(zip(spec.stage_sizes, spec.stage_planes)):
    for b in range(size):
      stride = 2 if (index > 0 and b == 0) else 1
      downsample = None
      if stride != 1 or in_ch != planes:
        downsample = torch.nn.Sequential(torch.nn.Conv2d(in_ch, planes, 1, stride, bias=False),
                                         torch.nn.BatchNorm2d(planes))
      layers.append(resnet.BasicBlock(in_ch, planes, stride, downsample))
      in_ch = planes
  return torch.nn.Sequential(*layers)


def torch_steps(s: Setting):
  """The same computation in PyTorch eager: torchvision ResNet + HF BertModel."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(os.cpu_count())
  config = variants.model_config(s.preset)
  spec = config.transformer
  cnn = _torch_backbone(config.backbone)
  bert = transformers.BertModel(transformers.BertConfig(
      vocab_size=spec.vocab_size, hidden_size=spec.hidden, num_hidden_layers=spec.num_layers,
      num_attention_heads=spec.heads, intermediate_size=spec.mlp,
      max_position_embeddings=max(spec.max_positions, 512),
      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
  projection = torch.nn.Linear(config.backbone.out_channels, spec.hidden)
  norm = torch.nn.LayerNorm(spec.hidden, eps=spec.layer_norm_eps)
  semantic = torch.nn.Parameter(torch.zeros(spec.hidden))
  for module in (cnn, bert):
    module.eval()
  images, ids = _inputs(s, spec.vocab_size)
  images = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
  ids = torch.from_numpy(ids.astype(np.int64))

  def loss():
    features = cnn(images)
    if config.pixel_pool:
      features = torch.nn.functional.max_pool2d(features, 2, ceil_mode=True)
    pixels = norm(projection(features.flatten(2).transpose(1, 2)) + semantic)
    if s.num_pixels:
      keep = torch.rand(pixels.shape[:2]).topk(s.num_pixels, dim=1).indices
      pixels = torch.gather(pixels, 1, keep[..., None].expand(-1, -1, pixels.shape[-1]))
    embeds = torch.cat([bert.embeddings.word_embeddings(ids), pixels], dim=1)
    mask = torch.ones(embeds.shape[:2], dtype=torch.long)
    out = bert(inputs_embeds=embeds, attention_mask=mask)
    return (out.last_hidden_state ** 2).mean() + out.pooler_output.mean()

  def forward():
    with torch.no_grad():
      loss()

  def backward():
    for module in (cnn, bert, projection, norm):
      module.zero_grad(set_to_none=True)
    loss().backward()

  return forward, backward


def run(names: list[str], repeats: int) -> list[dict]:
  rows = []
  for name in names:
    s = SETTINGS[name]
    config = variants.model_config(s.preset)
    count = flops.pair_flops(config, s.height, s.width, s.text_len, s.num_pixels)
    steps = {"jax": jax_steps(s), "torch": torch_steps(s)}
    for framework, (forward, backward) in steps.items():
      for mode, fn in (("fwd", forward), ("fwd+bwd", backward)):
        seconds = _time(fn, repeats)
        rows.append(dict(setting=name, framework=framework, mode=mode, batch=s.batch,
                         ms=1000 * seconds, pairs_per_s=s.batch / seconds,
                         gflops=count.total / 1e9, gmacs=count.macs / 1e9))
  return rows


def table(rows: list[dict]) -> str:
  lines = ["| setting | framework | mode | batch | ms / step (median) | pairs/s | "
           "JAX speed-up | fwd GFLOPs/pair (GMACs) |", "|---|---|---|---|---|---|---|---|"]
  jax_ms = {(r["setting"], r["mode"]): r["ms"] for r in rows if r["framework"] == "jax"}
  for r in rows:
    ratio = r["ms"] / jax_ms[(r["setting"], r["mode"])]
    lines.append(f"| {r['setting']} | {r['framework']} | {r['mode']} | {r['batch']} | "
                 f"{r['ms']:.1f} | {r['pairs_per_s']:.2f} | "
                 f"{'-' if r['framework'] == 'jax' else f'{ratio:.2f}x'} | "
                 f"{r['gflops']:.3g} ({r['gmacs']:.3g}) |")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--settings", default="tiny,paper")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                    "model_forward.md"))
  args = parser.parse_args()
  rows = run(args.settings.split(","), args.repeats)
  header = (f"{datetime.date.today()} · {platform.node()} · {jax.devices()[0].device_kind} "
            f"x{jax.device_count()} · jax {jax.__version__} · {os.cpu_count()} CPUs")
  text = f"{header}\n\n{table(rows)}\n"
  report.publish(text, args.out)


if __name__ == "__main__":
  main()
