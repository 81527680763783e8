"""Fine-tuning from another run: read its checkpointed weights, copy named sub-trees.

`config.init_from` names a pre-training (or any earlier) run: its workdir (the latest
checkpoint under `WORKDIR/checkpoints` is used), its `checkpoints` folder, or one step
folder (`.../checkpoints/12`). Only the parameters and batch statistics of that run's
`state` item are read, as plain numpy arrays on the host, whatever the device layout
that wrote them; the optimiser state, step and data iterator are left behind, so the
fine-tuning run starts its own schedule at step 0.

A task says which of its modules take which sub-tree of the old model, e.g.
`{"pixelbert": model.pixelbert}` for the body; everything else (the task heads) keeps
its fresh initialisation. A sub-tree must fit its module exactly: missing or unexpected
names and wrong shapes are an error that names them.
"""

from collections.abc import Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from flax import nnx

from pixelbert_jax.weights import init_checkpoint

STATE_ITEM = "state"
# The parts of a train state that hold weights (see `train_state.TrainState`).
WEIGHT_FIELDS = ("params", "batch_stats")


def finished_steps(directory: epath.Path) -> list[int]:
  """The finalised checkpoint steps in an orbax checkpoints folder (orbax knows how a
  save in progress looks, locally and on GCS)."""
  return sorted(step for step in ocp.utils.checkpoint_steps(directory)
                if (directory / str(step) / STATE_ITEM).exists())


def state_dir(path: str | epath.PathLike) -> epath.Path:
  """The `state` item of a workdir's latest checkpoint, or of the given step folder."""
  path = init_checkpoint.absolute(path)
  if (path / STATE_ITEM).exists():
    return path / STATE_ITEM
  directory = path / "checkpoints" if (path / "checkpoints").exists() else path
  steps = finished_steps(directory) if directory.is_dir() else []
  if not steps:
    raise FileNotFoundError(
        f"init_from={path}: no checkpoint found; expected a workdir with "
        "checkpoints/<step>/state, a checkpoints folder, or a step folder")
  return directory / str(steps[-1]) / STATE_ITEM


def read_weights(path: str | epath.PathLike) -> dict:
  """{"params": tree, "batch_stats": tree} of a checkpoint, as numpy on this host."""
  directory = state_dir(path)
  # The handler itself, not a Checkpointer: a training checkpoint's `state` item has no
  # checkpoint-level metadata file of its own (the step folder has), and a Checkpointer
  # warns that it is missing.
  handler = ocp.PyTreeCheckpointHandler()
  try:
    stored = handler.metadata(directory).tree
    wanted = {name: stored[name] for name in WEIGHT_FIELDS if name in stored}
    # Restoring as numpy reads every array whole, independent of the writer's mesh.
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), wanted)
    weights = handler.restore(directory, args=ocp.args.PyTreeRestore(
        item=wanted, restore_args=restore_args, partial_restore=True))
  finally:
    handler.close()
  logging.info("Read weights of %s", directory)
  return weights


def _flat(tree) -> dict[str, np.ndarray]:
  """{dotted path: array}, without the last `value` level that NNX variables add (a
  module may itself be called `value`, like attention's value projection)."""
  flat = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    names = [str(getattr(k, "key", getattr(k, "idx", k))) for k in path]
    flat[".".join(names[:-1] if names[-1] == "value" else names)] = leaf
  return flat


def subtree(weights: Mapping, name: str) -> dict[str, np.ndarray]:
  """One top-level sub-tree's parameters and batch statistics, keyed like
  `init_checkpoint.flat_variables` of the module that takes them."""
  found = {}
  for field in WEIGHT_FIELDS:
    found.update(_flat(weights.get(field, {}).get(name, {})))
  if not found:
    held = sorted({k for field in WEIGHT_FIELDS for k in weights.get(field, {})})
    raise init_checkpoint.WeightMismatchError(
        f"The checkpoint has no {name!r} weights; its top-level modules are {held}")
  return found


def assign_sharded(module: nnx.Module, weights: Mapping[str, np.ndarray],
                   component: str) -> None:
  """Copies `weights` into `module` after checking that they fit exactly, placing each
  array with the sharding of the value it replaces.

  The trainer's state holds the same variables, so the new values must keep the
  state's sharding: a plain assignment would leave them on one device.
  """
  variables = init_checkpoint.flat_variables(module)
  init_checkpoint.check_fits({k: v.shape for k, v in variables.items()}, weights,
                             component)
  for name, variable in variables.items():
    value = np.asarray(weights[name], dtype=variable.dtype)
    variable.set_value(jax.device_put(value, variable.get_value().sharding))


def load(path: str | epath.PathLike, modules: Mapping[str, nnx.Module]) -> None:
  """Copies each named sub-tree of the checkpoint at `path` into its module, in place."""
  weights = read_weights(path)
  source = state_dir(path).parent
  for name, module in modules.items():
    assign_sharded(module, subtree(weights, name), f"{name} from {source}")
    logging.info("Initialised %r from %s", name, source)
