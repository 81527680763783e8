"""The demos' synthetic backbone: its cell targets, its training, and `init=synthetic`."""

import json
import os

import jax
import numpy as np
import pytest

from configs import pretrain as pretrain_config
from pixelbert_jax.data import synthetic
from pixelbert_jax.weights import synthetic_backbone
from pixelbert_jax.weights import init_checkpoint, init_sources
from conftest import override, restore_state, trainer_overrides


def test_cell_targets_cover_the_drawn_object():
  red_circle = synthetic.SceneObject("circle", "red", "large", x=24.0, y=24.0, r=8.0)
  scene = synthetic.Scene(64, 64, "dark", (red_circle,))
  label = np.asarray(synthetic_backbone.label_map(
      scene, "colour", synthetic_backbone.COLOUR_CLASSES))
  shares = synthetic_backbone._cell_shares(label, len(synthetic_backbone.COLOUR_CLASSES), 16)
  red = synthetic_backbone.COLOUR_CLASSES.index("red")
  assert shares.shape == (4, 4, len(synthetic_backbone.COLOUR_CLASSES))
  np.testing.assert_allclose(shares.sum(-1), 1.0, rtol=1e-6)
  # The circle fills its cell to about pi / 4 and touches no other cell's interior.
  assert shares[1, 1, red] == pytest.approx(np.pi / 4, abs=0.05)
  shares[1, 1, red] = 0
  assert shares[..., red].max() < 0.05


def test_examples_are_crops_with_matching_targets():
  picture, colour, shape = synthetic_backbone.make_example(3, seed=0, side=64, cell=16)
  assert picture.shape == (64, 64, 3) and picture.dtype == np.uint8
  assert colour.shape == (4, 4, 8) and shape.shape == (4, 4, 6)
  # Both attributes cover the same object cells.
  np.testing.assert_allclose(colour[..., 0], shape[..., 0], atol=1e-6)
  again = synthetic_backbone.make_example(3, seed=0, side=64, cell=16)
  np.testing.assert_array_equal(picture, again[0])


def test_training_lowers_the_loss():
  model_config = pretrain_config.get_config("demo")
  from pixelbert_jax.models import variants  # pylint: disable=g-import-not-at-top
  spec = variants.from_config(model_config.model, 100)
  _, metrics = synthetic_backbone.train(spec, steps=40, num_scenes=32, batch_size=16,
                                        learning_rate=3e-3, side=64)
  assert metrics["loss"] < 0.5 * metrics["initial_loss"]


def test_init_synthetic_trains_once_and_loads_into_the_run(small_world, tmp_path):
  from pixelbert_jax import train  # pylint: disable=g-import-not-at-top
  config = override(pretrain_config.get_config("demo"), trainer_overrides(small_world, 1))
  override(config, {
      "init": "synthetic", "synthetic_backbone.steps": 2,
      "synthetic_backbone.num_scenes": 8, "synthetic_backbone.batch_size": 4,
      "checkpoint_every_steps": 1})
  train.train_and_evaluate(config, str(tmp_path / "run"))
  directory = init_sources.resolve(config, str(tmp_path / "run"))
  assert directory.startswith(small_world)  # lives with the world, shared by its runs
  info = json.loads(open(os.path.join(directory, init_checkpoint.INFO_FILE)).read())
  assert info["steps"] == 2 and info["components"] == ["backbone"]
  stored, _ = init_checkpoint.load(directory)
  state = restore_state(tmp_path / "run", 1)
  # The demo freezes the backbone, so after one step it still holds the stored weights.
  stem = state["params"]["pixelbert"]["pixel_encoder"]["backbone"]["stem_conv"]["kernel"]["value"]
  np.testing.assert_array_equal(jax.device_get(stem), stored["backbone"]["stem_conv.kernel"])


def test_the_demo_uses_the_shipped_backbone_without_training(tmp_path):
  config = pretrain_config.get_config("demo")
  shipped = synthetic_backbone.shipped(config)
  assert shipped is not None
  assert init_sources.resolve(config, str(tmp_path)) == str(shipped)
  info = json.loads((shipped / init_checkpoint.INFO_FILE).read_text())
  assert info["final"]["colour_accuracy"] > 0.8 and info["final"]["shape_accuracy"] > 0.8
  another = pretrain_config.get_config("demo")
  another.synthetic_backbone.learning_rate = 1e-3  # another recipe: trained on first use
  assert synthetic_backbone.shipped(another) is None


def test_the_recipe_replays_the_shipped_trail():
  """The recipe's first steps give the parameter norms recorded when the shipped
  weights were trained (a full retrain's difference from the shipped weights is in
  benchmarks/RESULTS.md). Relative tolerance 2e-3: on another CPU (an AVX-512 Intel Xeon
  replaying the AMD EPYC machine's record) small LayerNorm biases differ by up to 7.5e-4,
  while a learning rate 1 % off moves them by 1e-2."""
  config = pretrain_config.get_config("demo")
  info = json.loads((synthetic_backbone.shipped(config) / init_checkpoint.INFO_FILE)
                    .read_text())
  model, _ = synthetic_backbone.train_recipe(config, stop_after=info["trail"]["steps"])
  norms = synthetic_backbone.parameter_norms(model)
  assert norms.keys() == info["trail"]["norms"].keys()
  for name, want in info["trail"]["norms"].items():
    assert norms[name] == pytest.approx(want, rel=2e-3), name
