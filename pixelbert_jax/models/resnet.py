"""ResNet and ResNeXt backbones in NHWC, laid out like torchvision so weights import 1:1.

Batch norm is frozen by default: at a handful of images per device, batch statistics are
too noisy, so the ImageNet running statistics are used and only the affine part may train.
With `train_bn_stats=True` the statistics follow the module's train/eval mode instead.
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from pixelbert_jax.models import remat as remat_lib
from pixelbert_jax.models.layers import LOGICAL_AXES
from pixelbert_jax.models.variants import BackboneSpec

# torchvision initialises convolutions with Kaiming-normal, fan-out, ReLU gain.
_conv_init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


def conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, *,
         dtype: Any, rngs: nnx.Rngs) -> nnx.Conv:
  """A bias-free convolution with torchvision's explicit symmetric padding."""
  pad = kernel // 2
  return nnx.Conv(
      in_ch, out_ch, (kernel, kernel), strides=stride, padding=((pad, pad), (pad, pad)),
      feature_group_count=groups, use_bias=False, dtype=dtype, param_dtype=jnp.float32,
      kernel_init=_conv_init,
      kernel_metadata={LOGICAL_AXES: (None, None, "conv_in", "conv_out")}, rngs=rngs)


class BatchNorm(nnx.BatchNorm):
  """torchvision's BatchNorm2d (eps 1e-5, momentum 0.1) that may be frozen."""

  def __init__(self, channels: int, *, frozen: bool, dtype: Any, rngs: nnx.Rngs):
    super().__init__(
        channels, epsilon=1e-5, momentum=0.9, dtype=dtype, param_dtype=jnp.float32,
        use_running_average=True, scale_metadata={LOGICAL_AXES: ("conv_out",)},
        bias_metadata={LOGICAL_AXES: ("conv_out",)}, rngs=rngs)
    self.frozen = frozen

  def __call__(self, x: jax.Array) -> jax.Array:
    # A frozen layer ignores train/eval mode; otherwise the mode decides.
    return super().__call__(x, use_running_average=True if self.frozen else None)


class Block(nnx.Module):
  """A basic (two 3x3) or bottleneck (1x1, grouped 3x3, 1x1) residual block."""

  def __init__(self, spec: BackboneSpec, in_ch: int, planes: int, stride: int, *,
               frozen_bn: bool, dtype: Any, rngs: nnx.Rngs):
    out_ch = planes * spec.expansion
    kw = dict(dtype=dtype, rngs=rngs)
    bn = lambda c: BatchNorm(c, frozen=frozen_bn, **kw)
    if spec.block == "bottleneck":
      width = int(planes * spec.width_per_group / 64) * spec.groups
      self.convs = nnx.List([conv(in_ch, width, 1, **kw),
                             conv(width, width, 3, stride, spec.groups, **kw),
                             conv(width, out_ch, 1, **kw)])
      self.norms = nnx.List([bn(width), bn(width), bn(out_ch)])
    else:
      self.convs = nnx.List([conv(in_ch, planes, 3, stride, **kw),
                             conv(planes, planes, 3, **kw)])
      self.norms = nnx.List([bn(planes), bn(planes)])
    self.downsample = nnx.data(None)
    if stride != 1 or in_ch != out_ch:
      self.downsample = nnx.Sequential(conv(in_ch, out_ch, 1, stride, **kw), bn(out_ch))

  def __call__(self, x: jax.Array) -> jax.Array:
    shortcut = x if self.downsample is None else self.downsample(x)
    last = len(self.convs) - 1
    for i, (conv_layer, norm) in enumerate(zip(self.convs, self.norms)):
      x = norm(conv_layer(x))
      if i < last:
        x = jax.nn.relu(x)
    return jax.nn.relu(x + shortcut)


class ResNet(nnx.Module):
  """Stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool) and residual stages; no classifier."""

  def __init__(self, spec: BackboneSpec, *, frozen_bn: bool = True, remat: str = "none",
               dtype: Any = jnp.float32, rngs: nnx.Rngs):
    self.spec = spec
    self.remat = remat_lib.policy_name(remat)  # per residual block (`models/remat.py`)
    kw = dict(frozen_bn=frozen_bn, dtype=dtype, rngs=rngs)
    self.stem_conv = conv(3, spec.stem_width, 7, 2, dtype=dtype, rngs=rngs)
    self.stem_norm = BatchNorm(spec.stem_width, frozen=frozen_bn, dtype=dtype, rngs=rngs)
    stages, in_ch = [], spec.stem_width
    for index, (size, planes) in enumerate(zip(spec.stage_sizes, spec.stage_planes)):
      blocks = []
      for b in range(size):
        stride = 2 if (index > 0 and b == 0) else 1
        blocks.append(Block(spec, in_ch, planes, stride, **kw))
        in_ch = planes * spec.expansion
      stages.append(nnx.Sequential(*blocks))
    self.stages = nnx.List(stages)

  def __call__(self, images: jax.Array) -> jax.Array:
    """Maps (B, H, W, 3) normalised images to (B, ceil(H/s), ceil(W/s), C) features."""
    x = jax.nn.relu(self.stem_norm(self.stem_conv(images)))
    x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    call = remat_lib.wrap(Block.__call__, self.remat)
    for stage in self.stages:
      for block in stage.layers:
        x = call(block, x)
    return x
