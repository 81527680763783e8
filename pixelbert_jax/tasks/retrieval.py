"""Image-text retrieval fine-tuning: a ranking loss through the hardest negatives.

Data come from Karpathy's split files named in `config.data` (`dataset` "coco":
`dataset_coco.json` plus the folder holding `train2014/` and `val2014/`; "flickr30k":
`dataset_flickr30k.json` plus `flickr30k-images/`), or from the embedded synthetic
world (kind "synthetic"), whose Karpathy files have the same layout. Training reads
the captions of `data.train_splits`; evaluation scores every image of
`data.eval_split` against every caption of that split.

The paper's recipe: each training image comes with its own caption and N = 20 random
captions of other images. Every (image, caption) pair goes through the cross-modal
Transformer and a one-logit score head on the pooled [CLS]; the loss is the softmax
cross-entropy of the positive against the 5 highest-scoring negatives, chosen inside
the graph (`top_k`), so only those 5 negatives receive gradients. The CNN runs once per
image and its pixel tokens are repeated across the image's 1 + N captions; every feature
pixel is kept (random pixel sampling is for pre-training only).

The CNN is frozen by the config's optimiser groups (a `frozen` group for the backbone);
the train step then differentiates only the other parameters, so XLA never runs the
CNN's backward pass and the global gradient norm counts only what trains.

The first stage of two-stage evaluation trains beside it (`first_stage_losses`): the
mean pixel token and each caption's mean input embedding, both taken before the
Transformer and with gradients stopped, are projected into one space and trained with
a symmetric contrastive loss over the batch (each image against every caption of the
batch, each positive caption against every image). Stopping the gradients, and the
first stage's own optimiser group clipped apart (`clip_separately` in
configs/retrieval.py), keep the cross-encoder's training exactly the paper's. Its
in-batch negatives make it the one term that gradient accumulation does not split
exactly: each micro-batch contrasts only its own rows.

Loss normalisation: each loss is averaged over the valid images of the global batch;
padding and skipped images (`valid` False) count in neither sum nor count, and are no
one's negatives.
"""


import jax
import jax.numpy as jnp
import optax
from absl import logging
from flax import nnx

from pixelbert_jax.data import pipeline
from pixelbert_jax.data.readers import coco, flickr30k
from pixelbert_jax.evaluators import retrieval_evaluator
from pixelbert_jax.models import heads, layers
from pixelbert_jax.models.pixelbert import PixelBert
from pixelbert_jax.models.variants import ModelConfig
from pixelbert_jax.tasks import base, common, matching

_READERS = {"coco": (coco.read_karpathy, coco.read_karpathy_retrieval),
            "flickr30k": (flickr30k.read_flickr30k, flickr30k.read_flickr30k_retrieval)}
NUM_HARD_NEGATIVES = 5
FIRST_STAGE_DIM = 256
FIRST_STAGE_TEMPERATURE = 0.07  # CLIP's and ALBEF's starting value


def loss_weights(first_stage_weight: float = 1.0) -> dict[str, float]:
  """The objective: the ranking loss, plus the first stage's contrastive loss."""
  return {"retrieval_loss": 1.0, "first_stage_loss": first_stage_weight}


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
  """(..., L, D), (..., L) -> (..., D) float32 mean over the True positions."""
  weights = mask.astype(jnp.float32)[..., None]
  total = jnp.sum(values.astype(jnp.float32) * weights, axis=-2)
  return total / jnp.maximum(jnp.sum(weights, axis=-2), 1.0)


class RetrievalModel(nnx.Module):
  """The Pixel-BERT body with a one-logit (image, text) score head, and the two-stage
  evaluation's first stage."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs,
               first_stage_dim: int | None = FIRST_STAGE_DIM):
    """`first_stage_dim` None builds no first stage, as runs before it had: their
    two-stage mode compares the pooled embeddings themselves."""
    dtype = layers.compute_dtype(config.dtype)
    hidden, init_std = config.transformer.hidden, config.transformer.init_std
    self.pixelbert = PixelBert(config, rngs=rngs)
    self.score_head = heads.ScoreHead(hidden, dtype=dtype, rngs=rngs, init_std=init_std)
    self.first_stage = heads.DualEmbedding(
        hidden, first_stage_dim, dtype=dtype, rngs=rngs,
        init_std=init_std) if first_stage_dim else None

  def image_embedding(self, pixel_tokens: jax.Array, pixel_mask: jax.Array) -> jax.Array:
    """(B, P, D) pixel tokens -> (B, E) first-stage unit vectors."""
    pooled = jax.lax.stop_gradient(masked_mean(pixel_tokens, pixel_mask))
    return self.first_stage.embed_images(pooled) if self.first_stage else pooled

  def text_embedding(self, token_ids: jax.Array, text_mask: jax.Array) -> jax.Array:
    """(..., T) captions -> (..., E) first-stage unit vectors (no Transformer)."""
    length = token_ids.shape[-1]
    embedded = self.pixelbert.text_embedder(token_ids.reshape(-1, length))
    pooled = masked_mean(embedded, text_mask.reshape(-1, length))
    pooled = jax.lax.stop_gradient(pooled.reshape(token_ids.shape[:-1] + pooled.shape[-1:]))
    return self.first_stage.embed_texts(pooled) if self.first_stage else pooled

  def score_pairs(self, pixel_tokens: jax.Array, pixel_mask: jax.Array,
                  token_ids: jax.Array, text_mask: jax.Array) -> jax.Array:
    """(K, P, D) pixel tokens and (K, T) captions, pair by pair -> (K,) float32 scores."""
    _, aux = self.pixelbert(token_ids, text_mask, pixel_tokens, pixel_mask)
    return self.score_head(aux["pooled"])

  def __call__(self, token_ids: jax.Array, text_mask: jax.Array, images: jax.Array,
               image_sizes: jax.Array) -> jax.Array:
    """(B, C, T) captions per image and (B, H, W, 3) uint8 images -> (B, C) scores."""
    pixels, pixel_mask = self.pixelbert.encode_pixels(images, image_sizes)
    return self.caption_scores(pixels, pixel_mask, token_ids, text_mask)

  def caption_scores(self, pixels: jax.Array, pixel_mask: jax.Array,
                     token_ids: jax.Array, text_mask: jax.Array) -> jax.Array:
    """(B, P, D) pixel tokens and (B, C, T) captions per image -> (B, C) scores."""
    batch, captions = token_ids.shape[:2]
    # Row b * C + c pairs image b with its caption c: the CNN ran once per image.
    scores = self.score_pairs(jnp.repeat(pixels, captions, axis=0),
                              jnp.repeat(pixel_mask, captions, axis=0),
                              token_ids.reshape(batch * captions, -1),
                              text_mask.reshape(batch * captions, -1))
    return scores.reshape(batch, captions)


def hardest_negative_losses(scores: jax.Array,
                            num_hard: int = NUM_HARD_NEGATIVES) -> jax.Array:
  """(B, 1 + N) scores, positive first -> (B,) cross-entropy over the positive and the
  `num_hard` highest-scoring negatives; the other negatives get no gradient."""
  hardest, _ = jax.lax.top_k(scores[:, 1:], min(num_hard, scores.shape[1] - 1))
  logits = jnp.concatenate([scores[:, :1], hardest], axis=1)
  return optax.softmax_cross_entropy_with_integer_labels(
      logits, jnp.zeros(scores.shape[0], jnp.int32))


def first_stage_losses(image_emb: jax.Array, text_emb: jax.Array, valid: jax.Array,
                       temperature: float = FIRST_STAGE_TEMPERATURE
                       ) -> tuple[jax.Array, jax.Array]:
  """(B, E) images, (B, C, E) captions (each image's own first), (B,) valid ->
  ((B,) symmetric contrastive losses, (B,) whether each image's nearest caption of
  the batch is its own)."""
  batch, captions = text_emb.shape[:2]
  valid = valid.astype(bool)
  never = jnp.finfo(jnp.float32).min  # invalid rows are nobody's negatives
  all_texts = text_emb.reshape(batch * captions, -1)
  to_texts = jnp.where(jnp.repeat(valid, captions)[None],
                       image_emb @ all_texts.T / temperature, never)
  own_text = jnp.arange(batch) * captions
  to_images = jnp.where(valid[None], text_emb[:, 0] @ image_emb.T / temperature, never)
  cross_entropy = optax.softmax_cross_entropy_with_integer_labels
  losses = 0.5 * (cross_entropy(to_texts, own_text)
                  + cross_entropy(to_images, jnp.arange(batch)))
  return losses, jnp.argmax(to_texts, axis=1) == own_text


def make_loss_fn(num_hard: int = NUM_HARD_NEGATIVES,
                 temperature: float = FIRST_STAGE_TEMPERATURE):
  """`loss_fn(model, batch, key)` -> the ranking and first-stage losses and accuracies,
  summed over the valid images."""

  def loss_fn(model: RetrievalModel, batch: dict, key: jax.Array) -> dict:
    del key  # No pixel sampling; dropout draws from the model's own stream.
    pixels, pixel_mask = model.pixelbert.encode_pixels(batch["images"],
                                                       batch["image_sizes"])
    scores = model.caption_scores(pixels, pixel_mask, batch["token_ids"],
                                  batch["text_mask"])
    first_losses, first_right = first_stage_losses(
        model.image_embedding(pixels, pixel_mask),
        model.text_embedding(batch["token_ids"], batch["text_mask"]), batch["valid"],
        temperature)
    valid = batch["valid"].astype(jnp.float32)
    # Accuracy: the positive outscores all N negatives (R@1 among 1 + N captions).
    right = (jnp.argmax(scores, axis=1) == 0).astype(jnp.float32)
    return {"retrieval_loss": jnp.sum(hardest_negative_losses(scores, num_hard) * valid),
            "retrieval_accuracy": jnp.sum(right * valid),
            "first_stage_loss": jnp.sum(first_losses * valid),
            "first_stage_accuracy": jnp.sum(first_right.astype(jnp.float32) * valid)}

  return loss_fn


def counts_fn(batch: dict) -> dict:
  """Every sum is per valid image of the global batch."""
  valid = jnp.sum(batch["valid"].astype(jnp.float32))
  return {name: valid for name in ("retrieval_loss", "retrieval_accuracy",
                                   "first_stage_loss", "first_stage_accuracy")}


# ---- Evaluation: the retrieval evaluator's three predict functions. ----


def encode_images(model: RetrievalModel, batch: dict) -> dict:
  pixels, mask = model.pixelbert.encode_pixels(batch["images"], batch["image_sizes"])
  return {"pixel_tokens": pixels, "pixel_mask": mask,
          "image_embedding": model.image_embedding(pixels, mask)}


def embed_texts(model: RetrievalModel, batch: dict) -> dict:
  return {"text_embedding": model.text_embedding(batch["token_ids"], batch["text_mask"])}


def score_pairs(model: RetrievalModel, batch: dict) -> dict:
  """Pairs (image_rows[k] of the cached batch, text_rows[k] of the table) -> scores."""
  rows, texts = batch["image_rows"], batch["text_rows"]
  return {"scores": model.score_pairs(
      jnp.take(batch["pixel_tokens"], rows, axis=0),
      jnp.take(batch["pixel_mask"], rows, axis=0),
      jnp.take(batch["table_token_ids"], texts, axis=0),
      jnp.take(batch["table_text_mask"], texts, axis=0))}


PREDICT_FNS = {"encode_images": encode_images, "embed_texts": embed_texts,
               "score_pairs": score_pairs}


# ---- Data. ----


def _files(data_cfg, world: dict | None) -> tuple[str, str]:
  """(Karpathy split file, image folder) of `data.dataset`."""
  if data_cfg.dataset not in _READERS:
    raise ValueError(f"Unknown config.data.dataset {data_cfg.dataset!r}: use coco or "
                     "flickr30k")
  if world:
    return ((world["karpathy_coco"], world["coco_root"]) if data_cfg.dataset == "coco"
            else (world["karpathy_flickr30k"], world["flickr30k_images"]))
  if not (data_cfg.karpathy_json and data_cfg.images):
    raise ValueError(
        "config.data.karpathy_json and images are required for real retrieval data, "
        "e.g. --config.data.karpathy_json=.../dataset_coco.json --config.data.images="
        ".../coco (holding train2014/ and val2014/); or use configs/retrieval.py:demo")
  return data_cfg.karpathy_json, data_cfg.images


def read_data(data_cfg, world: dict | None) -> tuple[list, list]:
  """(training captions as ImageText, evaluation images as RetrievalItem)."""
  path, images = _files(data_cfg, world)
  read_train, read_items = _READERS[data_cfg.dataset]
  splits = list(data_cfg.train_splits)
  found = common.read_split(f"retrieval-{data_cfg.dataset}", [
      lambda skips: [("train", e) for e in read_train(path, images, splits, skips=skips)],
      lambda skips: [("eval", i) for i in read_items(path, images, data_cfg.eval_split,
                                                     skips=skips)]],
                            data_cfg.max_skip_fraction)
  train = [e for split, e in found if split == "train"]
  items = [e for split, e in found if split == "eval"]
  logging.info("Retrieval %s: %d training captions (%s), %d %s images with %d captions",
               data_cfg.dataset, len(train), splits, len(items), data_cfg.eval_split,
               sum(len(i.texts) for i in items))
  return train, items


class Task(base.Task):
  """Image-text retrieval fine-tuning and evaluation (see the module docstring)."""

  name = "retrieval"
  checkpoint_kind = "retrieval"
  data_paths = base.DataPaths(required=("karpathy_json", "images"))
  pair_head = "score_head"
  capabilities = (matching.CAPABILITY,)

  def make_model(self, model_config, meta, *, rngs):
    del meta
    # Runs from before the first stage existed have no `first_stage` in their config.
    first_stage = self.config.get("first_stage") or {}
    return RetrievalModel(model_config, rngs=rngs, first_stage_dim=first_stage.get("dim"))

  def objective(self) -> base.Objective:
    config = self.config
    return base.Objective(
        make_loss_fn(config.num_hard_negatives, temperature=config.first_stage.temperature),
        counts_fn, loss_weights(config.first_stage.loss_weight))

  def make_data(self, workdir: str) -> base.TaskData:
    config, data_cfg = self.config, self.config.data
    world, tokenizer = common.world_and_tokenizer(data_cfg, workdir)
    train, items = read_data(data_cfg, world)
    train_iter = pipeline.retrieval_train_pipeline(
        train, tokenizer, common.pipeline_config(config, training=True),
        seed=config.seed, num_negatives=config.num_negatives, **common.process_shard())
    eval_cfg = common.pipeline_config(config, training=False)
    eval_source = pipeline.as_source(items)  # image sizes read once, not per evaluation
    return base.TaskData(tokenizer, train_iter, {}, dict(
        make_image_iterator=lambda: pipeline.image_pipeline(
            eval_source, eval_cfg, **common.process_shard()),
        num_images=len(items),
        texts=pipeline.tokenize_retrieval_texts(items, tokenizer, data_cfg.max_text_len)))

  def make_evaluators(self, data, context):
    config = self.config
    return {"retrieval": retrieval_evaluator.RetrievalEvaluator(
        PREDICT_FNS, context, pairs_per_call=config.eval_pairs_per_call,
        top_k=config.eval_top_k, num_folds=config.eval_folds, **data.evaluation)}

  def init_from_modules(self, model):
    """The body, and the pre-training ITM head into the score head if asked."""
    modules = {"pixelbert": model.pixelbert}
    if self.config.init_score_head_from_itm:
      modules["itm_head"] = model.score_head
    return modules
