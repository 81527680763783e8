"""The train state and its creation, sharded over a mesh from the parameters' logical axes.

The model is split functionally once: `graphdef` (structure), `params`, `batch_stats`
and `other` (dropout RNG streams and the like, which are not checkpointed: dropout is
re-seeded from the run's key and the step, so a resumed run draws the same masks).
"""

from collections.abc import Callable
import dataclasses
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


@dataclasses.dataclass
class ModelPlan:
  """A model's parts before any parameter exists: `params` and `batch_stats` are
  ShapeDtypeStructs carrying their shardings (a restore target); `create()` makes them."""
  graphdef: Any
  params: nnx.State
  batch_stats: nnx.State
  other: nnx.State  # dropout streams and the like: small, made at once
  create: Callable[[], tuple[nnx.State, nnx.State]]


def _with_shardings(shardings, abstract):
  return jax.tree.map(
      lambda s, v: v.replace(jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=s)),
      shardings, abstract)


def plan_model(model_fn: Callable[[nnx.Rngs], nnx.Module], seed: int, mesh: Mesh,
               rules) -> ModelPlan:
  """The model's structure and shardings without materialising its parameters, so that
  a resumed run holds one copy of them, the restored one."""
  rngs = lambda: nnx.Rngs(params=seed, dropout=seed + 1)
  graphdef, abs_params, abs_stats, abs_other = split_model(
      nnx.eval_shape(lambda: model_fn(rngs())))
  shardings = (sharding.state_shardings(abs_params, mesh, rules),
               sharding.state_shardings(abs_stats, mesh, rules))
  # XLA drops the parameters' initialisers from this one: only `other` is computed.
  other = jax.jit(lambda: split_model(model_fn(rngs()))[3],
                  out_shardings=jax.tree.map(lambda _: _replicated(mesh), abs_other))()
  create = jax.jit(lambda: split_model(model_fn(rngs()))[1:3], out_shardings=shardings)
  return ModelPlan(graphdef, _with_shardings(shardings[0], abs_params),
                   _with_shardings(shardings[1], abs_stats), other, create)


def init_model(model_fn: Callable[[nnx.Rngs], nnx.Module], seed: int, mesh: Mesh,
               rules) -> tuple[Any, nnx.State, nnx.State, nnx.State]:
  """Creates the model directly into its shardings; returns the four split parts."""
  plan = plan_model(model_fn, seed, mesh, rules)
  params, batch_stats = plan.create()
  return plan.graphdef, params, batch_stats, plan.other


def opt_state_shardings(abstract_opt_state, params, mesh: Mesh):
  """Each optimiser-state leaf takes the sharding of the parameter it mirrors (its
  path ends with that parameter's path, its shape is the same); counts and the like
  are replicated. Left to XLA, the moments of `jit(tx.init)` come out replicated:
  `zeros_like` does not depend on the sharded parameter."""
  by_path = {jax.tree_util.keystr(path): leaf
             for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}

  def sharding_of(path, leaf):
    for start in range(len(path)):  # the longest matching parameter path first
      param = by_path.get(jax.tree_util.keystr(path[start:]))
      if param is not None and param.shape == leaf.shape:
        return param.sharding
    return _replicated(mesh)

  return jax.tree_util.tree_map_with_path(sharding_of, abstract_opt_state)


def _scalar_fields(seed: int):
  """The state's fields besides parameters and optimiser state, each its own array
  (the step donates its state: two fields must never share a buffer)."""
  zero = lambda: jnp.zeros((), jnp.int32)
  return dict(step=zero(), rng=jax.random.key_data(jax.random.key(seed)),
              nonfinite_run=zero(), nonfinite_max_run=zero(), nonfinite_total=zero())


def create_train_state(params: nnx.State, batch_stats: nnx.State,
                       tx: optax.GradientTransformation, seed: int,
                       mesh: Mesh) -> TrainState:
  """A fresh state at step 0; optimiser state follows the parameters' shardings."""
  shardings = opt_state_shardings(jax.eval_shape(tx.init, params), params, mesh)
  opt_state = jax.jit(tx.init, out_shardings=shardings)(params)
  replicated = _replicated(mesh)
  fields = {k: jax.device_put(v, replicated) for k, v in _scalar_fields(seed).items()}
  return TrainState(params=params, batch_stats=batch_stats, opt_state=opt_state, **fields)


def abstract_train_state(plan: ModelPlan, tx: optax.GradientTransformation, seed: int,
                         mesh: Mesh) -> TrainState:
  """What `create_train_state` would make from `plan`, as ShapeDtypeStructs with
  shardings (a restore target), without making it."""
  abstract_opt = jax.eval_shape(tx.init, plan.params)
  opt_state = jax.tree.map(
      lambda leaf, s: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=s),
      abstract_opt, opt_state_shardings(abstract_opt, plan.params, mesh))
  replicated = _replicated(mesh)
  fields = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=replicated)
            for k, v in jax.eval_shape(lambda: _scalar_fields(seed)).items()}
  return TrainState(params=plan.params, batch_stats=plan.batch_stats, opt_state=opt_state,
                    **fields)


def shardings_of(tree) -> Any:
  """The sharding of every array leaf (used as the jitted step's in/out shardings)."""
  return jax.tree.map(lambda x: x.sharding, tree)
