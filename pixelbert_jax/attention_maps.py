"""Where each word looks: text-to-pixel attention maps of a trained checkpoint.

For an image and a text, every layer's attention probabilities from each text token
([CLS] and the word pieces; not [SEP]) to the pixel tokens are averaged over the chosen
heads and layers, renormalised over the pixel tokens that see the image (the
rest of the attention went to text tokens), laid out on the feature grid, and
upsampled to the image. `save_overlays` draws each map over the image (one PNG per
token, plus `grid.png` with all of them).

    maps = attention_maps.compute(Predictor(workdir), "cat.jpg", "a black cat")
    attention_maps.save_overlays(maps, "/tmp/maps")
"""

import dataclasses
import math
import re
from collections.abc import Sequence

import numpy as np
from etils import epath
from matplotlib.figure import Figure
from PIL import Image

from pixelbert_jax.inference import inputs
from pixelbert_jax.inference.predictor import Predictor
from pixelbert_jax.models import pixel_encoder

OVERLAY_ALPHA = 0.5
GRID_COLUMNS = 4


@dataclasses.dataclass
class AttentionMaps:
  """Per-token attention over the image."""
  tokens: list[str]  # [CLS] and the text's word pieces
  grid: np.ndarray  # float32 (N, gh, gw) over the valid feature cells; each sums to 1
  maps: np.ndarray  # float32 (N, H, W), `grid` upsampled to the image as given
  image: np.ndarray  # uint8 (H, W, 3), the image as given (after EXIF rotation)


def choose(count: int, which: str | Sequence[int], what: str = "layers") -> list[int]:
  """Indices of the layers (or heads) to average: "all", "last" or explicit ones
  (negative ones count from the end)."""
  if which == "all":
    return list(range(count))
  if which == "last":
    return [count - 1]
  if isinstance(which, str):
    raise ValueError(f"{what} must be 'all', 'last' or indices, got {which!r}")
  chosen = [int(i) % count for i in which if -count <= int(i) < count]
  if not chosen or len(chosen) != len(which):
    raise ValueError(f"{what} {list(which)} are not all in [0, {count})")
  return chosen


def token_grids(probs: np.ndarray, text_rows: np.ndarray, pixel_mask: np.ndarray,
                valid_hw: tuple[int, int], grid_hw: tuple[int, int]) -> np.ndarray:
  """(L, H, T, P) attention -> (N, vh, vw) maps of the chosen text rows over the
  valid cells, averaged over heads and layers and renormalised to sum to 1."""
  mean = probs.mean(axis=(0, 1))[text_rows].astype(np.float64)  # (N, P)
  mean = np.where(pixel_mask[None], mean, 0.0)
  mean /= np.maximum(mean.sum(axis=1, keepdims=True), np.finfo(np.float64).tiny)
  grids = mean.reshape(len(text_rows), *grid_hw)
  # Cells outside the valid block hold 0 after masking; cropping keeps the image's part.
  return grids[:, :valid_hw[0], :valid_hw[1]].astype(np.float32)


def _resize(values: np.ndarray, height: int, width: int) -> np.ndarray:
  resized = Image.fromarray(values.astype(np.float32)).resize(
      (width, height), resample=Image.Resampling.BILINEAR)
  return np.asarray(resized, np.float32)


def upsample(grid: np.ndarray, stride: int, resized_hw: tuple[int, int],
             original_hw: tuple[int, int]) -> np.ndarray:
  """One (vh, vw) map -> (H, W) of the original image.

  A cell covers `stride` x `stride` pixels of the resized image and the last row and
  column of cells may reach past its edge, so the map is first laid over the cells'
  full extent, cropped to the resized image, then resized to the original size.
  """
  covered = _resize(grid, grid.shape[0] * stride, grid.shape[1] * stride)
  cropped = covered[:resized_hw[0], :resized_hw[1]]
  return np.maximum(_resize(cropped, *original_hw), 0.0)


def compute(predictor: Predictor, image: inputs.ImageInput, text: str,
            layers: str | Sequence[int] = "all",
            heads: str | Sequence[int] = "all") -> AttentionMaps:
  """The attention maps of `text`'s tokens over `image` (see the module docstring),
  averaged over the chosen layers and heads."""
  probs, text_mask, features = predictor.text_to_pixel_attention(image, text)
  probs = probs[choose(probs.shape[0], layers)]
  probs = probs[:, choose(probs.shape[1], heads, "heads")]
  token_ids, _ = predictor.encode_text([text])
  chosen = text_mask & (token_ids[0] != predictor.run.tokenizer.sep_id)
  rows = np.flatnonzero(chosen)
  prepared = features.image
  stride = predictor.model_config.pixel_stride
  grid_hw = pixel_encoder.grid_size(*prepared.bucket, stride)
  valid_hw = pixel_encoder.grid_size(*prepared.pixels.shape[:2], stride)
  grids = token_grids(probs, rows, np.asarray(features.mask), valid_hw, grid_hw)
  maps = np.stack([upsample(g, stride, prepared.pixels.shape[:2],
                            prepared.original.shape[:2]) for g in grids])
  tokens = predictor.encode_text.token_names(token_ids[0], chosen)
  return AttentionMaps(tokens, grids, maps, prepared.original)


def _file_name(index: int, token: str) -> str:
  return f"token_{index:02d}_{re.sub(r'[^0-9A-Za-z]+', '', token) or 'x'}.png"


def _draw(axes, image: np.ndarray, heat: np.ndarray | None, title: str) -> None:
  axes.imshow(image)
  if heat is not None:
    axes.imshow(heat, cmap="jet", alpha=OVERLAY_ALPHA)
  axes.set_title(title, fontsize=9)
  axes.axis("off")


def save_overlays(maps: AttentionMaps, out_dir: str | epath.PathLike) -> list[str]:
  """Writes one overlay PNG per token and `grid.png`; returns their paths."""
  out_dir = epath.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  paths = []
  for index, (token, heat) in enumerate(zip(maps.tokens, maps.maps)):
    figure = Figure(figsize=(4, 4 * heat.shape[0] / heat.shape[1]))
    _draw(figure.add_subplot(), maps.image, heat, token)
    paths.append(str(out_dir / _file_name(index, token)))
    figure.savefig(paths[-1], bbox_inches="tight", dpi=80)
  panels = [("image", None)] + list(zip(maps.tokens, maps.maps))
  rows = math.ceil(len(panels) / GRID_COLUMNS)
  figure = Figure(figsize=(3 * GRID_COLUMNS, 3 * rows))
  for index, (token, heat) in enumerate(panels):
    _draw(figure.add_subplot(rows, GRID_COLUMNS, index + 1), maps.image, heat, token)
  paths.append(str(out_dir / "grid.png"))
  figure.savefig(paths[-1], bbox_inches="tight", dpi=80)
  return paths


def attention_maps(predictor: Predictor, image: inputs.ImageInput, text: str, *,
                   layers: str | Sequence[int] = "all", heads: str | Sequence[int] = "all",
                   out_dir: str | epath.PathLike | None = None) -> AttentionMaps:
  """`compute`, and `save_overlays` into `out_dir` if one is given."""
  maps = compute(predictor, image, text, layers, heads)
  if out_dir is not None:
    save_overlays(maps, out_dir)
  return maps
