"""Reads PyTorch-format weight files into numpy without executing code.

`.safetensors` needs no torch; `.pth` / `.bin` go through `torch.load(weights_only=True)`,
which refuses pickled code.
"""

import collections
from typing import Any

import numpy as np
from etils import epath


def read_state_dict(path: str | epath.Path) -> dict[str, np.ndarray]:
  """Returns {name: float32 / int array} from a `.safetensors`, `.pth`, `.pt` or `.bin` file."""
  path = epath.Path(path)
  if not path.exists():
    raise FileNotFoundError(f"Weight file not found: {path}")
  if path.suffix == ".safetensors":
    return _read_safetensors(path)
  if path.suffix in (".pth", ".pt", ".bin"):
    return _read_torch(path)
  raise ValueError(f"Unsupported weight file {path}: expected .safetensors, .pth, .pt or .bin")


def _read_safetensors(path: epath.Path) -> dict[str, np.ndarray]:
  import safetensors.numpy  # pylint: disable=g-import-not-at-top

  return dict(safetensors.numpy.load(path.read_bytes()))


def _read_torch(path: epath.Path) -> dict[str, np.ndarray]:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(f"Reading {path} needs torch (pip install torch); "
                      ".safetensors files do not.") from e
  with path.open("rb") as f:
    loaded = torch.load(f, map_location="cpu", weights_only=True)
  return {name: _to_numpy(tensor) for name, tensor in _unwrap(loaded).items()}


def _unwrap(loaded: Any) -> dict:
  """Training checkpoints often nest the weights under "state_dict" or "model"."""
  for key in ("state_dict", "model"):
    if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
      return loaded[key]
  if not isinstance(loaded, (dict, collections.OrderedDict)):
    raise ValueError(f"Expected a state dict, got {type(loaded).__name__}")
  return loaded


def _to_numpy(tensor) -> np.ndarray:
  if tensor.is_floating_point():
    tensor = tensor.float()  # bfloat16 / float16 have no lossless numpy twin in torch
  return tensor.detach().cpu().numpy()
