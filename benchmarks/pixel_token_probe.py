r"""What do a run's pixel tokens say about the objects? A linear probe per attribute.

The Transformer can only bind a word to what its pixel tokens encode. For fresh scenes
(`inference.known_scenes`), every feature cell that an object covers for at least
`--min_object_share` gets the colour and the shape of the object covering most of it; a
ridge classifier on the tokens (as `Predictor.image_features` returns them, the input of
the Transformer) is fitted on two thirds of the scenes and scored on the rest, against
always naming the commonest class.

  python benchmarks/pixel_token_probe.py --workdir=/tmp/pixelbert_demo [--scenes=300]
"""

import argparse

import numpy as np
from PIL import Image

from pixelbert_jax.inference import known_scenes
from pixelbert_jax.inference import Predictor
from pixelbert_jax.models import pixel_encoder
from pixelbert_jax.weights import synthetic_backbone

ATTRIBUTES = {"colour": synthetic_backbone.COLOUR_CLASSES,
              "shape": synthetic_backbone.SHAPE_CLASSES}


def cell_labels(scene, attribute: str, resized_hw: tuple[int, int], stride: int,
                min_share: float) -> tuple[np.ndarray, np.ndarray]:
  """(valid-grid bool mask of object cells, the majority object class per cell)."""
  classes = ATTRIBUTES[attribute]
  height, width = resized_hw
  label = np.asarray(synthetic_backbone.label_map(scene, attribute, classes).resize(
      (width, height), Image.NEAREST))
  rows, cols = height // stride, width // stride  # whole cells only
  blocks = label[:rows * stride, :cols * stride].reshape(rows, stride, cols, stride)
  shares = np.eye(len(classes))[blocks].mean(axis=(1, 3))
  return 1.0 - shares[..., 0] >= min_share, shares[..., 1:].argmax(-1)


def probe_accuracy(tokens: np.ndarray, labels: np.ndarray, ridge: float = 0.1) -> float:
  """Held-out accuracy of a one-vs-all ridge classifier (the first 2/3 fit it)."""
  split = len(tokens) * 2 // 3
  inputs = np.concatenate([tokens, np.ones((len(tokens), 1))], axis=1)
  targets = np.eye(labels.max() + 1)[labels]
  gram = inputs[:split].T @ inputs[:split] + ridge * np.eye(inputs.shape[1])
  weights = np.linalg.solve(gram, inputs[:split].T @ targets[:split])
  return float(np.mean(np.argmax(inputs[split:] @ weights, 1) == labels[split:]))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True, help="any trained run")
  parser.add_argument("--scenes", type=int, default=300)
  parser.add_argument("--seed", type=int, default=1)
  parser.add_argument("--min_object_share", type=float, default=0.4)
  args = parser.parse_args()
  predictor = Predictor(args.workdir)
  stride = predictor.model_config.pixel_stride
  tokens, labels = {a: [] for a in ATTRIBUTES}, {a: [] for a in ATTRIBUTES}
  for scene, image in known_scenes.fresh_scenes(args.scenes, args.seed):
    feature, = predictor.image_features([image])
    grid = pixel_encoder.grid_size(*feature.image.bucket, stride)
    cells = np.asarray(feature.tokens).reshape(*grid, -1)
    for attribute in ATTRIBUTES:
      chosen, majority = cell_labels(scene, attribute, feature.image.pixels.shape[:2],
                                     stride, args.min_object_share)
      tokens[attribute].append(cells[:chosen.shape[0], :chosen.shape[1]][chosen])
      labels[attribute].append(majority[chosen])
  print(f"`python benchmarks/pixel_token_probe.py --workdir={args.workdir} "
        f"--scenes={args.scenes}`\n\n| attribute | object cells | probe accuracy | "
        "commonest class |\n| --- | --- | --- | --- |")
  for attribute in ATTRIBUTES:
    x, y = np.concatenate(tokens[attribute]), np.concatenate(labels[attribute])
    held_out = y[len(y) * 2 // 3:]
    print(f"| {attribute} | {len(y)} | {probe_accuracy(x, y):.3f} | "
          f"{np.bincount(held_out).max() / len(held_out):.3f} |")


if __name__ == "__main__":
  main()
