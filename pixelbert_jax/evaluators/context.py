"""What every evaluator gets from the trainer: the model of a state, global batches, a folder.

Evaluators own their predictions (docs/ARCHITECTURE.md, "Evaluation"): a task hands
each evaluator plain predict functions `fn(model, batch, ...) -> outputs`, and the
evaluator jits them with `EvalContext.jit`, feeds them global batches and accumulates
what they return. The trainer's only part is this context.
"""

import dataclasses
from collections.abc import Callable

import jax
from etils import epath


@dataclasses.dataclass(frozen=True)
class EvalContext:
  """`as_model(state)` rebuilds the model (evaluation mode) inside a trace; `to_global`
  turns a process-local batch into global arrays; `workdir` takes result files."""
  as_model: Callable
  to_global: Callable[[dict], dict]
  workdir: epath.Path

  def write(self, name: str, write: Callable[[epath.Path], None]) -> epath.Path:
    """Process 0 writes `workdir/name` with `write(path)`; every process gets the
    path (every process holds the same gathered results)."""
    path = self.workdir / name
    if jax.process_index() == 0:
      self.workdir.mkdir(parents=True, exist_ok=True)
      write(path)
    return path

  def jit(self, predict_fn: Callable) -> Callable:
    """`predict_fn(model, batch, *args)` as a jitted `fn(state, batch, *args)`."""
    return jax.jit(lambda state, batch, *args: predict_fn(self.as_model(state), batch,
                                                          *args))
