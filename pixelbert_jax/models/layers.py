"""Layer constructors that attach logical axis names to every parameter.

Model code names axes ("embed", "mlp", ...) and never mesh axes; `pixelbert_jax.sharding`
maps the names to a mesh with a rules table from the config. The names live in each
parameter's metadata under `logical_axes`, which stays stable across Flax releases.
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

LOGICAL_AXES = "logical_axes"
# BERT's initialiser (std 0.02, tuned for width 768); also used for the projection and
# heads, as BERT-style models do. Narrow test / demo models use a larger std.
BERT_INIT_STD = 0.02


def normal_init(stddev: float = BERT_INIT_STD):
  return nnx.initializers.truncated_normal(stddev=stddev)


def dense(in_features: int, out_features: int, axes: tuple[str | None, str | None], *,
          dtype: Any, rngs: nnx.Rngs, use_bias: bool = True,
          init_std: float = BERT_INIT_STD) -> nnx.Linear:
  """A Linear layer whose kernel and bias carry logical axis names."""
  return nnx.Linear(
      in_features, out_features, use_bias=use_bias, dtype=dtype,
      param_dtype=jnp.float32, kernel_init=normal_init(init_std),
      kernel_metadata={LOGICAL_AXES: axes},
      bias_metadata={LOGICAL_AXES: (axes[1],)}, rngs=rngs)


def layer_norm(features: int, axis_name: str | None, *, epsilon: float, dtype: Any,
               rngs: nnx.Rngs) -> nnx.LayerNorm:
  """A LayerNorm; Flax computes its statistics in float32 even for bfloat16 inputs."""
  return nnx.LayerNorm(
      features, epsilon=epsilon, dtype=dtype, param_dtype=jnp.float32,
      scale_metadata={LOGICAL_AXES: (axis_name,)},
      bias_metadata={LOGICAL_AXES: (axis_name,)}, rngs=rngs)


def embedding(num: int, features: int, axes: tuple[str | None, str | None], *,
              dtype: Any, rngs: nnx.Rngs, init_std: float = BERT_INIT_STD) -> nnx.Embed:
  """An embedding table with logical axis names."""
  return nnx.Embed(num, features, dtype=dtype, param_dtype=jnp.float32,
                   embedding_init=normal_init(init_std),
                   embedding_metadata={LOGICAL_AXES: axes}, rngs=rngs)


def param(rngs: nnx.Rngs, init, shape: tuple[int, ...],
          axes: tuple[str | None, ...]) -> nnx.Param:
  """A free-standing float32 parameter with logical axis names."""
  return nnx.Param(init(rngs.params(), shape, jnp.float32), **{LOGICAL_AXES: axes})


def compute_dtype(name: str | Any) -> Any:
  """Turns a config string such as "bfloat16" into a dtype."""
  return jnp.dtype(name) if isinstance(name, str) else name


def gelu(x: jax.Array) -> jax.Array:
  """BERT's exact (erf) GELU, not the tanh approximation."""
  return jax.nn.gelu(x, approximate=False)
