"""Initialisation checkpoints: imported weights by component, stored with orbax.

A checkpoint directory holds `params/` (an orbax PyTree of {component: {name: array}})
and `import_info.json` (where the weights came from, and the Transformer's sizes). The
components are `backbone`, `text_embedder`, `encoder`, `pooler` and `mlm_head`.
"""

import json
import os
from typing import Any

import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from flax import nnx

INFO_FILE = "import_info.json"


class WeightMismatchError(ValueError):
  """Weights do not fit the model: missing or unexpected names, or wrong shapes."""


def absolute(path: str | os.PathLike) -> epath.Path:
  """A local path made absolute (orbax refuses relative ones); URLs as they are."""
  return epath.Path(path if "://" in str(path) else os.path.abspath(path))


def save(directory: str | epath.Path, components: dict[str, dict[str, np.ndarray]],
         info: dict[str, Any]) -> epath.Path:
  """Writes the components and the import info; refuses to overwrite."""
  directory = absolute(directory)
  if (directory / "params").exists():
    raise FileExistsError(f"{directory / 'params'} exists; choose a new --out")
  directory.mkdir(parents=True, exist_ok=True)
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(directory / "params", components)
  (directory / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True))
  return directory


def load(directory: str | epath.Path) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
  """Returns (components, info) of an initialisation checkpoint."""
  directory = absolute(directory)
  if not (directory / "params").exists():
    raise FileNotFoundError(f"No initialisation checkpoint at {directory}")
  with ocp.StandardCheckpointer() as checkpointer:
    components = checkpointer.restore(directory / "params")
  info = json.loads((directory / INFO_FILE).read_text())
  return components, info


def flat_variables(module: nnx.Module) -> dict[str, nnx.Variable]:
  """A module's parameters and batch statistics keyed by dotted path."""
  state = nnx.state(module, nnx.Any(nnx.Param, nnx.BatchStat))
  return {".".join(map(str, path)): variable for path, variable in nnx.to_flat_state(state)}


def check_fits(expected: dict[str, tuple[int, ...]], weights: dict[str, np.ndarray],
               component: str) -> None:
  """Raises WeightMismatchError naming every missing, unexpected or mis-shaped key."""
  missing = sorted(set(expected) - set(weights))
  unexpected = sorted(set(weights) - set(expected))
  wrong = sorted(f"{k}: file {tuple(weights[k].shape)} vs model {tuple(expected[k])}"
                 for k in set(expected) & set(weights)
                 if tuple(weights[k].shape) != tuple(expected[k]))
  problems = [f"{label} ({len(keys)}): {', '.join(keys[:20])}"
              for label, keys in (("missing", missing), ("unexpected", unexpected),
                                  ("shape mismatch", wrong)) if keys]
  if problems:
    raise WeightMismatchError(f"Weights for {component!r} do not fit the model: "
                              + "; ".join(problems))


def assign(module: nnx.Module, weights: dict[str, np.ndarray], component: str) -> None:
  """Copies `weights` into `module` in place after checking that they fit exactly."""
  variables = flat_variables(module)
  check_fits({k: v.shape for k, v in variables.items()}, weights, component)
  for name, variable in variables.items():
    variable.set_value(jnp.asarray(weights[name], dtype=variable.dtype))


def component_modules(model: nnx.Module, mlm_head: nnx.Module | None = None
                      ) -> dict[str, nnx.Module]:
  """Where each component of an initialisation checkpoint goes in a PixelBert."""
  modules = {"backbone": model.pixel_encoder.backbone,
             "text_embedder": model.text_embedder, "encoder": model.encoder,
             "pooler": model.pooler}
  if mlm_head is not None:
    modules["mlm_head"] = mlm_head
  return modules


def apply(components: dict[str, dict[str, np.ndarray]],
          modules: dict[str, nnx.Module]) -> list[str]:
  """Loads every component that has a module; returns the names it loaded."""
  loaded = []
  for name, weights in components.items():
    if name in modules:
      assign(modules[name], weights, name)
      loaded.append(name)
  return loaded
