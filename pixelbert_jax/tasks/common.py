"""The steps every task's data set-up shares: world, tokenizer, bounded reading, pipelines.

A task's `make_data` reads as: the synthetic world (kind "synthetic") or the files the
config names -> the tokenizer -> the examples of each split, read with a bound on
skipped entries -> the pipelines' configs -> the iterators (docs/ARCHITECTURE.md, "A
batch's path"). The synthetic world is written once per data root and shared by every
run that names it.
"""

from collections.abc import Callable, Iterable

import jax
import ml_collections
import numpy as np
from absl import logging
from etils import epath

from pixelbert_jax.data import data_config
from pixelbert_jax.data import skips as skips_lib
from pixelbert_jax.data import tokenizer as tokenizer_lib
from pixelbert_jax.data.synthetic import cache

TOKENIZER_DIR = "tokenizer"  # a run's own copy of its tokenizer, inside its workdir


def world_or_none(data_cfg, workdir: str) -> dict[str, str] | None:
  """The synthetic world's paths for kind "synthetic" (written on first use), else
  None (real data)."""
  return cache.ensure(data_cfg, workdir) if data_cfg.kind == "synthetic" else None


def world_and_tokenizer(data_cfg, workdir: str) -> tuple[dict | None, tokenizer_lib.Tokenizer]:
  """The first two steps of every task's data: the synthetic world's paths (None for
  real data) and the run's tokenizer (a copy kept in the workdir)."""
  world = world_or_none(data_cfg, workdir)
  return world, make_tokenizer(data_cfg, world, workdir)


def make_tokenizer(data_cfg, world: dict | None,
                   workdir: str | None = None) -> tokenizer_lib.Tokenizer:
  """The tokenizer the config names (or the synthetic world's vocabulary); with a
  workdir, process 0 also keeps a copy there so that the run outlives its data."""
  spec = data_cfg.tokenizer or (f"wordpiece:{world['vocab']}" if world else "")
  if not spec:
    raise ValueError("config.data.tokenizer is required for real data, e.g. "
                     "wordpiece:/path/to/bert-base-uncased/vocab.txt")
  tokenizer = tokenizer_lib.from_config(spec)
  if workdir is not None and jax.process_index() == 0:
    tokenizer_lib.save_copy(spec, epath.Path(workdir) / TOKENIZER_DIR)
  return tokenizer


def process_shard() -> dict:
  """This process's share of every batch, as the pipelines take it."""
  return dict(process_index=jax.process_index(), process_count=jax.process_count())


def pipeline_config(config, *, training: bool, **fields) -> ml_collections.ConfigDict:
  """The pipelines' config (`data_config.make_config`) from `config.data` and the batch
  size. Evaluation batches use `config.eval_batch_size` (0: the training batch size)
  and load on the main thread."""
  batch = config.global_batch_size
  if not training:
    batch = config.eval_batch_size or batch
    fields = dict(fields, num_workers=0)
  return data_config.from_data_config(config.data, global_batch_size=batch, **fields)


def jsonl_splits(data_cfg, world: dict | None, world_names: tuple[str, str, str], *,
                 example: str, config_file: str) -> dict[str, tuple[list[str], str]]:
  """(JSON-lines files, image folder) for train and eval: the synthetic world's files
  named `world_names` (train, eval, images), or `data.train_file`, `data.eval_file`
  (lists of files) and `data.images`. `example` shows the flags for real data."""
  if world:
    train, held_out, images = (world[name] for name in world_names)
    return {"train": ([train], images), "eval": ([held_out], images)}
  files = {split: list(data_cfg[f"{split}_file"]) for split in ("train", "eval")}
  if not (files["train"] and files["eval"] and data_cfg.images):
    raise ValueError(
        f"config.data.train_file, eval_file and images are required for real data, e.g. "
        f"{example}; or use {config_file}:demo")
  return {split: (paths, data_cfg.images) for split, paths in files.items()}


def read_split(name: str, readers: Iterable[Callable], max_skip_fraction: float) -> list:
  """The examples of every reader (each called with a shared skip counter), with a
  bound on the share of skipped entries."""
  skips = skips_lib.SkipCounter(name, max_skip_fraction=max_skip_fraction)
  examples = [example for read in readers for example in read(skips)]
  skips.check(len(examples) + skips.total, final=True)
  logging.info("%s: %d examples; reader skips: %s", name, len(examples), skips.counts)
  return examples


def sigmoid(logits) -> np.ndarray:
  """Probabilities of logits on the host, in float64, so that confident scores stay
  distinct instead of all rounding to 1 (inference's scores)."""
  return 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))
