"""Meshes and parameter shardings from logical axis names and a rules table.

Parameters name their axes ("embed", "mlp", "qkv", "vocab", "conv_in", "conv_out"); the
config's rules map each name to mesh axes. A rule is skipped for a dimension it does not
divide or a mesh axis already used by another dimension, so one table serves every size.
"""

from collections.abc import Iterable, Iterator, Sequence
import contextlib
import contextvars

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from pixelbert_jax.models.layers import LOGICAL_AXES

MESH_AXES = ("data", "fsdp", "tensor")

# FSDP shards the large matrices along their model dimension, tensor parallelism splits
# heads and the MLP; the small CNN stays replicated unless a rule says otherwise.
DEFAULT_RULES = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("vocab", "tensor"),
    ("mlp", "tensor"),
    ("qkv", "tensor"),
    ("conv_in", None),
    ("conv_out", None),
)


def make_mesh(shape: Sequence[int], axis_names: Sequence[str] = MESH_AXES,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A mesh whose axis sizes may include one -1, filled in from the device count."""
  devices = list(jax.devices() if devices is None else devices)
  shape = list(shape)
  if shape.count(-1) > 1:
    raise ValueError(f"At most one mesh axis may be -1, got {shape}")
  known = int(np.prod([s for s in shape if s != -1]))
  if -1 in shape:
    shape[shape.index(-1)] = len(devices) // known
  if int(np.prod(shape)) != len(devices):
    raise ValueError(f"Mesh shape {shape} does not use the {len(devices)} devices")
  return Mesh(np.asarray(devices).reshape(shape), tuple(axis_names))


def logical_to_spec(logical_axes: Iterable[str | None], shape: Sequence[int],
                    mesh: Mesh, rules: Sequence[tuple]) -> PartitionSpec:
  """Maps one array's logical axis names to a PartitionSpec over `mesh`."""
  rule_table = dict(rules)
  used, spec = set(), []
  for name, dim in zip(logical_axes, shape):
    spec.append(_mesh_axes_for(name, dim, mesh, rule_table, used))
  return PartitionSpec(*spec)


def _mesh_axes_for(name, dim, mesh, rule_table, used):
  target = rule_table.get(name) if name is not None else None
  if target is None:
    return None
  axes = tuple(a for a in ((target,) if isinstance(target, str) else target)
               if a in mesh.shape and a not in used)
  size = int(np.prod([mesh.shape[a] for a in axes])) if axes else 1
  if not axes or size == 1 or dim % size:
    return None
  used.update(axes)
  return axes[0] if len(axes) == 1 else axes


def state_shardings(state: nnx.State, mesh: Mesh,
                    rules: Sequence[tuple] = DEFAULT_RULES) -> nnx.State:
  """A NamedSharding for every variable of `state`, replicated where unnamed."""

  def sharding_of(variable):
    axes = variable.get_metadata().get(LOGICAL_AXES)
    shape = variable.shape
    if axes is None:
      return NamedSharding(mesh, PartitionSpec())
    return NamedSharding(mesh, logical_to_spec(axes, shape, mesh, rules))

  return jax.tree.map(sharding_of, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


# The batch sharding that `constrain_batch` pins activations to, while a step is traced.
_BATCH_ACTIVATIONS = contextvars.ContextVar("batch_activations", default=None)


@contextlib.contextmanager
def batch_activations(mesh: Mesh, rules: Sequence[tuple] = DEFAULT_RULES) -> Iterator[None]:
  """While a step is traced inside it, `constrain_batch` keeps activations split along
  the batch's mesh axes; outside it (inference, evaluators) nothing is constrained."""
  token = _BATCH_ACTIVATIONS.set(batch_sharding(mesh, rules))
  try:
    yield
  finally:
    _BATCH_ACTIVATIONS.reset(token)


def constrain_batch(x: jax.Array) -> jax.Array:
  """`x` (batch first) kept split by batch, as the step's inputs are. Without this, with
  the weights split along fsdp's model dimension, XLA may partition the Transformer's
  products along that dimension and run every example on every device (hidden states
  all-gathered at the global batch: benchmarks/RESULTS.md, "Memory per device")."""
  target = _BATCH_ACTIVATIONS.get()
  if target is None:
    return x
  axes = target.spec[0] if target.spec else None
  names = (axes,) if isinstance(axes, str) else tuple(axes or ())
  size = int(np.prod([target.mesh.shape[a] for a in names])) if names else 1
  if size == 1 or x.shape[0] % size:
    return x
  spec = PartitionSpec(axes, *([None] * (x.ndim - 1)))
  return jax.lax.with_sharding_constraint(x, NamedSharding(target.mesh, spec))


def batch_sharding(mesh: Mesh, rules: Sequence[tuple] = DEFAULT_RULES) -> NamedSharding:
  """The sharding of a batch's leading dimension."""
  target = dict(rules).get("batch")
  axes = tuple(a for a in ((target,) if isinstance(target, str) else target or ())
               if a in mesh.shape)
  return NamedSharding(mesh, PartitionSpec(axes or None))
