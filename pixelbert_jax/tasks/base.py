"""The task protocol: what one task module gives the trainer, the evaluators and inference.

A task is one module, `pixelbert_jax.tasks.<name>`, holding a `Task` subclass named
`Task`; `get(config)` finds it by `config.task`, as big_vision finds models and
evaluators by name, so no table of tasks is kept anywhere (docs/ARCHITECTURE.md,
"The task protocol"). Adding a task is that module plus a config file.

A task provides:
* its model (`make_model`) and objective (`objective`: loss sums, their counts, weights);
* its data (`make_data`): the tokenizer, the training iterator, what the model's shape
  needs from the data (`meta`, e.g. the VQA answer list) and what evaluation reads;
  and the `config.data` fields naming real data's files (`data_paths`), which
  `preflight` checks before a run starts;
* its evaluators (`make_evaluators`), given the predict functions' context;
* the modules an init checkpoint (`config.init`) and another run (`config.init_from`)
  fill;
* for inference, what a finished run needs besides its weights (`run_meta`), the head
  that scores one (image, text) pair, and its `capabilities`: the Predictor methods and
  `predict` commands a run of the task serves.
"""

from __future__ import annotations

import abc
import argparse
import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from etils import epath
from flax import nnx

from pixelbert_jax.data import tokenizer as tokenizer_lib
from pixelbert_jax.models import variants
from pixelbert_jax.weights import init_checkpoint


@dataclasses.dataclass(frozen=True)
class Objective:
  """`loss_fn(model, batch, key) -> {name: sum}`, `counts_fn(batch) -> {name: count}`
  and the weights of the loss terms that make the objective (`train_step`)."""
  loss_fn: Callable
  counts_fn: Callable
  weights: Mapping[str, float]


@dataclasses.dataclass
class TaskData:
  """What `make_data` reads and builds once per run."""
  tokenizer: tokenizer_lib.Tokenizer
  train_iterator: Any  # a resumable grain iterator with `batches_per_epoch`
  meta: dict  # what `make_model` needs from the data (e.g. {"answer_vocab": ...})
  evaluation: Any  # what `make_evaluators` reads (held-out examples, iterators)

  @property
  def batches_per_epoch(self) -> int:
    return self.train_iterator.batches_per_epoch


@dataclasses.dataclass(frozen=True)
class DataPaths:
  """The `config.data` fields that name a task's real files and folders (a path or a
  list of paths each): every `required` field is set; each group of `optional` fields
  is set all together or not at all. The synthetic world needs none of them."""
  required: tuple[str, ...] = ()
  optional: tuple[tuple[str, ...], ...] = ()


@dataclasses.dataclass(frozen=True)
class Command:
  """A `python -m pixelbert_jax.predict` command that runs of a task serve."""
  name: str
  help: str
  add_arguments: Callable[[argparse.ArgumentParser], None]
  run: Callable[[Any, argparse.Namespace], dict]  # (Predictor, args) -> what is printed


@dataclasses.dataclass(frozen=True)
class Capability:
  """Predictor methods (`predictor.<name>(...)` calls `function(predictor, ...)`) and
  the CLI commands built on them."""
  methods: Mapping[str, Callable]
  commands: tuple[Command, ...] = ()


class Task(abc.ABC):
  """One task; see the module docstring. Subclasses are named `Task` in their module."""

  name: ClassVar[str]
  # How error messages name a checkpoint of this task ("needs a VQA checkpoint").
  checkpoint_kind: ClassVar[str]
  # The head (an attribute of the model) scoring one pair's pooled [CLS]; None if the
  # task's head takes more than one pair (NLVR2), so pair scoring stops at the pooled.
  pair_head: ClassVar[str | None] = None
  capabilities: ClassVar[tuple[Capability, ...]] = ()
  # Files of a run's workdir that inference reads besides config, tokenizer and
  # weights (`run_meta`); `export` copies them.
  run_files: ClassVar[tuple[str, ...]] = ()
  # What `make_data` reads for real data (kind other than "synthetic"); checked by
  # `preflight` before any work, so that every missing path is named at once.
  data_paths: ClassVar[DataPaths] = DataPaths()
  # For tasks whose model and objective do not depend on the config or the data:
  # `make_model` builds `model_class(model_config, rngs=)` and `objective` returns
  # `fixed_objective`. Other tasks override the methods.
  model_class: ClassVar[type[nnx.Module] | None] = None
  fixed_objective: ClassVar[Objective | None] = None

  def __init__(self, config):
    self.config = config

  def model_config(self, vocab_size: int) -> variants.ModelConfig:
    """The model's structure from `config.model`; the tokenizer fixes the vocabulary."""
    return variants.from_config(self.config.model, vocab_size)

  def make_model(self, model_config: variants.ModelConfig, meta: Mapping, *,
                 rngs: nnx.Rngs) -> nnx.Module:
    """The task's model; `meta` is `TaskData.meta` or `run_meta`."""
    del meta
    return self.model_class(model_config, rngs=rngs)

  def objective(self) -> Objective:
    """The training objective."""
    return self.fixed_objective

  @abc.abstractmethod
  def make_data(self, workdir: str) -> TaskData:
    """Reads the data the config names and builds the iterators."""

  @abc.abstractmethod
  def make_evaluators(self, data: TaskData, context) -> dict[str, Any]:
    """{name: evaluator}; `context` is an `evaluators.context.EvalContext`."""

  def init_modules(self, model: nnx.Module) -> dict[str, nnx.Module]:
    """{init-checkpoint component: module} that `config.init` fills."""
    return init_checkpoint.component_modules(model.pixelbert)

  def init_from_modules(self, model: nnx.Module) -> dict[str, nnx.Module]:
    """{name in another run's checkpoint: module} that `config.init_from` fills."""
    return {"pixelbert": model.pixelbert}

  def run_meta(self, workdir: epath.Path) -> dict:
    """What the model's shape needs from a finished run's workdir (inference)."""
    del workdir
    return {}

  @classmethod
  def methods(cls) -> dict[str, Callable]:
    """{Predictor method name: function(predictor, ...)} over the capabilities."""
    return {name: fn for capability in cls.capabilities
            for name, fn in capability.methods.items()}


def task_class(name: str) -> type[Task]:
  """The `Task` class of `pixelbert_jax.tasks.<name>`."""
  try:
    module = importlib.import_module(f"pixelbert_jax.tasks.{name}")
  except ModuleNotFoundError as error:
    if error.name != f"pixelbert_jax.tasks.{name}":
      raise
    raise ValueError(f"Unknown task {name!r}: the tasks are {', '.join(task_names())}"
                     ) from None
  if not (isinstance(getattr(module, "Task", None), type)
          and issubclass(module.Task, Task)):
    raise ValueError(f"Unknown task {name!r}: the tasks are {', '.join(task_names())}")
  return module.Task


def get(config) -> Task:
  """The task `config.task` names, built from the config."""
  return task_class(config.task)(config)


def commands() -> dict[str, Command]:
  """Every task's `predict` commands by name (tasks sharing a capability share them)."""
  found = {}
  for name in task_names():
    for capability in task_class(name).capabilities:
      for command in capability.commands:
        found.setdefault(command.name, command)
  return found


def task_names() -> list[str]:
  """Every task module in the package (modules that define a `Task` subclass)."""
  package = epath.Path(__file__).parent
  names = []
  for info in pkgutil.iter_modules([str(package)]):
    module = importlib.import_module(f"pixelbert_jax.tasks.{info.name}")
    candidate = getattr(module, "Task", None)
    if isinstance(candidate, type) and issubclass(candidate, Task) and candidate is not Task:
      names.append(info.name)
  return sorted(names)
