"""The synthetic world written once per data root and shared by every run that names it.

`ensure(data_cfg, workdir)` writes the world under `data.root` (or, without one, inside
the workdir) the first time and leaves a marker listing its files; later runs, and
every process after the first, read the marker. Things derived from the world (the
demos' synthetic backbone) are kept beside it.
"""

import time

import jax
from absl import logging
from etils import epath

from pixelbert_jax.data.synthetic.formats import generate

WORLD_MARKER = "world.done"


def world_root(data_cfg, workdir: str) -> epath.Path:
  """The synthetic world's folder: the data root, or one inside the workdir."""
  return epath.Path(data_cfg.root or epath.Path(workdir) / "synthetic_world")


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
    marker.write_text("\n".join(f"{k}\t{v}" for k, v in sorted(paths.items())))
  return dict(line.split("\t", 1) for line in marker.read_text().splitlines())
