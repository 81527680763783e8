"""The train state and its creation, sharded over a mesh from the parameters' logical axes.

The model is split functionally once: `graphdef` (structure), `params`, `batch_stats`
and `other` (dropout RNG streams and the like, which are not checkpointed: dropout is
re-seeded from the run's key and the step, so a resumed run draws the same masks).
"""

from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from pixelbert_jax import sharding


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: nnx.State
  batch_stats: nnx.State
  opt_state: Any
  rng: jax.Array  # raw uint32 key data, so orbax stores it as a plain array
  nonfinite_run: jax.Array  # consecutive non-finite steps ending at `step`
  nonfinite_max_run: jax.Array
  nonfinite_total: jax.Array


def split_model(model: nnx.Module):
  """(graphdef, params, batch_stats, other) of a model."""
  return nnx.split(model, nnx.Param, nnx.BatchStat, ...)


def merge_model(graphdef, params, batch_stats, other) -> nnx.Module:
  return nnx.merge(graphdef, params, batch_stats, other)


def _replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def init_model(model_fn: Callable[[nnx.Rngs], nnx.Module], seed: int, mesh: Mesh,
               rules) -> tuple[Any, nnx.State, nnx.State, nnx.State]:
  """Creates the model directly into its shardings; returns the four split parts."""
  rngs = lambda: nnx.Rngs(params=seed, dropout=seed + 1)
  abstract = nnx.eval_shape(lambda: model_fn(rngs()))
  graphdef, abs_params, abs_stats, abs_other = split_model(abstract)
  out_shardings = (sharding.state_shardings(abs_params, mesh, rules),
                   sharding.state_shardings(abs_stats, mesh, rules),
                   jax.tree.map(lambda _: _replicated(mesh), abs_other))

  create = jax.jit(lambda: split_model(model_fn(rngs()))[1:], out_shardings=out_shardings)
  params, batch_stats, other = create()
  return graphdef, params, batch_stats, other


def create_train_state(params: nnx.State, batch_stats: nnx.State,
                       tx: optax.GradientTransformation, seed: int,
                       mesh: Mesh) -> TrainState:
  """A fresh state at step 0; optimiser state follows the parameters' shardings."""
  opt_state = jax.jit(tx.init)(params)
  replicated = _replicated(mesh)
  opt_state = jax.tree.map(
      lambda x: x if isinstance(x.sharding, NamedSharding) else jax.device_put(x, replicated),
      opt_state)
  scalar = lambda: jax.device_put(jnp.zeros((), jnp.int32), replicated)
  rng = jax.device_put(jax.random.key_data(jax.random.key(seed)), replicated)
  return TrainState(step=scalar(), params=params, batch_stats=batch_stats,
                    opt_state=opt_state, rng=rng, nonfinite_run=scalar(),
                    nonfinite_max_run=scalar(), nonfinite_total=scalar())


def shardings_of(tree) -> Any:
  """The sharding of every array leaf (used as the jitted step's in/out shardings)."""
  return jax.tree.map(lambda x: x.sharding, tree)


def abstract_of(tree) -> Any:
  """ShapeDtypeStructs with shardings: the restore target for orbax."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                      tree)
