"""Pre-training: masked language modelling and image-text matching with pixel sampling.

Per step, inside the graph: the CNN runs once per image; each example keeps k random
valid pixels (per-example keys, so micro-batching does not change the draw); MLM is
computed on the matched pairs with masked text; for ITM half of the examples get the
caption of another example of the (micro-)batch and the rest keep their own. With
`itm_swap_share` > 0 and batches carrying swapped captions (`data.swaps`), that share
of the negatives instead gets its own caption with one word swapped: a hard negative.

Data: COCO (Karpathy train + restval) and Visual Genome, or the synthetic world; or
a weighted mixture of sources (`data.mixture`: COCO, VG, CC3M, CC12M, SBU,
img2dataset output, packed folders; see `data.mixture`). Nothing from the Karpathy
test images reaches pre-training: VG images that are COCO test images are excluded,
as the paper requires.

The held-out evaluation (`probe_fn`) reports MLM and ITM, and the grounding probe: it
masks every visual word of a caption (colours, shapes, counts) and fills them in twice,
with the caption's own image and with the images shuffled across the batch; where the
text alone cannot tell the word, the gap between the two accuracies is what the model
learned to read from the pixels. Where the batches carry swapped captions
(`data.swaps`), `itm_swap_ranking` is how often the ITM head scores a caption above
its own copy with one colour or shape word swapped: binding, beyond a bag of words.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx

from pixelbert_jax.data import mixture
from pixelbert_jax.data import pipeline
from pixelbert_jax.data import synthetic
from pixelbert_jax.data.readers import coco, visual_genome
from pixelbert_jax.evaluators import average as average_lib
from pixelbert_jax.models import heads, layers
from pixelbert_jax.models.pixel_sampling import sample_pixels
from pixelbert_jax.models.pixelbert import PixelBert
from pixelbert_jax.models.variants import ModelConfig
from pixelbert_jax import train_step
from pixelbert_jax.tasks import base, common, matching
from pixelbert_jax.weights import init_checkpoint

class PretrainModel(nnx.Module):
  """The Pixel-BERT body with the MLM and ITM heads."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    dtype = layers.compute_dtype(config.dtype)
    self.pixelbert = PixelBert(config, rngs=rngs)
    self.mlm_head = heads.MLMHead(config.transformer, dtype=dtype, rngs=rngs)
    self.itm_head = heads.ScoreHead(config.transformer.hidden, dtype=dtype, rngs=rngs,
                                    init_std=config.transformer.init_std)

  def mlm_logits(self, text_states: jax.Array) -> jax.Array:
    return self.mlm_head(text_states, self.pixelbert.text_embedder.word.embedding[...])


def example_keys(key: jax.Array, positions: jax.Array) -> jax.Array:
  """One key per example, a function of its position in the global batch."""
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(positions)


def sampled_pixels(model: PretrainModel, batch: dict, key: jax.Array, num_samples: int):
  """Encodes the images once and keeps `num_samples` random valid pixels per example."""
  tokens, mask = model.pixelbert.encode_pixels(batch["images"], batch["image_sizes"])
  keys = example_keys(jax.random.fold_in(key, 0),
                      batch[train_step.BATCH_POSITION_KEY])
  pick = lambda k, t, m: sample_pixels(k, t[None], m[None], num_samples)[:2]
  tokens, mask = jax.vmap(pick)(keys, tokens, mask)
  return tokens[:, 0], mask[:, 0]


def itm_partners(key: jax.Array, batch_size: int) -> jax.Array:
  """For each example, whose caption it gets: itself, or (for half) another example's."""
  shuffle_key, offset_key = jax.random.split(key)
  order = jax.random.permutation(shuffle_key, batch_size)
  negative = jnp.zeros(batch_size, bool).at[order[:batch_size // 2]].set(True)
  offsets = jax.random.randint(offset_key, (batch_size,), 1, max(batch_size, 2))
  others = (jnp.arange(batch_size) + offsets) % batch_size
  return jnp.where(negative & (batch_size > 1), others, jnp.arange(batch_size))


def swapped_negatives(key: jax.Array, batch: dict, partner: jax.Array,
                      share: float) -> jax.Array:
  """(B,) bool: the negatives that take their own swapped caption instead."""
  if share <= 0 or "swap_ids" not in batch:
    return jnp.zeros(partner.shape, bool)
  negative = partner != jnp.arange(partner.shape[0])
  chosen = jax.random.uniform(key, partner.shape) < share
  return negative & chosen & batch["has_swap"]


def mlm_sums(model, batch, tokens, mask) -> dict:
  """Masked-token cross-entropy and accuracy sums on the (matched) pairs."""
  _, aux = model.pixelbert(batch["mlm_ids"], batch["text_mask"], tokens, mask)
  logits = model.mlm_logits(aux["text"])
  weights = batch["mlm_weights"] * batch["valid"][:, None]
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["mlm_labels"])
  correct = jnp.argmax(logits, -1) == batch["mlm_labels"]
  return {"mlm_loss": jnp.sum(loss * weights), "mlm_accuracy": jnp.sum(correct * weights)}


def itm_sums(model, batch, tokens, mask, key, swap_share: float = 0.0) -> dict:
  """Binary match loss on clean text, half of it re-paired with other images (or,
  for `swap_share` of those, with its own caption one word off)."""
  partner = itm_partners(jax.random.fold_in(key, 1), batch["token_ids"].shape[0])
  swap = swapped_negatives(jax.random.fold_in(key, 2), batch, partner, swap_share)
  ids, text_mask = batch["token_ids"][partner], batch["text_mask"][partner]
  if "swap_ids" in batch:  # a swap keeps every position, so its own text mask
    ids = jnp.where(swap[:, None], batch["swap_ids"], ids)
    text_mask = jnp.where(swap[:, None], batch["text_mask"], text_mask)
  _, aux = model.pixelbert(ids, text_mask, tokens, mask)
  logits = model.itm_head(aux["pooled"])
  labels = (partner == jnp.arange(partner.shape[0])).astype(jnp.float32)
  if "image_ids" in batch:  # a caption of the same image is a match, not a negative
    labels = jnp.maximum(labels, batch["image_ids"][partner] == batch["image_ids"])
  labels = jnp.where(swap, 0.0, labels)
  weights = (batch["valid"] & (batch["valid"][partner] | swap)).astype(jnp.float32)
  loss = optax.sigmoid_binary_cross_entropy(logits, labels)
  correct = (logits > 0) == (labels > 0.5)
  return {"itm_loss": jnp.sum(loss * weights), "itm_accuracy": jnp.sum(correct * weights)}


def make_loss_fn(num_sampled_pixels: int | None, use_mlm: bool = True, use_itm: bool = True,
                 itm_swap_share: float = 0.0):
  """The pre-training loss as {name: sum}; either objective may be switched off."""

  def loss_fn(model: PretrainModel, batch: dict, key: jax.Array) -> dict:
    tokens, mask = sampled_pixels(model, batch, key, num_sampled_pixels)
    sums = {}
    if use_mlm:
      sums.update(mlm_sums(model, batch, tokens, mask))
    if use_itm:
      sums.update(itm_sums(model, batch, tokens, mask, key, itm_swap_share))
    return sums

  return loss_fn


def counts_fn(batch: dict) -> dict:
  """Global normalisers: masked tokens for MLM, valid examples for ITM."""
  valid = batch["valid"].astype(jnp.float32)
  masked = jnp.sum(batch["mlm_weights"] * valid[:, None])
  return {"mlm_loss": masked, "mlm_accuracy": masked, "itm_loss": jnp.sum(valid),
          "itm_accuracy": jnp.sum(valid)}


def loss_weights(use_mlm: bool = True, use_itm: bool = True) -> dict:
  """The objective's terms: each enabled loss with weight 1, as the paper sums them."""
  return {name: 1.0 for name, on in (("mlm_loss", use_mlm), ("itm_loss", use_itm)) if on}


# ---- Held-out evaluation: MLM, ITM, the grounding probe, swap ranking. ----


def _visual_accuracy(model, batch, tokens, mask, visual_ids, mask_id) -> dict:
  is_visual = jnp.isin(batch["token_ids"], visual_ids) & batch["text_mask"]
  is_visual &= batch["valid"][:, None]
  masked_ids = jnp.where(is_visual, mask_id, batch["token_ids"])
  right = {}
  images = {"visual_words_true_image": (tokens, mask),
            "visual_words_shuffled_image": (jnp.roll(tokens, 1, 0), jnp.roll(mask, 1, 0))}
  for name, (pixels, pixel_mask) in images.items():
    _, aux = model.pixelbert(masked_ids, batch["text_mask"], pixels, pixel_mask)
    guess = jnp.argmax(model.mlm_logits(aux["text"]), -1)
    right[name] = jnp.sum((guess == batch["token_ids"]) & is_visual)
  count = jnp.sum(is_visual)
  found = {name: average_lib.average(value, count) for name, value in right.items()}
  found["grounding_gap"] = average_lib.average(
      right["visual_words_true_image"] - right["visual_words_shuffled_image"], count)
  return found


def _swap_ranking(model, batch, tokens, mask) -> dict:
  def itm_logits(ids):
    _, aux = model.pixelbert(ids, batch["text_mask"], tokens, mask)
    return model.itm_head(aux["pooled"])

  counted = batch["has_swap"] & batch["valid"]
  above = itm_logits(batch["token_ids"]) > itm_logits(batch["swap_ids"])
  return {"itm_swap_ranking": average_lib.average(jnp.sum(above & counted),
                                                  jnp.sum(counted))}


def make_probe_fn(visual_ids: np.ndarray, mask_id: int, num_sampled_pixels: int | None):
  """`probe_fn(model, batch, key) -> {name: Average}` for `AverageEvaluator`."""
  visual_ids = jnp.asarray(visual_ids, jnp.int32)

  def probe_fn(model, batch, key):
    batch = train_step.with_batch_positions(batch)
    tokens, mask = sampled_pixels(model, batch, key, num_sampled_pixels)
    sums = mlm_sums(model, batch, tokens, mask)
    sums.update(itm_sums(model, batch, tokens, mask, key))
    counts = counts_fn(batch)
    found = {name: average_lib.average(total, counts[name]) for name, total in sums.items()}
    found.update(_visual_accuracy(model, batch, tokens, mask, visual_ids, mask_id))
    if "swap_ids" in batch:
      found.update(_swap_ranking(model, batch, tokens, mask))
    return found

  return probe_fn


def _visual_ids(tokenizer, words) -> np.ndarray:
  ids = [tokenizer.text_to_ids(word) for word in words]
  return np.asarray(sorted({i[0] for i in ids if len(i) == 1}), np.int32)


# ---- Data. ----


def _karpathy(path, root, splits, skips):
  return list(coco.read_karpathy(path, root, splits=splits, skips=skips))


def read_mixture(data_cfg, world: dict | None) -> tuple[mixture.MixtureSource, list]:
  """(the mixture of `data.mixture`'s sources, held-out examples): each source read
  with its own skip bound; the held-out set is the Karpathy val split of its COCO."""
  specs = mixture.specs_from_config(data_cfg.mixture, world, data_cfg.max_skip_fraction)
  karpathy = mixture.karpathy_json(specs)
  if karpathy is None:
    raise ValueError("data.mixture needs a karpathy source: its val split is the "
                     "held-out set")
  parts = []
  for spec in specs:
    read = mixture.reader(spec, karpathy)
    examples = None if read is None else common.read_split(
        f"pretrain-{spec.name}", [read], spec.max_skip_fraction)
    parts.append(mixture.open_source(spec, examples))
  image_root = next(s.paths[1] for s in specs if s.format == "karpathy")
  held_out = common.read_split("pretrain-held-out", [
      lambda skips: _karpathy(karpathy, image_root, ("val",), skips)],
                               data_cfg.max_skip_fraction)
  logging.info("Pre-training on a mixture of %s (%d examples), %d held out",
               ", ".join(f"{s.name}: {len(p)}" for s, p in zip(specs, parts)),
               sum(len(p) for p in parts), len(held_out))
  return mixture.MixtureSource(specs, parts), held_out


def read_examples(data_cfg, world: dict | None) -> tuple[list, list]:
  """(train examples, held-out examples), with a bound on skipped entries; with
  `data.mixture` the train examples are a `mixture.MixtureSource`."""
  if data_cfg.get("mixture"):
    return read_mixture(data_cfg, world)
  if world:
    karpathy, image_root = world["karpathy_coco"], world["coco_root"]
    regions = (world["vg_region_descriptions"], world["vg_image_data"], world["vg_root"])
  else:
    karpathy, image_root = data_cfg.karpathy_json, data_cfg.coco_image_root
    regions = (data_cfg.vg_regions, data_cfg.vg_image_data, data_cfg.vg_image_root)

  def read_train(skips):
    train = _karpathy(karpathy, image_root, ("train", "restval"), skips)
    if regions[0]:  # the test images' ids only: their captions are no pre-training data
      test_ids = coco.karpathy_coco_ids(karpathy, ("test",))
      train += list(visual_genome.read_visual_genome(
          *regions, exclude_coco_ids=test_ids, skips=skips))
    return [("train", e) for e in train]

  found = common.read_split("pretrain-readers", [read_train, lambda skips: [
      ("held_out", e) for e in _karpathy(karpathy, image_root, ("val",), skips)]],
                            data_cfg.max_skip_fraction)
  train = [e for split, e in found if split == "train"]
  held_out = [e for split, e in found if split == "held_out"]
  logging.info("Pre-training on %d pairs, %d held out", len(train), len(held_out))
  return train, held_out


class Task(base.Task):
  """MLM + ITM pre-training with random pixel sampling (see the module docstring)."""

  name = "pretrain"
  checkpoint_kind = "pre-training"
  data_paths = base.DataPaths(
      required=("karpathy_json", "coco_image_root"),
      optional=(("vg_regions", "vg_image_data", "vg_image_root"),))
  pair_head = "itm_head"
  capabilities = (matching.CAPABILITY,)
  model_class = PretrainModel

  def objective(self) -> base.Objective:
    config, use = self.config, self.config.objectives
    return base.Objective(
        make_loss_fn(config.num_sampled_pixels, use.mlm, use.itm, config.itm_swap_share),
        counts_fn, loss_weights(use.mlm, use.itm))

  def make_data(self, workdir: str) -> base.TaskData:
    config, data_cfg = self.config, self.config.data
    world, tokenizer = common.world_and_tokenizer(data_cfg, workdir)
    train, held_out = read_examples(data_cfg, world)
    # Swapped captions serve training only when they take a share of the negatives;
    # the evaluation's binding measure reads them whenever the config names groups.
    swap_fields = {} if config.itm_swap_share else {"itm_swap_words": ()}
    train_iter = pipeline.pretrain_pipeline(
        train, tokenizer, common.pipeline_config(config, training=True, **swap_fields),
        seed=config.seed, **common.process_shard())
    eval_cfg = common.pipeline_config(config, training=False, mlm_focus_share=0.0)
    make_eval_iter = lambda: pipeline.pretrain_pipeline(  # plain BERT masking
        held_out, tokenizer, eval_cfg, seed=config.seed + 1, training=False,
        **common.process_shard())
    words = config.probe_words or (synthetic.VISUAL_WORDS if world else ())
    return base.TaskData(tokenizer, train_iter, {}, dict(
        make_iterator=make_eval_iter, visual_ids=_visual_ids(tokenizer, words),
        mask_id=tokenizer.mask_id))

  def make_evaluators(self, data, context):
    probe_fn = make_probe_fn(data.evaluation["visual_ids"], data.evaluation["mask_id"],
                             self.config.eval_num_sampled_pixels)
    return {"eval": average_lib.AverageEvaluator(
        probe_fn, context, make_iterator=data.evaluation["make_iterator"],
        num_batches=self.config.eval_batches, seed=self.config.seed)}

  def init_modules(self, model):
    return init_checkpoint.component_modules(model.pixelbert, model.mlm_head)
