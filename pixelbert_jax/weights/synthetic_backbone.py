r"""The demos' ImageNet: supervised pre-training of a small backbone on synthetic scenes.

Pixel-BERT starts its CNN from ImageNet weights; the text side alone cannot teach a
random CNN what colour or shape is in a cell (the demo's grounding stays at zero when
it tries). The demos therefore start from a backbone trained for about a minute to name,
for every cell of its feature grid, the colour and the shape of the object covering it
(soft targets: the share of the cell each class covers, background included). The
scenes are drawn from their own random stream, so no image of the synthetic world's
splits is seen.

`config.init = "synthetic"` (the demo configs' default) trains it on first use into the
synthetic world's folder, with `config.synthetic_backbone`'s settings, and loads it like
any imported backbone (`init_sources`). It trains with the package's one train step
(`train_step.make_train_step`, functional, jitted), like every run.
"""

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from etils import epath
from flax import nnx
from PIL import Image, ImageDraw

from pixelbert_jax import sharding, train_state, train_step
from pixelbert_jax.data import images as images_lib
from pixelbert_jax.data import synthetic
from pixelbert_jax.data.synthetic import cache
from pixelbert_jax.models import variants
from pixelbert_jax.models.pixel_encoder import normalize_images
from pixelbert_jax.models.resnet import ResNet
from pixelbert_jax.weights import init_checkpoint

SHIPPED_DIR = epath.Path(__file__).parent / "shipped"
# Steps of the recipe whose parameter norms are recorded with the shipped weights.
TRAIL_STEPS = 8
COLOUR_CLASSES = ("background",) + tuple(synthetic.COLOURS)
SHAPE_CLASSES = ("background",) + synthetic.SHAPES
DONE_MARKER = "backbone.done"
# Seed stream of the training scenes, apart from every split of the world.
_SCENE_STREAM = 7919


def label_map(scene: synthetic.Scene, attribute: str, classes: tuple) -> Image.Image:
  """Each pixel's class index for one attribute (0 = background). Polygons are drawn
  unrotated; the renderer's small random turn moves only edge pixels."""
  label = Image.new("L", (scene.width, scene.height), 0)
  draw = ImageDraw.Draw(label)
  for obj in scene.objects:
    value = classes.index(getattr(obj, attribute))
    if obj.shape == "circle":
      draw.ellipse([obj.x - obj.r, obj.y - obj.r, obj.x + obj.r, obj.y + obj.r], fill=value)
    else:
      vertices = synthetic.polygon(obj.shape, obj.x, obj.y, obj.r, 0.0)
      draw.polygon(vertices, fill=value)
  return label


def _cell_shares(label: np.ndarray, num_classes: int, cell: int) -> np.ndarray:
  """(S, S) class indices -> (S / cell, S / cell, classes): each class's share of a cell."""
  grid = label.shape[0] // cell
  one_hot = np.eye(num_classes, dtype=np.float32)[label]
  return one_hot.reshape(grid, cell, grid, cell, num_classes).mean((1, 3))


def make_example(index: int, seed: int, side: int, cell: int):
  """A scene resized to short side `side`, a random `side` x `side` crop of it, and the
  crop's colour and shape cell targets."""
  rng = np.random.default_rng([seed, _SCENE_STREAM, index])
  scene = synthetic.sample_scene(rng)
  picture = np.asarray(synthetic.render_scene(scene, rng))
  height, width = images_lib.resized_size(scene.height, scene.width, side, 10 * side)
  top, left = (int(rng.integers(0, s - side + 1)) for s in (height, width))
  crop = lambda a: a[top:top + side, left:left + side]
  picture = crop(images_lib.resize_to(picture, (height, width)))
  targets = []
  for attribute, classes in (("colour", COLOUR_CLASSES), ("shape", SHAPE_CLASSES)):
    label = label_map(scene, attribute, classes).resize((width, height), Image.NEAREST)
    targets.append(_cell_shares(crop(np.asarray(label)), len(classes), cell))
  return picture, targets[0], targets[1]


class SceneExamples:
  """`make_example` for scene indices, each drawn on first use and kept (a run that
  stops early draws only the scenes it reads)."""

  def __init__(self, seed: int, side: int, cell: int):
    self.seed, self.side, self.cell = seed, side, cell
    self._drawn = {}

  def batch(self, indices) -> dict:
    for index in indices:
      if index not in self._drawn:
        self._drawn[index] = make_example(int(index), self.seed, self.side, self.cell)
    examples = [self._drawn[index] for index in indices]
    return {name: np.stack([e[i] for e in examples])
            for i, name in enumerate(("images", "colour", "shape"))}


class CellClassifier(nnx.Module):
  """The backbone with a linear colour head and a linear shape head on every cell."""

  def __init__(self, model_config: variants.ModelConfig, *, rngs: nnx.Rngs):
    spec = model_config.backbone
    # Batch statistics train here, so the frozen-BN backbone downstream inherits them.
    self.backbone = ResNet(spec, frozen_bn=False, rngs=rngs)
    self.colour = nnx.Linear(spec.out_channels, len(COLOUR_CLASSES), rngs=rngs)
    self.shape = nnx.Linear(spec.out_channels, len(SHAPE_CLASSES), rngs=rngs)
    self.mean, self.std = model_config.image_mean, model_config.image_std

  def __call__(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    sizes = jnp.broadcast_to(jnp.asarray(images.shape[1:3]), (images.shape[0], 2))
    features = self.backbone(normalize_images(images, sizes, self.mean, self.std,
                                              jnp.float32))
    return self.colour(features), self.shape(features)


def _cell_losses(logits: jax.Array, shares: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(summed soft cross-entropy over every cell, right answers on object cells).

  An object cell is one mostly covered by one object; background cells are not scored.
  """
  loss = -jnp.sum(shares * jax.nn.log_softmax(logits))
  on_object = (shares[..., 0] < 0.5) & (shares.max(-1) > 0.5)
  right = jnp.argmax(logits, -1) == jnp.argmax(shares, -1)
  return loss, jnp.sum(right & on_object)


def loss_fn(model: CellClassifier, batch: dict, key: jax.Array) -> dict:
  del key  # nothing drawn
  colour, shape = model(batch["images"])
  sums = {}
  for name, logits in (("colour", colour), ("shape", shape)):
    sums[f"{name}_loss"], sums[f"{name}_accuracy"] = _cell_losses(logits, batch[name])
  return sums


def counts_fn(batch: dict) -> dict:
  """Losses are per cell, accuracies per object cell."""
  shares = batch["colour"]
  cells = jnp.asarray(np.prod(shares.shape[:-1]), jnp.float32)
  on_object = jnp.sum((shares[..., 0] < 0.5) & (shares.max(-1) > 0.5))
  return {"colour_loss": cells, "shape_loss": cells, "colour_accuracy": on_object,
          "shape_accuracy": on_object}


def _batches(examples: SceneExamples, num_scenes: int, batch_size: int, seed: int):
  """Batches of the scenes, a fresh permutation for every pass."""
  order, indices = np.random.default_rng(seed).permutation, np.zeros(0, int)
  while True:
    if len(indices) < batch_size:  # a fresh pass over the scenes
      indices = np.concatenate([indices, order(num_scenes)])
    yield examples.batch(indices[:batch_size])
    indices = indices[batch_size:]


def train(model_config: variants.ModelConfig, *, steps: int, num_scenes: int,
          batch_size: int, learning_rate: float, side: int, seed: int = 0,
          stop_after: int | None = None):
  """Trains the cell classifier; returns it and the last step's metrics, with the
  first step's loss as `initial_loss`. `stop_after` ends the recipe early (its schedule
  unchanged)."""
  examples = SceneExamples(seed, side, model_config.pixel_stride)
  mesh = sharding.make_mesh((1, 1, 1), devices=jax.devices()[:1])
  graphdef, params, stats, other = train_state.init_model(
      lambda rngs: CellClassifier(model_config, rngs=rngs), seed, mesh,
      sharding.DEFAULT_RULES)
  warmup = max(steps // 10, 1)
  schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup,
                                                max(steps, warmup + 1))
  tx = optax.adamw(schedule, weight_decay=1e-4)
  state = train_state.create_train_state(params, stats, tx, seed, mesh)
  step_fn = jax.jit(train_step.make_train_step(
      graphdef, other, loss_fn, counts_fn, {"colour_loss": 1.0, "shape_loss": 1.0}, tx,
      schedules={}), donate_argnums=0)
  history = []
  run_steps = steps if stop_after is None else min(stop_after, steps)
  batches = _batches(examples, num_scenes, batch_size, seed)
  for step, batch in zip(range(run_steps), batches):
    state, measurements = step_fn(state, batch)
    history.append(measurements)
    if step % 100 == 0 or step == run_steps - 1:
      logging.info("Synthetic backbone step %d: %s", step,
                   {k: round(float(history[-1][k]), 3) for k in sorted(history[-1])})
  model = train_state.merge_model(graphdef, state.params, state.batch_stats, other)
  final = {k: float(history[-1][k]) for k in ("colour_accuracy", "shape_accuracy")}
  final["loss"] = float(history[-1]["training_loss"])
  return model, dict(final, initial_loss=float(history[0]["training_loss"]))


def save(model: CellClassifier, directory: epath.Path, info: dict) -> None:
  """Writes the backbone as an initialisation checkpoint (`config.init` reads it)."""
  weights = {name: np.asarray(variable[...]) for name, variable
             in init_checkpoint.flat_variables(model.backbone).items()}
  init_checkpoint.save(directory, {"backbone": weights}, info)


def recipe(config) -> dict:
  """Everything that decides the backbone `config` asks for."""
  return dict(config.synthetic_backbone.to_dict(), preset=config.model.preset,
              side=config.data.image_short_side, seed=config.data.synthetic_seed)


def _name(config) -> str:
  settings = config.synthetic_backbone
  return (f"backbone_{config.model.preset}_{config.data.image_short_side}px_"
          f"{settings.steps}steps_{settings.num_scenes}scenes")


def shipped(config) -> epath.Path | None:
  """The shipped backbone of `config`'s recipe, if the package holds one."""
  directory = SHIPPED_DIR / _name(config)
  if not (directory / init_checkpoint.INFO_FILE).exists():
    return None
  info = json.loads((directory / init_checkpoint.INFO_FILE).read_text())
  return directory if info.get("recipe") == recipe(config) else None


def _directory(config, workdir: str) -> epath.Path:
  """Where `config`'s backbone is trained: in the synthetic world's folder, named by
  what shapes it, so that demos sharing a world share it and a changed recipe retrains."""
  return cache.world_root(config.data, workdir) / _name(config)


def train_recipe(config, stop_after: int | None = None):
  """`train` with `config`'s recipe: (model, metrics)."""
  settings = config.synthetic_backbone
  # The text side is not trained here: its vocabulary size does not matter.
  model_config = variants.from_config(config.model, vocab_size=1)
  return train(model_config, steps=settings.steps, num_scenes=settings.num_scenes,
               batch_size=settings.batch_size, learning_rate=settings.learning_rate,
               side=config.data.image_short_side, seed=config.data.synthetic_seed,
               stop_after=stop_after)


def parameter_norms(model: CellClassifier) -> dict[str, float]:
  """Each backbone parameter's L2 norm: the trail that pins the recipe's first steps."""
  return {name: float(np.linalg.norm(np.asarray(variable[...])))
          for name, variable in init_checkpoint.flat_variables(model.backbone).items()}


def ensure(config, workdir: str) -> str:
  """The backbone checkpoint for `config`: the shipped one of its recipe, or one trained
  on first use by process 0."""
  found = shipped(config)
  if found is not None:
    logging.info("Synthetic backbone: the shipped one of this recipe, %s", found)
    return str(found)
  directory = _directory(config, workdir)
  marker = directory / DONE_MARKER
  if jax.process_index() > 0:
    cache.wait_for(marker)
  elif not marker.exists():
    logging.info("Training the synthetic backbone into %s", directory)
    start = time.time()
    model, metrics = train_recipe(config)
    info = dict(config.synthetic_backbone.to_dict(), recipe=recipe(config),
                created=time.strftime("%Y-%m-%dT%H:%M:%S"), source="synthetic scenes",
                seconds=round(time.time() - start, 1), final=metrics,
                components=["backbone"])
    save(model, directory, info)
    marker.write_text(json.dumps(metrics))
  return str(directory)
