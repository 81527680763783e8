"""Per-example evaluation outputs, gathered whole onto every process.

Evaluators that keep one result per example (VQA answers, NLVR2 predictions, retrieval
scores) need the whole global batch on every host: then every process computes the
same metrics, whatever the process count, and process 0 can write the complete
prediction file. A global array comes back in its global order. A host-local array
(numpy) comes back as the processes' arrays concatenated in process order.

Values travel through the devices, so 64-bit integers are cut to 32 bits unless
`jax_enable_x64` is on: gather int32 positions in a host-side list of examples rather
than 64-bit ids.
"""

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils


def to_host(tree: Any) -> Any:
  """Every leaf as one numpy array holding all processes' rows, on every process."""
  gathered = multihost_utils.process_allgather(tree, tiled=True)
  return jax.tree.map(np.asarray, gathered)


def valid_rows(tree: Any, valid_key: str = "valid") -> dict[str, np.ndarray]:
  """`to_host` of a dict of (B, ...) outputs, keeping the rows whose `valid` is True.

  Evaluation batches are padded to a fixed size; the padding (and any example whose
  image failed to load) is marked invalid and must not be scored.
  """
  rows = to_host(tree)
  keep = rows.pop(valid_key).astype(bool)
  return {name: value[keep] for name, value in rows.items()}


def ids_to_cover(ids: Sequence | None, evaluated: Sequence, what: str) -> list:
  """The ids a prediction file must answer, in order: `ids` (by default the evaluated
  examples' own), which must include every evaluated example's."""
  ids = list(evaluated if ids is None else ids)
  unlisted = set(evaluated) - set(ids)
  if unlisted:
    raise ValueError(f"the {what} to cover miss evaluated examples: "
                     f"{sorted(unlisted, key=str)[:10]}")
  return ids


def per_example(make_iterator: Callable[[], Iterator], predict: Callable, to_global,
                state, output_key: str, host_only: tuple[str, ...] = ()) -> dict[int, tuple]:
  """{position in the split: (output, per-example loss)} over a whole split.

  `predict(state, global batch)` returns per-example `output_key` and "loss"; each
  row is found again by the batch's `example_index` (its position in the split).
  `host_only` fields (e.g. 64-bit ids) stay off the devices. An example seen twice is
  an error: the pipeline's padding must never repeat one.
  """
  found = {}
  for batch in make_iterator():
    batch = to_global({k: v for k, v in batch.items() if k not in host_only})
    outputs = predict(state, batch)
    rows = valid_rows({output_key: outputs[output_key], "loss": outputs["loss"],
                       "example_index": batch["example_index"], "valid": batch["valid"]})
    for index, output, loss in zip(rows["example_index"], rows[output_key], rows["loss"]):
      if int(index) in found:
        raise RuntimeError(f"example {index} was evaluated twice")
      found[int(index)] = (output, float(loss))
  return found
