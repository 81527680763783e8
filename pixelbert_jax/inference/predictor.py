"""`Predictor`: a trained checkpoint answering questions and scoring image-text pairs.

    predictor = Predictor("/tmp/vqa_demo")
    predictor.answer("cat.jpg", "what colour is the cat?", top_k=3)
    Predictor("/tmp/pixelbert_demo").rank_texts("cat.jpg", ["a cat", "two dogs"])
    Predictor("/tmp/nlvr2_demo").judge("left.jpg", "right.jpg", "both have a cat.")

The model is loaded once (`loading.load_run`) and split into two jitted pieces, as
the retrieval evaluator does: the CNN runs once per distinct image (pixel tokens are
cached, keyed by the image's content), and the cross-modal Transformer with the task's
pair head (`Task.pair_head`) scores (image, text) pairs in batches. Batches are padded
to a power of two up to `batch_size`, and pairs are grouped by image bucket, so each
piece compiles once per (bucket, batch shape).

What a run can do beyond that comes from its task (`Task.capabilities`): `answer` for
VQA, `match` / `rank_images` / `rank_texts` for pre-training and retrieval, `judge`
for NLVR2, each a function of the task's module called with this Predictor. Asking a
run for what its task cannot do raises `UnsupportedTaskError` naming the kinds of run
that can.
"""

import collections
import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import nnx

from pixelbert_jax.inference import inputs, loading
from pixelbert_jax.tasks import base as tasks


class UnsupportedTaskError(ValueError):
  """The checkpoint's task has no head for what was asked."""


@dataclasses.dataclass(frozen=True)
class ImageFeatures:
  """One image's pixel tokens (on the device) and how it was prepared."""
  tokens: jax.Array  # (P, D)
  mask: jax.Array  # (P,) bool, True on feature cells that see the image
  image: inputs.PreparedImage


def _encode(graphdef, state, images, image_sizes):
  model = nnx.merge(graphdef, state)
  return model.pixelbert.encode_pixels(images, image_sizes)


def _pair_outputs(graphdef, head: str, state, pixel_tokens, pixel_mask, token_ids,
                  text_mask):
  model = nnx.merge(graphdef, state)
  _, aux = model.pixelbert(token_ids, text_mask, pixel_tokens, pixel_mask)
  return aux["pooled"] if head is None else getattr(model, head)(aux["pooled"])


def _call_on_model(graphdef, fn, state, *args):
  return fn(nnx.merge(graphdef, state), *args)


def _text_to_pixel_attention(graphdef, state, pixel_tokens, pixel_mask, token_ids,
                             text_mask):
  """(layers, B, heads, T, P): each text position's attention to each pixel token."""
  model = nnx.merge(graphdef, state)
  _, aux = model.pixelbert(token_ids, text_mask, pixel_tokens, pixel_mask,
                           return_attention=True)
  num_text = token_ids.shape[1]
  return jnp.stack([probs[:, :, :num_text, num_text:] for probs in aux["attention"]])


def _kinds_serving(method: str) -> list[str]:
  """How error messages name the runs whose task serves `method`."""
  return [tasks.task_class(name).checkpoint_kind for name in tasks.task_names()
          if method in tasks.task_class(name).methods()]


class Predictor:
  """A trained run, ready for inference; see the module docstring."""

  def __init__(self, path: str | epath.PathLike, *, tokenizer: str | None = None,
               batch_size: int = 32, image_batch_size: int = 8, cache_size: int = 256):
    """Loads the run at `path` (workdir, checkpoints folder or step folder).

    Args:
      path: the training run.
      tokenizer: a tokenizer spec replacing the one in the run's config.
      batch_size: most (image, text) pairs per Transformer call.
      image_batch_size: most images per CNN call.
      cache_size: how many images' pixel tokens to keep.
    """
    self.run = loading.load_run(path, tokenizer)
    self.task = self.run.config.task
    self.model_config = self.run.model.pixelbert.config
    self.prepare_image = inputs.ImagePreparer(self.run.config.data)
    self.encode_text = inputs.TextEncoder(self.run.tokenizer,
                                          self.run.config.data.max_text_len)
    self.batch_size, self.image_batch_size = batch_size, image_batch_size
    self.cache_size = cache_size
    self._cache = collections.OrderedDict()
    self._graphdef, self._state = nnx.split(self.run.model)
    self._methods = self.run.task.methods()
    self._called = {}  # jitted `call` functions, by function
    # Public so that callers (and tests) can see or wrap each compiled piece.
    self.encode_fn = jax.jit(functools.partial(_encode, self._graphdef))
    self.attention_fn = jax.jit(functools.partial(_text_to_pixel_attention,
                                                  self._graphdef))
    self.pair_fn = jax.jit(functools.partial(_pair_outputs, self._graphdef,
                                             self.run.task.pair_head))

  def __getattr__(self, name: str):
    """The run's task's inference methods (`answer`, `match`, `judge`, ...), bound."""
    methods = self.__dict__.get("_methods", {})
    if name in methods:
      return functools.partial(methods[name], self)
    kinds = _kinds_serving(name) if not name.startswith("_") else []
    if kinds:
      supported = sorted(methods) + ["attention maps"]
      raise UnsupportedTaskError(
          f"{name}() needs a {' or '.join(kinds)} checkpoint, but {self.run.workdir} was "
          f"trained for the {self.task!r} task, which supports: {', '.join(supported)}")
    raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

  def call(self, fn, *args):
    """`fn(model, *args)` on the run's model, jitted once per `fn` (for a task's own
    pieces, e.g. NLVR2's pair head)."""
    if fn not in self._called:
      self._called[fn] = jax.jit(functools.partial(_call_on_model, self._graphdef, fn))
    return self._called[fn](self._state, *args)

  # ---- Images: the CNN once per distinct image. ----

  def image_features(self, images: Sequence[inputs.ImageInput]) -> list[ImageFeatures]:
    """Pixel tokens of each image, from the cache or from batched CNN calls."""
    prepared = [self.prepare_image(image) for image in images]
    missing = {p.key: p for p in prepared if p.key not in self._cache}
    by_bucket = collections.defaultdict(list)
    for p in missing.values():
      by_bucket[p.bucket].append(p)
    for group in by_bucket.values():
      for start in range(0, len(group), self.image_batch_size):
        self._encode_batch(group[start:start + self.image_batch_size])
    found = []
    for p in prepared:
      self._cache.move_to_end(p.key)
      found.append(self._cache[p.key])
    while len(self._cache) > max(self.cache_size, len(prepared)):
      self._cache.popitem(last=False)
    return found

  def _encode_batch(self, prepared: list[inputs.PreparedImage]) -> None:
    size = inputs.padded_count(len(prepared), self.image_batch_size)
    images, image_sizes = inputs.image_batch(prepared, size)
    tokens, mask = self.encode_fn(self._state, images, image_sizes)
    for row, p in enumerate(prepared):
      self._cache[p.key] = ImageFeatures(tokens[row], mask[row], p)

  # ---- Pairs: the Transformer and the task's head, batched per bucket. ----

  def _pair_batches(self, features: list[ImageFeatures], texts: list[str]):
    """Yields (pair indices, padded pixel tokens, mask, token ids, text mask)."""
    token_ids, text_mask = self.encode_text(texts)
    by_bucket = collections.defaultdict(list)
    for index, feature in enumerate(features):
      by_bucket[feature.image.bucket].append(index)
    for indices in by_bucket.values():
      for start in range(0, len(indices), self.batch_size):
        chunk = indices[start:start + self.batch_size]
        rows = chunk + chunk[:1] * (inputs.padded_count(len(chunk), self.batch_size)
                                    - len(chunk))
        yield (chunk, jnp.stack([features[i].tokens for i in rows]),
               jnp.stack([features[i].mask for i in rows]), token_ids[rows],
               text_mask[rows])

  def pair_logits(self, images: Sequence[inputs.ImageInput],
                  texts: Sequence[str]) -> np.ndarray:
    """The head's float32 logits for pairs (images[i], texts[i]): (N,) or (N, answers);
    for NLVR2 runs the pooled vectors (N, hidden) that its pair head takes."""
    if len(images) != len(texts):
      raise ValueError(f"{len(images)} images but {len(texts)} texts")
    if not texts:
      raise ValueError("no (image, text) pairs given")
    features = self.image_features(images)
    results = [None] * len(texts)
    for chunk, *batch in self._pair_batches(features, list(texts)):
      logits = np.asarray(self.pair_fn(self._state, *batch))
      for row, index in enumerate(chunk):
        results[index] = logits[row]
    return np.stack(results)

  def text_to_pixel_attention(self, image: inputs.ImageInput, text: str
                              ) -> tuple[np.ndarray, np.ndarray, ImageFeatures]:
    """Every layer's attention from the text positions to the pixel tokens.

    Returns:
      float32 (layers, heads, T, P) probabilities, bool (T,) text mask, and the
      image's features (its pixel mask and how it was prepared).
    """
    feature, = self.image_features([image])
    token_ids, text_mask = self.encode_text([text])
    probs = self.attention_fn(self._state, feature.tokens[None], feature.mask[None],
                              token_ids, text_mask)
    return np.asarray(probs)[:, 0], text_mask[0], feature
