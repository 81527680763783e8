"""An evaluator that averages named metrics over held-out batches (pre-training's).

The predict function returns, per batch, `{name: clu.metrics.Average}` built in the
graph from a sum and its count; the evaluator merges them over the batches on the host
(in float64) and yields each average. A metric that is a ratio of sums over the whole
set (the grounding gap) is an `Average` of its own, so it merges exactly.
"""

from collections.abc import Callable, Iterator

import jax
import numpy as np
from clu import metrics

from pixelbert_jax.evaluators import context as context_lib


def average(total, count) -> metrics.Average:
  """A sum and its count as one mergeable average (in a predict function)."""
  return metrics.Average(total=total, count=count)


def _to_host(value: metrics.Average) -> metrics.Average:
  return metrics.Average(total=np.float64(value.total), count=np.float64(value.count))


class AverageEvaluator:
  """Runs `predict` over the first `num_batches` held-out batches (all if 0)."""

  def __init__(self, predict: Callable, context: context_lib.EvalContext, *,
               make_iterator: Callable[[], Iterator], num_batches: int, seed: int = 0):
    """`predict(model, batch, key) -> {name: Average}`; jitted here."""
    self.predict = context.jit(predict)
    self.to_global = context.to_global
    self.make_iterator = make_iterator
    self.num_batches = num_batches
    self.seed = seed

  def run(self, state) -> Iterator[tuple[str, float]]:
    merged = {}
    key = jax.random.key(self.seed)  # the same draws at every evaluation
    for index, batch in enumerate(self.make_iterator()):
      if 0 < self.num_batches <= index:
        break
      found = jax.device_get(self.predict(state, self.to_global(batch),
                                          jax.random.fold_in(key, index)))
      for name, value in found.items():
        value = _to_host(value)
        merged[name] = merged[name].merge(value) if name in merged else value
    for name, value in sorted(merged.items()):
      yield name, float(value.total / max(value.count, 1.0))
