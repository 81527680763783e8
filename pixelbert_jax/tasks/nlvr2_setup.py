"""Wires NLVR2 fine-tuning together: data, model, loss, evaluation.

Data come from the official NLVR2 files named in `config.data` (kind "nlvr2":
JSON-lines files plus the folder that holds the `train/`, `dev/`, `test1/` image
folders) or from the embedded synthetic world (kind "synthetic": train to train, dev
to evaluate). Several training files may be listed, comma-separated (train + dev for
a test-P submission).
"""

from absl import logging
from etils import epath

from pixelbert_jax.data import pipeline
from pixelbert_jax.data import skips as skips_lib
from pixelbert_jax.data.readers import nlvr2 as nlvr2_reader
from pixelbert_jax.evaluators import nlvr2_evaluator
from pixelbert_jax.tasks import init_from, nlvr2, pretrain_data, registry
from pixelbert_jax.weights import init_checkpoint


def _split_files(data_cfg, world: dict | None) -> dict[str, tuple[list[str], str]]:
  """(JSON-lines files, image folder) for train and eval."""
  if world:
    return {"train": ([world["nlvr2_train"]], world["nlvr2_images"]),
            "eval": ([world["nlvr2_dev"]], world["nlvr2_images"])}
  files = {split: [p.strip() for p in data_cfg[f"{split}_file"].split(",") if p.strip()]
           for split in ("train", "eval")}
  if not (files["train"] and files["eval"] and data_cfg.images):
    raise ValueError(
        "config.data.train_file, eval_file and images are required for real NLVR2 "
        "data, e.g. --config.data.train_file=.../nlvr2/data/train.json "
        "--config.data.eval_file=.../nlvr2/data/dev.json --config.data.images=.../images "
        "(holding train/, dev/, test1/); or use configs/nlvr2.py:demo")
  return {split: (paths, data_cfg.images) for split, paths in files.items()}


def read_split(files: list[str], image_dir: str, name: str,
               max_skip_fraction: float) -> list:
  """The examples of every JSON-lines file, in order; bounded skips."""
  skips = skips_lib.SkipCounter(f"nlvr2-{name}", max_skip_fraction=max_skip_fraction)
  examples = [e for path in files
              for e in nlvr2_reader.read_nlvr2(epath.Path(path), image_dir, skips=skips)]
  skips.check(len(examples) + skips.total, final=True)
  logging.info("NLVR2 %s: %d examples; reader skips: %s", name, len(examples),
               skips.counts)
  return examples


def make_setup(config, workdir: str) -> registry.Setup:
  data_cfg = config.data
  world = (pretrain_data.synthetic_world(data_cfg, workdir)
           if data_cfg.kind == "synthetic" else None)
  tokenizer = pretrain_data.make_tokenizer(data_cfg, world, workdir)
  splits = _split_files(data_cfg, world)
  train = read_split(*splits["train"], "train", data_cfg.max_skip_fraction)
  held_out = read_split(*splits["eval"], "eval", data_cfg.max_skip_fraction)
  # The prediction file covers every line of the eval files, skipped ones included.
  identifiers = list(dict.fromkeys(i for path in splits["eval"][0]
                                   for i in nlvr2_reader.identifiers(path)))
  pipe_cfg = dict(data_cfg, global_batch_size=config.global_batch_size, num_epochs=None)
  train_iter = pipeline.nlvr2_pipeline(train, tokenizer, pipe_cfg, seed=config.seed,
                                       **registry.process_shard())
  eval_cfg = dict(pipe_cfg, num_workers=0,
                  global_batch_size=config.eval_batch_size or config.global_batch_size)
  eval_source = pipeline.as_source(held_out)  # image sizes read once, not per evaluation
  make_eval_iter = lambda: pipeline.nlvr2_pipeline(
      eval_source, tokenizer, eval_cfg, seed=config.seed, training=False,
      **registry.process_shard())
  model_config = registry.model_config(config, tokenizer.vocab_size)

  def make_evaluators(eval_step, to_global):
    return {"nlvr2": nlvr2_evaluator.Nlvr2Evaluator(make_eval_iter, eval_step, to_global,
                                                    held_out, workdir, identifiers)}

  return registry.Setup(
      model_fn=lambda rngs: nlvr2.Nlvr2Model(model_config, rngs=rngs),
      loss_fn=nlvr2.loss_fn, counts_fn=nlvr2.counts_fn, loss_weights=nlvr2.LOSS_WEIGHTS,
      eval_fns=nlvr2_evaluator.make_eval_fns(), train_iterator=train_iter,
      batches_per_epoch=train_iter.batches_per_epoch, make_evaluators=make_evaluators,
      init_modules=lambda model: init_checkpoint.component_modules(model.pixelbert),
      init_from=lambda model, path: init_from.load(path, {"pixelbert": model.pixelbert}))
