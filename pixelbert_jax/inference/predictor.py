"""`Predictor`: a trained checkpoint answering questions and scoring image-text pairs.

    predictor = Predictor("/tmp/vqa_demo")
    predictor.answer("cat.jpg", "what colour is the cat?", top_k=3)
    Predictor("/tmp/pixelbert_demo").rank_texts("cat.jpg", ["a cat", "two dogs"])
    Predictor("/tmp/nlvr2_demo").judge("left.jpg", "right.jpg", "both have a cat.")

The model is loaded once (`loading.load_run`) and split into two jitted pieces, as
the retrieval evaluator does: the CNN runs once per distinct image (pixel tokens are
cached, keyed by the image's content), and the cross-modal Transformer with the task's
head scores (image, text) pairs in batches. Batches are padded to a power of two up
to `batch_size`, and pairs are grouped by image bucket, so each piece compiles once
per (bucket, batch shape). Scores are sigmoid probabilities: the VQA head was trained
with BCE, the ITM head with a binary loss; a retrieval head was trained to rank, so
its sigmoid orders pairs but is not calibrated. An NLVR2 statement is judged as the
model was trained: (left, statement) and (right, statement) through the Transformer
separately, their pooled vectors concatenated into the pair head's softmax.
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

# What a checkpoint of each task can do, for error messages.
SUPPORTED = {
    "vqa": ("answer", "attention maps"),
    "pretrain": ("match", "rank_images", "rank_texts", "attention maps"),
    "retrieval": ("match", "rank_images", "rank_texts", "attention maps"),
    "nlvr2": ("judge", "attention maps"),
}
# The head on the pooled [CLS] that scores a pair, per task; NLVR2's head takes two
# pairs' pooled vectors, so its pair piece stops at the pooled vector.
PAIR_HEADS = {"vqa": "vqa_head", "pretrain": "itm_head", "retrieval": "score_head",
              "nlvr2": None}
# Who can do what a method needs: its task and the tasks whose heads also serve it.
_SERVES = {"vqa": ("vqa",), "pretrain": ("pretrain", "retrieval"), "nlvr2": ("nlvr2",)}
_CHECKPOINT_KIND = {"vqa": "VQA", "pretrain": "pre-training or retrieval",
                    "nlvr2": "NLVR2"}


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


def _nlvr2_pair_logits(graphdef, state, left_pooled, right_pooled):
  """(B, 2) false/true logits from the two images' pooled vectors, left first."""
  model = nnx.merge(graphdef, state)
  return model.nlvr2_head(jnp.concatenate([left_pooled, right_pooled], axis=-1))


def _text_to_pixel_attention(graphdef, state, pixel_tokens, pixel_mask, token_ids,
                             text_mask):
  """(layers, B, heads, T, P): each text position's attention to each pixel token."""
  model = nnx.merge(graphdef, state)
  _, aux = model.pixelbert(token_ids, text_mask, pixel_tokens, pixel_mask,
                           return_attention=True)
  num_text = token_ids.shape[1]
  return jnp.stack([probs[:, :, :num_text, num_text:] for probs in aux["attention"]])


def _sigmoid(logits: np.ndarray) -> np.ndarray:
  # In float64, so that confident scores stay distinct instead of all rounding to 1.
  return 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))


def _ranking(scores: np.ndarray) -> list[tuple[int, float]]:
  order = np.argsort(-scores, kind="stable")
  return [(int(i), float(scores[i])) for i in order]


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
    self.task = self.run.task
    self.model_config = self.run.model.pixelbert.config
    self.prepare_image = inputs.ImagePreparer(self.run.config.data)
    self.encode_text = inputs.TextEncoder(self.run.tokenizer,
                                          self.run.config.data.max_text_len)
    self.batch_size, self.image_batch_size = batch_size, image_batch_size
    self.cache_size = cache_size
    self._cache = collections.OrderedDict()
    graphdef, self._state = nnx.split(self.run.model)
    # Public so that callers (and tests) can see or wrap each compiled piece.
    self.encode_fn = jax.jit(functools.partial(_encode, graphdef))
    self.attention_fn = jax.jit(functools.partial(_text_to_pixel_attention, graphdef))
    self.pair_fn = (jax.jit(functools.partial(_pair_outputs, graphdef,
                                              PAIR_HEADS[self.task]))
                    if self.task in PAIR_HEADS else None)
    self.nlvr2_fn = (jax.jit(functools.partial(_nlvr2_pair_logits, graphdef))
                     if self.task == "nlvr2" else None)

  def _require(self, method: str, task: str) -> None:
    if self.task not in _SERVES[task]:
      raise UnsupportedTaskError(
          f"{method}() needs a {_CHECKPOINT_KIND[task]} checkpoint, but {self.run.workdir} was trained "
          f"for the {self.task!r} task, which supports: {', '.join(SUPPORTED[self.task])}")

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

  # ---- The task-level API. ----

  def answer_batch(self, images: Sequence[inputs.ImageInput], questions: Sequence[str],
                   top_k: int = 5) -> list[list[tuple[str, float]]]:
    """For each (image, question), the `top_k` answers with their probabilities."""
    self._require("answer", "vqa")
    if top_k < 1:
      raise ValueError(f"top_k must be at least 1, got {top_k}")
    logits = self.pair_logits(images, questions)
    best = np.argsort(-logits, axis=1, kind="stable")[:, :top_k]
    scores = _sigmoid(np.take_along_axis(logits, best, axis=1))
    answers = self.run.answer_vocab.answers
    return [[(answers[i], float(s)) for i, s in zip(row, row_scores)]
            for row, row_scores in zip(best, scores)]

  def answer(self, image: inputs.ImageInput, question: str,
             top_k: int = 5) -> list[tuple[str, float]]:
    """The `top_k` answers to a question about an image, most likely first."""
    return self.answer_batch([image], [question], top_k)[0]

  def match_batch(self, images: Sequence[inputs.ImageInput],
                  texts: Sequence[str]) -> list[float]:
    """For each (image, text), the probability that the text describes the image."""
    self._require("match", "pretrain")
    return [float(s) for s in _sigmoid(self.pair_logits(images, texts))]

  def match(self, image: inputs.ImageInput, text: str) -> float:
    """The probability that `text` describes `image`."""
    return self.match_batch([image], [text])[0]

  def rank_images(self, text: str, images: Sequence[inputs.ImageInput]
                  ) -> list[tuple[int, float]]:
    """(index into `images`, match probability), best match first."""
    self._require("rank_images", "pretrain")
    return _ranking(_sigmoid(self.pair_logits(images, [text] * len(images))))

  def rank_texts(self, image: inputs.ImageInput, texts: Sequence[str]
                 ) -> list[tuple[int, float]]:
    """(index into `texts`, match probability), best match first."""
    self._require("rank_texts", "pretrain")
    return _ranking(_sigmoid(self.pair_logits([image] * len(texts), texts)))

  def judge_batch(self, lefts: Sequence[inputs.ImageInput],
                  rights: Sequence[inputs.ImageInput],
                  statements: Sequence[str]) -> list[float]:
    """For each (left, right, statement), the probability that the statement is true
    of the image pair (NLVR2 runs)."""
    self._require("judge", "nlvr2")
    if len(lefts) != len(rights):
      raise ValueError(f"{len(lefts)} left images but {len(rights)} right ones")
    left = self.pair_logits(lefts, statements)
    right = self.pair_logits(rights, statements)
    logits = np.asarray(self.nlvr2_fn(self._state, left, right))
    return [float(p) for p in _sigmoid(logits[:, 1] - logits[:, 0])]  # softmax's "true"

  def judge(self, left: inputs.ImageInput, right: inputs.ImageInput,
            statement: str) -> float:
    """The probability that `statement` is true of the pair (left, right)."""
    return self.judge_batch([left], [right], [statement])[0]

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
