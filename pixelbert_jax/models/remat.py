"""Rematerialisation policies (`config.model.remat`), applied per block.

Each Transformer layer and each CNN residual block is one unit: in the backward pass its
intermediates are recomputed from its input, except what the policy saves.
  none   save everything (no recomputation; the fastest step, the most memory)
  full   save nothing but the block's input
  dots   save the results of matrix products without batch dimensions (the Transformer's
         projections and MLP); convolutions are not such products, so a CNN block
         saves nothing under it
  names  save the values the model names with `checkpoint_name` (`SAVED_NAMES`): each
         attention block's context and output, so attention is not recomputed
XLA:CPU schedules the recomputation without lowering its peak memory; the saving shows
on accelerators, whose schedulers are memory-aware.
"""

from collections.abc import Callable

import jax
from flax import nnx

# What `names` keeps: the attention context (B, L, D) before the output projection and
# the normalised attention output that feeds the MLP.
SAVED_NAMES = ("attention_context", "attention_block")

POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "names": jax.checkpoint_policies.save_only_these_names(*SAVED_NAMES),
}


def policy_name(remat: str | bool) -> str:
  """The policy's name; configs written before policies existed hold a bool."""
  if isinstance(remat, bool):
    return "full" if remat else "none"
  if remat not in POLICIES:
    raise ValueError(f"Unknown remat policy {remat!r}; use one of {sorted(POLICIES)}")
  return remat


def wrap(fn: Callable, remat: str) -> Callable:
  """`fn` (a module's unbound `__call__`) under the policy; itself under `none`."""
  if remat == "none":
    return fn
  return nnx.remat(fn, policy=POLICIES[remat])
