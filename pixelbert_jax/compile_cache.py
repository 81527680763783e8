"""XLA's persistent compilation cache for the runs `main` starts.

A resumed or repeated run, and a fine-tuning run whose programs another run already
compiled, reads the compiled programs from disk instead of compiling them again: on two
CPU cores the demo's parameter initialisation and train step take 15-25 s each to
compile, and a paper-size step takes minutes on an accelerator host. JAX keys each entry
by the program, the backend, its version and the compiler flags, so a changed program
or toolchain never reads a stale entry.

`config.xla_cache_dir`: "" is the default place, "none" turns the cache off, anything
else (a local or `gs://` path) is used as given.
"""

import jax
from absl import logging

from pixelbert_jax.data.synthetic import cache as world_cache

OFF = "none"


def resolve(setting: str) -> str | None:
  """The cache's folder for `setting`, or None when it is off.

  The default is JAX's own setting when the user made one
  (`JAX_COMPILATION_CACHE_DIR`), else `xla/` in the project's cache folder
  (`$PIXELBERT_CACHE`, by default ~/.cache/pixelbert_jax) beside the synthetic worlds.
  """
  if setting == OFF:
    return None
  if setting:
    return setting
  return jax.config.jax_compilation_cache_dir or str(world_cache.cache_dir() / "xla")


def enable(setting: str) -> str | None:
  """Points JAX's persistent cache at `resolve(setting)`; call before any compile
  (JAX opens the cache at the first one)."""
  path = resolve(setting)
  if path is None:
    logging.info("XLA compilation cache: off")
    jax.config.update("jax_enable_compilation_cache", False)
    return None
  jax.config.update("jax_compilation_cache_dir", path)
  logging.info("XLA compilation cache: %s", path)
  return path
