"""One optimiser update as a pure, jit-compiled function of (state, batch).

A task supplies `loss_fn(model, batch, key) -> {name: sum}` and `counts_fn(batch) ->
{name: count}`; every reported metric is sum / count over the global batch, and the
objective is the weighted sum of the named loss terms. Counts are taken from the whole
batch before it is split into micro-batches, so accumulating k micro-batches gives the
gradient of the k-times batch. A step whose loss or gradients are not finite is not
applied; it is counted in the state.

Parameters of a frozen optimiser group (`frozen_mask`) are split from the trainable
ones before `value_and_grad` and enter the model through `stop_gradient`: XLA computes
no gradient for them (for a frozen CNN, no convolution backward pass), and their
gradients are zeros, so they change no other parameter's update through the global
norm that clipping divides by.
"""

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from pixelbert_jax import optim
from pixelbert_jax.train_state import TrainState, merge_model

LossFn = Callable[[nnx.Module, dict, jax.Array], dict]
CountsFn = Callable[[dict], dict]
# Each row's position in the global batch, added by the step and kept through the
# micro-batch split (rows i::k), so per-example random draws do not depend on k.
# (`example_index`, from the pipeline, is the example's position in its split.)
BATCH_POSITION_KEY = "batch_position"


def with_batch_positions(batch: dict) -> dict:
  """The batch with `BATCH_POSITION_KEY`: 0 .. B-1 over the global batch."""
  size = jax.tree.leaves(batch)[0].shape[0]
  return {**batch, BATCH_POSITION_KEY: jnp.arange(size)}


def step_key(state: TrainState) -> jax.Array:
  """The step's key: a pure function of the run's seed and the step number."""
  return jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)


def _split_micro(batch: dict, micro_batches: int) -> dict:
  """(B, ...) -> (k, B/k, ...) taking rows i::k, so each micro-batch stays sharded."""

  def split(x):
    x = x.reshape((x.shape[0] // micro_batches, micro_batches) + x.shape[1:])
    return jnp.swapaxes(x, 0, 1)

  return jax.tree.map(split, batch)


def _fresh(tree):
  return jax.tree.map(lambda x: x, tree)


def _objective(sums: Mapping, counts: Mapping, weights: Mapping) -> jax.Array:
  return sum(w * sums[name] / jnp.maximum(counts[name], 1) for name, w in weights.items())


def eval_model(graphdef, other, state: TrainState) -> nnx.Module:
  """The model of a state in evaluation mode (no dropout), for predict functions."""
  model = merge_model(graphdef, state.params, state.batch_stats, _fresh(other))
  model.eval()
  return model


def split_frozen(tree, frozen):
  """(trainable, frozen) parts of `tree` by the mask `frozen`; each part holds None
  where the other holds the leaf."""
  trainable_part = jax.tree.map(lambda x, m: None if m else x, tree, frozen)
  frozen_part = jax.tree.map(lambda x, m: x if m else None, tree, frozen)
  return trainable_part, frozen_part


def join_frozen(trainable, frozen):
  """The inverse of `split_frozen`."""
  return jax.tree.map(lambda t, f: f if t is None else t, trainable, frozen,
                      is_leaf=lambda x: x is None)


def _select(ok, new, old):
  return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)


def make_train_step(graphdef, other, loss_fn: LossFn, counts_fn: CountsFn,
                    weights: Mapping[str, float], tx: optax.GradientTransformation,
                    schedules: Mapping, micro_batches: int = 1, frozen_mask=None):
  """Returns `train_step(state, batch) -> (state, measurements)`, not yet jitted.

  `frozen_mask` (`optim.frozen_mask`; None: nothing frozen) marks the parameters that
  are not differentiated.
  """

  def micro_objective(trainable, frozen, batch_stats, micro, key, dropout_key, counts):
    params = join_frozen(trainable, jax.lax.stop_gradient(frozen))
    # Fresh Variable objects, created in this trace, so that dropout and batch norm may
    # update them (NNX refuses to mutate variables from an outer trace).
    model = merge_model(graphdef, params, _fresh(batch_stats), _fresh(other))
    model.train()
    nnx.reseed(model, dropout=dropout_key)
    sums = loss_fn(model, micro, key)
    new_stats = nnx.state(model, nnx.BatchStat)
    return _objective(sums, counts, weights), (sums, new_stats)

  grad_fn = jax.value_and_grad(micro_objective, has_aux=True)

  def gradients(state: TrainState, batch: dict, key: jax.Array, counts):
    """(objective, sums, batch stats, gradients); a frozen parameter's are zeros."""
    mask = (jax.tree.map(lambda _: False, state.params) if frozen_mask is None
            else frozen_mask)
    trainable, frozen = split_frozen(state.params, mask)
    if micro_batches == 1:
      (objective, (sums, stats)), grads = grad_fn(
          trainable, frozen, state.batch_stats, batch, key, jax.random.fold_in(key, 1),
          counts)
      return objective, sums, stats, join_frozen(grads, jax.tree.map(jnp.zeros_like,
                                                                      frozen))

    def accumulate(carry, xs):
      objective, sums, stats, grads = carry
      micro, index = xs
      (o, (s, stats)), g = grad_fn(trainable, frozen, stats, micro, key,
                                   jax.random.fold_in(key, index + 1), counts)
      add = lambda a, b: jax.tree.map(jnp.add, a, b)
      return (objective + o, add(sums, s), stats, add(grads, g)), None

    micro = _split_micro(batch, micro_batches)
    first = jax.tree.map(lambda x: x[0], micro)
    zero_sums = jax.eval_shape(lambda: micro_objective(
        trainable, frozen, state.batch_stats, first, key, key, counts)[1][0])
    init = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, zero_sums),
            state.batch_stats, jax.tree.map(jnp.zeros_like, trainable))
    (objective, sums, stats, grads), _ = jax.lax.scan(
        accumulate, init, (micro, jnp.arange(micro_batches)))
    return objective, sums, stats, join_frozen(grads, jax.tree.map(jnp.zeros_like, frozen))

  def train_step(state: TrainState, batch: dict):
    batch = with_batch_positions(batch)
    counts = counts_fn(batch)
    objective, sums, stats, grads = gradients(state, batch, step_key(state), counts)
    grad_norm = optax.tree.norm(grads)
    ok = jnp.isfinite(objective) & jnp.isfinite(grad_norm)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    run = jnp.where(ok, 0, state.nonfinite_run + 1)
    new_state = state.replace(
        step=state.step + 1, params=_select(ok, params, state.params),
        batch_stats=_select(ok, stats, state.batch_stats),
        opt_state=_select(ok, opt_state, state.opt_state), nonfinite_run=run,
        nonfinite_max_run=jnp.maximum(state.nonfinite_max_run, run),
        nonfinite_total=state.nonfinite_total + (~ok).astype(jnp.int32))
    measurements = {name: sums[name] / jnp.maximum(counts[name], 1) for name in sums}
    measurements.update(
        training_loss=objective, l2_grads=grad_norm, l2_params=optax.tree.norm(params),
        l2_updates=optax.tree.norm(updates), nonfinite=(~ok).astype(jnp.int32),
        nonfinite_run=run, nonfinite_total=new_state.nonfinite_total,
        **optim.learning_rates(schedules, state.step))
    return new_state, measurements

  return train_step
