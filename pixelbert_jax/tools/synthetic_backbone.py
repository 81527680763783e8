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
any imported backbone.
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

from pixelbert_jax.data import images as images_lib
from pixelbert_jax.data import synthetic
from pixelbert_jax.models import variants
from pixelbert_jax.models.pixel_encoder import normalize_images
from pixelbert_jax.models.resnet import ResNet
from pixelbert_jax.tasks import pretrain_data, registry
from pixelbert_jax.weights import init_checkpoint

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


def make_dataset(num_scenes: int, seed: int, side: int, cell: int) -> dict:
  examples = [make_example(i, seed, side, cell) for i in range(num_scenes)]
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


def _soft_cross_entropy(logits: jax.Array, shares: jax.Array) -> jax.Array:
  return -jnp.mean(jnp.sum(shares * jax.nn.log_softmax(logits), -1))


def _object_accuracy(logits: jax.Array, shares: jax.Array) -> jax.Array:
  """Accuracy on cells mostly covered by one object (the share of the cells named right)."""
  on_object = (shares[..., 0] < 0.5) & (shares.max(-1) > 0.5)
  right = jnp.argmax(logits, -1) == jnp.argmax(shares, -1)
  return jnp.sum(right & on_object) / jnp.maximum(jnp.sum(on_object), 1)


@nnx.jit
def _train_step(model: CellClassifier, optimizer: nnx.Optimizer, batch: dict) -> dict:
  def loss_fn(model):
    colour, shape = model(batch["images"])
    loss = (_soft_cross_entropy(colour, batch["colour"])
            + _soft_cross_entropy(shape, batch["shape"]))
    return loss, {"colour_accuracy": _object_accuracy(colour, batch["colour"]),
                  "shape_accuracy": _object_accuracy(shape, batch["shape"])}

  (loss, metrics), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
  optimizer.update(model, grads)
  return dict(metrics, loss=loss)


def train(model_config: variants.ModelConfig, *, steps: int, num_scenes: int,
          batch_size: int, learning_rate: float, side: int, seed: int = 0):
  """Trains the cell classifier; returns it and the last step's metrics, with the
  first step's loss as `initial_loss`."""
  data = make_dataset(num_scenes, seed, side, model_config.pixel_stride)
  model = CellClassifier(model_config, rngs=nnx.Rngs(seed))
  warmup = max(steps // 10, 1)
  schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup,
                                                max(steps, warmup + 1))
  optimizer = nnx.Optimizer(model, optax.adamw(schedule, weight_decay=1e-4),
                            wrt=nnx.Param)
  order = np.random.default_rng(seed).permutation
  indices, history = np.zeros(0, int), []
  for step in range(steps):
    if len(indices) < batch_size:  # a fresh pass over the scenes
      indices = np.concatenate([indices, order(num_scenes)])
    batch = {k: v[indices[:batch_size]] for k, v in data.items()}
    indices = indices[batch_size:]
    history.append(_train_step(model, optimizer, batch))
    if step % 100 == 0 or step == steps - 1:
      logging.info("Synthetic backbone step %d: %s", step,
                   {k: round(float(v), 3) for k, v in history[-1].items()})
  metrics = {k: float(v) for k, v in history[-1].items()}
  return model, dict(metrics, initial_loss=float(history[0]["loss"]))


def save(model: CellClassifier, directory: epath.Path, info: dict) -> None:
  """Writes the backbone as an initialisation checkpoint (`config.init` reads it)."""
  weights = {name: np.asarray(variable[...]) for name, variable
             in init_checkpoint.flat_variables(model.backbone).items()}
  init_checkpoint.save(directory, {"backbone": weights}, info)


def _directory(config, workdir: str) -> epath.Path:
  """Where `config`'s backbone lives: in the synthetic world's folder, named by what
  shapes it, so that demos sharing a world share it and a changed recipe retrains."""
  settings = config.synthetic_backbone
  name = (f"backbone_{config.model.preset}_{config.data.image_short_side}px_"
          f"{settings.steps}steps_{settings.num_scenes}scenes")
  return pretrain_data.world_root(config.data, workdir) / name


def ensure(config, workdir: str) -> str:
  """The backbone checkpoint for `config`, trained on first use by process 0."""
  directory = _directory(config, workdir)
  marker = directory / DONE_MARKER
  if jax.process_index() > 0:
    pretrain_data.wait_for(marker)
  elif not marker.exists():
    settings = config.synthetic_backbone
    model_config = registry.model_config(config, config.model.vocab_size)
    logging.info("Training the synthetic backbone into %s", directory)
    start = time.time()
    model, metrics = train(model_config, steps=settings.steps,
                           num_scenes=settings.num_scenes,
                           batch_size=settings.batch_size,
                           learning_rate=settings.learning_rate,
                           side=config.data.image_short_side, seed=config.data.synthetic_seed)
    info = dict(settings.to_dict(), created=time.strftime("%Y-%m-%dT%H:%M:%S"),
                source="synthetic scenes", seconds=round(time.time() - start, 1),
                final=metrics, components=["backbone"])
    save(model, directory, info)
    marker.write_text(json.dumps(metrics))
  return str(directory)


def resolve_init(config, workdir: str) -> str:
  """`config.init` as a path: "synthetic" names this module's backbone."""
  return ensure(config, workdir) if config.init == "synthetic" else config.init
