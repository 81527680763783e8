"""The jitted train step: sharded = single device, accumulation = big batch, NaN guard."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from configs import common
from pixelbert_jax import optim, sharding, train, train_state, train_step
from pixelbert_jax.models import variants
from pixelbert_jax.tasks import pretrain


def _batch(batch_size=8, seed=0):
  rng = np.random.default_rng(seed)
  b, t = batch_size, 11
  return dict(
      images=rng.normal(size=(b, 48, 80, 3)).astype(np.float32),
      image_sizes=np.array([[48, 80], [40, 61], [48, 33], [17, 80]] * (b // 4), np.int32),
      token_ids=rng.integers(5, 97, (b, t)).astype(np.int32),
      text_mask=np.arange(t)[None, :] < rng.integers(3, t + 1, (b, 1)),
      mlm_ids=rng.integers(5, 97, (b, t)).astype(np.int32),
      mlm_labels=rng.integers(5, 97, (b, t)).astype(np.int32),
      mlm_weights=(rng.random((b, t)) < 0.3).astype(np.float32),
      valid=np.array([True] * (b - 1) + [False]))


def _setup(mesh, micro_batches=1, use_itm=True, dropout=0.0, transformer_optimizer="adamw",
           config=None):
  if config is None:
    config = common.base("pretrain")
    config.optimizer = common.optimizer(cnn_lr=0.1, transformer_lr=1e-3)
    config.optimizer.warmup_steps = 0
    config.optimizer.groups.transformer.optimizer = transformer_optimizer
  model_config = variants.model_config("tiny", dropout=dropout, transformer_vocab_size=97)
  graphdef, params, stats, other = train_state.init_model(
      lambda rngs: pretrain.PretrainModel(model_config, rngs=rngs), 0, mesh,
      sharding.DEFAULT_RULES)
  tx, schedules = optim.make_optimizer(config, params, 10)
  state = train_state.create_train_state(params, stats, tx, 0, mesh)
  step = train_step.make_train_step(
      graphdef, other, pretrain.make_loss_fn(12, True, use_itm), pretrain.counts_fn,
      pretrain.loss_weights(True, use_itm), tx, schedules, micro_batches,
      frozen_mask=optim.frozen_mask(config, params))
  shardings = train_state.shardings_of(state)
  step = jax.jit(step, in_shardings=(shardings, None), out_shardings=(shardings, None))
  to_global = train.make_global(mesh, sharding.DEFAULT_RULES)
  return state, step, to_global


def _run(mesh, steps=3, **kw):
  state, step, to_global = _setup(mesh, **kw)
  losses = []
  for i in range(steps):
    state, metrics = step(state, to_global(_batch(seed=i)))
    losses.append(float(metrics["training_loss"]))
  return state, losses


def test_data_fsdp_mesh_matches_one_device():
  _, single = _run(sharding.make_mesh([1, 1, 1], devices=jax.devices()[:1]))
  state, sharded = _run(sharding.make_mesh([4, 2, 1]))
  np.testing.assert_allclose(sharded, single, rtol=2e-5)
  kernel = state.params["pixelbert"]["encoder"]["layers"][0]["mlp_in"]["kernel"][...]
  assert kernel.sharding.spec == jax.sharding.PartitionSpec("fsdp", None)
  assert kernel.addressable_shards[0].data.shape == (32, 128)


def _params(state):
  return jax.tree.leaves(jax.device_get(state.params))


def test_accumulating_micro_batches_equals_one_big_batch():
  mesh = sharding.make_mesh([2, 1, 1], devices=jax.devices()[:2])
  # ITM pairs captions within a micro-batch, so compare on MLM (pixel draws are per
  # example). SGD, because Adam would blow float noise on parameters whose true gradient
  # is zero (attention key biases) up to full-size steps.
  kw = dict(steps=2, use_itm=False, transformer_optimizer="sgd")
  whole, _ = _run(mesh, micro_batches=1, **kw)
  accumulated, _ = _run(mesh, micro_batches=4, **kw)
  for a, b in zip(_params(whole), _params(accumulated)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  assert int(accumulated.step) == 2


def test_nonfinite_step_is_skipped_and_counted():
  mesh = sharding.make_mesh([1, 1, 1], devices=jax.devices()[:1])
  state, step, to_global = _setup(mesh)
  before = _params(state)
  poisoned = _batch()
  poisoned["images"][0, 0, 0, 0] = np.nan
  guard, relaxed = train.NonFiniteGuard(3), train.NonFiniteGuard(4)
  for _ in range(3):
    state, metrics = step(state, to_global(poisoned))
    guard.after_step(metrics)  # reads the step before: the third is still unread
    relaxed.after_step(metrics)
  assert int(metrics["nonfinite"]) == 1 and int(state.nonfinite_total) == 3
  for a, b in zip(before, _params(state)):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(train.NonFiniteError, match=r"3 consecutive steps .*\(3 in all\)"):
    guard.check_newest()  # as before a save
  state, metrics = step(state, to_global(_batch()))
  relaxed.after_step(metrics)  # the third poisoned step's counter, 3 < 4
  relaxed.check_newest()
  assert int(state.nonfinite_run) == 0 and int(state.nonfinite_max_run) == 3
  assert int(metrics["nonfinite_run"]) == 0 and int(metrics["nonfinite_total"]) == 3


def test_step_schedule_counts_updates():
  schedule = optim.make_schedule(1.0, 40, 0, "step", (25 / 40, 35 / 40), 0.1)
  assert [float(schedule(s)) for s in (0, 24, 25, 34, 35, 39)] == pytest.approx(
      [1.0, 1.0, 0.1, 0.1, 0.01, 0.01])


def test_groups_resolve_overlaps_by_rule_not_by_order():
  params = {"pixelbert": {"pixel_encoder": {"backbone": {"stem": 0.0, "stages": 0.0}},
                          "encoder": 0.0}}
  groups = common.optimizer().groups.to_dict()
  groups["frozen"]["pattern"] = "backbone/stem"  # also matched by `cnn` and `.*`
  labels = optim.param_labels(params, groups)
  assert labels["pixelbert"]["pixel_encoder"]["backbone"] == {"stem": "frozen",
                                                                "stages": "cnn"}
  assert labels["pixelbert"]["encoder"] == "transformer"
  groups["frozen"]["pattern"] = "^$"
  groups["head"] = dict(groups["transformer"], pattern="^pixelbert/encoder")  # beats .*
  assert optim.param_labels(params, groups)["pixelbert"]["encoder"] == "head"
  groups["head"]["pattern"] = "backbone/stem"  # overlaps `cnn`: which one is meant?
  ambiguous = r"several optimizer groups.*stem \(cnn, head, transformer\)"
  with pytest.raises(ValueError, match=ambiguous):
    optim.param_labels(params, groups)


def test_a_group_clipped_separately_leaves_the_global_norm_alone():
  """With plain SGD at rate 1, an update is minus the clipped gradient."""
  config = common.base("pretrain")
  config.optimizer = common.optimizer()
  config.optimizer.update(warmup_steps=0, schedule="constant", clip_grad_norm=1.0)
  groups = config.optimizer.groups
  groups.transformer.update(optimizer="sgd", lr=1.0, momentum=0.0, weight_decay=0.0)
  groups.aux = dict(groups.transformer.to_dict(), pattern="^aux", clip_separately=2.0)
  params = {"body": np.zeros(2, np.float32), "aux": np.zeros(2, np.float32)}
  grads = {"body": np.array([3.0, 4.0], np.float32), "aux": np.array([0.0, 30.0], np.float32)}
  tx, _ = optim.make_optimizer(config, params, 10)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["body"], [-0.6, -0.8], rtol=1e-6)  # norm 5 -> 1
  np.testing.assert_allclose(updates["aux"], [0.0, -2.0], rtol=1e-6)  # its own norm 30 -> 2


def _frozen_cnn_config(clip: float):
  """SGD at rate 1 without momentum or decay (an update is minus the clipped gradient),
  the CNN frozen."""
  config = common.base("pretrain")
  config.optimizer = common.optimizer()
  config.optimizer.update(warmup_steps=0, schedule="constant", clip_grad_norm=clip)
  config.optimizer.groups.frozen.pattern = common.BACKBONE
  config.optimizer.groups.transformer.update(optimizer="sgd", lr=1.0, momentum=0.0,
                                             weight_decay=0.0)
  return config


def _count(hlo: str, op: str) -> int:
  return hlo.count(f" {op}(")


def test_a_frozen_cnn_costs_no_convolution_gradient():
  mesh = sharding.make_mesh([1, 1, 1], devices=jax.devices()[:1])
  batch = _batch()
  counts = {}
  for name, config in (("frozen", _frozen_cnn_config(1.0)), ("trained", None)):
    state, step, to_global = _setup(mesh, config=config)
    hlo = step.lower(state, to_global(batch)).compile().as_text()
    counts[name] = _count(hlo, "convolution")
  forward = _forward_convolutions(mesh)
  assert counts["frozen"] == forward  # the forward pass only
  assert counts["trained"] > 2 * forward  # plus the kernels' and the inputs' gradients


def _forward_convolutions(mesh) -> int:
  """Convolutions in one forward pass of the tiny CNN on the test batch's images."""
  model_config = variants.model_config("tiny", transformer_vocab_size=97)
  graphdef, params, stats, other = train_state.init_model(
      lambda rngs: pretrain.PretrainModel(model_config, rngs=rngs), 0, mesh,
      sharding.DEFAULT_RULES)
  batch = _batch()

  def encode(params, stats, other):
    model = train_state.merge_model(graphdef, params, stats, other)
    model.eval()
    return model.pixelbert.encode_pixels(batch["images"], batch["image_sizes"])

  hlo = jax.jit(encode).lower(params, stats, other).compile().as_text()
  return _count(hlo, "convolution")


def test_frozen_parameters_change_no_update_through_the_clip():
  """The update equals minus the trainable gradients clipped by their own norm, the
  reference computed by hand; the frozen CNN's gradients would have enlarged it."""
  mesh = sharding.make_mesh([1, 1, 1], devices=jax.devices()[:1])
  config = _frozen_cnn_config(clip=0.05)  # binding: every update is clipped
  state, step, to_global = _setup(mesh, use_itm=False, config=config)
  batch = to_global(_batch())
  grads = _reference_gradients(state, batch)
  frozen = optim.frozen_mask(config, state.params)
  trainable, cnn = train_step.split_frozen(grads, frozen)
  norm = optax.tree.norm(trainable)
  assert optax.tree.norm(cnn) > 0.1 * norm  # the old global norm would have differed
  before = jax.device_get(state.params)
  after, measurements = step(jax.tree.map(jnp.copy, state), batch)
  np.testing.assert_allclose(measurements["l2_grads"], norm, rtol=1e-4)
  scale = min(1.0, 0.05 / float(norm))
  expected = jax.tree.map(lambda p, g, m: p if m else p - scale * g, before,
                          jax.device_get(grads), frozen)
  for want, got in zip(jax.tree.leaves(expected), jax.tree.leaves(jax.device_get(
      after.params))):
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6)


def _reference_gradients(state, batch):
  """Every parameter's gradient of the step's MLM objective, taken by hand (no split)."""
  model_config = variants.model_config("tiny", dropout=0.0, transformer_vocab_size=97)
  graphdef, _, _, other = train_state.init_model(
      lambda rngs: pretrain.PretrainModel(model_config, rngs=rngs), 0,
      sharding.make_mesh([1, 1, 1], devices=jax.devices()[:1]), sharding.DEFAULT_RULES)
  loss_fn = pretrain.make_loss_fn(12, True, False)
  batch = train_step.with_batch_positions(batch)
  counts = pretrain.counts_fn(batch)
  key = train_step.step_key(state)

  def objective(params):
    # Fresh copies: the model may not mutate variables captured from outside the trace.
    fresh = lambda tree: jax.tree.map(lambda x: x, tree)
    model = train_state.merge_model(graphdef, params, fresh(state.batch_stats), fresh(other))
    model.train()
    nnx.reseed(model, dropout=jax.random.fold_in(key, 1))
    sums = loss_fn(model, batch, key)
    return sums["mlm_loss"] / jnp.maximum(counts["mlm_loss"], 1)

  return jax.jit(jax.grad(objective))(state.params)
