"""Tasks by name: each builds a `Setup` (model, losses, data, evaluators) from a config."""

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax

from pixelbert_jax.models import variants


@dataclasses.dataclass
class Setup:
  """What the generic training loop needs from a task."""
  model_fn: Callable  # nnx.Rngs -> model
  loss_fn: Callable
  counts_fn: Callable
  loss_weights: Mapping[str, float]
  eval_fns: tuple[Callable, Callable]
  train_iterator: Any
  batches_per_epoch: int
  make_evaluators: Callable  # (jitted eval step, to_global) -> {name: evaluator}
  init_modules: Callable  # model -> {init-checkpoint component: module}
  init_from: Callable | None = None  # (model, path) -> None, for fine-tuning


def model_config(config, vocab_size: int) -> variants.ModelConfig:
  """The model's structure from `config.model`; the tokenizer fixes the vocabulary."""
  fields = dict(config.model)
  preset = fields.pop("preset")
  fields.pop("vocab_size", None)
  for name in ("max_grid", "image_mean", "image_std"):
    fields[name] = tuple(fields[name])
  return variants.model_config(preset, transformer_vocab_size=vocab_size, **fields)


def process_shard() -> dict:
  return dict(process_index=jax.process_index(), process_count=jax.process_count())


def make_setup(config, workdir: str) -> Setup:
  # Imported here so that each task's dependencies load only when it is used.
  if config.task == "pretrain":
    from pixelbert_jax.tasks import pretrain_setup  # pylint: disable=g-import-not-at-top
    return pretrain_setup.make_setup(config, workdir)
  if config.task == "vqa":
    from pixelbert_jax.tasks import vqa_setup  # pylint: disable=g-import-not-at-top
    return vqa_setup.make_setup(config, workdir)
  if config.task == "nlvr2":
    from pixelbert_jax.tasks import nlvr2_setup  # pylint: disable=g-import-not-at-top
    return nlvr2_setup.make_setup(config, workdir)
  if config.task == "retrieval":
    from pixelbert_jax.tasks import retrieval_setup  # pylint: disable=g-import-not-at-top
    return retrieval_setup.make_setup(config, workdir)
  raise ValueError(f"Unknown task {config.task!r}")
