"""The pixel tower: CNN features -> optional 2x2 max-pool -> projection -> + s_v.

Images arrive padded into a few static bucket shapes, as uint8 straight from the input
pipeline (normalised here, on the device) or already normalised floats. Each image's
true size becomes a validity mask on the feature grid so padding never reaches
attention or pixel sampling.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from pixelbert_jax.models import layers
from pixelbert_jax.models.resnet import ResNet
from pixelbert_jax.models.variants import ModelConfig


def grid_size(height: int, width: int, stride: int) -> tuple[int, int]:
  """Feature-grid size of a (height, width) input: every stride-2 op rounds up."""
  return -(-height // stride), -(-width // stride)


def valid_grid_mask(image_sizes: jax.Array, grid_hw: tuple[int, int],
                    stride: int) -> jax.Array:
  """(B, 2) true (height, width) -> (B, gh * gw) bool mask of cells that see the image."""
  valid_h = (image_sizes[:, 0] + stride - 1) // stride
  valid_w = (image_sizes[:, 1] + stride - 1) // stride
  rows = jnp.arange(grid_hw[0])[None, :] < valid_h[:, None]
  cols = jnp.arange(grid_hw[1])[None, :] < valid_w[:, None]
  return (rows[:, :, None] & cols[:, None, :]).reshape(image_sizes.shape[0], -1)


def normalize_images(images: jax.Array, image_sizes: jax.Array, mean, std,
                     dtype: jnp.dtype) -> jax.Array:
  """uint8 (..., H, W, 3) -> (x / 255 - mean) / std in `dtype`, padding set to 0.

  Zero is the mean colour after normalisation, which is what padding was before
  normalisation moved onto the device; `image_sizes` (..., 2) holds true sizes.
  """
  mean = jnp.asarray(mean, jnp.float32)
  std = jnp.asarray(std, jnp.float32)
  normalised = images.astype(jnp.float32) * (1.0 / (255.0 * std)) - mean / std
  height, width = images.shape[-3:-1]
  rows = jnp.arange(height) < image_sizes[..., 0:1]
  cols = jnp.arange(width) < image_sizes[..., 1:2]
  inside = rows[..., :, None] & cols[..., None, :]
  return jnp.where(inside[..., None], normalised, 0.0).astype(dtype)


class PixelEncoder(nnx.Module):
  """Turns padded images into pixel tokens of the Transformer's width, with a mask."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    dtype = layers.compute_dtype(config.dtype)
    hidden = config.transformer.hidden
    self.pool = config.pixel_pool
    self.stride = config.pixel_stride
    self.dtype = dtype
    self.image_mean, self.image_std = config.image_mean, config.image_std
    self.backbone = ResNet(config.backbone, frozen_bn=not config.train_bn_stats,
                           remat=config.remat, dtype=dtype, rngs=rngs)
    init_std = config.transformer.init_std
    self.projection = layers.dense(config.backbone.out_channels, hidden,
                                   ("conv_out", "embed"), dtype=dtype, rngs=rngs,
                                   init_std=init_std)
    # s_v: one learned "visual semantic embedding" shared by every pixel (the paper).
    init = layers.normal_init(init_std)
    self.semantic = layers.param(rngs, init, (hidden,), ("embed",))
    self.row_embedding = self.col_embedding = nnx.data(None)
    if config.pixel_pos_emb:
      self.row_embedding = layers.param(rngs, init, (config.max_grid[0], hidden),
                                        (None, "embed"))
      self.col_embedding = layers.param(rngs, init, (config.max_grid[1], hidden),
                                        (None, "embed"))
    self.norm = nnx.data(None)
    if config.pixel_layer_norm:
      self.norm = layers.layer_norm(hidden, "embed", epsilon=config.transformer.layer_norm_eps,
                                    dtype=dtype, rngs=rngs)
    self.dropout = nnx.Dropout(config.dropout, rngs=rngs)

  def __call__(self, images: jax.Array,
               image_sizes: jax.Array) -> tuple[jax.Array, jax.Array]:
    """images: (B, H, W, 3) uint8 or normalised floats; image_sizes: (B, 2) true sizes.

    Returns pixel tokens (B, gh * gw, hidden) and their validity mask (B, gh * gw).
    """
    if images.dtype == jnp.uint8:
      images = normalize_images(images, image_sizes, self.image_mean, self.image_std,
                                self.dtype)
    features = self.backbone(images)
    if self.pool:
      h, w = features.shape[1:3]
      features = nnx.max_pool(features, (2, 2), strides=(2, 2),
                              padding=((0, h % 2), (0, w % 2)))
    grid_hw = features.shape[1:3]
    tokens = self.projection(features) + self.semantic[...].astype(features.dtype)
    if self.row_embedding is not None:
      tokens = tokens + self._position_embeddings(grid_hw).astype(tokens.dtype)
    tokens = tokens.reshape(tokens.shape[0], -1, tokens.shape[-1])
    if self.norm is not None:
      tokens = self.norm(tokens)
    mask = valid_grid_mask(image_sizes, grid_hw, self.stride)
    return self.dropout(tokens), mask

  def _position_embeddings(self, grid_hw: tuple[int, int]) -> jax.Array:
    max_h, max_w = self.row_embedding.shape[0], self.col_embedding.shape[0]
    if grid_hw[0] > max_h or grid_hw[1] > max_w:
      raise ValueError(f"Feature grid {grid_hw} exceeds max_grid {(max_h, max_w)}; "
                       "raise model.max_grid or lower the image size.")
    rows = self.row_embedding[:grid_hw[0], None, :]
    cols = self.col_embedding[None, :grid_hw[1], :]
    return rows + cols
