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
