"""Tests for the persistent compilation cache that `main` turns on."""

import os
import subprocess
import sys

import jax

from conftest import REPO
from pixelbert_jax import compile_cache

# A fresh process (JAX opens its cache once, at the first compile): enables the cache
# as `main` does, compiles one program, prints the folder.
_PROGRAM = """
import sys
import jax, jax.numpy as jnp
from pixelbert_jax import compile_cache
path = compile_cache.enable(sys.argv[1])
jax.jit(lambda x: jnp.tanh(x @ x.T).sum())(jnp.ones((64, 64))).block_until_ready()
print(path)
"""


def _run(setting: str, tmp_path) -> tuple[str, list[str]]:
  env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
  env.update(PIXELBERT_CACHE=str(tmp_path / "cache"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  done = subprocess.run([sys.executable, "-c", _PROGRAM, setting], cwd=REPO, env=env,
                        capture_output=True, text=True, check=True)
  path = done.stdout.strip().splitlines()[-1]
  return path, sorted(os.listdir(path)) if os.path.isdir(path) else []


def test_the_default_cache_sits_in_the_project_cache_and_fills(tmp_path):
  path, entries = _run("", tmp_path)
  assert path == str(tmp_path / "cache" / "xla")
  assert any(name.startswith("jit_") for name in entries), entries


def test_an_explicit_folder_is_used_as_given(tmp_path):
  path, entries = _run(str(tmp_path / "mine"), tmp_path)
  assert path == str(tmp_path / "mine") and entries
  assert not (tmp_path / "cache" / "xla").exists()


def test_none_turns_it_off(tmp_path):
  path, _ = _run("none", tmp_path)
  assert path == "None"
  assert not (tmp_path / "cache").exists()


def test_the_default_keeps_a_folder_the_user_gave_jax():
  # The test run's own cache (tests/conftest.py) is such a folder.
  assert compile_cache.resolve("") == jax.config.jax_compilation_cache_dir
  assert compile_cache.resolve("") == os.environ["JAX_COMPILATION_CACHE_DIR"]
