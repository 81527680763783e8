"""Logical-axis rules shard the model's parameters over a data x fsdp x tensor mesh."""

import os
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from conftest import REPO

from pixelbert_jax import sharding, train
from pixelbert_jax.data import synthetic
from pixelbert_jax.models import variants
from pixelbert_jax.models.pixelbert import PixelBert
from pixelbert_jax.tasks import base as tasks


def test_make_mesh_fills_in_minus_one():
  assert jax.device_count() == 8
  mesh = sharding.make_mesh([2, -1, 2])
  assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
  with pytest.raises(ValueError, match="does not use"):
    sharding.make_mesh([3, 1, 1])


def test_rules_skip_axes_that_do_not_divide_or_repeat():
  mesh = sharding.make_mesh([1, 4, 2])
  rules = sharding.DEFAULT_RULES
  assert sharding.logical_to_spec(("embed", "mlp"), (64, 128), mesh, rules) == P("fsdp", "tensor")
  assert sharding.logical_to_spec(("embed", "mlp"), (6, 7), mesh, rules) == P(None, None)
  assert sharding.logical_to_spec(("embed", "embed"), (8, 8), mesh, rules) == P("fsdp", None)
  assert sharding.logical_to_spec((None, "conv_out"), (3, 8), mesh, rules) == P(None, None)


def test_sharded_forward_matches_single_device():
  config = variants.model_config("tiny", dropout=0.0)
  model = PixelBert(config, rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(model)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.normal(size=(4, 64, 80, 3)), jnp.float32)
  sizes = jnp.asarray([[64, 80], [40, 80], [64, 33], [17, 23]])
  ids = jnp.asarray(rng.integers(5, 512, size=(4, 11)), jnp.int32)
  text_mask = jnp.ones((4, 11), bool)

  def forward(state, images, sizes, ids, text_mask):
    model = nnx.merge(graphdef, state)
    tokens, pixel_mask = model.encode_pixels(images, sizes)
    return model(ids, text_mask, tokens, pixel_mask)[1]["pooled"]

  expected = jax.jit(forward)(state, images, sizes, ids, text_mask)
  mesh = sharding.make_mesh([2, 2, 2])
  state_sharding = sharding.state_shardings(state, mesh)
  sharded_state = jax.device_put(state, state_sharding)
  kernel = sharded_state["encoder"]["layers"][0]["mlp_in"]["kernel"]
  assert kernel[...].sharding.spec == P("fsdp", "tensor")
  assert kernel[...].addressable_shards[0].data.shape == (32, 64)
  batch = sharding.batch_sharding(mesh)
  inputs = [jax.device_put(x, batch) for x in (images, sizes, ids, text_mask)]
  actual = jax.jit(forward)(sharded_state, *inputs)
  np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


def _leaves(tree, name: str) -> list:
  return [leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
          if name in jax.tree_util.keystr(path)]


def test_optimiser_state_is_sharded_like_its_parameters_and_known_before_it_exists():
  """AdamW's moments take their parameter's sharding (left to XLA they came out
  replicated: a full copy of two moments per device); the abstract state a resume
  restores into equals the state a fresh run makes, shardings included."""
  sys.path.insert(0, REPO)
  from configs import pretrain  # pylint: disable=g-import-not-at-top

  config = pretrain.get_config("demo")
  config.mesh.shape = (2, 2, 2)
  task = tasks.get(config)
  vocab = len(synthetic.vocabulary())
  abstract = train.build_step(config, task, {}, vocab, steps=10, materialise=False)
  state = abstract.initial_state()
  kernel = "['encoder']['layers'][0]['mlp_in']['kernel']"
  [param] = _leaves(state.params, kernel)
  assert param.sharding.spec == P("fsdp", "tensor")
  moments = _leaves(state.opt_state, kernel)
  assert len(moments) == 2  # AdamW's mu and nu
  assert all(m.sharding == param.sharding for m in moments)
  assert all(c.sharding.spec == P() for c in _leaves(state.opt_state, "count"))
  describe = lambda x: (x.shape, x.dtype, x.sharding)
  assert (jax.tree.structure(abstract.state) == jax.tree.structure(state))
  assert jax.tree.leaves(jax.tree.map(describe, abstract.state)) == jax.tree.leaves(
      jax.tree.map(describe, state))
  assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(abstract.state))


def test_fsdp_step_keeps_the_transformers_activations_split_by_batch():
  """On a (1, 8, 1) mesh the weights are split along fsdp's model dimension; without
  `sharding.constrain_batch`, XLA partitioned the Transformer's products along it and
  all-reduced or all-gathered the hidden states at the global batch of 32 (every device
  running every example). The compiled demo step must move no (32, L, hidden) array."""
  sys.path.insert(0, os.path.join(REPO, "benchmarks"))
  import memory_projection  # pylint: disable=g-import-not-at-top
  import train_step as step_bench  # pylint: disable=g-import-not-at-top

  model = memory_projection.MODELS["tiny"]
  setting = step_bench.Setting(model.config_arg, 1, model.bucket, model.image_size, True)
  config = step_bench.make_config(setting, 32, "sampled")
  config.model.update(dict(model.overrides))
  config.mesh.shape = (1, 8, 1)
  vocab = step_bench.vocab_size(config)
  step = train.build_step(config, tasks.get(config), {}, vocab, steps=100,
                          materialise=False)
  batch = memory_projection.abstract_batch(config, model, 32, vocab,
                                           sharding.batch_sharding(step.mesh, step.rules))
  hlo = step.step_fn.lower(step.state, batch).compile().as_text()
  hidden = config.model.transformer_hidden
  moved = re.findall(rf"= \(?(f32\[32,\d+,{hidden}\])[^=]*? (?:all-gather|all-reduce)\(",
                     hlo)
  assert not moved, sorted(set(moved))
