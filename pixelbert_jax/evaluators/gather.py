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
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

# The pipeline's position of each example in the split; the eval step overwrites
# `example_index` with positions in the batch, so it travels under this name.
SOURCE_INDEX_KEY = "source_index"


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


def count_valid(batch) -> dict:
  """The `counts_fn` of a per-example evaluation: how many rows are real examples."""
  return {"examples": jnp.sum(batch["valid"].astype(jnp.int32))}


def per_example(make_iterator: Callable[[], Iterator], eval_step, to_global, state,
                output_key: str, host_only: tuple[str, ...] = ()) -> dict[int, tuple]:
  """{position in the split: (output, per-example loss)} over a whole split.

  Every batch carries its examples' positions under SOURCE_INDEX_KEY through the eval
  step; `host_only` fields (e.g. 64-bit ids) stay off the devices. An example seen
  twice is an error: the pipeline's padding must never repeat one.
  """
  found = {}
  key = jax.random.key(0)  # Evaluation draws nothing at random.
  for batch in make_iterator():
    batch = {k: v for k, v in batch.items() if k not in host_only}
    batch[SOURCE_INDEX_KEY] = batch["example_index"]
    outputs, _ = eval_step(state, to_global(batch), key)
    rows = valid_rows(outputs)
    for index, output, loss in zip(rows[SOURCE_INDEX_KEY], rows[output_key], rows["loss"]):
      if int(index) in found:
        raise RuntimeError(f"example {index} was evaluated twice")
      found[int(index)] = (output, float(loss))
  return found
