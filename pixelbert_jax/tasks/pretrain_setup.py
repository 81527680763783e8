"""Wires pre-training together: data, tokenizer, model, losses and held-out evaluation."""

import numpy as np

from pixelbert_jax.data import pipeline
from pixelbert_jax.evaluators import pretrain_probe
from pixelbert_jax.tasks import pretrain, pretrain_data, registry
from pixelbert_jax.weights import init_checkpoint


def _visual_ids(tokenizer, words) -> np.ndarray:
  ids = [tokenizer.text_to_ids(word) for word in words]
  return np.asarray(sorted({i[0] for i in ids if len(i) == 1}), np.int32)


def make_setup(config, workdir: str) -> registry.Setup:
  data_cfg = config.data
  world = (pretrain_data.synthetic_world(data_cfg, workdir)
           if data_cfg.kind == "synthetic" else None)
  tokenizer = pretrain_data.make_tokenizer(data_cfg, world, workdir)
  train, held_out, _ = pretrain_data.pretrain_examples(data_cfg, world)
  swap_share = config.get("itm_swap_share", 0.0)
  pipe_cfg = dict(data_cfg, global_batch_size=config.global_batch_size, num_epochs=None)
  # Swapped captions serve training only when they take a share of the negatives; the
  # evaluation's binding measure reads them whenever the config names word groups.
  train_cfg = pipe_cfg if swap_share else dict(pipe_cfg, itm_swap_words=())
  train_iter = pipeline.pretrain_pipeline(train, tokenizer, train_cfg, seed=config.seed,
                                          **registry.process_shard())
  eval_cfg = dict(pipe_cfg, num_workers=0, mlm_focus_share=0.0)  # plain BERT masking
  make_eval_iter = lambda: pipeline.pretrain_pipeline(
      held_out, tokenizer, eval_cfg, seed=config.seed + 1, training=False,
      **registry.process_shard())
  model_config = registry.model_config(config, tokenizer.vocab_size)
  words = config.get("probe_words") or (
      pretrain_data.SYNTHETIC_VISUAL_WORDS if world else ())
  eval_fns = pretrain_probe.make_eval_fns(
      _visual_ids(tokenizer, words), tokenizer.mask_id, config.eval_num_sampled_pixels)

  def make_evaluators(eval_step, to_global):
    return {"eval": pretrain_probe.PretrainEvaluator(
        make_eval_iter, eval_step, to_global, config.eval_batches, seed=config.seed)}

  use = config.objectives
  return registry.Setup(
      model_fn=lambda rngs: pretrain.PretrainModel(model_config, rngs=rngs),
      loss_fn=pretrain.make_loss_fn(config.num_sampled_pixels, use.mlm, use.itm,
                                    swap_share),
      counts_fn=pretrain.counts_fn, loss_weights=pretrain.loss_weights(use.mlm, use.itm),
      eval_fns=eval_fns, train_iterator=train_iter,
      batches_per_epoch=train_iter.batches_per_epoch, make_evaluators=make_evaluators,
      init_modules=lambda model: init_checkpoint.component_modules(
          model.pixelbert, model.mlm_head))
