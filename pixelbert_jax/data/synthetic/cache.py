"""The synthetic world written once per data root and shared by every run that names it.

`ensure(data_cfg, workdir)` writes the world under `data.root` the first time and
leaves a marker listing its files; later runs, and every process after the first, read
the marker. The marker holds paths relative to the world's folder and is read against
the folder it sits in, so a copied or moved world reads its own files, never the
original's. Without `data.root` the world goes to a cache folder shared by every run
(`$PIXELBERT_CACHE`, by default `~/.cache/pixelbert_jax`), named by its seed, size and
`formats.WORLD_VERSION`, so pre-training and every fine-tuning demo read one world.
Things derived from the world (the demos' synthetic backbone) are kept beside it.
"""

import os
import time

import jax
from absl import logging
from etils import epath

from pixelbert_jax.data.synthetic.formats import WORLD_VERSION, generate

WORLD_MARKER = "world.done"


def cache_dir() -> epath.Path:
  """Where worlds without a data root go: `$PIXELBERT_CACHE` or ~/.cache/pixelbert_jax."""
  return epath.Path(os.environ.get("PIXELBERT_CACHE")
                    or os.path.join(os.path.expanduser("~"), ".cache", "pixelbert_jax"))


def world_root(data_cfg, workdir: str) -> epath.Path:
  """The synthetic world's folder: the data root, or the shared cache's world of the
  config's seed and size. (`workdir` is not used: kept for the callers' symmetry.)"""
  del workdir
  if data_cfg.root:
    return epath.Path(data_cfg.root)
  return cache_dir() / (f"synthetic_world_v{WORLD_VERSION}_seed{data_cfg.synthetic_seed}_"
                        f"{data_cfg.synthetic_num_images}images")


def wait_for(marker: epath.Path, timeout_s: float = 1800) -> None:
  """Blocks until process 0 has written `marker`."""
  deadline = time.time() + timeout_s
  while not marker.exists():
    if time.time() > deadline:
      raise TimeoutError(f"{marker} did not appear; did process 0 fail?")
    time.sleep(1)


def ensure(data_cfg, workdir: str) -> dict[str, str]:
  """Generates the synthetic world under its root once; returns {name: path}."""
  root = world_root(data_cfg, workdir)
  marker = root / WORLD_MARKER
  if jax.process_index() > 0:  # process 0 writes the world; the others wait for it
    wait_for(marker)
  elif not marker.exists():
    logging.info("Generating the synthetic world (%d images) in %s",
                 data_cfg.synthetic_num_images, root)
    paths = generate(str(root), seed=data_cfg.synthetic_seed,
                     num_images=data_cfg.synthetic_num_images)
    marker.write_text("".join(f"{name}\t{os.path.relpath(path, str(root))}\n"
                              for name, path in sorted(paths.items())))
  return read_marker(root)


def read_marker(root: epath.PathLike) -> dict[str, str]:
  """{name: path} of the world written under `root`, each path under `root`.

  Markers from before paths were relative hold the paths as `generate` returned them
  and name the folder they were written in ("root"); each such path is taken relative
  to that folder and read under `root`, so that a copy of an old world reads the copy
  too. A path outside that folder is kept as it is.
  """
  root = epath.Path(root)
  entries = dict(line.split("\t", 1)
                 for line in (root / WORLD_MARKER).read_text().splitlines() if line)
  written_in = entries.get("root", ".")  # "." in a marker of relative paths
  return {name: str(root / _under(path, written_in)) for name, path in entries.items()}


def _under(path: str, written_in: str) -> str:
  """`path` relative to the folder the marker was written in, or as it is if outside."""
  relative = os.path.relpath(path, written_in)
  return path if relative.split(os.sep)[0] == os.pardir else relative
