"""Wires image-text retrieval fine-tuning together: data, model, loss, evaluation.

Data come from Karpathy's split files named in `config.data` (`dataset` "coco":
`dataset_coco.json` plus the folder holding `train2014/` and `val2014/`; "flickr30k":
`dataset_flickr30k.json` plus `flickr30k-images/`), or from the embedded synthetic
world (kind "synthetic"), whose Karpathy files have the same layout. Training reads
the captions of `data.train_splits`; evaluation scores every image of
`data.eval_split` against every caption of that split.
"""

import re

from absl import logging

from pixelbert_jax.data import pipeline
from pixelbert_jax.data import skips as skips_lib
from pixelbert_jax.data.readers import coco, flickr30k
from pixelbert_jax.evaluators import retrieval_evaluator
from pixelbert_jax.tasks import init_from, pretrain_data, registry, retrieval
from pixelbert_jax.weights import init_checkpoint

# A parameter path inside the CNN, to find the optimiser group that holds it.
BACKBONE_PATH = "pixelbert/pixel_encoder/backbone/"
_READERS = {"coco": (coco.read_karpathy, coco.read_karpathy_retrieval),
            "flickr30k": (flickr30k.read_flickr30k, flickr30k.read_flickr30k_retrieval)}


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
  skips = skips_lib.SkipCounter(f"retrieval-{data_cfg.dataset}",
                                max_skip_fraction=data_cfg.max_skip_fraction)
  splits = [s.strip() for s in data_cfg.train_splits.split(",") if s.strip()]
  train = list(read_train(path, images, splits, skips=skips))
  items = list(read_items(path, images, data_cfg.eval_split, skips=skips))
  skips.check(len(train) + len(items) + skips.total, final=True)
  logging.info("Retrieval %s: %d training captions (%s), %d %s images with %d captions; "
               "reader skips: %s", data_cfg.dataset, len(train), splits, len(items),
               data_cfg.eval_split, sum(len(i.texts) for i in items), skips.counts)
  return train, items


def backbone_frozen(config) -> bool:
  """Whether the first optimiser group matching the CNN's parameters is `frozen`."""
  for spec in config.optimizer.groups.values():
    if re.search(spec["pattern"], BACKBONE_PATH):
      return spec["optimizer"] == "frozen"
  return False


def _init_from(config):
  """Copies the body, and the pre-training ITM head into the score head if asked."""

  def load(model, path):
    modules = {"pixelbert": model.pixelbert}
    if config.init_score_head_from_itm:
      modules["itm_head"] = model.score_head
    init_from.load(path, modules)

  return load


def make_setup(config, workdir: str) -> registry.Setup:
  data_cfg = config.data
  world = (pretrain_data.synthetic_world(data_cfg, workdir)
           if data_cfg.kind == "synthetic" else None)
  tokenizer = pretrain_data.make_tokenizer(data_cfg, world, workdir)
  train, items = read_data(data_cfg, world)
  pipe_cfg = dict(data_cfg, global_batch_size=config.global_batch_size, num_epochs=None)
  train_iter = pipeline.retrieval_train_pipeline(
      train, tokenizer, pipe_cfg, seed=config.seed, num_negatives=config.num_negatives,
      **registry.process_shard())
  eval_cfg = dict(pipe_cfg, num_workers=0,
                  global_batch_size=config.eval_batch_size or config.global_batch_size)
  eval_source = pipeline.as_source(items)  # image sizes read once, not per evaluation
  texts = pipeline.tokenize_retrieval_texts(items, tokenizer, data_cfg.max_text_len)
  model_config = registry.model_config(config, tokenizer.vocab_size)
  frozen = backbone_frozen(config)
  logging.info("Retrieval: CNN %s", "frozen" if frozen else "trained")

  def make_evaluators(eval_step, to_global):
    return {"retrieval": retrieval_evaluator.RetrievalEvaluator(
        lambda: pipeline.image_pipeline(eval_source, eval_cfg, **registry.process_shard()),
        eval_step, to_global, len(items), texts,
        pairs_per_call=config.eval_pairs_per_call, top_k=config.eval_top_k,
        num_folds=config.eval_folds)}

  return registry.Setup(
      model_fn=lambda rngs: retrieval.RetrievalModel(
          model_config, rngs=rngs, first_stage_dim=config.first_stage.dim),
      loss_fn=retrieval.make_loss_fn(config.num_hard_negatives, frozen_backbone=frozen,
                                     temperature=config.first_stage.temperature),
      counts_fn=retrieval.counts_fn,
      loss_weights=retrieval.loss_weights(config.first_stage.loss_weight),
      eval_fns=retrieval_evaluator.make_eval_fns(), train_iterator=train_iter,
      batches_per_epoch=train_iter.batches_per_epoch, make_evaluators=make_evaluators,
      init_modules=lambda model: init_checkpoint.component_modules(model.pixelbert),
      init_from=_init_from(config))
