"""Analytic FLOP counts of Pixel-BERT from its layer shapes (for MFU and the paper's table).

One multiply-add is 2 FLOPs. Convolutions, projections, attention (bidirectional, so the
full L x L score matrix counts) and the MLM decoder are counted; element-wise work
(norms, activations, softmax) is ignored, as MFU conventionally does. The paper's table
(via ViLT) counts multiply-adds as "FLOPs", so `macs` is reported too.
"""

import dataclasses

from pixelbert_jax.models.pixel_encoder import grid_size
from pixelbert_jax.models.variants import BackboneSpec, ModelConfig, TransformerSpec


@dataclasses.dataclass(frozen=True)
class FlopCount:
  backbone: float
  projection: float
  transformer: float

  @property
  def total(self) -> float:
    return self.backbone + self.projection + self.transformer

  @property
  def macs(self) -> float:
    return self.total / 2


def _conv(h: int, w: int, cin: int, cout: int, k: int, stride: int, groups: int = 1):
  """(FLOPs, output h, output w) of a padded k x k convolution."""
  h, w = -(-h // stride), -(-w // stride)
  return 2 * h * w * k * k * (cin // groups) * cout, h, w


def backbone_flops(spec: BackboneSpec, height: int, width: int) -> float:
  """FLOPs of the ResNet on one (height, width) image."""
  total, h, w = _conv(height, width, 3, spec.stem_width, 7, 2)
  h, w = -(-h // 2), -(-w // 2)  # max-pool
  in_ch = spec.stem_width
  for index, (size, planes) in enumerate(zip(spec.stage_sizes, spec.stage_planes)):
    for b in range(size):
      stride = 2 if (index > 0 and b == 0) else 1
      flops, h, w, in_ch = _block_flops(spec, h, w, in_ch, planes, stride)
      total += flops
  return total


def _block_flops(spec: BackboneSpec, h: int, w: int, in_ch: int, planes: int, stride: int):
  out_ch = planes * spec.expansion
  if spec.block == "bottleneck":
    width = int(planes * spec.width_per_group / 64) * spec.groups
    f1, _, _ = _conv(h, w, in_ch, width, 1, 1)
    f2, h2, w2 = _conv(h, w, width, width, 3, stride, spec.groups)
    f3, _, _ = _conv(h2, w2, width, out_ch, 1, 1)
    flops = f1 + f2 + f3
  else:
    f1, h2, w2 = _conv(h, w, in_ch, planes, 3, stride)
    f2, _, _ = _conv(h2, w2, planes, planes, 3, 1)
    flops = f1 + f2
  if stride != 1 or in_ch != out_ch:
    flops += _conv(h, w, in_ch, out_ch, 1, stride)[0]
  return flops, h2, w2, out_ch


def transformer_flops(spec: TransformerSpec, seq_len: int, mlm_tokens: int = 0) -> float:
  """FLOPs of the encoder over `seq_len` tokens, plus MLM decoding of `mlm_tokens`."""
  d, mlp = spec.hidden, spec.mlp
  per_token = 2 * (4 * d * d + 2 * d * mlp)
  attention = 2 * 2 * seq_len * seq_len * d
  mlm = mlm_tokens * 2 * (d * d + d * spec.vocab_size)
  return spec.num_layers * (seq_len * per_token + attention) + mlm


def pair_flops(config: ModelConfig, height: int, width: int, text_len: int,
               num_pixels: int | None = None, mlm_tokens: int = 0) -> FlopCount:
  """Forward FLOPs for one image-text pair.

  `num_pixels` is the number of pixel tokens the Transformer sees (the sampled count in
  pre-training); by default the whole feature grid.
  """
  gh, gw = grid_size(height, width, config.pixel_stride)
  pixels = gh * gw if num_pixels is None else num_pixels
  projection = 2 * gh * gw * config.backbone.out_channels * config.transformer.hidden
  return FlopCount(
      backbone=backbone_flops(config.backbone, height, width), projection=projection,
      transformer=transformer_flops(config.transformer, text_len + pixels, mlm_tokens))
