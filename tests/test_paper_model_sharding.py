"""The paper's R50 + BERT-base on 8 simulated CPU devices, data x fsdp x tensor = 2 x 2 x 2
(issue 17): at a reduced image size and batch, the real pre-training step compiles,
steps with the losses of one device for the same global batch, keeps its parameters
split over the mesh, and resumes from an orbax checkpoint to the same next step."""

import os
import sys

import jax
import numpy as np
from jax.sharding import PartitionSpec as P

from pixelbert_jax import checkpointing, train
from pixelbert_jax.tasks import base as tasks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import train_step as step_bench  # noqa: E402  (benchmarks/train_step.py)

# The paper's R50 (`configs/pretrain.py`) at 64 x 64 with batch 8; float32 and no
# dropout, so that two partitionings of one step agree to float tolerance.
SETTING = step_bench.Setting("", 8, (64, 64), (64, 57), on_cpu=True)
MLP_IN = "['encoder']['layers'][0]['mlp_in']['kernel']"


def _build(mesh_shape, devices):
  config = step_bench.make_config(SETTING, SETTING.batch, "sampled")
  config.model.update(dtype="float32", dropout=0.0)
  config.mesh.shape = mesh_shape
  vocab = step_bench.vocab_size(config)
  step = train.build_step(config, tasks.get(config), {}, vocab, steps=100, devices=devices)
  batches = [step_bench.random_batch(config, SETTING, SETTING.batch, vocab, seed=i)
             for i in range(3)]
  return step, train.make_global(step.mesh, step.rules), batches


def _loss(metrics) -> float:
  return float(metrics["training_loss"])


def _param(state, path: str):
  [leaf] = [leaf for key, leaf in jax.tree_util.tree_flatten_with_path(state.params)[0]
            if path in jax.tree_util.keystr(key)]
  return leaf


def test_paper_model_on_a_2x2x2_mesh_matches_one_device_and_resumes(tmp_path):
  one, to_one, batches = _build((1, 1, 1), jax.devices()[:1])
  state, expected = one.state, []
  for batch in batches[:2]:
    state, metrics = one.step_fn(state, to_one(batch))
    expected.append(_loss(metrics))
  del state, one

  mesh, to_mesh, _ = _build((2, 2, 2), None)
  state, losses = mesh.state, []
  for batch in batches[:2]:
    state, metrics = mesh.step_fn(state, to_mesh(batch))
    losses.append(_loss(metrics))
  np.testing.assert_allclose(losses, expected, rtol=1e-4)
  # BERT-base's matrices are split over fsdp and tensor, its AdamW moments with them.
  mlp_in = _param(state, MLP_IN)
  assert mlp_in.shape == (768, 3072) and mlp_in.sharding.spec == P("fsdp", "tensor")
  assert mlp_in.addressable_shards[0].data.shape == (384, 1536)
  words = _param(state, "['text_embedder']['word']['embedding']")
  assert words.shape == (30522, 768) and words.sharding.spec == P("tensor", "fsdp")

  checkpointer = checkpointing.Checkpointer(tmp_path / "checkpoints", every_steps=1,
                                            keep=1, async_save=False)
  checkpointer.save(2, state, force=True)
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
  state, metrics = mesh.step_fn(state, to_mesh(batches[2]))  # the run goes on
  continued = _loss(metrics), jax.device_get(_param(state, MLP_IN))
  del state
  restored_step, restored = checkpointer.restore_latest(abstract)
  assert restored_step == 2
  restored, metrics = mesh.step_fn(restored, to_mesh(batches[2]))  # a resumed run
  assert _loss(metrics) == continued[0]
  np.testing.assert_array_equal(jax.device_get(_param(restored, MLP_IN)), continued[1])
