"""Renames foreign parameter names to ours by regex rules and reshapes PyTorch layouts."""

import re
from collections.abc import Callable, Sequence

import numpy as np

# (pattern, our name template or function of the match, value transform)
Rule = tuple[str, str | Callable[[re.Match], str], Callable[[np.ndarray], np.ndarray]]


def identity(x: np.ndarray) -> np.ndarray:
  return x


def linear_kernel(x: np.ndarray) -> np.ndarray:
  """torch Linear (out, in) -> Flax (in, out)."""
  return np.ascontiguousarray(x.T)


def dense_param(x: np.ndarray) -> np.ndarray:
  """A Linear's weight (2-D, transposed) or bias (1-D, unchanged)."""
  return linear_kernel(x) if x.ndim == 2 else x


def conv_kernel(x: np.ndarray) -> np.ndarray:
  """torch Conv2d (out, in/groups, kh, kw) -> Flax (kh, kw, in/groups, out)."""
  return np.ascontiguousarray(x.transpose(2, 3, 1, 0))


def rename(state_dict: dict[str, np.ndarray], rules: Sequence[Rule],
           ignored: Sequence[str] = ()) -> tuple[dict[str, np.ndarray], list[str]]:
  """Applies the first matching rule to each name.

  Returns the renamed weights and the names no rule used (to be reported); names that
  fully match an `ignored` pattern (buffers such as `num_batches_tracked`) are dropped.
  """
  renamed, unused = {}, []
  for name, value in state_dict.items():
    target = _apply_first(name, value, rules)
    if target is not None:
      renamed[target[0]] = target[1]
    elif not any(re.fullmatch(p, name) for p in ignored):
      unused.append(name)
  return renamed, sorted(unused)


def _apply_first(name, value, rules):
  for pattern, template, transform in rules:
    match = re.fullmatch(pattern, name)
    if match:
      ours = template(match) if callable(template) else match.expand(template)
      return ours, transform(np.asarray(value))
  return None
